/* test_alloc.c - allocation failure injected at every allocation of a
 * scenario in turn, SQLite style: for N = 1, 2, ... until a run makes
 * fewer than N allocations, run the scenario in a child process with the
 * Nth allocation failing -- only the Nth ("once"), or the Nth and every one
 * after it ("for good"). Every call must succeed or return a named error,
 * every result that is reported must be right, nothing may hang (each run
 * has a deadline), and nothing may leak (live blocks are counted; under
 * ASan, LeakSanitizer checks each child too). One family of the API per
 * scenario: thread pool, waiting, map, task manager, process pool. */
#define TEST_TIMEOUT 280
#include "helpers.h"

#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the failing allocator ----
 * The count is shared with the processes a run forks (a process pool's
 * fork server and workers), so N counts allocations wherever they are. */
enum mode { ONCE, FOR_GOOD };
typedef struct injection {
  atomic_long calls, fail_at; /* fail_at 0: never */
  atomic_bool injected;
  enum mode mode;
} injection;
static injection *inj;

static bool should_fail(void) {
  long n = atomic_fetch_add(&inj->calls, 1) + 1, at = atomic_load(&inj->fail_at);
  bool fail = at && (inj->mode == ONCE ? n == at : n >= at);
  if (fail) atomic_store(&inj->injected, true);
  return fail;
}
static void *inj_malloc(size_t size) {
  if (should_fail()) return NULL;
  atomic_fetch_add(&live_blocks, 1);
  return malloc(size);
}
static void *inj_calloc(size_t count, size_t size) {
  if (should_fail()) return NULL;
  atomic_fetch_add(&live_blocks, 1);
  return calloc(count, size);
}
static void *inj_realloc(void *p, size_t size) {
  if (should_fail()) return NULL;
  if (!p) atomic_fetch_add(&live_blocks, 1);
  return realloc(p, size);
}

/* ---- checks inside a run: a failure is printed and ends the child ---- */
#define EXPECT(cond, ...)                                                 \
  do {                                                                    \
    if (!(cond)) {                                                        \
      fprintf(stderr, "alloc sweep, %s:%d: ", __FILE__, __LINE__);        \
      fprintf(stderr, __VA_ARGS__);                                       \
      fprintf(stderr, " [%s]\n", fp_last_error_message());                \
      _exit(2);                                                           \
    }                                                                     \
  } while (0)

/* What a call may fail with when memory runs out: a named code. */
static bool named(int rc) {
  return rc == 0 || rc == FP_ENOMEM || rc == FP_ECANCELED || rc == FP_ECRASHED ||
         rc == FP_EBROKEN || rc == FP_ESHUTDOWN;
}
#define CALL_OK(rc) EXPECT(named(rc), "%s returned %s (%d)", #rc, fp_err_name(rc), rc)

static void *twice(void *arg) { return (void *)((intptr_t)arg * 2); }
static void *fails_with_eio(void *arg) {
  return fp_raise(-EIO, "item %ld fails on purpose", (long)(intptr_t)arg);
}
static void *reverse_bytes(void *arg) {
  const fp_bytes *in = arg;
  fp_bytes *out = fp_bytes_new(in->size);
  if (!out) return fp_raise(FP_ENOMEM, "no memory for the result");
  for (size_t i = 0; i < in->size; i++) out->data[i] = in->data[in->size - 1 - i];
  return out;
}

/* A result, checked: 0 and the expected value, the task's own error, or a
 * named error of the library. */
static void check_result(fp_future *f, intptr_t expected, bool fails) {
  void *r = NULL;
  int rc = fp_future_result(f, LONG_WAIT, &r);
  EXPECT(rc != FP_ETIMEDOUT, "a future never settled");
  if (fails && rc == -EIO) return;
  CALL_OK(rc);
  if (rc == 0) EXPECT(!fails && r == (void *)expected, "wrong result %p for %ld", r, (long)expected);
}

static int count_to_30(void *state, void **item) {
  long *n = state;
  if (*n >= 30) return 0;
  *item = (void *)(intptr_t)(*n)++;
  return 1;
}

