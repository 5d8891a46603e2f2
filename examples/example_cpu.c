/* example_cpu.c - the CPU-bound scenario: prime-check 600 large numbers
 * sequentially, on the thread pool and on the process pool (which would
 * also survive a crashing check), and print the speedups. */
#define _POSIX_C_SOURCE 200809L
#include <futureproof.h>
#include <stdio.h>
#include <unistd.h>

enum { COUNT = 600 };
static const uint64_t FIRST = 100000000000001ULL; /* ~10^14: a prime costs 5 million divisions */

static void *is_prime(void *arg) {
  uint64_t n = (uintptr_t)arg;
  if (n % 2 == 0) return NULL;
  for (uint64_t d = 3; d * d <= n; d += 2)
    if (n % d == 0) return NULL;
  return arg;
}

static int next_odd(void *state, void **item) {
  uint64_t *i = state;
  if (*i >= COUNT) return 0;
  *item = (void *)(uintptr_t)(FIRST + 2 * (*i)++);
  return 1;
}

/* Map is_prime over the numbers on ex; returns how many are prime. */
static int count_primes(fp_executor *ex, int chunksize) {
  fp_map_options opt;
  fp_map_options_init(&opt);
  opt.chunksize = chunksize;
  opt.buffersize = 64; /* results come in order: read well ahead of a slow prime */
  uint64_t next = 0;
  fp_map *m;
  if (fp_map_new(ex, is_prime, next_odd, &next, &opt, &m)) return -1;
  int primes = 0;
  void *r;
  while (fp_map_next(m, &r) == 0) primes += r != NULL;
  fp_map_free(m);
  return primes;
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  printf("== CPU-bound: prime-check %d numbers near 10^14, %ld CPUs\n\n", COUNT, ncpu);
  double t0 = fp_now();
  int sequential = 0;
  for (uint64_t i = 0; i < COUNT; i++) sequential += is_prime((void *)(uintptr_t)(FIRST + 2 * i)) != NULL;
  double t_seq = fp_now() - t0;
  printf("   sequential loop:  %3d primes in %.2f s\n", sequential, t_seq);

  fp_thread_pool_options topt;
  fp_thread_pool_options_init(&topt);
  topt.max_workers = (int)ncpu;
  fp_executor *threads;
  fp_thread_pool_new(&topt, &threads);
  t0 = fp_now();
  int by_threads = count_primes(threads, 1);
  double t_threads = fp_now() - t0;
  fp_executor_free(threads);
  printf("   thread pool:      %3d primes in %.2f s  (%.1fx)\n", by_threads, t_threads,
         t_seq / t_threads);

  fp_executor *processes;
  fp_process_pool_new(NULL, &processes); /* one worker per CPU */
  t0 = fp_now();
  int by_processes = count_primes(processes, 10);
  double t_processes = fp_now() - t0;
  fp_executor_free(processes);
  printf("   process pool:     %3d primes in %.2f s  (%.1fx, chunks of 10)\n\n", by_processes,
         t_processes, t_seq / t_processes);
  return by_threads == sequential && by_processes == sequential ? 0 : 1;
}
