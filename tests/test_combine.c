/* test_combine.c - fp_future_then, fp_when_all, fp_when_any: outcomes,
 * errors and cancels pass through, cancelling the combined future cancels
 * what it waits on, futures of thread and process pools mixed, and many
 * at once from many threads (under TSan in CI). */
#include "helpers.h"

static void *add_one(void *arg) { return (void *)((intptr_t)arg + 1); }
static void *until_cancelled(void *arg) {
  double t0 = fp_now();
  while (!fp_cancel_requested() && fp_now() - t0 < 10) sleep_ms(1);
  return arg;
}

START_TEST(then_runs_on_the_result_and_passes_failures_on) {
  capture_start();
  fp_executor *ex = new_pool(2);
  fp_future *f, *g;
  ck_assert_int_eq(fp_submit(ex, task_double, (void *)20, &f), 0);
  ck_assert_int_eq(fp_future_then(f, ex, add_one, &g), 0);
  ck_assert_int_eq(value_of(g), 41);
  fp_future_release(f);
  fp_future_release(g);
  /* a failure: fn never runs, g fails with f's code and message */
  ck_assert_int_eq(fp_submit(ex, task_fail, (void *)3, &f), 0);
  ck_assert_int_eq(fp_future_then(f, ex, add_one, &g), 0);
  ck_assert_int_eq(fp_future_result(g, LONG_WAIT, NULL), -5);
  ck_assert_str_eq(fp_last_error_message(), "item 3 failed on purpose");
  fp_future_release(f);
  fp_future_release(g);
  /* chained on a future that is done already */
  fp_future *h;
  ck_assert_int_eq(fp_future_new(&f), 0);
  fp_future_set_result(f, (void *)1);
  ck_assert_int_eq(fp_future_then(f, ex, add_one, &g), 0);
  ck_assert_int_eq(fp_future_then(g, ex, add_one, &h), 0);
  ck_assert_int_eq(value_of(h), 3);
  fp_future_release(f);
  fp_future_release(g);
  fp_future_release(h);
  ck_assert_int_eq(fp_future_then(NULL, ex, add_one, &g), FP_EINVAL);
  fp_executor_free(ex);
}
END_TEST

START_TEST(cancelling_then_cancels_what_it_waits_on) {
  fp_executor *ex = new_pool(1);
  fp_future *pending, *g;
  ck_assert_int_eq(fp_future_new(&pending), 0);
  ck_assert_int_eq(fp_future_then(pending, ex, add_one, &g), 0);
  ck_assert(fp_future_cancel(g));
  ck_assert(fp_future_cancelled(pending)); /* what it waited on */
  ck_assert_int_eq(fp_future_result(g, 0, NULL), FP_ECANCELED);
  fp_future_release(pending);
  fp_future_release(g);
  /* and an input cancelled before it ran cancels the combined one */
  ck_assert_int_eq(fp_future_new(&pending), 0);
  ck_assert_int_eq(fp_future_then(pending, ex, add_one, &g), 0);
  fp_future_cancel(pending);
  ck_assert_int_eq(fp_future_result(g, LONG_WAIT, NULL), FP_ECANCELED);
  fp_future_release(pending);
  fp_future_release(g);
  fp_executor_free(ex);
}
END_TEST

