/* test_conformance.c - the executor-independent part of the suite, run
 * against every executor kind: the thread pool, the process pool, and the
 * serial executor of examples/serial, built outside the library on its
 * public executor interface. Futures, errors, cancel, shutdown, fp_wait,
 * fp_as_completed, fp_map and the task manager must behave the same on
 * each. Tasks pass integers only, so that they run in worker processes too. */
#include "helpers.h"

#include "serial_executor.h"

#include <futureproof/executor.h>

typedef struct kind {
  const char *name;
  fp_executor *(*make)(void);
  bool shares_memory;
} kind;

static fp_executor *make_thread_pool(void) { return new_pool(2); }
static fp_executor *make_process_pool(void) { return new_process_pool(2, 0); }
static fp_executor *make_serial(void) {
  fp_executor *ex = NULL;
  ck_assert_int_eq(serial_executor_new(&ex), 0);
  return ex;
}

static const kind kinds[] = {
    {"thread pool", make_thread_pool, true},
    {"process pool", make_process_pool, false},
    {"serial", make_serial, true},
};
#define FOR_EACH_KIND(k) for (const kind *k = kinds; k < kinds + sizeof kinds / sizeof kinds[0]; k++)

static void *square_or_fail(void *arg) {
  long x = (long)(intptr_t)arg;
  if (x == 7) return fp_raise(-EIO, "item %ld fails on purpose", x);
  return (void *)(intptr_t)(x * x);
}
static void *sleep_ms_task(void *arg) {
  sleep_ms((int)(intptr_t)arg);
  return arg;
}

START_TEST(results_errors_and_identity) {
  capture_start();
  FOR_EACH_KIND(k) {
    fp_executor *ex = k->make();
    fp_future *fs[20];
    for (intptr_t i = 0; i < 20; i++)
      ck_assert_int_eq(fp_submit(ex, square_or_fail, (void *)i, &fs[i]), 0);
    for (intptr_t i = 0; i < 20; i++) {
      void *r;
      int rc = fp_future_result(fs[i], LONG_WAIT, &r);
      if (i == 7) {
        ck_assert_msg(rc == -EIO, "%s: %s", k->name, fp_err_name(rc));
        ck_assert_str_eq(fp_future_error(fs[i])->message, "item 7 fails on purpose");
      } else {
        ck_assert_msg(rc == 0 && r == (void *)(i * i), "%s: item %ld", k->name, (long)i);
      }
      ck_assert_uint_eq(fp_future_id(fs[i]), (uint64_t)i + 1); /* numbered by the common code */
      ck_assert(fp_future_fn(fs[i]) == square_or_fail);
      fp_future_release(fs[i]);
    }
    fp_executor_stats st;
    ck_assert_int_eq(fp_executor_get_stats(ex, &st), 0);
    fp_executor_free(ex);
  }
}
END_TEST

START_TEST(a_queued_task_can_be_cancelled_and_shutdown_refuses_more) {
  capture_start();
  FOR_EACH_KIND(k) {
    fp_executor *ex = k->make();
    int workers = fp_executor_max_workers(ex);
    fp_future *busy[4], *queued;
    for (int i = 0; i < workers; i++)
      ck_assert_int_eq(fp_submit(ex, sleep_ms_task, (void *)300, &busy[i]), 0);
    ck_assert_int_eq(fp_submit(ex, sleep_ms_task, (void *)1, &queued), 0);
    ck_assert_msg(fp_future_cancel(queued), "%s: a queued task could not be cancelled", k->name);
    ck_assert_int_eq(fp_future_result(queued, LONG_WAIT, NULL), FP_ECANCELED);
    ck_assert(fp_future_cancelled(queued));
    for (int i = 0; i < workers; i++) {
      ck_assert_int_eq(fp_future_result(busy[i], LONG_WAIT, NULL), 0);
      fp_future_release(busy[i]);
    }
    fp_future_release(queued);
    ck_assert_int_eq(fp_shutdown(ex, true, false), 0);
    fp_future *late = (fp_future *)1;
    ck_assert_int_eq(fp_submit(ex, sleep_ms_task, NULL, &late), FP_ESHUTDOWN);
    ck_assert_ptr_null(late);
    fp_executor_free(ex);
  }
}
END_TEST