/* Submit ten tasks (the fourth fails on purpose) and check each. */
static void submit_and_check(fp_executor *ex) {
  fp_future *fs[10] = {0};
  for (intptr_t i = 0; i < 10; i++) CALL_OK(fp_submit(ex, i == 3 ? fails_with_eio : twice, (void *)i, &fs[i]));
  for (intptr_t i = 0; i < 10; i++)
    if (fs[i]) {
      check_result(fs[i], 2 * i, i == 3);
      fp_future_release(fs[i]);
    }
}

/* Map over 30 items: in order, right, ending in FP_EOF or a named error. */
static void map_and_check(fp_executor *ex, int chunksize) {
  long next = 0;
  fp_map_options opt;
  fp_map_options_init(&opt);
  opt.chunksize = chunksize;
  fp_map *m;
  int rc = fp_map_new(ex, twice, count_to_30, &next, &opt, &m);
  CALL_OK(rc);
  if (rc) return;
  void *r;
  long expected = 0;
  while ((rc = fp_map_next(m, &r)) == 0 || rc == FP_ENOMEM || rc == FP_ECRASHED ||
         rc == FP_ECANCELED) {
    if (rc == 0) EXPECT(r == (void *)(2 * expected), "map item %ld gave %p", expected, r);
    if (++expected > 30) break;
  }
  EXPECT(rc == FP_EOF || named(rc), "map ended with %s", fp_err_name(rc));
  fp_map_free(m);
}

/* ---- the scenarios ---- */

static void scenario_thread_pool(void) {
  fp_executor *ex;
  int rc = fp_thread_pool_new(NULL, &ex);
  CALL_OK(rc);
  if (rc) return;
  submit_and_check(ex);
  fp_executor_stats st;
  CALL_OK(fp_executor_get_stats(ex, &st));
  CALL_OK(fp_shutdown(ex, true, false));
  fp_executor_free(ex);
}

static void count_callback(fp_future *f, void *ud) {
  (void)f;
  atomic_fetch_add((atomic_int *)ud, 1);
}

static void scenario_waiting(void) {
  fp_executor *ex;
  int rc = fp_thread_pool_new(NULL, &ex);
  CALL_OK(rc);
  if (rc) return;
  fp_future *fs[8] = {0};
  intptr_t expected[8];
  size_t n = 0;
  for (intptr_t i = 0; i < 6; i++)
    if (fp_submit(ex, twice, (void *)i, &fs[n]) == 0) expected[n++] = 2 * i;
  fp_future *own;
  if (fp_future_new(&own) == 0) { /* one completed by hand */
    expected[n] = 99;
    fs[n++] = own;
  } else {
    own = NULL;
  }
  atomic_int callbacks = 0;
  int added = 0;
  for (size_t i = 0; i < n; i++) {
    rc = fp_future_on_done(fs[i], count_callback, &callbacks);
    CALL_OK(rc);
    added += rc == 0;
  }
  if (own) CALL_OK(fp_future_set_result(own, (void *)99));
  fp_future *done[8], *not_done[8];
  size_t n_done = 0, n_not_done = 0;
  rc = fp_wait(fs, n, FP_ALL_COMPLETED, LONG_WAIT, done, &n_done, not_done, &n_not_done);
  CALL_OK(rc);
  if (rc == 0) EXPECT(n_done == n && n_not_done == 0, "fp_wait: %zu of %zu done", n_done, n);
  rc = fp_wait(fs, n, FP_FIRST_COMPLETED, 0, NULL, NULL, NULL, NULL);
  CALL_OK(rc);
  fp_as_completed *it;
  rc = fp_as_completed_new(fs, n, LONG_WAIT, &it);
  CALL_OK(rc);
  if (rc == 0) {
    fp_future *f;
    size_t yielded = 0;
    while ((rc = fp_as_completed_next(it, &f)) == 0) yielded++;
    EXPECT(rc == FP_EOF && yielded == n, "as_completed: %zu of %zu, %s", yielded, n,
           fp_err_name(rc));
    fp_as_completed_free(it);
  }
  for (size_t i = 0; i < n; i++) {
    check_result(fs[i], expected[i], false);
    fp_future_release(fs[i]);
  }
  fp_executor_free(ex); /* callbacks run after waiters wake: every one has run now */
  EXPECT(atomic_load(&callbacks) == added, "%d of %d callbacks ran", atomic_load(&callbacks),
         added);
}

