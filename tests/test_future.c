/* test_future.c - the future: states, cancel, result with timeouts,
 * set twice, done-callbacks, references, destructors, and the report of an
 * error nobody retrieved. */
#include "helpers.h"

START_TEST(states_pending_running_finished) {
  fp_future *f;
  ck_assert_int_eq(fp_future_new(&f), 0);
  ck_assert_int_eq(fp_future_get_state(f), FP_PENDING);
  ck_assert(!fp_future_done(f) && !fp_future_running(f) && !fp_future_cancelled(f));
  ck_assert_int_eq(fp_future_set_running(f), 0);
  ck_assert(fp_future_running(f) && !fp_future_done(f));
  ck_assert_int_eq(fp_future_set_result(f, (void *)42), 0);
  ck_assert(fp_future_done(f) && !fp_future_running(f) && !fp_future_cancelled(f));
  void *out = NULL;
  ck_assert_int_eq(fp_future_result(f, 0, &out), 0);
  ck_assert_ptr_eq(out, (void *)42);
  ck_assert_ptr_null(fp_future_error(f));
  fp_future_release(f);
}
END_TEST

START_TEST(cancel_semantics) {
  fp_future *pending, *running, *finished;
  fp_future_new(&pending);
  fp_future_new(&running);
  fp_future_new(&finished);
  /* pending -> true and cancelled; again -> still true */
  ck_assert(fp_future_cancel(pending));
  ck_assert(fp_future_cancelled(pending) && fp_future_done(pending));
  ck_assert(fp_future_cancel(pending));
  ck_assert_int_eq(fp_future_result(pending, 0, NULL), FP_ECANCELED);
  ck_assert_int_eq(fp_future_set_running(pending), FP_ECANCELED);
  /* running -> false, stays running */
  fp_future_set_running(running);
  ck_assert(!fp_future_cancel(running));
  ck_assert(fp_future_running(running) && !fp_future_cancelled(running));
  /* finished -> false, keeps its result */
  fp_future_set_result(finished, (void *)7);
  ck_assert(!fp_future_cancel(finished));
  void *out;
  ck_assert_int_eq(fp_future_result(finished, 0, &out), 0);
  ck_assert_ptr_eq(out, (void *)7);
  /* a done future cannot be set */
  ck_assert_int_eq(fp_future_set_result(pending, NULL), FP_ESTATE);
  fp_future_set_result(running, NULL);
  fp_future_release(pending);
  fp_future_release(running);
  fp_future_release(finished);
}
END_TEST

START_TEST(result_timeout_zero_polls_and_positive_times_out) {
  fp_future *f;
  fp_future_new(&f);
  ck_assert_int_eq(fp_future_result(f, 0, NULL), FP_ETIMEDOUT);
  double t0 = now_s();
  ck_assert_int_eq(fp_future_result(f, 0.05, NULL), FP_ETIMEDOUT);
  ck_assert(now_s() - t0 >= 0.045);
  ck_assert_int_eq(fp_last_error()->code, FP_ETIMEDOUT);
  ck_assert_int_eq(fp_future_wait(f, 0.01), FP_ETIMEDOUT);
  fp_future_set_result(f, NULL);
  ck_assert_int_eq(fp_future_wait(f, 0), 0);
  fp_future_release(f);
}
END_TEST

typedef struct waiter_arg {
  fp_future *f;
  int rc;
  void *value;
} waiter_arg;

static void *wait_forever(void *p) {
  waiter_arg *w = p;
  w->rc = fp_future_result(w->f, -1, &w->value);
  return NULL;
}

static void *set_later(void *p) {
  sleep_ms(20);
  fp_future_set_result(p, (void *)99);
  return NULL;
}

