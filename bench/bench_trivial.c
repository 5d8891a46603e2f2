/* bench_trivial.c - the articles' trivial case: a prime check of 1,000
 * numbers, where Python's thread pool is 2x slower than a plain loop and
 * its process pool slower still. Here: the plain loop, fp_map on a thread
 * pool and on a process pool (automatic chunksize), and fp_tm_map on
 * both (the default window, 2 x workers, and 64), in the same run, the median of 21 rounds each (pools made
 * beforehand, as the articles do). Target: no pool slower than the loop.
 * Two inputs: 1,000 numbers from 10^9 (trial division: microseconds a
 * number), and 1..1,000 (nanoseconds a number: there one hand-over to a
 * worker costs more than the whole loop, shown for what it is). */
#define _POSIX_C_SOURCE 200809L
#include <futureproof.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

enum { N = 1000, ROUNDS = 21 };
static int WORKERS = 2;

static void *is_prime(void *arg) {
  uint64_t n = (uint64_t)(uintptr_t)arg;
  if (n < 2) return (void *)0;
  if (n % 2 == 0) return (void *)(uintptr_t)(n == 2);
  for (uint64_t d = 3; d * d <= n; d += 2)
    if (n % d == 0) return (void *)0;
  return (void *)1;
}

typedef struct input {
  uint64_t next, end;
} input;

static int numbers(void *state, void **item) {
  input *in = state;
  if (in->next >= in->end) return 0;
  *item = (void *)(uintptr_t)in->next++;
  return 1;
}

static volatile long sink;

static double loop(uint64_t first) {
  double t0 = fp_now();
  long primes = 0;
  for (uint64_t n = first; n < first + N; n++)
    primes += (long)(uintptr_t)is_prime((void *)(uintptr_t)n);
  sink = primes;
  return fp_now() - t0;
}

static double with_map(fp_executor *ex, uint64_t first) {
  input in = {first, first + N};
  double t0 = fp_now();
  fp_map *m;
  long primes = 0;
  void *r;
  if (fp_map_new(ex, is_prime, numbers, &in, NULL, &m)) exit(1);
  while (fp_map_next(m, &r) == 0) primes += (long)(uintptr_t)r;
  fp_map_free(m);
  sink = primes;
  return fp_now() - t0;
}

static double with_tm(fp_executor *ex, uint64_t first, size_t window) {
  input in = {first, first + N};
  fp_tm_options opt;
  fp_tm_options_init(&opt);
  opt.monitor_interval = 0;
  opt.max_in_flight = window; /* 0: the default, 2 x workers */
  double t0 = fp_now();
  fp_task_manager *tm;
  if (fp_tm_new(ex, &opt, &tm) || fp_tm_map(tm, is_prime, numbers, &in, NULL)) exit(1);
  fp_task *t;
  long primes = 0;
  while (fp_tm_next(tm, -1, &t) == 0) {
    void *r;
    if (fp_task_result(t, &r) == 0) primes += (long)(uintptr_t)r;
    fp_task_release(t);
  }
  fp_tm_free(tm);
  sink = primes;
  return fp_now() - t0;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

enum { LOOP, MAP_T, MAP_P, TM_T, TM_P, TM64_T, TM64_P, WAYS };
static const char *const names[WAYS] = {
    "plain loop",          "fp_map, thread pool",          "fp_map, process pool",
    "fp_tm_map, thread pool", "fp_tm_map, process pool", "fp_tm_map 64, thread pool",
    "fp_tm_map 64, process pool"};

static void row(fp_executor *tp, fp_executor *pp, uint64_t first, const char *what) {
  double t[WAYS][ROUNDS];
  for (int r = 0; r < ROUNDS; r++) { /* interleaved: drift hits all alike */
    t[LOOP][r] = loop(first);
    t[MAP_T][r] = with_map(tp, first);
    t[MAP_P][r] = with_map(pp, first);
    t[TM_T][r] = with_tm(tp, first, 0);
    t[TM_P][r] = with_tm(pp, first, 0);
    t[TM64_T][r] = with_tm(tp, first, 64); /* a window of 64: room for chunks */
    t[TM64_P][r] = with_tm(pp, first, 64);
  }
  printf("prime check of %d numbers %s (median of %d):\n", N, what, ROUNDS);
  for (int w = 0; w < WAYS; w++) qsort(t[w], ROUNDS, sizeof **t, cmp);
  double base = t[LOOP][ROUNDS / 2];
  for (int w = 0; w < WAYS; w++) {
    double med = t[w][ROUNDS / 2];
    printf("  %-28s %9.1f us   %5.2fx the loop%s\n", names[w], med * 1e6, med / base,
           w == LOOP ? "" : med <= base ? "   (target <= 1x: met)" : "   (target <= 1x: missed)");
  }
  printf("\n");
}

int main(void) {
  if (getenv("WORKERS")) WORKERS = atoi(getenv("WORKERS"));
  fp_executor *tp, *pp;
  fp_thread_pool_options to;
  fp_thread_pool_options_init(&to);
  to.max_workers = WORKERS;
  fp_process_pool_options po;
  fp_process_pool_options_init(&po);
  po.max_workers = WORKERS;
  if (fp_thread_pool_new(&to, &tp) || fp_process_pool_new(&po, &pp)) return 1;
  printf("%d workers a pool\n\n", WORKERS);
  row(tp, pp, 1000000000, "from 10^9 (microseconds each)");
  row(tp, pp, 1, "from 1 (nanoseconds each)");
  fp_executor_free(pp);
  fp_executor_free(tp);
  return 0;
}
