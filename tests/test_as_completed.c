/* test_as_completed.c - fp_as_completed: done ones first, then in
 * completion order, duplicates once, the timeout error, O(n) on a million. */
#include "helpers.h"

START_TEST(done_first_then_in_completion_order) {
  fp_executor *a = new_pool(2), *b = new_pool(2);
  gate g1, g2;
  gate_init(&g1);
  gate_init(&g2);
  fp_future *fs[4];
  fp_submit(a, task_wait_gate, &g1, &fs[0]);
  fp_submit(b, task_wait_gate, &g2, &fs[1]);
  fp_future_new(&fs[2]);
  fp_future_set_result(fs[2], NULL);
  fp_future_new(&fs[3]);
  fp_future_cancel(fs[3]);
  ck_assert(gate_wait_arrived(&g1, 1) && gate_wait_arrived(&g2, 1));
  fp_as_completed *it;
  ck_assert_int_eq(fp_as_completed_new(fs, 4, LONG_WAIT, &it), 0);
  fp_future *f;
  ck_assert_int_eq(fp_as_completed_next(it, &f), 0);
  ck_assert_ptr_eq(f, fs[2]);
  ck_assert_int_eq(fp_as_completed_next(it, &f), 0);
  ck_assert_ptr_eq(f, fs[3]);
  gate_open(&g2); /* the second completes first */
  ck_assert_int_eq(fp_as_completed_next(it, &f), 0);
  ck_assert_ptr_eq(f, fs[1]);
  gate_open(&g1);
  ck_assert_int_eq(fp_as_completed_next(it, &f), 0);
  ck_assert_ptr_eq(f, fs[0]);
  ck_assert_int_eq(fp_as_completed_next(it, &f), FP_EOF);
  ck_assert_int_eq(fp_as_completed_next(it, &f), FP_EOF);
  /* the iterator holds references: the futures outlive our release */
  for (int i = 0; i < 4; i++) fp_future_release(fs[i]);
  fp_as_completed_free(it);
  fp_executor_free(a);
  fp_executor_free(b);
}
END_TEST

START_TEST(duplicates_once) {
  fp_future *a, *b;
  fp_future_new(&a);
  fp_future_new(&b);
  fp_future *fs[6] = {a, b, a, b, b, a};
  fp_as_completed *it;
  ck_assert_int_eq(fp_as_completed_new(fs, 6, LONG_WAIT, &it), 0);
  fp_future_set_result(b, NULL);
  fp_future_set_result(a, NULL);
  fp_future *f;
  int yielded = 0;
  while (fp_as_completed_next(it, &f) == 0) yielded++;
  ck_assert_int_eq(yielded, 2);
  fp_as_completed_free(it);
  fp_future_release(a);
  fp_future_release(b);
}
END_TEST

START_TEST(timeout_says_how_many_are_unfinished) {
  fp_future *fs[3];
  for (int i = 0; i < 3; i++) fp_future_new(&fs[i]);
  fp_future_set_result(fs[1], NULL);
  fp_as_completed *it;
  ck_assert_int_eq(fp_as_completed_new(fs, 3, 0.05, &it), 0);
  fp_future *f;
  ck_assert_int_eq(fp_as_completed_next(it, &f), 0);
  double t0 = now_s();
  ck_assert_int_eq(fp_as_completed_next(it, &f), FP_ETIMEDOUT);
  ck_assert(now_s() - t0 < LONG_WAIT / 2);
  ck_assert_ptr_null(f);
  ck_assert_str_eq(fp_last_error_message(), "2 (of 3) futures unfinished");
  ck_assert_int_eq(fp_last_error()->code, FP_ETIMEDOUT);
  fp_as_completed_free(it); /* with futures still pending: no hang, no leak */
  for (int i = 0; i < 3; i++) fp_future_release(fs[i]);
}
END_TEST

START_TEST(empty_and_bad_arguments) {
  fp_as_completed *it;
  fp_future *f;
  ck_assert_int_eq(fp_as_completed_new(NULL, 0, 1, &it), 0);
  ck_assert_int_eq(fp_as_completed_next(it, &f), FP_EOF);
  fp_as_completed_free(it);
  capture_start();
  ck_assert_int_eq(fp_as_completed_new(NULL, 3, 1, &it), FP_EINVAL);
  ck_assert_int_eq(fp_as_completed_new(NULL, 0, 1, NULL), FP_EINVAL);
  ck_assert_int_eq(fp_as_completed_next(NULL, &f), FP_EINVAL);
  ck_assert_int_eq(captured_lines(), 3);
  fp_as_completed_free(NULL);
}
END_TEST

typedef struct completer {
  fp_future **fs;
  size_t n;
} completer;

static void *complete_all_reversed(void *p) {
  completer *c = p;
  for (size_t i = c->n; i-- > 0;) fp_future_set_result(c->fs[i], (void *)(uintptr_t)i);
  return NULL;
}

/* A quadratic as_completed would take ~10^12 steps here and time out. */
START_TEST(a_million_futures_is_linear) {
  enum { N = 1000000 };
  fp_future **fs = malloc(N * sizeof *fs);
  for (size_t i = 0; i < N; i++) fp_future_new(&fs[i]);
  for (size_t i = 0; i < N; i += 2) fp_future_set_result(fs[i], (void *)(uintptr_t)i);
  fp_as_completed *it;
  ck_assert_int_eq(fp_as_completed_new(fs, N, LONG_WAIT * 2, &it), 0);
  completer c = {fs, N};
  pthread_t th;
  pthread_create(&th, NULL, complete_all_reversed, &c);
  size_t count = 0;
  fp_future *f;
  int rc;
  while ((rc = fp_as_completed_next(it, &f)) == 0) count++;
  ck_assert_int_eq(rc, FP_EOF);
  ck_assert_uint_eq(count, N);
  pthread_join(th, NULL);
  fp_as_completed_free(it);
  for (size_t i = 0; i < N; i++) fp_future_release(fs[i]);
  free(fs);
}
END_TEST

TEST_MAIN("as_completed", done_first_then_in_completion_order, duplicates_once,
          timeout_says_how_many_are_unfinished, empty_and_bad_arguments, a_million_futures_is_linear)