START_TEST(result_from_another_thread_wakes_every_waiter) {
  enum { N = 8 };
  fp_future *f;
  fp_future_new(&f);
  pthread_t th[N], setter;
  waiter_arg args[N];
  for (int i = 0; i < N; i++) {
    args[i] = (waiter_arg){f, -1, NULL};
    pthread_create(&th[i], NULL, wait_forever, &args[i]);
  }
  pthread_create(&setter, NULL, set_later, f);
  for (int i = 0; i < N; i++) {
    pthread_join(th[i], NULL);
    ck_assert_int_eq(args[i].rc, 0);
    ck_assert_ptr_eq(args[i].value, (void *)99);
  }
  pthread_join(setter, NULL);
  fp_future_release(f);
}
END_TEST

static void *cancel_later(void *p) {
  sleep_ms(20);
  fp_future_cancel(p);
  return NULL;
}

START_TEST(cancel_from_another_thread_wakes_waiters) {
  fp_future *f;
  fp_future_new(&f);
  pthread_t th;
  pthread_create(&th, NULL, cancel_later, f);
  ck_assert_int_eq(fp_future_result(f, LONG_WAIT, NULL), FP_ECANCELED);
  pthread_join(th, NULL);
  fp_future_release(f);
}
END_TEST

START_TEST(set_twice_is_invalid_state_and_first_stays) {
  fp_future *f;
  fp_future_new(&f);
  ck_assert_int_eq(fp_future_set_result(f, (void *)1), 0);
  ck_assert_int_eq(fp_future_set_result(f, (void *)2), FP_ESTATE);
  ck_assert_int_eq(fp_future_set_error(f, FP_ETASK, "late"), FP_ESTATE);
  void *out;
  ck_assert_int_eq(fp_future_result(f, 0, &out), 0);
  ck_assert_ptr_eq(out, (void *)1);
  fp_future_release(f);

  fp_future_new(&f);
  ck_assert_int_eq(fp_future_set_error(f, -5, "disk %d on fire", 3), 0);
  ck_assert_int_eq(fp_future_set_result(f, (void *)2), FP_ESTATE);
  ck_assert_int_eq(fp_future_result(f, 0, &out), -5);
  ck_assert_str_eq(fp_future_error(f)->message, "disk 3 on fire");
  ck_assert_str_eq(fp_last_error_message(), "disk 3 on fire");
  fp_future_release(f);
}
END_TEST

typedef struct cb_log {
  int order[8];
  int n;
  pthread_t thread[8];
} cb_log;

static void record(fp_future *f, void *ud, int tag) {
  (void)f;
  cb_log *l = ud;
  l->thread[l->n] = pthread_self();
  l->order[l->n++] = tag;
}
static void cb1(fp_future *f, void *ud) { record(f, ud, 1); }
static void cb2(fp_future *f, void *ud) { record(f, ud, 2); }
static void cb3(fp_future *f, void *ud) { record(f, ud, 3); }
/* A callback that uses the future it is called for, and a release-heavy
 * one: neither may break the callbacks after it. */
static void cb_uses_future(fp_future *f, void *ud) {
  void *v = NULL;
  ck_assert_int_eq(fp_future_result(f, 0, &v), 0);
  ck_assert(fp_future_done(f));
  record(f, ud, 10 + (int)(intptr_t)v);
}

START_TEST(callbacks_in_order_in_completing_thread) {
  fp_future *f;
  fp_future_new(&f);
  cb_log log = {{0}, 0, {0}};
  ck_assert_int_eq(fp_future_on_done(f, cb1, &log), 0);
  ck_assert_int_eq(fp_future_on_done(f, cb_uses_future, &log), 0);
  ck_assert_int_eq(fp_future_on_done(f, cb2, &log), 0);
  ck_assert_int_eq(log.n, 0);
  pthread_t setter;
  pthread_create(&setter, NULL, set_later, f); /* result 99 */
  pthread_join(setter, NULL);
  ck_assert_int_eq(log.n, 3);
  ck_assert_int_eq(log.order[0], 1);
  ck_assert_int_eq(log.order[1], 10 + 99);
  ck_assert_int_eq(log.order[2], 2);
  for (int i = 0; i < 3; i++) ck_assert(pthread_equal(log.thread[i], setter));
  /* added to a done future: runs at once, in the caller */
  ck_assert_int_eq(fp_future_on_done(f, cb3, &log), 0);
  ck_assert_int_eq(log.n, 4);
  ck_assert_int_eq(log.order[3], 3);
  ck_assert(pthread_equal(log.thread[3], pthread_self()));
  fp_future_release(f);
}
END_TEST

