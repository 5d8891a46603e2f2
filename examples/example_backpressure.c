/* example_backpressure.c - map over 1,000,000,000 items with a 0.1 ms
 * task: the task manager reads the input only as results are consumed, so
 * memory stays flat; monitor lines show progress; after a few seconds the
 * demo sends itself SIGINT, as a Ctrl-C would (a real Ctrl-C works too),
 * and shows how fast the run stopped. Then, for contrast, the plain
 * executor fed the way Python's map feeds it: everything up front.
 * Usage: example_backpressure [SECONDS_BEFORE_SIGINT]   (default 3) */
#define _POSIX_C_SOURCE 200809L
#include <futureproof.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { WORKERS = 8 };
static const uint64_t ITEMS = 1000000000ULL;

/* "VmRSS" (now) or "VmHWM" (peak) from /proc/self/status, in KiB. */
static long status_kib(const char *field) {
  FILE *fp = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  size_t len = strlen(field);
  while (fp && fgets(line, sizeof line, fp))
    if (!strncmp(line, field, len) && line[len] == ':') kib = atol(line + len + 1);
  if (fp) fclose(fp);
  return kib;
}

static int count_to_a_billion(void *state, void **item) {
  uint64_t *next = state;
  if (*next >= ITEMS) return 0;
  *item = (void *)(uintptr_t)(*next)++;
  return 1;
}

static void *tenth_of_a_millisecond(void *arg) {
  struct timespec ts = {0, 100000};
  nanosleep(&ts, NULL);
  return arg;
}

/* The self-interrupt: SIGINT after `seconds`, unless the run ended first
 * (a real Ctrl-C). */
static pthread_mutex_t timer_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t timer_cv = PTHREAD_COND_INITIALIZER;
static bool run_over;
static double signal_sent_at;

static void *interrupt_later(void *arg) {
  struct timespec at;
  clock_gettime(CLOCK_REALTIME, &at);
  double seconds = *(double *)arg;
  at.tv_sec += (time_t)seconds;
  at.tv_nsec += (long)((seconds - (time_t)seconds) * 1e9);
  if (at.tv_nsec >= 1000000000L) at.tv_sec++, at.tv_nsec -= 1000000000L;
  pthread_mutex_lock(&timer_mu);
  while (!run_over && pthread_cond_timedwait(&timer_cv, &timer_mu, &at) == 0) {
  }
  bool send = !run_over;
  pthread_mutex_unlock(&timer_mu);
  if (send) {
    printf("   (sending SIGINT to myself, as a Ctrl-C would)\n");
    signal_sent_at = fp_now();
    kill(getpid(), SIGINT);
  }
  return NULL;
}

static void stop_timer(pthread_t timer) {
  pthread_mutex_lock(&timer_mu);
  run_over = true;
  pthread_cond_signal(&timer_cv);
  pthread_mutex_unlock(&timer_mu);
  pthread_join(timer, NULL);
}

static void managed(fp_executor *pool, double seconds) {
  printf("-- task manager: map over %llu items, window %d, monitor every 1 s\n",
         (unsigned long long)ITEMS, 2 * WORKERS);
  fp_tm_options opt;
  fp_tm_options_init(&opt);
  opt.monitor_interval = 1;
  opt.handle_interrupt = true;
  opt.progress = true;
  opt.total = ITEMS;
  fp_task_manager *tm;
  fp_tm_new(pool, &opt, &tm);
  long rss_before = status_kib("VmRSS");
  uint64_t next = 0;
  fp_tm_map(tm, tenth_of_a_millisecond, count_to_a_billion, &next, NULL);
  pthread_t timer;
  pthread_create(&timer, NULL, interrupt_later, &seconds);
  int rc = fp_tm_run(tm, -1);
  double returned = fp_now();
  stop_timer(timer);
  fp_tm_stats st;
  fp_tm_get_stats(tm, &st);
  fp_tm_free(tm);
  if (signal_sent_at > 0)
    printf("   run returned %s (%s) %.1f ms after the signal (the stop itself took %.2f ms)\n",
           fp_err_name(rc), fp_strerror(rc), (returned - signal_sent_at) * 1e3,
           st.stop_latency * 1e3);
  else
    printf("   run returned %s (%s): stopped by your Ctrl-C (the stop took %.2f ms)\n",
           fp_err_name(rc), fp_strerror(rc), st.stop_latency * 1e3);
  printf("   %llu tasks completed, %llu items read of %llu; peak in flight %zu\n",
         (unsigned long long)st.completed, (unsigned long long)next, (unsigned long long)ITEMS,
         st.peak_in_flight);
  printf("   memory: RSS %.1f MiB before the map, peak %.1f MiB: flat, whatever the input size\n\n",
         rss_before / 1024.0, status_kib("VmHWM") / 1024.0);
}

static void plain(fp_executor *pool) {
  enum { UP_FRONT = 1000000 };
  printf("-- plain executor, fed up front as Python's map does: %d of the items\n", UP_FRONT);
  long before = status_kib("VmRSS");
  fp_future **fs = malloc(UP_FRONT * sizeof *fs);
  for (long i = 0; i < UP_FRONT; i++) fp_submit(pool, tenth_of_a_millisecond, NULL, &fs[i]);
  long after = status_kib("VmRSS");
  fp_shutdown(pool, true, true); /* cancel what has not started */
  for (long i = 0; i < UP_FRONT; i++) fp_future_release(fs[i]);
  free(fs);
  printf("   RSS grew by %.1f MiB just to hold them (x1000 for the billion); cancelled them\n",
         (after - before) / 1024.0);
}

int main(int argc, char **argv) {
  double seconds = argc > 1 ? atof(argv[1]) : 3;
  fp_set_logger(NULL, NULL, FP_LOG_INFO); /* show the monitor lines */
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("== Backpressure: a billion items, 0.1 ms each, %d threads\n\n", WORKERS);
  fp_thread_pool_options popt;
  fp_thread_pool_options_init(&popt);
  popt.max_workers = WORKERS;
  fp_executor *pool;
  fp_thread_pool_new(&popt, &pool);
  managed(pool, seconds);
  plain(pool);
  fp_executor_free(pool);
  return 0;
}
