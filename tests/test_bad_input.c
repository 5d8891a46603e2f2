/* test_bad_input.c - every public function given what it must refuse:
 * NULL, zero and negative counts, counts that overflow, NaN timeouts,
 * unknown enum values. Each returns FP_EINVAL and logs a line (or, for
 * functions with nothing to return, does nothing harmful); none crashes. */
#include "helpers.h"

#include <math.h>
#include <stdint.h>

/* rc must be FP_EINVAL, with a warning logged for it. */
#define REFUSED(call)                                                                       \
  do {                                                                                      \
    int lines_ = captured_lines();                                                          \
    int rc_ = (call);                                                                       \
    ck_assert_msg(rc_ == FP_EINVAL, "%s gave %s", #call, fp_err_name(rc_));                \
    ck_assert_msg(captured_lines() > lines_, "%s logged nothing", #call);                   \
    ck_assert_int_eq(fp_last_error()->code, FP_EINVAL);                                     \
  } while (0)

static int never(void *state, void **item) {
  (void)state;
  (void)item;
  return 0;
}

START_TEST(futures_refuse_null_and_nan) {
  capture_start();
  REFUSED(fp_future_new(NULL));
  REFUSED(fp_future_wait(NULL, 0));
  REFUSED(fp_future_result(NULL, 0, NULL));
  REFUSED(fp_future_on_done(NULL, NULL, NULL));
  REFUSED(fp_future_set_running(NULL));
  REFUSED(fp_future_set_result(NULL, NULL));
  REFUSED(fp_future_set_error(NULL, FP_EINVAL, "x"));
  ck_assert_ptr_null(fp_future_retain(NULL));
  fp_future_release(NULL);
  ck_assert_int_eq(fp_future_get_state(NULL), FP_PENDING);
  ck_assert(!fp_future_done(NULL) && !fp_future_running(NULL) && !fp_future_cancelled(NULL));
  ck_assert(!fp_future_cancel(NULL));
  ck_assert_ptr_null(fp_future_error(NULL));
  ck_assert(fp_future_fn(NULL) == NULL);
  ck_assert_ptr_null(fp_future_arg(NULL));
  ck_assert_uint_eq(fp_future_id(NULL), 0);

  fp_future *f;
  ck_assert_int_eq(fp_future_new(&f), 0);
  REFUSED(fp_future_on_done(f, NULL, NULL));
  REFUSED(fp_future_wait(f, NAN));
  REFUSED(fp_future_result(f, NAN, NULL));
  ck_assert_int_eq(fp_future_set_error(f, -EIO, NULL), 0); /* NULL format: the code's text */
  ck_assert_str_eq(fp_future_error(f)->message, fp_strerror(-EIO));
  ck_assert_int_eq(fp_future_wait(f, INFINITY), 0); /* +inf: no limit, and it is done */
  fp_future_release(f);
}
END_TEST

START_TEST(executors_refuse_bad_options_and_arguments) {
  capture_start();
  fp_executor *ex = (fp_executor *)1;
  fp_thread_pool_options topt;
  fp_thread_pool_options_init(&topt);
  fp_thread_pool_options_init(NULL);
  REFUSED(fp_thread_pool_new(NULL, NULL));
  topt.max_workers = 0;
  REFUSED(fp_thread_pool_new(&topt, &ex));
  ck_assert_ptr_null(ex);
  topt.max_workers = -3;
  REFUSED(fp_thread_pool_new(&topt, &ex));
  topt.max_workers = 2;
  topt.queue_capacity = -1;
  REFUSED(fp_thread_pool_new(&topt, &ex));

  fp_process_pool_options popt;
  fp_process_pool_options_init(NULL);
  fp_process_pool_options_init(&popt);
  REFUSED(fp_process_pool_new(&popt, NULL));
  popt.max_workers = INT32_MIN;
  REFUSED(fp_process_pool_new(&popt, &ex));
  fp_process_pool_options_init(&popt);
  popt.task_timeout = NAN;
  REFUSED(fp_process_pool_new(&popt, &ex));
  popt.task_timeout = -1;
  REFUSED(fp_process_pool_new(&popt, &ex));
  fp_process_pool_options_init(&popt);
  popt.max_tasks_per_child = -1;
  REFUSED(fp_process_pool_new(&popt, &ex));
  REFUSED(fp_process_pool_kill_workers(NULL));
  REFUSED(fp_process_pool_terminate_workers(NULL));

  fp_future *f = (fp_future *)1;
  REFUSED(fp_submit(NULL, task_identity, NULL, &f));
  ck_assert_ptr_null(f);
  REFUSED(fp_submit_bytes(NULL, task_identity, "x", 1, &f));
  REFUSED(fp_shutdown(NULL, true, false));
  REFUSED(fp_shutdown_timeout(NULL, false, 1));
  REFUSED(fp_executor_max_workers(NULL));
  REFUSED(fp_executor_get_stats(NULL, NULL));
  ck_assert_int_eq(fp_executor_free(NULL), 0);
  ck_assert_ptr_null(fp_bytes_copy(NULL, 3));
  ck_assert_ptr_null(fp_bytes_new(SIZE_MAX)); /* overflows: no memory, not a tiny block */
  fp_bytes_free(NULL);

  ex = new_pool(2);
  REFUSED(fp_submit(ex, NULL, NULL, &f));
  REFUSED(fp_submit(ex, task_identity, NULL, NULL));
  REFUSED(fp_submit_timeout(ex, task_identity, NULL, NAN, &f));
  REFUSED(fp_submit_ex(ex, task_identity, NULL, NULL, NAN, &f));
  REFUSED(fp_submit_bytes(ex, task_identity, NULL, 5, &f));
  REFUSED(fp_shutdown_timeout(ex, false, NAN));
  REFUSED(fp_executor_get_stats(ex, NULL));
  REFUSED(fp_process_pool_kill_workers(ex)); /* not a process pool */
  ck_assert_int_eq(fp_submit_timeout(ex, task_identity, (void *)3, INFINITY, &f), 0);
  ck_assert_int_eq(fp_future_result(f, -INFINITY, NULL), 0);
  fp_future_release(f);
  ck_assert_int_eq(fp_shutdown_timeout(ex, false, INFINITY), 0);
  fp_executor_free(ex);
}
END_TEST

START_TEST(waiting_refuses_null_nan_and_absurd_counts) {
  capture_start();
  fp_future *f;
  ck_assert_int_eq(fp_future_new(&f), 0);
  fp_future *fs[2] = {f, NULL};
  fp_as_completed *it = (fp_as_completed *)1;
  REFUSED(fp_wait(NULL, 3, FP_ALL_COMPLETED, 0, NULL, NULL, NULL, NULL));
  REFUSED(fp_wait(fs, 2, FP_ALL_COMPLETED, 0, NULL, NULL, NULL, NULL));
  REFUSED(fp_wait(fs, 1, (fp_return_when)7, 0, NULL, NULL, NULL, NULL));
  REFUSED(fp_wait(fs, 1, (fp_return_when)-1, 0, NULL, NULL, NULL, NULL));
  REFUSED(fp_wait(fs, 1, FP_ALL_COMPLETED, NAN, NULL, NULL, NULL, NULL));
  REFUSED(fp_wait(fs, SIZE_MAX, FP_ALL_COMPLETED, 0, NULL, NULL, NULL, NULL));
  REFUSED(fp_wait(fs, SIZE_MAX / 8 + 1, FP_ALL_COMPLETED, 0, NULL, NULL, NULL, NULL));
  REFUSED(fp_as_completed_new(fs, 1, 0, NULL));
  REFUSED(fp_as_completed_new(NULL, 2, 0, &it));
  ck_assert_ptr_null(it);
  REFUSED(fp_as_completed_new(fs, 2, 0, &it));
  REFUSED(fp_as_completed_new(fs, 1, NAN, &it));
  REFUSED(fp_as_completed_new(fs, SIZE_MAX / 2 + 1, 0, &it));
  REFUSED(fp_as_completed_next(NULL, &f));
  fp_as_completed_free(NULL);
  ck_assert_int_eq(fp_wait(fs, 0, FP_ALL_COMPLETED, 0, NULL, NULL, NULL, NULL), 0);
  fp_future_release(fs[0]);
}
END_TEST

START_TEST(map_refuses_null_nan_and_a_window_that_overflows) {
  capture_start();
  fp_executor *ex = new_pool(2);
  fp_map *m = (fp_map *)1;
  fp_map_options opt;
  fp_map_options_init(NULL);
  fp_map_options_init(&opt);
  REFUSED(fp_map_new(NULL, task_identity, never, NULL, NULL, &m));
  ck_assert_ptr_null(m);
  REFUSED(fp_map_new(ex, NULL, never, NULL, NULL, &m));
  REFUSED(fp_map_new(ex, task_identity, NULL, NULL, NULL, &m));
  REFUSED(fp_map_new(ex, task_identity, never, NULL, NULL, NULL));
  opt.chunksize = -5;
  REFUSED(fp_map_new(ex, task_identity, never, NULL, &opt, &m));
  fp_map_options_init(&opt);
  opt.timeout_s = NAN;
  REFUSED(fp_map_new(ex, task_identity, never, NULL, &opt, &m));
  /* A window of pointers this long would wrap around SIZE_MAX: a tiny
   * block would be allocated and written past. */
  size_t wraps[] = {SIZE_MAX, SIZE_MAX / sizeof(void *) + 1, SIZE_MAX / 4, (SIZE_MAX >> 3) + 2};
  for (size_t i = 0; i < sizeof wraps / sizeof wraps[0]; i++) {
    fp_map_options_init(&opt);
    opt.buffersize = wraps[i];
    counter input = {.next = 0, .limit = 1000};
    REFUSED(fp_map_new(ex, task_identity, count_up, &input, &opt, &m));
    ck_assert_int_eq(atomic_load(&input.read), 0);
    ck_assert_ptr_null(m);
  }
  void *r;
  REFUSED(fp_map_next(NULL, &r));
  fp_map_free(NULL);
  fp_executor_free(ex);
}
END_TEST

START_TEST(task_manager_refuses_null_nan_and_unknown_values) {
  capture_start();
  fp_executor *ex = new_pool(2);
  fp_task_manager *tm = (fp_task_manager *)1;
  fp_tm_options opt;
  fp_tm_options_init(NULL);
  fp_tm_options_init(&opt);
  REFUSED(fp_tm_new(NULL, &opt, &tm));
  ck_assert_ptr_null(tm);
  REFUSED(fp_tm_new(ex, &opt, NULL));
  opt.error_policy = (fp_error_policy)9;
  REFUSED(fp_tm_new(ex, &opt, &tm));
  opt.error_policy = (fp_error_policy)-1;
  REFUSED(fp_tm_new(ex, &opt, &tm));
  double intervals[] = {NAN, -1, 1e-9, 0.0009, -INFINITY};
  for (size_t i = 0; i < sizeof intervals / sizeof intervals[0]; i++) {
    fp_tm_options_init(&opt);
    opt.monitor_interval = intervals[i];
    REFUSED(fp_tm_new(ex, &opt, &tm));
  }
  fp_error_policy policy;
  REFUSED(fp_error_policy_parse(NULL, &policy));
  REFUSED(fp_error_policy_parse("panic", &policy));
  REFUSED(fp_error_policy_parse("raise", NULL));
  ck_assert_ptr_nonnull(fp_error_policy_name((fp_error_policy)42));

  fp_task *t = (fp_task *)1;
  REFUSED(fp_tm_submit(NULL, task_identity, NULL, 0, &t));
  ck_assert_ptr_null(t);
  REFUSED(fp_tm_map(NULL, task_identity, never, NULL, NULL));
  REFUSED(fp_tm_next(NULL, 0, &t));
  REFUSED(fp_tm_run(NULL, 0));
  REFUSED(fp_tm_failed_task(NULL, &t));
  REFUSED(fp_tm_get_stats(NULL, NULL));
  ck_assert_uint_eq(fp_tm_completed_tasks(NULL, NULL), 0);
  fp_tm_free(NULL);

  fp_tm_options_init(&opt);
  opt.monitor_interval = 0;
  ck_assert_int_eq(fp_tm_new(ex, &opt, &tm), 0);
  REFUSED(fp_tm_submit(tm, NULL, NULL, 0, &t));
  REFUSED(fp_tm_submit(tm, task_identity, NULL, NAN, &t));
  REFUSED(fp_tm_map(tm, NULL, never, NULL, NULL));
  REFUSED(fp_tm_map(tm, task_identity, NULL, NULL, NULL));
  REFUSED(fp_tm_next(tm, 0, NULL));
  REFUSED(fp_tm_next(tm, NAN, &t));
  REFUSED(fp_tm_run(tm, NAN));
  REFUSED(fp_tm_failed_task(tm, NULL));
  REFUSED(fp_tm_get_stats(tm, NULL));
  ck_assert_int_eq(fp_tm_run(tm, INFINITY), 0);
  fp_tm_free(tm);

  ck_assert_ptr_null(fp_task_retain(NULL));
  fp_task_release(NULL);
  ck_assert(fp_task_fn(NULL) == NULL);
  ck_assert_ptr_null(fp_task_arg(NULL));
  ck_assert_uint_eq(fp_task_index(NULL), 0);
  ck_assert(!fp_task_complete(NULL));
  REFUSED(fp_task_result(NULL, NULL));
  ck_assert_ptr_null(fp_task_error(NULL));
  double q = 1, s = 1, f = 1;
  fp_task_times(NULL, &q, &s, &f);
  fp_executor_free(ex);
}
END_TEST

START_TEST(logging_and_errors_refuse_what_they_cannot_use) {
  capture_start();
  REFUSED(fp_set_logger(capture_logger, &test_log, (fp_log_level)17));
  REFUSED(fp_set_logger(capture_logger, &test_log, (fp_log_level)-2));
  REFUSED(fp_set_allocator(NULL, NULL, NULL, NULL));
  int lines = captured_lines();
  fp_log(FP_LOG_ERROR, NULL); /* a slip, not a crash: a line that says so */
  ck_assert_int_eq(captured_lines(), lines + 1);
  ck_assert(captured("NULL format"));
  fp_log((fp_log_level)99, "an unknown level is logged, loudly");
  ck_assert(captured("an unknown level is logged"));
  ck_assert_ptr_nonnull(fp_log_level_name((fp_log_level)99));
  ck_assert_ptr_null(fp_raise(FP_EINVAL, NULL)); /* outside a task: logged, ignored */
  ck_assert(!fp_cancel_requested());
  ck_assert_ptr_nonnull(fp_strerror(INT32_MIN));
  ck_assert_ptr_nonnull(fp_err_name(INT32_MAX));
}
END_TEST

TEST_MAIN("bad_input", futures_refuse_null_and_nan, executors_refuse_bad_options_and_arguments,
          waiting_refuses_null_nan_and_absurd_counts,
          map_refuses_null_nan_and_a_window_that_overflows,
          task_manager_refuses_null_nan_and_unknown_values,
          logging_and_errors_refuse_what_they_cannot_use)
