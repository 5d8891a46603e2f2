/* bench_throughput.c - 1,000,000 empty tasks through futureproof's thread
 * pool (a future per task, every result gathered) and through GLib's
 * GThreadPool (no futures), 2 workers, in the same run; prints ns per task
 * and the ratio. Rounds alternate between peers; medians are reported. */
#define _POSIX_C_SOURCE 200809L
#include <futureproof.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#ifdef HAVE_GLIB
#include <glib.h>
#endif

enum { TASKS = 1000000, WORKERS = 2, ROUNDS = 5 };

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *empty_task(void *arg) { return arg; }

static double run_futureproof(void) {
  fp_thread_pool_options opt;
  fp_thread_pool_options_init(&opt);
  opt.max_workers = WORKERS;
  fp_executor *ex;
  if (fp_thread_pool_new(&opt, &ex)) abort();
  fp_future **fs = malloc(TASKS * sizeof *fs);
  double t0 = now_s();
  for (long i = 0; i < TASKS; i++)
    if (fp_submit(ex, empty_task, NULL, &fs[i])) abort();
  for (long i = 0; i < TASKS; i++) {
    if (fp_future_result(fs[i], -1, NULL)) abort();
    fp_future_release(fs[i]);
  }
  double t = now_s() - t0;
  fp_executor_free(ex);
  free(fs);
  return t;
}

#ifdef HAVE_GLIB
static void glib_task(gpointer data, gpointer user) {
  (void)data;
  g_atomic_int_inc((gint *)user);
}

static double run_glib(void) {
  gint done = 0;
  GThreadPool *pool = g_thread_pool_new(glib_task, &done, WORKERS, TRUE, NULL);
  double t0 = now_s();
  for (long i = 0; i < TASKS; i++) g_thread_pool_push(pool, GINT_TO_POINTER(1), NULL);
  g_thread_pool_free(pool, FALSE, TRUE); /* waits for every task */
  double t = now_s() - t0;
  if (g_atomic_int_get(&done) != TASKS) abort();
  return t;
}
#endif

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp);
  return v[n / 2];
}

int main(void) {
  double fp[ROUNDS];
#ifdef HAVE_GLIB
  double gl[ROUNDS];
#endif
  for (int r = 0; r < ROUNDS; r++) {
    fp[r] = run_futureproof();
#ifdef HAVE_GLIB
    gl[r] = run_glib();
#endif
  }
  double ns_fp = median(fp, ROUNDS) / TASKS * 1e9;
  printf("throughput: %d empty tasks, %d workers, median of %d rounds\n", TASKS, WORKERS, ROUNDS);
  printf("  %-34s %8.1f ns/task\n", "futureproof (futures, results)", ns_fp);
#ifdef HAVE_GLIB
  double ns_gl = median(gl, ROUNDS) / TASKS * 1e9;
  printf("  %-34s %8.1f ns/task\n", "GLib GThreadPool (no futures)", ns_gl);
  printf("  ratio futureproof / GLib: %.2fx\n", ns_fp / ns_gl);
#else
  printf("  GLib GThreadPool: not built (libglib2.0-dev missing)\n");
#endif
  return 0;
}