START_TEST(shutdown_with_cancel_cancels_what_has_not_started) {
  capture_start();
  FOR_EACH_KIND(k) {
    fp_executor *ex = k->make();
    int workers = fp_executor_max_workers(ex);
    fp_future *fs[12];
    int n = workers + 6;
    for (int i = 0; i < n; i++)
      ck_assert_int_eq(fp_submit(ex, sleep_ms_task, (void *)200, &fs[i]), 0);
    ck_assert_int_eq(fp_shutdown(ex, true, true), 0);
    int cancelled = 0;
    for (int i = 0; i < n; i++) {
      int rc = fp_future_result(fs[i], 0, NULL); /* all settled once shutdown returned */
      ck_assert_msg(rc == 0 || rc == FP_ECANCELED, "%s: %s", k->name, fp_err_name(rc));
      cancelled += rc == FP_ECANCELED;
      fp_future_release(fs[i]);
    }
    ck_assert_msg(cancelled >= n - 2 * workers, "%s: %d of %d cancelled", k->name, cancelled, n);
    fp_executor_free(ex);
  }
}
END_TEST

START_TEST(wait_and_as_completed_over_any_kind) {
  capture_start();
  FOR_EACH_KIND(k) {
    fp_executor *ex = k->make();
    fp_future *fs[6];
    for (intptr_t i = 0; i < 6; i++)
      ck_assert_int_eq(fp_submit(ex, sleep_ms_task, (void *)(10 * (i + 1)), &fs[i]), 0);
    fp_future *done[6], *not_done[6];
    size_t nd, nn;
    ck_assert_int_eq(fp_wait(fs, 6, FP_FIRST_COMPLETED, LONG_WAIT, done, &nd, not_done, &nn), 0);
    ck_assert_uint_ge(nd, 1);
    ck_assert_uint_eq(nd + nn, 6);
    ck_assert_int_eq(fp_wait(fs, 6, FP_ALL_COMPLETED, LONG_WAIT, done, &nd, NULL, &nn), 0);
    ck_assert_uint_eq(nd, 6);
    ck_assert_uint_eq(nn, 0);
    fp_future *failing;
    ck_assert_int_eq(fp_submit(ex, square_or_fail, (void *)7, &failing), 0);
    fp_future *mixed[2] = {failing, fs[0]};
    ck_assert_int_eq(fp_wait(mixed, 2, FP_FIRST_EXCEPTION, LONG_WAIT, NULL, &nd, NULL, NULL), 0);
    ck_assert_uint_ge(nd, 1);
    ck_assert_int_eq(fp_future_result(failing, 0, NULL), -EIO);
    fp_as_completed *it;
    ck_assert_int_eq(fp_as_completed_new(fs, 6, LONG_WAIT, &it), 0);
    fp_future *f;
    int seen = 0;
    while (fp_as_completed_next(it, &f) == 0) seen++;
    ck_assert_int_eq(seen, 6);
    fp_as_completed_free(it);
    for (int i = 0; i < 6; i++) fp_future_release(fs[i]);
    fp_future_release(failing);
    fp_executor_free(ex);
  }
}
END_TEST

static void *twice(void *arg) { return (void *)((intptr_t)arg * 2); }

START_TEST(map_keeps_input_order_with_and_without_chunks) {
  capture_start();
  FOR_EACH_KIND(k) {
    fp_executor *ex = k->make();
    for (int chunksize = 1; chunksize <= 7; chunksize += 6) {
      counter input = {.next = 0, .limit = 300};
      fp_map_options opt;
      fp_map_options_init(&opt);
      opt.chunksize = chunksize;
      fp_map *m;
      ck_assert_int_eq(fp_map_new(ex, twice, count_up, &input, &opt, &m), 0);
      void *r;
      long i = 0;
      int rc;
      while ((rc = fp_map_next(m, &r)) == 0) {
        ck_assert_msg(r == (void *)(2 * i), "%s, chunksize %d: item %ld", k->name, chunksize, i);
        i++;
      }
      ck_assert_int_eq(rc, FP_EOF);
      ck_assert_int_eq(i, 300);
      fp_map_free(m);
    }
    counter failing = {.next = 0, .limit = 100, .fail_at = 40};
    fp_map *m;
    ck_assert_int_eq(fp_map_new(ex, twice, count_up, &failing, NULL, &m), 0);
    void *r;
    int rc, items = 0;
    while ((rc = fp_map_next(m, &r)) == 0) items++;
    ck_assert_int_eq(items, 40); /* the items before the input's error, then the error */
    ck_assert_int_eq(rc, -71);
    fp_map_free(m);
    fp_executor_free(ex);
  }
}
END_TEST