START_TEST(callbacks_run_on_cancel) {
  fp_future *f;
  fp_future_new(&f);
  cb_log log = {{0}, 0, {0}};
  fp_future_on_done(f, cb1, &log);
  fp_future_cancel(f);
  ck_assert_int_eq(log.n, 1);
  fp_future_release(f);
}
END_TEST

static atomic_int freed_results, freed_args;
static void count_result_free(void *p) {
  (void)p;
  atomic_fetch_add(&freed_results, 1);
}
static void count_arg_free(void *p) {
  free(p);
  atomic_fetch_add(&freed_args, 1);
}
static void *task_malloc_result(void *arg) {
  (void)arg;
  return malloc(16);
}
static void free_and_count(void *p) {
  free(p);
  atomic_fetch_add(&freed_results, 1);
}

START_TEST(references_and_destructors) {
  atomic_store(&freed_results, 0);
  atomic_store(&freed_args, 0);
  fp_executor *ex = new_pool(2);
  fp_task_options topt = {.arg_free = count_arg_free, .result_free = free_and_count};
  fp_future *f;
  ck_assert_int_eq(fp_submit_ex(ex, task_malloc_result, malloc(8), &topt, -1, &f), 0);
  void *r;
  ck_assert_int_eq(fp_future_result(f, LONG_WAIT, &r), 0);
  ck_assert_ptr_nonnull(r);
  fp_future_retain(f);
  fp_future_release(f);
  ck_assert_int_eq(atomic_load(&freed_results), 0); /* our reference is left */
  fp_future_release(f);
  /* The worker drops its own reference just after publishing the result,
   * so the destructors run with whichever release is last: join first. */
  fp_executor_free(ex);
  ck_assert_int_eq(atomic_load(&freed_results), 1);
  ck_assert_int_eq(atomic_load(&freed_args), 1);
  /* a cancelled task: its argument is freed, there is no result */
  gate g;
  gate_init(&g);
  fp_future *blocker, *queued;
  fp_executor *one = new_pool(1);
  fp_submit(one, task_wait_gate, &g, &blocker);
  fp_task_options topt2 = {.arg_free = count_arg_free, .result_free = count_result_free};
  fp_submit_ex(one, task_identity, malloc(8), &topt2, -1, &queued);
  ck_assert(fp_future_cancel(queued));
  fp_future_release(queued);
  gate_open(&g);
  fp_future_release(blocker);
  fp_executor_free(one);
  ck_assert_int_eq(atomic_load(&freed_args), 2);
  ck_assert_int_eq(atomic_load(&freed_results), 1);
}
END_TEST

START_TEST(unretrieved_error_is_reported_at_last_release) {
  capture_start();
  fp_future *f;
  fp_future_new(&f);
  fp_future_set_error(f, -5, "nobody looked at me");
  ck_assert(!captured("nobody looked at me"));
  fp_future_release(f);
  ck_assert(captured("warning: "));
  ck_assert(captured("nobody retrieved its error: EIO: nobody looked at me"));

  /* through a pool: the report names the task, by the name it was given */
  capture_start();
  fp_executor *ex = new_pool(1);
  fp_task_options named = {.name = "the failing task"};
  fp_submit_ex(ex, task_fail, (void *)17, &named, -1, &f);
  fp_future_wait(f, LONG_WAIT);
  fp_future_release(f);
  ck_assert(captured("future 1 (the failing task, arg 0x11)"));
  ck_assert(captured("item 17 failed on purpose"));
  /* else by its function's name where it is registered, else its address */
  fp_task_register("task_fail", task_fail);
  fp_submit(ex, task_fail, (void *)18, &f);
  fp_future_wait(f, LONG_WAIT);
  fp_future_release(f);
  ck_assert(captured("future 2 (task_fail, arg 0x12)"));
  fp_submit(ex, task_identity, (void *)19, &f); /* static: no symbol to find */
  fp_future_wait(f, LONG_WAIT);
  ck_assert_int_eq(fp_future_id(f), 3);
  char name[64];
  ck_assert(strncmp(fp_future_name(f, name, sizeof name), "fn 0x", 5) == 0);
  fp_future_release(f);
  fp_executor_free(ex);
}
END_TEST

