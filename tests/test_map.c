/* test_map.c - fp_map: input order, lazy bounded read-ahead, infinite
 * input, timeout from the call, per-item errors, abandoning. */
#include "helpers.h"

static void *task_jitter_double(void *arg) {
  intptr_t i = (intptr_t)arg;
  if (i % 7 == 0) sleep_ms(2); /* finish out of order */
  return (void *)(i * 2);
}

START_TEST(results_in_input_order) {
  fp_executor *ex = new_pool(4);
  counter c = {0, 500, 0, 0};
  fp_map *m;
  ck_assert_int_eq(fp_map_new(ex, task_jitter_double, count_up, &c, NULL, &m), 0);
  void *r;
  for (intptr_t i = 0; i < 500; i++) {
    ck_assert_int_eq(fp_map_next(m, &r), 0);
    ck_assert_ptr_eq(r, (void *)(i * 2));
  }
  ck_assert_int_eq(fp_map_next(m, &r), FP_EOF);
  ck_assert_int_eq(fp_map_next(m, &r), FP_EOF);
  fp_map_free(m);
  fp_executor_free(ex);
}
END_TEST

START_TEST(read_ahead_is_bounded_and_input_is_infinite) {
  fp_executor *ex = new_pool(2);
  counter c = {0, -1, 0, 0};
  fp_map_options opt;
  fp_map_options_init(&opt);
  opt.buffersize = 5;
  fp_map *m;
  ck_assert_int_eq(fp_map_new(ex, task_double, count_up, &c, &opt, &m), 0);
  ck_assert_int_eq(atomic_load(&c.read), 5);
  void *r;
  for (long consumed = 1; consumed <= 10000; consumed++) {
    ck_assert_int_eq(fp_map_next(m, &r), 0);
    ck_assert_ptr_eq(r, (void *)(intptr_t)((consumed - 1) * 2));
    ck_assert_int_le(atomic_load(&c.read), consumed + 5);
  }
  fp_map_free(m);
  fp_executor_free(ex);
}
END_TEST

START_TEST(default_buffersize_is_twice_the_workers_at_least_64) {
  const int workers[] = {3, 40};
  const int window[] = {64, 80};
  for (int i = 0; i < 2; i++) {
    fp_executor *ex = new_pool(workers[i]);
    counter c = {0, -1, 0, 0};
    fp_map *m;
    ck_assert_int_eq(fp_map_new(ex, task_double, count_up, &c, NULL, &m), 0);
    ck_assert_int_eq(atomic_load(&c.read), window[i]);
    fp_map_free(m);
    fp_executor_free(ex);
  }
}
END_TEST

static void *task_fail_odd(void *arg) {
  intptr_t i = (intptr_t)arg;
  return i % 2 ? fp_raise(-5, "odd item %ld", (long)i) : arg;
}

START_TEST(an_item_error_does_not_end_the_iteration) {
  fp_executor *ex = new_pool(2);
  counter c = {0, 20, 0, 0};
  fp_map *m;
  fp_map_new(ex, task_fail_odd, count_up, &c, NULL, &m);
  void *r;
  for (intptr_t i = 0; i < 20; i++) {
    int rc = fp_map_next(m, &r);
    if (i % 2) {
      ck_assert_int_eq(rc, -5);
      char want[32];
      snprintf(want, sizeof want, "odd item %ld", (long)i);
      ck_assert_str_eq(fp_last_error_message(), want);
      ck_assert_ptr_null(r);
    } else {
      ck_assert_int_eq(rc, 0);
      ck_assert_ptr_eq(r, (void *)i);
    }
  }
  ck_assert_int_eq(fp_map_next(m, &r), FP_EOF);
  fp_map_free(m);
  fp_executor_free(ex);
}
END_TEST

START_TEST(an_input_error_comes_after_the_items_before_it) {
  fp_executor *ex = new_pool(2);
  counter c = {0, -1, 0, 4};
  fp_map *m;
  fp_map_new(ex, task_double, count_up, &c, NULL, &m);
  void *r;
  for (int i = 0; i < 4; i++) ck_assert_int_eq(fp_map_next(m, &r), 0);
  ck_assert_int_eq(fp_map_next(m, &r), -71);
  ck_assert_ptr_nonnull(strstr(fp_last_error_message(), "input failed"));
  ck_assert_int_eq(fp_map_next(m, &r), -71);
  fp_map_free(m);
  fp_executor_free(ex);
}
END_TEST