START_TEST(task_manager_fails_fast_or_logs_on_any_kind) {
  capture_start();
  FOR_EACH_KIND(k) {
    fp_executor *ex = k->make();
    for (int policy = FP_POLICY_RAISE; policy <= FP_POLICY_LOG; policy++) {
      fp_tm_options opt;
      fp_tm_options_init(&opt);
      opt.monitor_interval = 0;
      opt.error_policy = (fp_error_policy)policy;
      fp_task_manager *tm;
      ck_assert_int_eq(fp_tm_new(ex, &opt, &tm), 0);
      /* Raise: an input far longer than what runs before item 7's failure
       * stops it (60 items were read whole, now and then, under ASan). */
      counter input = {.next = 0, .limit = policy == FP_POLICY_RAISE ? 100000 : 60};
      ck_assert_int_eq(fp_tm_map(tm, square_or_fail, count_up, &input, NULL), 0);
      int rc = fp_tm_run(tm, LONG_WAIT);
      fp_tm_stats st;
      fp_tm_get_stats(tm, &st);
      if (policy == FP_POLICY_RAISE) {
        ck_assert_msg(rc == -EIO, "%s: %s", k->name, fp_err_name(rc));
        fp_task *failed;
        ck_assert_int_eq(fp_tm_failed_task(tm, &failed), 0);
        ck_assert_ptr_eq(fp_task_arg(failed), (void *)7);
        fp_task_release(failed);
        ck_assert_msg(input.next < 100000, "%s: read all the input", k->name); /* it stopped */
      } else {
        ck_assert_msg(rc == 0, "%s: %s", k->name, fp_err_name(rc));
        ck_assert_uint_eq(st.completed, 60);
        ck_assert_uint_eq(st.failed, 1);
      }
      fp_tm_free(tm);
    }
    fp_executor_free(ex);
  }
}
END_TEST

/* A task waiting on another task of its own executor: the waiting worker
 * runs the queued one meanwhile (a serial executor would wait for ever). */
static fp_executor *own_executor;
static void *wait_on_a_sibling(void *arg) {
  fp_future *f;
  if (fp_submit(own_executor, twice, arg, &f)) return fp_raise(-EIO, "cannot submit");
  void *r = NULL;
  int rc = fp_future_result(f, LONG_WAIT, &r);
  fp_future_release(f);
  return rc ? fp_raise(rc, "the sibling failed") : r;
}

START_TEST(a_task_may_wait_on_its_own_executor) {
  capture_start();
  FOR_EACH_KIND(k) {
    if (!k->shares_memory) continue; /* a future does not cross to a worker process */
    own_executor = k->make();
    fp_future *fs[8];
    for (intptr_t i = 0; i < 8; i++)
      ck_assert_int_eq(fp_submit(own_executor, wait_on_a_sibling, (void *)i, &fs[i]), 0);
    for (intptr_t i = 0; i < 8; i++) {
      void *r;
      ck_assert_msg(fp_future_result(fs[i], LONG_WAIT, &r) == 0 && r == (void *)(2 * i),
                    "%s: item %ld", k->name, (long)i);
      fp_future_release(fs[i]);
    }
    fp_executor_free(own_executor);
  }
}
END_TEST

START_TEST(the_interface_refuses_an_incomplete_vtable) {
  capture_start();
  fp_executor_vtable vt = {.version = FP_EXECUTOR_INTERFACE_VERSION, .kind = "broken"};
  fp_executor *ex = (fp_executor *)1;
  ck_assert_int_eq(fp_executor_new(&vt, NULL, 1, &ex), FP_EINVAL);
  ck_assert_ptr_null(ex);
  ck_assert_int_eq(fp_executor_new(NULL, NULL, 1, &ex), FP_EINVAL);
  vt.version = FP_EXECUTOR_INTERFACE_VERSION + 1;
  ck_assert_int_eq(fp_executor_new(&vt, NULL, 1, &ex), FP_EINVAL);
}
END_TEST

/* An executor with no thread of its own: submit keeps the future, and
 * only poll (from a waiter) runs what was kept. */
typedef struct polled {
  fp_future *kept[4];
  int nkept;
  atomic_int polls;
  bool runs; /* poll runs what is kept; false: it never does */
  pthread_t waiter;
} polled;