START_TEST(retrieved_error_is_not_reported) {
  capture_start();
  fp_future *a, *b;
  fp_future_new(&a);
  fp_future_new(&b);
  fp_future_set_error(a, -5, "seen by result");
  fp_future_set_error(b, -5, "seen by error");
  ck_assert_int_eq(fp_future_result(a, 0, NULL), -5);
  ck_assert_int_eq(fp_future_error(b)->code, -5);
  fp_future_release(a);
  fp_future_release(b);
  ck_assert_int_eq(captured_lines(), 0);
}
END_TEST

/* calloc fails while failing_callocs is raised: the error block of a
 * failed task is the only calloc a warm pool makes. */
static atomic_bool failing_callocs;
static void *calloc_unless_failing(size_t count, size_t size) {
  return atomic_load(&failing_callocs) ? NULL : calloc(count, size);
}

START_TEST(an_error_that_cannot_be_recorded_is_enomem) {
  capture_start();
  ck_assert_int_eq(fp_set_allocator(malloc, calloc_unless_failing, realloc, free), 0);
  fp_executor *ex = new_pool(1);
  fp_future *warm, *plain, *with_destructors;
  ck_assert_int_eq(fp_submit(ex, task_identity, NULL, &warm), 0);
  ck_assert_int_eq(fp_future_wait(warm, LONG_WAIT), 0);
  fp_task_options topt = {.arg_free = count_arg_free, .result_free = count_result_free};
  ck_assert_int_eq(fp_submit_ex(ex, task_fail, malloc(8), &topt, -1, &with_destructors), 0);
  ck_assert_int_eq(fp_future_wait(with_destructors, LONG_WAIT), 0);

  atomic_store(&failing_callocs, true);
  ck_assert_int_eq(fp_submit(ex, task_fail, (void *)7, &plain), 0);
  ck_assert_int_eq(fp_future_result(plain, LONG_WAIT, NULL), FP_ENOMEM);
  ck_assert(strstr(fp_last_error_message(), "out of memory recording the task's error"));
  ck_assert_int_eq(fp_future_error(plain)->code, FP_ENOMEM);
  /* a submit with destructors holds its block already: the error is kept */
  ck_assert_int_eq(fp_future_result(with_destructors, 0, NULL), -5);
  ck_assert(strstr(fp_future_error(with_destructors)->message, "failed on purpose"));
  atomic_store(&failing_callocs, false);

  fp_future_release(warm);
  fp_future_release(plain);
  fp_future_release(with_destructors);
  fp_executor_free(ex);
  fp_reset_allocator();
}
END_TEST

/* Futures' memory goes back whatever order and whichever threads release
 * them in: a thread gives a run of releases from one slab back at once,
 * and the runs of exiting threads and of the thread that resets the
 * allocator come back too. A future still held keeps its slab from reuse:
 * every KEPT-th stays alive across the rounds, its result intact. */
enum { RELEASERS = 4, RELEASED = 3000, KEPT = 97, ROUNDS = 20 };
typedef struct releaser {
  fp_future **fs;
  int which;
} releaser;
static void *release_share(void *arg) {
  releaser *r = arg;
  for (int k = 0; k < RELEASED; k++) { /* every RELEASERS-th, half of them backwards */
    int i = r->which % 2 ? RELEASED - 1 - k : k;
    if (i % RELEASERS == r->which && i % KEPT) fp_future_release(r->fs[i]);
  }
  return NULL;
}