START_TEST(timeout_counts_from_the_call) {
  fp_executor *ex = new_pool(1);
  counter c = {0, 100, 0, 0};
  fp_map_options opt;
  fp_map_options_init(&opt);
  opt.timeout_s = 0.1;
  opt.buffersize = 2;
  fp_map *m;
  double t0 = now_s();
  fp_map_new(ex, task_sleep_ms, count_up, &c, &opt, &m); /* items 0,1,2..: ms */
  void *r;
  int rc = 0;
  int got = 0;
  while ((rc = fp_map_next(m, &r)) == 0) got++;
  ck_assert_int_eq(rc, FP_ETIMEDOUT);
  /* items 0..k sleep k ms each: about 13 fit in 100 ms on one worker */
  ck_assert_int_lt(got, 100);
  ck_assert(now_s() - t0 < LONG_WAIT / 2);
  ck_assert_int_eq(fp_map_next(m, &r), FP_ETIMEDOUT);
  fp_map_free(m);
  fp_executor_free(ex);
}
END_TEST

static atomic_int ran;
static gate hold;
static void *first_free_then_held(void *arg) {
  atomic_fetch_add(&ran, 1);
  if ((intptr_t)arg > 0) task_wait_gate(&hold); /* item 1 stays running */
  return arg;
}

START_TEST(abandoning_cancels_what_has_not_started) {
  atomic_store(&ran, 0);
  gate_init(&hold);
  fp_executor *ex = new_pool(1);
  counter c = {0, -1, 0, 0};
  fp_map_options opt;
  fp_map_options_init(&opt);
  opt.buffersize = 50;
  fp_map *m;
  fp_map_new(ex, first_free_then_held, count_up, &c, &opt, &m);
  void *r;
  ck_assert_int_eq(fp_map_next(m, &r), 0); /* item 0 */
  ck_assert(gate_wait_arrived(&hold, 1));  /* item 1 running, 2..50 queued */
  double t0 = now_s();
  fp_map_free(m); /* does not wait for the running one */
  ck_assert(now_s() - t0 < LONG_WAIT / 2);
  gate_open(&hold);
  fp_executor_free(ex);
  ck_assert_int_eq(atomic_load(&ran), 2); /* the other 48 read were cancelled */
  ck_assert_int_eq(atomic_load(&c.read), 50); /* refills wait for half a free window */
}
END_TEST

static atomic_int items_freed, results_freed;
static int produce_malloced(void *state, void **item) {
  counter *c = state;
  if (c->next >= c->limit) return 0;
  long *p = malloc(sizeof *p);
  *p = c->next++;
  *item = p;
  return 1;
}
static void free_item(void *p) {
  free(p);
  atomic_fetch_add(&items_freed, 1);
}
static void free_result(void *p) {
  free(p);
  atomic_fetch_add(&results_freed, 1);
}
static void *task_square_alloc(void *arg) {
  long *out = malloc(sizeof *out);
  *out = *(long *)arg * *(long *)arg;
  return out;
}

START_TEST(items_and_results_are_freed_even_when_abandoned) {
  atomic_store(&items_freed, 0);
  atomic_store(&results_freed, 0);
  fp_executor *ex = new_pool(2);
  counter c = {0, 40, 0, 0};
  fp_map_options opt;
  fp_map_options_init(&opt);
  opt.item_free = free_item;
  opt.result_free = free_result;
  opt.buffersize = 8;
  fp_map *m;
  fp_map_new(ex, task_square_alloc, produce_malloced, &c, &opt, &m);
  void *r;
  for (long i = 0; i < 20; i++) {
    ck_assert_int_eq(fp_map_next(m, &r), 0);
    ck_assert_int_eq(*(long *)r, i * i); /* valid until the next call */
  }
  fp_map_free(m);
  fp_executor_free(ex);
  ck_assert_int_eq(atomic_load(&items_freed), (int)c.next); /* every item read */
  ck_assert_int_ge(atomic_load(&results_freed), 20);
}
END_TEST