static void scenario_map(void) {
  fp_executor *ex;
  int rc = fp_thread_pool_new(NULL, &ex);
  CALL_OK(rc);
  if (rc) return;
  map_and_check(ex, 1);
  fp_executor_free(ex);
}

static int count_task_to_20(void *state, void **item) {
  long *n = state;
  if (*n >= 20) return 0;
  *item = (void *)(intptr_t)(*n)++;
  return 1;
}

static void scenario_task_manager(void) {
  fp_executor *ex;
  int rc = fp_thread_pool_new(NULL, &ex);
  CALL_OK(rc);
  if (rc) return;
  for (int policy = FP_POLICY_RAISE; policy <= FP_POLICY_LOG; policy++) {
    fp_tm_options opt;
    fp_tm_options_init(&opt);
    opt.monitor_interval = 0.01;
    opt.error_policy = (fp_error_policy)policy;
    opt.progress = true;
    opt.total = 25;
    fp_task_manager *tm;
    rc = fp_tm_new(ex, &opt, &tm);
    CALL_OK(rc);
    if (rc) continue;
    long next = 0;
    for (intptr_t i = 0; i < 5; i++) {
      fp_task *t = NULL;
      rc = fp_tm_submit(tm, i == 2 ? fails_with_eio : twice, (void *)i, LONG_WAIT, &t);
      EXPECT(named(rc) || rc == -EIO, "fp_tm_submit: %s", fp_err_name(rc));
      fp_task_release(t);
    }
    rc = fp_tm_map(tm, twice, count_task_to_20, &next, NULL);
    EXPECT(named(rc) || rc == -EIO, "fp_tm_map: %s", fp_err_name(rc));
    fp_task *t;
    while ((rc = fp_tm_next(tm, LONG_WAIT, &t)) == 0) {
      void *r;
      int trc = fp_task_result(t, &r);
      if (trc == 0 && fp_task_fn(t) == twice)
        EXPECT(r == (void *)(2 * (intptr_t)fp_task_arg(t)), "task %p gave %p", fp_task_arg(t), r);
      else
        EXPECT(named(trc) || trc == -EIO, "task: %s", fp_err_name(trc));
      fp_task_release(t);
    }
    fp_task_release(t);
    EXPECT(rc == FP_EOF || rc == -EIO || named(rc), "fp_tm_next ended with %s", fp_err_name(rc));
    if (policy == FP_POLICY_RAISE && rc == -EIO) {
      fp_task *failed;
      EXPECT(fp_tm_failed_task(tm, &failed) == 0, "no failed task after a raise");
      fp_task_release(failed);
    }
    fp_tm_stats st;
    CALL_OK(fp_tm_get_stats(tm, &st));
    fp_tm_free(tm);
  }
  fp_executor_free(ex);
}

static void scenario_process_pool(void) {
  fp_process_pool_options opt;
  fp_process_pool_options_init(&opt);
  opt.max_workers = 2;
  fp_executor *ex;
  int rc = fp_process_pool_new(&opt, &ex);
  CALL_OK(rc);
  if (rc) return;
  submit_and_check(ex);
  fp_future *b;
  rc = fp_submit_bytes(ex, reverse_bytes, "abc", 3, &b);
  CALL_OK(rc);
  if (rc == 0) {
    void *r;
    rc = fp_future_result(b, LONG_WAIT, &r);
    CALL_OK(rc);
    if (rc == 0) EXPECT(((fp_bytes *)r)->size == 3 && !memcmp(((fp_bytes *)r)->data, "cba", 3),
                        "bytes came back wrong");
    fp_future_release(b);
  }
  map_and_check(ex, 4);
  fp_executor_free(ex);
}