START_TEST(futures_memory_comes_back_whoever_releases_them) {
  ck_assert_int_eq(fp_set_allocator(counting_malloc, counting_calloc, counting_realloc, counting_free), 0);
  static fp_future *kept[ROUNDS][RELEASED / KEPT + 1];
  for (int round = 0; round < ROUNDS; round++) {
    static fp_future *fs[RELEASED];
    for (int i = 0; i < RELEASED; i++) {
      ck_assert_int_eq(fp_future_new(&fs[i]), 0);
      ck_assert_int_eq(fp_future_set_result(fs[i], (void *)(intptr_t)i), 0);
    }
    pthread_t th[RELEASERS];
    releaser r[RELEASERS];
    for (int t = 0; t < RELEASERS; t++) {
      r[t] = (releaser){fs, t};
      if (t) pthread_create(&th[t], NULL, release_share, &r[t]);
    }
    release_share(&r[0]); /* this thread too, while the others run */
    for (int t = 1; t < RELEASERS; t++) pthread_join(th[t], NULL);
    for (int i = 0; i < RELEASED; i += KEPT) kept[round][i / KEPT] = fs[i];
  }
  for (int round = 0; round < ROUNDS; round++)
    for (int i = 0; i < RELEASED; i += KEPT) {
      void *result;
      ck_assert_int_eq(fp_future_result(kept[round][i / KEPT], 0, &result), 0);
      ck_assert_ptr_eq(result, (void *)(intptr_t)i);
      fp_future_release(kept[round][i / KEPT]);
    }
  fp_reset_allocator(); /* gives back this thread's slabs and the spares */
  long live = atomic_load(&live_blocks);
  ck_assert_int_eq(live, 0);
}
END_TEST

/* A thread-exit destructor of the user's that releases a future, after
 * the library's own ran, still gives its memory back: the release
 * registers the thread again and the library's destructor runs once more. */
static pthread_key_t late_key;
static void release_late(void *f) { fp_future_release(f); }
static void *release_one_keep_one(void *arg) {
  fp_future **fs = arg;
  fp_future_release(fs[0]); /* the library's destructor now knows this thread */
  pthread_setspecific(late_key, fs[1]); /* a later key: its destructor runs after */
  return NULL;
}

START_TEST(a_future_released_by_a_later_thread_exit_destructor_comes_back) {
  ck_assert_int_eq(fp_set_allocator(counting_malloc, counting_calloc, counting_realloc, counting_free), 0);
  for (int round = 0; round < 50; round++) {
    fp_future *fs[2];
    ck_assert_int_eq(fp_future_new(&fs[0]), 0);
    ck_assert_int_eq(fp_future_new(&fs[1]), 0);
    if (round == 0) ck_assert_int_eq(pthread_key_create(&late_key, release_late), 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, release_one_keep_one, fs), 0);
    pthread_join(th, NULL);
  }
  fp_reset_allocator();
  long live = atomic_load(&live_blocks);
  ck_assert_int_eq(live, 0);
}
END_TEST

typedef struct timed_wait {
  fp_future *f;
  double timeout;
  int rc;
} timed_wait;
static void *wait_for(void *arg) {
  timed_wait *w = arg;
  w->rc = fp_future_wait(w->f, w->timeout);
  return NULL;
}

/* Waiters and callbacks share one list on the future: a waiter that gives
 * up leaves from between callbacks, and the rest still hear of the end. */
