/* bench_process.c - the process pool beside Python's ProcessPoolExecutor
 * (bench/peer_process.py) in the same run, 2 workers: a round trip (submit
 * an empty task, wait for its result), the throughput of 100,000 empty
 * tasks, and a map over 1,000,000 tiny items with chunksize 1000. */
#define _POSIX_C_SOURCE 200809L
#include <futureproof.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { WORKERS = 2, TRIPS = 2000, TASKS = 100000, ITEMS = 1000000, CHUNK = 1000 };

static void *empty(void *arg) { return arg; }
static void *square(void *arg) {
  long x = (long)(intptr_t)arg;
  return (void *)(intptr_t)(x * x);
}

static int count(void *state, void **item) {
  long *n = state;
  if (*n >= ITEMS) return 0;
  *item = (void *)(intptr_t)(*n)++;
  return 1;
}

static double round_trip_us(fp_executor *ex) {
  double t0 = fp_now();
  for (int i = 0; i < TRIPS; i++) {
    fp_future *f;
    if (fp_submit(ex, empty, NULL, &f) || fp_future_result(f, -1, NULL)) abort();
    fp_future_release(f);
  }
  return (fp_now() - t0) / TRIPS * 1e6;
}

static double throughput_us(fp_executor *ex) {
  fp_future **fs = malloc(TASKS * sizeof *fs);
  double t0 = fp_now();
  for (long i = 0; i < TASKS; i++)
    if (fp_submit(ex, empty, NULL, &fs[i])) abort();
  for (long i = 0; i < TASKS; i++) {
    if (fp_future_result(fs[i], -1, NULL)) abort();
    fp_future_release(fs[i]);
  }
  free(fs);
  return (fp_now() - t0) / TASKS * 1e6;
}

static double map_ns(fp_executor *ex) {
  fp_map_options opt;
  fp_map_options_init(&opt);
  opt.chunksize = CHUNK;
  long next = 0;
  fp_map *m;
  if (fp_map_new(ex, square, count, &next, &opt, &m)) abort();
  double t0 = fp_now();
  void *r;
  long i = 0, sum_ok = 1;
  int rc;
  while ((rc = fp_map_next(m, &r)) == 0) {
    sum_ok &= (long)(intptr_t)r == i * i;
    i++;
  }
  double t = fp_now() - t0;
  if (rc != FP_EOF || i != ITEMS || !sum_ok) abort();
  fp_map_free(m);
  return t / ITEMS * 1e9;
}

int main(int argc, char **argv) {
  (void)argc;
  fp_process_pool_options opt;
  fp_process_pool_options_init(&opt);
  opt.max_workers = WORKERS;
  fp_executor *ex;
  if (fp_process_pool_new(&opt, &ex)) return 1;
  fp_future *warm;
  fp_submit(ex, empty, NULL, &warm); /* start a worker */
  fp_future_result(warm, -1, NULL);
  fp_future_release(warm);
  double ours[3] = {round_trip_us(ex), throughput_us(ex), map_ns(ex)};
  fp_executor_free(ex);

  /* the peer, from this program's directory's source */
  char script[1024], cmd[1200];
  const char *src = getenv("FP_BENCH_DIR");
  snprintf(script, sizeof script, "%s/peer_process.py", src ? src : FP_BENCH_SOURCE_DIR);
  snprintf(cmd, sizeof cmd, "python3 %s %d %d %d %d %d", script, WORKERS, TRIPS / 4, TASKS / 4,
           ITEMS, CHUNK);
  double peer[3] = {0, 0, 0};
  FILE *py = popen(cmd, "r");
  char name[64];
  double value;
  while (py && fscanf(py, "%63s %lf", name, &value) == 2) {
    if (!strcmp(name, "round_trip_us")) peer[0] = value;
    if (!strcmp(name, "throughput_us")) peer[1] = value;
    if (!strcmp(name, "map_ns")) peer[2] = value;
  }
  bool have_peer = py && pclose(py) == 0 && peer[0] > 0;
  const char *what[3] = {"round trip (us/task)", "100,000 empty tasks (us/task)",
                         "map 10^6 items, chunksize 1000 (ns/item)"};
  printf("process pool, %d workers; peer: Python %s ProcessPoolExecutor\n", WORKERS,
         have_peer ? "" : "(not available)");
  printf("  %-42s %12s %12s %10s\n", "", "futureproof", "Python", "speedup");
  for (int i = 0; i < 3; i++) {
    if (have_peer)
      printf("  %-42s %12.2f %12.2f %9.1fx\n", what[i], ours[i], peer[i], peer[i] / ours[i]);
    else
      printf("  %-42s %12.2f %12s %10s\n", what[i], ours[i], "-", "-");
  }
  return 0;
}