static int polled_submit(fp_executor *ex, fp_future *f, double timeout_s) {
  (void)timeout_s;
  polled *p = fp_executor_impl(ex);
  if (p->nkept == 4) return fp_executor_fail(FP_EAGAIN, "full");
  p->kept[p->nkept++] = f;
  return 0;
}
static bool polled_poll(fp_executor *ex) {
  polled *p = fp_executor_impl(ex);
  atomic_fetch_add(&p->polls, 1);
  ck_assert(pthread_equal(pthread_self(), p->waiter)); /* in the waiting thread */
  if (!p->runs || !p->nkept) return false;
  fp_future *f = p->kept[--p->nkept];
  fp_executor_run(f);
  fp_future_release(f);
  return true;
}
static int polled_shutdown(fp_executor *ex, bool wait, bool cancel_futures, double timeout_s) {
  (void)wait, (void)cancel_futures, (void)timeout_s;
  polled *p = fp_executor_impl(ex);
  while (p->nkept) { /* what never ran */
    fp_future *f = p->kept[--p->nkept];
    fp_future_cancel(f);
    fp_future_release(f);
  }
  return 0;
}
static void polled_destroy(fp_executor *ex) { (void)ex; }
static const fp_executor_vtable polled_vtable = {
    .version = FP_EXECUTOR_INTERFACE_VERSION,
    .kind = "polled",
    .submit = polled_submit,
    .shutdown = polled_shutdown,
    .destroy = polled_destroy,
    .shares_memory = true,
    .poll = polled_poll,
};

START_TEST(a_waiter_polls_an_executor_that_asks_for_it) {
  capture_start();
  polled p = {.runs = true, .waiter = pthread_self()};
  fp_executor *ex;
  ck_assert_int_eq(fp_executor_new(&polled_vtable, &p, 1, &ex), 0);
  fp_future *f;
  ck_assert_int_eq(fp_submit(ex, square_or_fail, (void *)(intptr_t)5, &f), 0);
  void *r;
  /* Nothing but the waiter's polls runs it. */
  ck_assert_int_eq(fp_future_result(f, LONG_WAIT, &r), 0);
  ck_assert_ptr_eq(r, (void *)(intptr_t)25);
  ck_assert_int_ge(atomic_load(&p.polls), 1);
  fp_future_release(f);
  /* A poll that brings nothing: the waiter sleeps on, and its timeout holds. */
  p.runs = false;
  ck_assert_int_eq(fp_submit(ex, square_or_fail, (void *)(intptr_t)6, &f), 0);
  double t0 = fp_now();
  ck_assert_int_eq(fp_future_wait(f, 0.2), FP_ETIMEDOUT);
  ck_assert_double_ge(fp_now() - t0, 0.2);
  ck_assert_double_lt(fp_now() - t0, LONG_WAIT);
  fp_future_release(f);
  fp_executor_free(ex);
}
END_TEST

/* A version 1 vtable ends before poll: what lies after it is not read. */
static fp_future *completed_later;
static void *complete_later(void *arg) {
  (void)arg;
  sleep_ms(50);
  fp_executor_run(completed_later);
  fp_future_release(completed_later);
  return NULL;
}
static int keep_one(fp_executor *ex, fp_future *f, double timeout_s) {
  (void)ex, (void)timeout_s;
  completed_later = f;
  return 0;
}

START_TEST(an_executor_of_interface_version_1_is_still_taken) {
  capture_start();
  fp_executor_vtable *vt = malloc(sizeof *vt);
  memset(vt, 0xff, sizeof *vt); /* past the end of a version 1 vtable: garbage */
  fp_executor_vtable v1 = {.version = 1,
                           .kind = "version 1",
                           .submit = keep_one,
                           .shutdown = polled_shutdown,
                           .destroy = polled_destroy,
                           .shares_memory = true};
  memcpy(vt, &v1, offsetof(fp_executor_vtable, poll));
  polled p = {0};
  fp_executor *ex;
  ck_assert_int_eq(fp_executor_new(vt, &p, 1, &ex), 0);
  fp_future *f;
  ck_assert_int_eq(fp_submit(ex, square_or_fail, (void *)(intptr_t)3, &f), 0);
  pthread_t t;
  pthread_create(&t, NULL, complete_later, NULL);
  void *r;
  ck_assert_int_eq(fp_future_result(f, LONG_WAIT, &r), 0); /* waits, and polls nothing */
  ck_assert_ptr_eq(r, (void *)(intptr_t)9);
  pthread_join(t, NULL);
  fp_future_release(f);
  fp_executor_free(ex);
  free(vt);
}
END_TEST

TEST_MAIN("conformance", results_errors_and_identity,
          a_queued_task_can_be_cancelled_and_shutdown_refuses_more,
          shutdown_with_cancel_cancels_what_has_not_started, wait_and_as_completed_over_any_kind,
          map_keeps_input_order_with_and_without_chunks,
          task_manager_fails_fast_or_logs_on_any_kind, a_task_may_wait_on_its_own_executor,
          the_interface_refuses_an_incomplete_vtable, a_waiter_polls_an_executor_that_asks_for_it,
          an_executor_of_interface_version_1_is_still_taken)