START_TEST(waiters_and_callbacks_share_the_listener_list) {
  for (int round = 0; round < 200; round++) {
    fp_future *f;
    fp_future_new(&f);
    cb_log log = {{0}, 0, {0}};
    timed_wait patient = {f, LONG_WAIT, -1}, impatient = {f, 0.001, -1};
    pthread_t a, b;
    ck_assert_int_eq(fp_future_on_done(f, cb1, &log), 0);
    pthread_create(&a, NULL, wait_for, &patient);
    pthread_create(&b, NULL, wait_for, &impatient);
    ck_assert_int_eq(fp_future_on_done(f, cb2, &log), 0);
    pthread_join(b, NULL);
    ck_assert_int_eq(impatient.rc, FP_ETIMEDOUT);
    ck_assert_int_eq(fp_future_on_done(f, cb3, &log), 0);
    ck_assert_int_eq(fp_future_set_result(f, (void *)99), 0);
    pthread_join(a, NULL);
    ck_assert_int_eq(patient.rc, 0);
    ck_assert_int_eq(log.n, 3);
    for (int i = 0; i < 3; i++) ck_assert_int_eq(log.order[i], i + 1);
    fp_future_release(f);
  }
  /* callbacks of a future that never completes are freed with it */
  fp_future *never;
  fp_future_new(&never);
  cb_log log = {{0}, 0, {0}};
  ck_assert_int_eq(fp_future_on_done(never, cb1, &log), 0);
  ck_assert_int_eq(fp_future_on_done(never, cb2, &log), 0);
  fp_future_release(never);
  ck_assert_int_eq(log.n, 0);
}
END_TEST

START_TEST(bad_arguments_are_einval_with_a_log_line) {
  capture_start();
  ck_assert_int_eq(fp_future_new(NULL), FP_EINVAL);
  ck_assert_int_eq(fp_future_result(NULL, 0, NULL), FP_EINVAL);
  ck_assert_int_eq(fp_future_wait(NULL, 0), FP_EINVAL);
  ck_assert_int_eq(fp_future_set_result(NULL, NULL), FP_EINVAL);
  ck_assert_int_eq(fp_future_set_error(NULL, 1, "x"), FP_EINVAL);
  ck_assert_int_eq(fp_future_set_running(NULL), FP_EINVAL);
  ck_assert_int_eq(fp_future_on_done(NULL, cb1, NULL), FP_EINVAL);
  ck_assert(!fp_future_cancel(NULL));
  ck_assert_ptr_null(fp_future_error(NULL));
  ck_assert_ptr_null(fp_future_retain(NULL));
  ck_assert(!fp_future_done(NULL) && !fp_future_running(NULL) && !fp_future_cancelled(NULL));
  ck_assert_int_eq(fp_future_get_state(NULL), FP_PENDING);
  ck_assert(fp_future_fn(NULL) == NULL);
  ck_assert_ptr_null(fp_future_arg(NULL));
  ck_assert_uint_eq(fp_future_id(NULL), 0);
  fp_future_release(NULL); /* no-op */
  fp_future *f;
  fp_future_new(&f);
  ck_assert_int_eq(fp_future_on_done(f, NULL, NULL), FP_EINVAL);
  fp_future_release(f);
  ck_assert(captured("invalid argument: fp_future_new: out is NULL"));
  ck_assert(captured("invalid argument: fp_future_done: future is NULL"));
  ck_assert_int_eq(captured_lines(), 18); /* one line per bad call */
  ck_assert_int_eq(fp_last_error()->code, FP_EINVAL);
}
END_TEST

TEST_MAIN("future", states_pending_running_finished, cancel_semantics,
          result_timeout_zero_polls_and_positive_times_out,
          result_from_another_thread_wakes_every_waiter, cancel_from_another_thread_wakes_waiters,
          set_twice_is_invalid_state_and_first_stays, callbacks_in_order_in_completing_thread,
          callbacks_run_on_cancel, references_and_destructors,
          unretrieved_error_is_reported_at_last_release, retrieved_error_is_not_reported,
          an_error_that_cannot_be_recorded_is_enomem, waiters_and_callbacks_share_the_listener_list,
          futures_memory_comes_back_whoever_releases_them,
          a_future_released_by_a_later_thread_exit_destructor_comes_back,
          bad_arguments_are_einval_with_a_log_line)
