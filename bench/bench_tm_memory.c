/* bench_tm_memory.c - the task manager's map beside fp_map, and its
 * memory. First, per item with a trivial task on 2 workers, default
 * options both (target: the task manager at most 2x fp_map), the median
 * of 5 interleaved rounds. Then its map over 10^8 items: peak RSS at
 * 10^6, 10^7 and 10^8 items consumed must stay within a few MiB of the
 * start (the window bounds memory, not the input).
 * Usage: [WINDOW=N] bench_tm_memory [MAX_POWER_OF_TEN]   (default 8) */
#define _POSIX_C_SOURCE 200809L
#include <futureproof.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long peak_rss_kib(void) {
  FILE *fp = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  while (fp && fgets(line, sizeof line, fp))
    if (!strncmp(line, "VmHWM:", 6)) kib = atol(line + 6);
  if (fp) fclose(fp);
  return kib;
}

static int count(void *state, void **item) {
  uint64_t *n = state;
  *item = (void *)(uintptr_t)(*n)++;
  return 1; /* endless: the consumer decides when to stop */
}

static void *trivial(void *arg) { return arg; }

enum { RATIO_ITEMS = 1000000, ROUNDS = 5 };

static int bounded(void *state, void **item) {
  uint64_t *n = state;
  if (*n >= RATIO_ITEMS) return 0;
  *item = (void *)(uintptr_t)(*n)++;
  return 1;
}

static double ns_fp_map(fp_executor *pool) {
  uint64_t n = 0;
  fp_map *m;
  double t0 = fp_now();
  if (fp_map_new(pool, trivial, bounded, &n, NULL, &m)) exit(1);
  void *r;
  while (fp_map_next(m, &r) == 0) {
  }
  fp_map_free(m);
  return (fp_now() - t0) / RATIO_ITEMS * 1e9;
}

static double ns_tm_map(fp_executor *pool, size_t window) {
  uint64_t n = 0;
  fp_tm_options topt;
  fp_tm_options_init(&topt);
  topt.monitor_interval = 0;
  topt.max_in_flight = window; /* 0: the default */
  fp_task_manager *tm;
  double t0 = fp_now();
  if (fp_tm_new(pool, &topt, &tm) || fp_tm_map(tm, trivial, bounded, &n, NULL)) exit(1);
  fp_task *t;
  while (fp_tm_next(tm, -1, &t) == 0) fp_task_release(t);
  fp_tm_free(tm);
  return (fp_now() - t0) / RATIO_ITEMS * 1e9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* fp_map and fp_tm_map side by side, interleaved; medians. */
static void ratio_row(fp_executor *pool) {
  double map[ROUNDS], tm[ROUNDS], tm64[ROUNDS];
  for (int r = 0; r < ROUNDS; r++) {
    map[r] = ns_fp_map(pool);
    tm[r] = ns_tm_map(pool, 0);
    tm64[r] = ns_tm_map(pool, 64);
  }
  qsort(map, ROUNDS, sizeof *map, cmp_double);
  qsort(tm, ROUNDS, sizeof *tm, cmp_double);
  qsort(tm64, ROUNDS, sizeof *tm64, cmp_double);
  double m = map[ROUNDS / 2];
  printf("map over %d trivial items, 2 workers, default options (median of %d):\n",
         RATIO_ITEMS, ROUNDS);
  printf("  fp_map %.0f ns/item, fp_tm_map %.0f ns/item: task manager / fp_map = %.2fx "
         "(target <= 2x)\n",
         m, tm[ROUNDS / 2], tm[ROUNDS / 2] / m);
  printf("  fp_tm_map with a window of 64 (fp_map's buffer): %.0f ns/item, %.2fx\n\n",
         tm64[ROUNDS / 2], tm64[ROUNDS / 2] / m);
}

int main(int argc, char **argv) {
  int max_power = argc > 1 ? atoi(argv[1]) : 8;
  fp_executor *pool;
  fp_thread_pool_options opt;
  fp_thread_pool_options_init(&opt);
  opt.max_workers = 2;
  if (fp_thread_pool_new(&opt, &pool)) return 1;
  ratio_row(pool);
  fp_tm_options topt;
  fp_tm_options_init(&topt);
  topt.monitor_interval = 0;
  /* 256 keeps 10^8 items to about a minute; the default window (2 x
   * workers) is bound by wake-up latency, not memory: WINDOW=0 shows it. */
  topt.max_in_flight = getenv("WINDOW") ? (size_t)atol(getenv("WINDOW")) : 256;
  fp_task_manager *tm;
  if (fp_tm_new(pool, &topt, &tm)) return 1;
  uint64_t read = 0;
  fp_tm_map(tm, trivial, count, &read, NULL);

  long start = peak_rss_kib();
  fp_tm_stats st;
  fp_tm_get_stats(tm, &st);
  printf("task manager map, trivial task, 2 workers, window %zu\n", st.max_in_flight);
  printf("  %12s %14s %16s %10s\n", "items", "peak RSS MiB", "over start MiB", "ns/item");
  printf("  %12s %14.1f %16s %10s\n", "start", start / 1024.0, "-", "-");
  uint64_t done = 0, checkpoint = 1000000;
  double t0 = fp_now();
  for (int power = 6; power <= max_power; power++, checkpoint *= 10) {
    for (; done < checkpoint; done++) {
      fp_task *t;
      if (fp_tm_next(tm, -1, &t)) return 1;
      fp_task_release(t);
    }
    long peak = peak_rss_kib();
    printf("  %12llu %14.1f %16.2f %10.0f\n", (unsigned long long)done, peak / 1024.0,
           (peak - start) / 1024.0, (fp_now() - t0) / (double)done * 1e9);
    fflush(stdout);
  }
  fp_tm_free(tm);
  fp_executor_free(pool);
  return 0;
}