START_TEST(when_all_and_when_any_over_threads_and_processes) {
  capture_start();
  fp_executor *threads = new_pool(2), *processes = new_process_pool(2, 0);
  fp_future *fs[4], *all, *any;
  ck_assert_int_eq(fp_submit(threads, task_sleep_ms, (void *)30, &fs[0]), 0);
  ck_assert_int_eq(fp_submit(processes, task_sleep_ms, (void *)60, &fs[1]), 0);
  ck_assert_int_eq(fp_submit(threads, task_sleep_ms, (void *)90, &fs[2]), 0);
  ck_assert_int_eq(fp_future_new(&fs[3]), 0); /* done by hand, first */
  ck_assert_int_eq(fp_when_all(fs, 4, &all), 0);
  ck_assert_int_eq(fp_when_any(fs, 4, &any), 0);
  fp_future_set_result(fs[3], NULL);
  void *first;
  ck_assert_int_eq(fp_future_result(any, LONG_WAIT, &first), 0);
  ck_assert_int_eq((intptr_t)first, 3);
  ck_assert_int_eq(fp_future_result(all, LONG_WAIT, NULL), 0);
  for (int i = 0; i < 4; i++) ck_assert(fp_future_done(fs[i]));
  for (int i = 0; i < 4; i++) fp_future_release(fs[i]);
  fp_future_release(all);
  fp_future_release(any);
  /* a failure: when_all fails at once with it, and so does when_any if
   * it comes first */
  ck_assert_int_eq(fp_submit(threads, until_cancelled, NULL, &fs[0]), 0);
  ck_assert_int_eq(fp_submit(processes, task_fail, (void *)9, &fs[1]), 0);
  ck_assert_int_eq(fp_when_all(fs, 2, &all), 0);
  ck_assert_int_eq(fp_when_any(fs, 2, &any), 0);
  double t0 = fp_now();
  ck_assert_int_eq(fp_future_result(all, LONG_WAIT, NULL), -5);
  ck_assert_str_eq(fp_last_error_message(), "item 9 failed on purpose");
  ck_assert_int_eq(fp_future_result(any, LONG_WAIT, NULL), -5);
  ck_assert_double_lt(fp_now() - t0, 5.0); /* not after the 10 s task */
  /* cancelling the combined future cancels what it waits on */
  ck_assert(fp_future_cancel(all) == false); /* done already */
  fp_future *all2;
  ck_assert_int_eq(fp_when_all(fs, 1, &all2), 0);
  ck_assert(fp_future_cancel(all2));
  ck_assert_int_eq(fp_future_wait(fs[0], LONG_WAIT), 0); /* the running task was asked to stop */
  ck_assert_double_lt(fp_now() - t0, 5.0);
  fp_future_release(all2);
  for (int i = 0; i < 2; i++) fp_future_release(fs[i]);
  fp_future_release(all);
  fp_future_release(any);
  /* all of none: done at once; any of none: a bad argument */
  ck_assert_int_eq(fp_when_all(NULL, 0, &all), 0);
  ck_assert(fp_future_done(all));
  fp_future_release(all);
  ck_assert_int_eq(fp_when_any(NULL, 0, &any), FP_EINVAL);
  fp_executor_free(threads);
  fp_executor_free(processes);
}
END_TEST

/* Many combinations completed from many threads at once. */
START_TEST(combinators_race_with_completion_and_cancel) {
  fp_executor *ex = new_pool(4);
  for (int round = 0; round < 300; round++) {
    fp_future *fs[8], *all, *any, *then;
    for (intptr_t i = 0; i < 8; i++)
      ck_assert_int_eq(fp_submit(ex, task_identity, (void *)i, &fs[i]), 0);
    ck_assert_int_eq(fp_when_all(fs, 8, &all), 0);
    ck_assert_int_eq(fp_when_any(fs, 8, &any), 0);
    ck_assert_int_eq(fp_future_then(all, ex, add_one, &then), 0);
    if (round % 3 == 0) fp_future_cancel(then); /* may race with everything */
    ck_assert_int_eq(fp_future_wait(then, LONG_WAIT), 0);
    ck_assert_int_eq(fp_future_wait(any, LONG_WAIT), 0);
    if (!fp_future_cancelled(then)) ck_assert_int_eq(value_of(then), 1);
    void *first = NULL;
    if (fp_future_result(any, 0, &first) == 0) ck_assert_int_lt((intptr_t)first, 8);
    for (int i = 0; i < 8; i++) fp_future_release(fs[i]);
    fp_future_release(all);
    fp_future_release(any);
    fp_future_release(then);
  }
  fp_executor_free(ex);
}
END_TEST

TEST_MAIN("combine", then_runs_on_the_result_and_passes_failures_on,
          cancelling_then_cancels_what_it_waits_on,
          when_all_and_when_any_over_threads_and_processes,
          combinators_race_with_completion_and_cancel)
