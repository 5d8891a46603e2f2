/* example_mpi.c - the CPU-bound scenario on MPI ranks: prime-check 600
 * numbers near 10^14 sequentially on rank 0, then with futureproof-mpi on
 * the other ranks (each check in a worker process of its rank: a crashing
 * check would fail only its own future), and print the speedup.
 *
 *   mpirun -n 3 ./example_mpi        (Open MPI as root: --allow-run-as-root;
 *                                      more ranks than cores: --oversubscribe)
 */
#define _POSIX_C_SOURCE 200809L
#include <futureproof.h>
#include <futureproof_mpi.h>
#include <stdio.h>

enum { COUNT = 600 };
static const uint64_t FIRST = 100000000000001ULL; /* a prime costs 5 million divisions */

static void *is_prime(void *arg) {
  uint64_t n = (uintptr_t)arg;
  if (n % 2 == 0) return NULL;
  for (uint64_t d = 3; d * d <= n; d += 2)
    if (n % d == 0) return NULL;
  return arg;
}
FP_TASK_REGISTER(is_prime) /* the same id on every rank */

static int next_odd(void *state, void **item) {
  uint64_t *i = state;
  if (*i >= COUNT) return 0;
  *item = (void *)(uintptr_t)(FIRST + 2 * (*i)++);
  return 1;
}

int main(int argc, char **argv) {
  if (fp_mpi_init(&argc, &argv)) return 1;
  int ranks;
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  fp_executor *ex;
  int rc = fp_mpi_comm_executor_new(MPI_COMM_WORLD, 0, NULL, &ex);
  if (rc == 0 && ex) { /* rank 0; the others served until it was done */
    printf("== CPU-bound on MPI: prime-check %d numbers near 10^14, %d worker ranks\n", COUNT,
           ranks - 1);
    double t0 = fp_now();
    int sequential = 0;
    for (uint64_t i = 0; i < COUNT; i++)
      sequential += is_prime((void *)(uintptr_t)(FIRST + 2 * i)) != NULL;
    double t_seq = fp_now() - t0;
    fp_map_options opt;
    fp_map_options_init(&opt);
    opt.chunksize = 10;
    uint64_t next = 0;
    fp_map *m;
    int primes = 0;
    t0 = fp_now();
    if (fp_map_new(ex, is_prime, next_odd, &next, &opt, &m) == 0) {
      void *r;
      while (fp_map_next(m, &r) == 0) primes += r != NULL;
      fp_map_free(m);
    }
    double t_mpi = fp_now() - t0;
    printf("  sequential, rank 0   %3d primes  %6.2f s\n", sequential, t_seq);
    printf("  %d worker ranks       %3d primes  %6.2f s  speedup %.2fx\n", ranks - 1, primes,
           t_mpi, t_seq / t_mpi);
    fp_executor_free(ex); /* the worker ranks return from fp_mpi_comm_executor_new */
    rc = primes == sequential ? 0 : 1;
  } else if (rc) {
    fprintf(stderr, "example_mpi: %s\n", fp_last_error_message());
  }
  MPI_Finalize();
  return rc ? 1 : 0;
}