START_TEST(shutdown_under_the_map) {
  fp_executor *ex = new_pool(1);
  counter c = {0, -1, 0, 0};
  fp_map_options opt;
  fp_map_options_init(&opt);
  opt.buffersize = 2;
  fp_map *m;
  fp_map_new(ex, task_double, count_up, &c, &opt, &m);
  void *r;
  ck_assert_int_eq(fp_map_next(m, &r), 0);
  fp_shutdown(ex, true, true);
  int rc;
  int steps = 0;
  while ((rc = fp_map_next(m, &r)) == 0 || rc == FP_ECANCELED) steps++;
  ck_assert_int_eq(rc, FP_ESHUTDOWN);
  ck_assert_int_le(steps, 2);
  fp_map_free(m);
  fp_executor_free(ex);
}
END_TEST

START_TEST(bad_arguments) {
  capture_start();
  fp_executor *ex = new_pool(1);
  counter c = {0, 1, 0, 0};
  fp_map *m;
  void *r;
  ck_assert_int_eq(fp_map_new(NULL, task_double, count_up, &c, NULL, &m), FP_EINVAL);
  ck_assert_int_eq(fp_map_new(ex, NULL, count_up, &c, NULL, &m), FP_EINVAL);
  ck_assert_int_eq(fp_map_new(ex, task_double, NULL, &c, NULL, &m), FP_EINVAL);
  ck_assert_int_eq(fp_map_new(ex, task_double, count_up, &c, NULL, NULL), FP_EINVAL);
  ck_assert_int_eq(fp_map_next(NULL, &r), FP_EINVAL);
  ck_assert_int_eq(captured_lines(), 5);
  fp_map_free(NULL);
  fp_executor_free(ex);
}
END_TEST

/* ---- a batch the thread pool cannot queue ---- */

static atomic_long batch_ran;
static atomic_bool fail_big_calloc;
static void *count_run(void *arg) {
  atomic_fetch_add(&batch_ran, 1);
  return arg;
}
static bool some_task_ran(void *arg) {
  (void)arg;
  return atomic_load(&batch_ran) > 0;
}
/* Fails the first large zeroed block asked for while armed (a queue's
 * ring growing), once a task has had every chance to run from what was
 * queued before it. */
static void *calloc_failing_big(size_t count, size_t size) {
  if (count * size >= 200000 && atomic_exchange(&fail_big_calloc, false)) {
    wait_until(some_task_ran, NULL, 0.5);
    return NULL;
  }
  return calloc(count, size);
}

START_TEST(a_batch_that_cannot_be_queued_runs_none_of_its_tasks) {
  capture_start();
  fp_set_allocator(malloc, calloc_failing_big, realloc, free);
  for (int round = 0; round < 3; round++) {
    fp_executor *ex = new_pool(2);
    atomic_store(&batch_ran, 0);
    atomic_store(&fail_big_calloc, true);
    counter input = {.next = 0, .limit = 100000};
    fp_map_options opt;
    fp_map_options_init(&opt);
    opt.buffersize = 100000;
    fp_map *m;
    ck_assert_int_eq(fp_map_new(ex, count_run, count_up, &input, &opt, &m), 0);
    void *r;
    ck_assert_int_eq(fp_map_next(m, &r), FP_ENOMEM);
    fp_map_free(m);
    fp_executor_free(ex);
    /* All or none: a failed submit leaves nothing running. */
    long batch_tasks_run = atomic_load(&batch_ran);
    ck_assert_int_eq(batch_tasks_run, 0);
  }
  fp_reset_allocator();
}
END_TEST

TEST_MAIN("map", results_in_input_order, read_ahead_is_bounded_and_input_is_infinite,
          default_buffersize_is_twice_the_workers_at_least_64, an_item_error_does_not_end_the_iteration,
          an_input_error_comes_after_the_items_before_it, timeout_counts_from_the_call,
          abandoning_cancels_what_has_not_started, items_and_results_are_freed_even_when_abandoned,
          shutdown_under_the_map, bad_arguments,
          a_batch_that_cannot_be_queued_runs_none_of_its_tasks)
