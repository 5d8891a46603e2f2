/* bench_mpi.c - futureproof-mpi beside mpi4py.futures' MPICommExecutor,
 * same run, 3 ranks (2 workers): round trip, throughput of empty tasks, a
 * chunked map, and an idle executor's CPU use on its workers. Run it
 * plainly: it starts mpi4py's rows under mpirun, then itself. */
#define _GNU_SOURCE
#include <futureproof.h>
#include <futureproof_mpi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static void *empty(void *arg) { return arg; }
FP_TASK_REGISTER(empty)

static int count(int fallback, const char *name) {
  const char *v = getenv(name);
  return v && atoi(v) > 0 ? atoi(v) : fallback;
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec * 1e-6;
}

static int next_int(void *state, void **item) {
  long *left = state;
  if (*left <= 0) return 0;
  *item = (void *)(intptr_t)(*left)--;
  return 1;
}

static void row(const char *name, double ours, double peer) {
  if (peer > 0)
    printf("  %-34s %12.2f %12.2f %8.1fx\n", name, ours, peer, peer / ours);
  else
    printf("  %-34s %12.2f %12s\n", name, ours, "-");
}

enum { BATCHES = 15 };

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The three rows on one executor (the root only), then it is freed. */
static void measure(fp_executor *ex, int rounds, int tasks, long items, double out[3]) {
  fp_future *f;
  fp_submit(ex, empty, NULL, &f); /* warm up */
  fp_future_result(f, -1, NULL);
  fp_future_release(f);
  /* The median of BATCHES batches: a neighbour's burst on this shared
   * machine moves one batch, not the figure. */
  double batch[BATCHES];
  for (int b = 0; b < BATCHES; b++) {
    double t0 = fp_now();
    for (int i = 0; i < rounds / BATCHES; i++) {
      fp_submit(ex, empty, (void *)(intptr_t)i, &f);
      fp_future_result(f, -1, NULL);
      fp_future_release(f);
    }
    batch[b] = (fp_now() - t0) * 1e6 / (rounds / BATCHES);
  }
  qsort(batch, BATCHES, sizeof *batch, by_value);
  out[0] = batch[BATCHES / 2];
  double t0;
  fp_future **fs = malloc((size_t)tasks * sizeof *fs);
  t0 = fp_now();
  for (int i = 0; i < tasks; i++) fp_submit(ex, empty, (void *)(intptr_t)i, &fs[i]);
  for (int i = 0; i < tasks; i++) {
    fp_future_result(fs[i], -1, NULL);
    fp_future_release(fs[i]);
  }
  out[1] = (fp_now() - t0) * 1e6 / tasks;
  free(fs);
  fp_map_options mo;
  fp_map_options_init(&mo);
  mo.chunksize = 1000;
  long left = items;
  fp_map *m;
  t0 = fp_now();
  if (fp_map_new(ex, empty, next_int, &left, &mo, &m) == 0) {
    void *r;
    while (fp_map_next(m, &r) == 0) {
    }
    fp_map_free(m);
  }
  out[2] = (fp_now() - t0) * 1e6 / (double)items;
  fp_executor_free(ex);
}

/* The launcher: mpi4py's figures, then this program under mpirun. */
static int launch(char **argv) {
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
  setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 0);
  const char *python = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "%s -n 3 %s " FP_BENCH_DIR "/peer_mpi4py.py 2>/dev/null",
           FP_MPIEXEC, python);
  FILE *p = popen(cmd, "r");
  char line[256] = "";
  if (!p || !fgets(line, sizeof line, p)) line[0] = 0;
  if (p) pclose(p);
  line[strcspn(line, "\n")] = 0;
  if (!line[0]) fprintf(stderr, "bench_mpi: mpi4py not available (python3-mpi4py): no peer\n");
  setenv("FP_BENCH_PEER", line, 1);
  setenv("FP_BENCH_CHILD", "1", 1);
  char *ranks = getenv("RANKS") ? getenv("RANKS") : "3";
  char *args[] = {FP_MPIEXEC, "-n", ranks, argv[0], NULL};
  execvp(args[0], args);
  perror("bench_mpi: mpirun");
  return 1;
}

int main(int argc, char **argv) {
  (void)argc;
  if (!getenv("FP_BENCH_CHILD")) return launch(argv);
  fp_mpi_init(&argc, &argv);
  int me;
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  int rounds = count(2000, "ROUND_TRIPS"), tasks = count(100000, "TASKS");
  long items = count(1000000, "MAP_ITEMS");
  double idle_s = count(5, "IDLE_S");
  double peer[4] = {0};
  sscanf(getenv("FP_BENCH_PEER") ? getenv("FP_BENCH_PEER") : "", "%lf %lf %lf %lf", &peer[0],
         &peer[1], &peer[2], &peer[3]);
  fp_executor *ex;
  double figures[2][3] = {{0}}; /* isolated, in-rank: round trip, throughput, per item */
  for (int isolate = 1; isolate >= 0; isolate--) {
    fp_mpi_options o;
    fp_mpi_options_init(&o);
    o.isolate = isolate;
    if (fp_mpi_comm_executor_new(MPI_COMM_WORLD, 0, &o, &ex) == 0 && ex)
      measure(ex, rounds, tasks, items, figures[isolate ? 0 : 1]);
  }
  /* Idle: an executor with no work; each worker's CPU while it serves. */
  double cpu0 = cpu_seconds(), wall0 = fp_now();
  if (fp_mpi_comm_executor_new(MPI_COMM_WORLD, 0, NULL, &ex) == 0 && ex) {
    usleep((useconds_t)(idle_s * 1e6));
    fp_executor_free(ex);
  }
  double busy = me ? (cpu_seconds() - cpu0) / (fp_now() - wall0) * 100 : 0, worst = 0;
  MPI_Reduce(&busy, &worst, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  if (me == 0) {
    printf("futureproof-mpi beside mpi4py.futures (MPICommExecutor), 3 ranks: 2 workers\n");
    const char *names[3] = {"round trip (us)", "throughput (us a task)",
                            "map, chunksize 1000 (us an item)"};
    for (int k = 0; k < 2; k++) {
      printf("%s\n", k ? "tasks in threads of each rank (isolate = false)"
                       : "tasks in worker processes on each rank (the default: isolated)");
      printf("  %-34s %12s %12s %9s\n", "", "futureproof", "mpi4py", "speedup");
      for (int r = 0; r < 3; r++) row(names[r], figures[k][r], peer[r]);
    }
    printf("  %-34s %12.1f %12.1f\n", "idle worker CPU (% of a core)", worst, peer[3]);
  }
  MPI_Finalize();
  return 0;
}