/* ---- the sweep ---- */

/* Run the scenario in a child with the Nth allocation failing. Returns
 * true if an injection happened (go on with N + 1), false if the run made
 * fewer than N allocations (the sweep is done). Fails the test on a
 * wrong result, a crash, a leak or a hang. */
static bool run_once(void (*scenario)(void), long n, enum mode m, const char *name) {
  int alive[2];
  ck_assert_int_eq(pipe(alive), 0);
  fflush(NULL);
  pid_t child = fork();
  ck_assert_int_ge(child, 0);
  if (child == 0) {
    close(alive[0]);
    fp_set_logger(NULL, NULL, FP_LOG_ERROR); /* unretrieved-error reports are expected */
    inj = mmap(NULL, sizeof *inj, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    EXPECT(inj != MAP_FAILED, "mmap");
    inj->mode = m;
    atomic_store(&inj->fail_at, n);
    fp_set_allocator(inj_malloc, inj_calloc, inj_realloc, counting_free);
    scenario();
    atomic_store(&inj->fail_at, 0);
    fp_reset_allocator(); /* gives cached futures back */
#ifndef UNDER_SANITIZER /* there LeakSanitizer says which, with stacks */
    long live = atomic_load(&live_blocks);
    EXPECT(live == 0, "%s, N=%ld: %ld blocks not freed", name, n, live);
#endif
    exit(atomic_load(&inj->injected) ? 3 : 0); /* exit: LeakSanitizer checks too */
  }
  close(alive[1]);
  /* The child's end closes when it exits: wait for that, with a deadline. */
  struct pollfd p = {alive[0], POLLIN, 0};
  int ready = poll(&p, 1, 60 * 1000);
  if (ready == 0) kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  close(alive[0]);
  ck_assert_msg(ready != 0, "%s, N=%ld (%s): hung", name, n, m == ONCE ? "once" : "for good");
  ck_assert_msg(WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 3),
                "%s, N=%ld (%s): the run failed (status %#x)", name, n,
                m == ONCE ? "once" : "for good", status);
  return WEXITSTATUS(status) == 3;
}

static void sweep(void (*scenario)(void), const char *name) {
  for (int m = ONCE; m <= FOR_GOOD; m++) {
    long n = 1;
    while (run_once(scenario, n, (enum mode)m, name)) {
      n++;
      ck_assert_msg(n < 5000, "%s: no end to its allocations", name);
    }
    if (getenv("FP_TEST_VERBOSE"))
      fprintf(stderr, "alloc sweep: %s, %s: %ld injection points\n", name,
              m == ONCE ? "once" : "for good", n - 1);
    ck_assert_int_gt(n, 5); /* the scenario really allocates */
  }
}

START_TEST(thread_pool_survives_every_allocation_failing) {
  sweep(scenario_thread_pool, "thread pool");
}
END_TEST
START_TEST(waiting_survives_every_allocation_failing) { sweep(scenario_waiting, "waiting"); }
END_TEST
START_TEST(map_survives_every_allocation_failing) { sweep(scenario_map, "map"); }
END_TEST
START_TEST(task_manager_survives_every_allocation_failing) {
  sweep(scenario_task_manager, "task manager");
}
END_TEST
START_TEST(process_pool_survives_every_allocation_failing) {
  sweep(scenario_process_pool, "process pool");
}
END_TEST

START_TEST(set_allocator_needs_all_four) {
  capture_start();
  ck_assert_int_eq(fp_set_allocator(malloc, NULL, realloc, free), FP_EINVAL);
}
END_TEST

TEST_MAIN("alloc", thread_pool_survives_every_allocation_failing,
          waiting_survives_every_allocation_failing, map_survives_every_allocation_failing,
          task_manager_survives_every_allocation_failing,
          process_pool_survives_every_allocation_failing, set_allocator_needs_all_four)
