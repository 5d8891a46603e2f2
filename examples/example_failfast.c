/* example_failfast.c - every fifth task fails. The task manager (raise
 * policy) returns the first error almost at once and cancels the rest; the
 * plain executor, used the way `with ThreadPoolExecutor()` is, runs
 * everything before anyone looks at an error. */
#define _POSIX_C_SOURCE 200809L
#include <futureproof.h>
#include <stdio.h>
#include <time.h>

enum { TASKS = 100, WORKERS = 4 };

static void *every_fifth_fails(void *arg) {
  long i = (long)(intptr_t)arg;
  for (int ms = 0; ms < 20 && !fp_cancel_requested(); ms++) { /* 20 ms of work */
    struct timespec one_ms = {0, 1000000};
    nanosleep(&one_ms, NULL);
  }
  if (i % 5 == 4) return fp_raise(-EIO, "item %ld is corrupt", i);
  return arg;
}

static fp_executor *new_pool(void) {
  fp_thread_pool_options opt;
  fp_thread_pool_options_init(&opt);
  opt.max_workers = WORKERS;
  fp_executor *pool;
  fp_thread_pool_new(&opt, &pool);
  return pool;
}

static void plain(void) {
  fp_executor *pool = new_pool();
  double t0 = fp_now();
  fp_future *fs[TASKS];
  for (long i = 0; i < TASKS; i++) fp_submit(pool, every_fifth_fails, (void *)(intptr_t)i, &fs[i]);
  fp_shutdown(pool, true, false); /* leaving the `with` block */
  int ran = 0, failed = 0, first = -1;
  for (int i = 0; i < TASKS; i++) {
    int rc = fp_future_result(fs[i], 0, NULL);
    ran += rc != FP_ECANCELED;
    if (rc && rc != FP_ECANCELED && first < 0) first = i;
    failed += rc != 0;
    fp_future_release(fs[i]);
  }
  printf("-- plain executor: first error known after %.3f s (item %d); %d of %d ran, %d failed\n",
         fp_now() - t0, first, ran, TASKS, failed);
  fp_executor_free(pool);
}

static int next_item(void *state, void **item) {
  long *i = state;
  if (*i >= TASKS) return 0;
  *item = (void *)(intptr_t)(*i)++;
  return 1;
}

static void managed(void) {
  fp_executor *pool = new_pool();
  fp_tm_options opt;
  fp_tm_options_init(&opt);
  opt.monitor_interval = 0; /* error_policy raise is the default */
  fp_task_manager *tm;
  fp_tm_new(pool, &opt, &tm);
  long next = 0;
  fp_tm_map(tm, every_fifth_fails, next_item, &next, NULL);
  double t0 = fp_now();
  int rc = fp_tm_run(tm, 60);
  double returned = fp_now();
  fp_task *failed;
  fp_tm_failed_task(tm, &failed);
  double failed_at;
  fp_task_times(failed, NULL, NULL, &failed_at);
  fp_tm_stats st;
  fp_tm_get_stats(tm, &st);
  printf("-- task manager:   first error after %.3f s: task %llu (item %ld) %s: %s\n",
         returned - t0, (unsigned long long)fp_task_index(failed),
         (long)(intptr_t)fp_task_arg(failed), fp_err_name(rc), fp_task_error(failed)->message);
  printf("                   returned %.3f ms after the failure; %llu of %d submitted, the rest "
         "never read\n",
         (returned - failed_at) * 1e3, (unsigned long long)st.submitted, TASKS);
  fp_task_release(failed);
  fp_tm_free(tm);
  fp_executor_free(pool); /* waits for the running ones, which were asked to stop */
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("== Fail fast: %d tasks of 20 ms, every fifth fails, %d threads\n\n", TASKS, WORKERS);
  plain();
  managed();
  printf("\n");
  return 0;
}
