/* test_wait.c - fp_wait over futures from several executors at once:
 * ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, timeouts, duplicates. */
#include "helpers.h"

static bool contains(fp_future **set, size_t n, fp_future *f) {
  for (size_t i = 0; i < n; i++)
    if (set[i] == f) return true;
  return false;
}

START_TEST(all_completed_across_executors_and_plain_futures) {
  fp_executor *a = new_pool(2), *b = new_pool(1);
  fp_future *fs[5];
  fp_submit(a, task_sleep_ms, (void *)5, &fs[0]);
  fp_submit(b, task_sleep_ms, (void *)10, &fs[1]);
  fp_submit(a, task_fail, (void *)1, &fs[2]);
  fp_future_new(&fs[3]);
  fp_future_set_result(fs[3], NULL);
  fp_submit(b, task_identity, NULL, &fs[4]);
  fp_future *done[5], *not_done[5];
  size_t nd = 99, nn = 99;
  ck_assert_int_eq(fp_wait(fs, 5, FP_ALL_COMPLETED, LONG_WAIT, done, &nd, not_done, &nn), 0);
  ck_assert_uint_eq(nd, 5);
  ck_assert_uint_eq(nn, 0);
  for (int i = 0; i < 5; i++) {
    ck_assert(contains(done, nd, fs[i]));
    fp_future_error(fs[i]);
    fp_future_release(fs[i]);
  }
  fp_executor_free(a);
  fp_executor_free(b);
}
END_TEST

START_TEST(first_completed_returns_at_the_first_one) {
  gate g;
  gate_init(&g);
  fp_executor *ex = new_pool(3);
  fp_future *fs[3];
  fp_submit(ex, task_wait_gate, &g, &fs[0]);
  fp_submit(ex, task_sleep_ms, (void *)20, &fs[1]);
  fp_submit(ex, task_wait_gate, &g, &fs[2]);
  fp_future *done[3], *not_done[3];
  size_t nd, nn;
  ck_assert_int_eq(fp_wait(fs, 3, FP_FIRST_COMPLETED, LONG_WAIT, done, &nd, not_done, &nn), 0);
  ck_assert_uint_eq(nd, 1);
  ck_assert_ptr_eq(done[0], fs[1]);
  ck_assert_uint_eq(nn, 2);
  ck_assert(contains(not_done, nn, fs[0]) && contains(not_done, nn, fs[2]));
  /* an already-done future counts: returns at once */
  double t0 = now_s();
  ck_assert_int_eq(fp_wait(fs, 3, FP_FIRST_COMPLETED, LONG_WAIT, done, &nd, NULL, &nn), 0);
  ck_assert(now_s() - t0 < 1.0);
  ck_assert_uint_eq(nd, 1);
  gate_open(&g);
  for (int i = 0; i < 3; i++) fp_future_release(fs[i]);
  fp_executor_free(ex);
}
END_TEST

START_TEST(first_exception_returns_at_the_first_failure) {
  gate g;
  gate_init(&g);
  fp_executor *ex = new_pool(3);
  fp_future *fs[3];
  fp_submit(ex, task_wait_gate, &g, &fs[0]);
  fp_submit(ex, task_identity, NULL, &fs[1]);
  fp_future_wait(fs[1], LONG_WAIT); /* a success does not end the wait */
  fp_submit(ex, task_fail, (void *)3, &fs[2]);
  fp_future *done[3];
  size_t nd, nn;
  ck_assert_int_eq(fp_wait(fs, 3, FP_FIRST_EXCEPTION, LONG_WAIT, done, &nd, NULL, &nn), 0);
  ck_assert(contains(done, nd, fs[2]));
  ck_assert(contains(done, nd, fs[1]));
  ck_assert_uint_eq(nn, 1);
  /* one already failed: at once */
  double t0 = now_s();
  ck_assert_int_eq(fp_wait(fs, 3, FP_FIRST_EXCEPTION, LONG_WAIT, NULL, &nd, NULL, &nn), 0);
  ck_assert(now_s() - t0 < 1.0);
  ck_assert_uint_eq(nn, 1);
  gate_open(&g);
  fp_future_error(fs[2]);
  for (int i = 0; i < 3; i++) fp_future_release(fs[i]);
  fp_executor_free(ex);
}
END_TEST

