/* test_alloc.c - allocation failure, injected at every allocation of a
 * whole scenario in turn: each call fails cleanly with FP_ENOMEM or
 * succeeds, nothing crashes, and (under ASan) nothing leaks. */
#include "helpers.h"

static atomic_long allocations, fail_at; /* fail_at 0: never */

static bool should_fail(void) {
  long n = atomic_fetch_add(&allocations, 1) + 1;
  return n == atomic_load(&fail_at);
}
static void *test_malloc(size_t size) { return should_fail() ? NULL : malloc(size); }
static void *test_calloc(size_t count, size_t size) {
  return should_fail() ? NULL : calloc(count, size);
}
static void *test_realloc(void *p, size_t size) { return should_fail() ? NULL : realloc(p, size); }

static int produce(void *state, void **item) {
  long *n = state;
  if (*n >= 20) return 0;
  *item = (void *)(intptr_t)(*n)++;
  return 1;
}

static void count_callback(fp_future *f, void *ud) {
  (void)f;
  (void)ud;
}

static bool ok_or_enomem(int rc) { return rc == 0 || rc == FP_ENOMEM; }

/* Everything the library offers, once; true if no call failed. */
static bool scenario(void) {
  bool clean = true;
  fp_executor *ex;
  int rc = fp_thread_pool_new(NULL, &ex);
  ck_assert(ok_or_enomem(rc));
  if (rc) return false;
  fp_future *fs[10] = {0};
  for (intptr_t i = 0; i < 10; i++) {
    rc = fp_submit(ex, i == 3 ? task_fail : task_double, (void *)i, &fs[i]);
    ck_assert(ok_or_enomem(rc));
    clean &= rc == 0;
  }
  fp_future *some[10];
  size_t n = 0;
  for (int i = 0; i < 10; i++)
    if (fs[i]) some[n++] = fs[i];
  rc = fp_wait(some, n, FP_ALL_COMPLETED, LONG_WAIT, NULL, NULL, NULL, NULL);
  ck_assert(ok_or_enomem(rc));
  clean &= rc == 0;
  for (size_t i = 0; i < n; i++) {
    rc = fp_future_on_done(some[i], count_callback, NULL);
    ck_assert(ok_or_enomem(rc));
    clean &= rc == 0;
  }
  fp_as_completed *it;
  rc = fp_as_completed_new(some, n, LONG_WAIT, &it);
  ck_assert(ok_or_enomem(rc));
  clean &= rc == 0;
  if (rc == 0) {
    fp_future *f;
    while (fp_as_completed_next(it, &f) == 0) fp_future_result(f, 0, NULL);
    fp_as_completed_free(it);
  }
  for (size_t i = 0; i < n; i++) {
    fp_future_result(some[i], LONG_WAIT, NULL);
    fp_future_release(some[i]);
  }
  long next = 0;
  fp_map *m;
  rc = fp_map_new(ex, task_double, produce, &next, NULL, &m);
  ck_assert(ok_or_enomem(rc));
  clean &= rc == 0;
  if (rc == 0) {
    void *r;
    while ((rc = fp_map_next(m, &r)) == 0) {
    }
    ck_assert(rc == FP_EOF || rc == FP_ENOMEM);
    clean &= rc == FP_EOF;
    fp_map_free(m);
  }
  fp_executor_free(ex);
  return clean;
}

START_TEST(every_allocation_can_fail) {
  capture_start(); /* the unretrieved-error reports are expected */
  fp_set_allocator(test_malloc, test_calloc, test_realloc, free);
  long n;
  for (n = 1; n < 10000; n++) {
    atomic_store(&allocations, 0);
    atomic_store(&fail_at, n);
    bool clean = scenario();
    if (clean && atomic_load(&allocations) < n) break; /* no failure was reached */
  }
  fp_reset_allocator();
  if (getenv("FP_TEST_VERBOSE")) fprintf(stderr, "alloc: %ld injection points\n", n);
  ck_assert_int_lt(n, 10000);
  ck_assert_int_gt(n, 20); /* the scenario really allocates */
}
END_TEST

START_TEST(set_allocator_needs_all_four) {
  capture_start();
  ck_assert_int_eq(fp_set_allocator(malloc, NULL, realloc, free), FP_EINVAL);
}
END_TEST

TEST_MAIN("alloc", every_allocation_can_fail, set_allocator_needs_all_four)