START_TEST(first_exception_without_failure_is_all_completed) {
  fp_executor *ex = new_pool(2);
  fp_future *fs[6];
  for (intptr_t i = 0; i < 6; i++) fp_submit(ex, task_sleep_ms, (void *)(i * 3), &fs[i]);
  size_t nd, nn;
  ck_assert_int_eq(fp_wait(fs, 6, FP_FIRST_EXCEPTION, LONG_WAIT, NULL, &nd, NULL, &nn), 0);
  ck_assert_uint_eq(nd, 6);
  ck_assert_uint_eq(nn, 0);
  /* a cancelled future is not an exception */
  fp_future *c, *p;
  fp_future_new(&c);
  fp_future_new(&p);
  fp_future_cancel(c);
  fp_future *two[2] = {c, p};
  ck_assert_int_eq(fp_wait(two, 2, FP_FIRST_EXCEPTION, 0.05, NULL, &nd, NULL, &nn), 0);
  ck_assert_uint_eq(nd, 1);
  ck_assert_uint_eq(nn, 1);
  fp_future_release(c);
  fp_future_release(p);
  for (int i = 0; i < 6; i++) fp_future_release(fs[i]);
  fp_executor_free(ex);
}
END_TEST

START_TEST(timeout_leaves_the_unfinished_in_not_done) {
  fp_future *f[2];
  fp_future_new(&f[0]);
  fp_future_new(&f[1]);
  fp_future_set_result(f[0], NULL);
  fp_future *done[2], *not_done[2];
  size_t nd, nn;
  double t0 = now_s();
  ck_assert_int_eq(fp_wait(f, 2, FP_ALL_COMPLETED, 0.05, done, &nd, not_done, &nn), 0);
  ck_assert(now_s() - t0 >= 0.045);
  ck_assert_uint_eq(nd, 1);
  ck_assert_ptr_eq(done[0], f[0]);
  ck_assert_uint_eq(nn, 1);
  ck_assert_ptr_eq(not_done[0], f[1]);
  /* timeout 0 polls */
  ck_assert_int_eq(fp_wait(f, 2, FP_ALL_COMPLETED, 0, NULL, &nd, NULL, &nn), 0);
  ck_assert_uint_eq(nn, 1);
  fp_future_release(f[0]);
  fp_future_release(f[1]);
}
END_TEST

START_TEST(duplicates_count_once) {
  fp_future *a, *b;
  fp_future_new(&a);
  fp_future_new(&b);
  fp_future_set_result(a, NULL);
  fp_future *fs[5] = {a, b, a, a, b};
  fp_future *done[5], *not_done[5];
  size_t nd, nn;
  ck_assert_int_eq(fp_wait(fs, 5, FP_ALL_COMPLETED, 0, done, &nd, not_done, &nn), 0);
  ck_assert_uint_eq(nd, 1);
  ck_assert_uint_eq(nn, 1);
  fp_future_set_result(b, NULL);
  ck_assert_int_eq(fp_wait(fs, 5, FP_ALL_COMPLETED, 0, done, &nd, not_done, &nn), 0);
  ck_assert_uint_eq(nd, 2);
  ck_assert_uint_eq(nn, 0);
  fp_future_release(a);
  fp_future_release(b);
}
END_TEST

START_TEST(bad_arguments) {
  capture_start();
  fp_future *f;
  fp_future_new(&f);
  fp_future *fs[2] = {f, NULL};
  size_t nd;
  ck_assert_int_eq(fp_wait(NULL, 1, FP_ALL_COMPLETED, 0, NULL, &nd, NULL, NULL), FP_EINVAL);
  ck_assert_int_eq(fp_wait(fs, 2, FP_ALL_COMPLETED, 0, NULL, &nd, NULL, NULL), FP_EINVAL);
  ck_assert_int_eq(fp_wait(fs, 1, (fp_return_when)7, 0, NULL, &nd, NULL, NULL), FP_EINVAL);
  ck_assert(captured("unknown return_when 7"));
  ck_assert_int_eq(fp_wait(NULL, 0, FP_ALL_COMPLETED, 0, NULL, &nd, NULL, NULL), 0);
  ck_assert_uint_eq(nd, 0);
  fp_future_release(f);
}
END_TEST

TEST_MAIN("wait", all_completed_across_executors_and_plain_futures,
          first_completed_returns_at_the_first_one, first_exception_returns_at_the_first_failure,
          first_exception_without_failure_is_all_completed, timeout_leaves_the_unfinished_in_not_done,
          duplicates_count_once, bad_arguments)
