/* test_thread_pool.c - the thread pool executor: submit, errors, options,
 * lazy threads and idle reuse, initializer, shutdown in all its forms,
 * bounded queue, cooperative cancellation. */
#include "helpers.h"

#include <unistd.h>

START_TEST(submit_returns_results_and_task_errors) {
  fp_executor *ex = new_pool(4);
  enum { N = 100 };
  fp_future *fs[N];
  for (intptr_t i = 0; i < N; i++)
    ck_assert_int_eq(fp_submit(ex, i % 10 == 3 ? task_fail : task_double, (void *)i, &fs[i]), 0);
  for (intptr_t i = 0; i < N; i++) {
    void *r = NULL;
    int rc = fp_future_result(fs[i], LONG_WAIT, &r);
    if (i % 10 == 3) {
      ck_assert_int_eq(rc, -5);
      const fp_error *e = fp_future_error(fs[i]);
      ck_assert_int_eq(e->code, -5);
      char want[64];
      snprintf(want, sizeof want, "item %ld failed on purpose", (long)i);
      ck_assert_str_eq(e->message, want);
      ck_assert(fp_future_fn(fs[i]) == task_fail);
      ck_assert_ptr_eq(fp_future_arg(fs[i]), (void *)i);
      ck_assert_uint_eq(fp_future_id(fs[i]), (uint64_t)i + 1);
    } else {
      ck_assert_int_eq(rc, 0);
      ck_assert_ptr_eq(r, (void *)(2 * i));
    }
    fp_future_release(fs[i]);
  }
  ck_assert_int_eq(fp_executor_free(ex), 0);
}
END_TEST

/* Ids: unique within an executor whichever threads submit, increasing in
 * each thread, also in one that submits to two executors in turn. */
enum { ID_THREADS = 4, ID_TASKS = 500 };
typedef struct id_run {
  fp_executor *a, *b;
  uint64_t got[2][ID_TASKS];
} id_run;
static void *collect_ids(void *arg) {
  id_run *r = arg;
  for (int i = 0; i < ID_TASKS; i++)
    for (int k = 0; k < 2; k++) {
      fp_future *f;
      ck_assert_int_eq(fp_submit(k ? r->b : r->a, task_identity, NULL, &f), 0);
      r->got[k][i] = fp_future_id(f);
      if (i) ck_assert_uint_gt(r->got[k][i], r->got[k][i - 1]);
      fp_future_release(f);
    }
  return NULL;
}
static int cmp_u64(const void *x, const void *y) {
  uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
  return a < b ? -1 : a > b;
}

START_TEST(ids_are_unique_within_an_executor) {
  fp_executor *a = new_pool(2), *b = new_pool(1);
  static id_run runs[ID_THREADS];
  pthread_t th[ID_THREADS];
  for (int t = 0; t < ID_THREADS; t++) {
    runs[t].a = a;
    runs[t].b = b;
    pthread_create(&th[t], NULL, collect_ids, &runs[t]);
  }
  for (int t = 0; t < ID_THREADS; t++) pthread_join(th[t], NULL);
  static uint64_t all[ID_THREADS * ID_TASKS];
  for (int k = 0; k < 2; k++) {
    for (int t = 0; t < ID_THREADS; t++)
      memcpy(&all[t * ID_TASKS], runs[t].got[k], sizeof runs[t].got[k]);
    qsort(all, ID_THREADS * ID_TASKS, sizeof all[0], cmp_u64);
    ck_assert_uint_gt(all[0], 0);
    for (int i = 1; i < ID_THREADS * ID_TASKS; i++) ck_assert_uint_ne(all[i], all[i - 1]);
  }
  fp_executor_free(a);
  fp_executor_free(b);
}
END_TEST

static void *raise_zero(void *arg) {
  (void)arg;
  return fp_raise(0, NULL);
}

START_TEST(raise_with_code_zero_is_etask) {
  fp_executor *ex = new_pool(1);
  fp_future *f;
  fp_submit(ex, raise_zero, NULL, &f);
  ck_assert_int_eq(fp_future_result(f, LONG_WAIT, NULL), FP_ETASK);
  ck_assert_str_eq(fp_future_error(f)->message, fp_strerror(FP_ETASK));
  fp_future_release(f);
  fp_executor_free(ex);
  /* outside a task: logged, harmless */
  capture_start();
  ck_assert_ptr_null(fp_raise(-5, "nowhere"));
  ck_assert(captured("fp_raise called outside a task"));
}
END_TEST

START_TEST(submit_after_shutdown_fails) {
  fp_executor *ex = new_pool(2);
  ck_assert_int_eq(fp_shutdown(ex, true, false), 0);
  fp_future *f = (fp_future *)1;
  ck_assert_int_eq(fp_submit(ex, task_identity, NULL, &f), FP_ESHUTDOWN);
  ck_assert_ptr_null(f);
  ck_assert_str_eq(fp_last_error_message(), "cannot schedule new futures after shutdown");
  ck_assert_int_eq(fp_shutdown(ex, true, false), 0); /* again: harmless */
  fp_executor_free(ex);
}
END_TEST

START_TEST(bad_options_and_arguments) {
  capture_start();
  fp_thread_pool_options opt;
  fp_thread_pool_options_init(&opt);
  fp_executor *ex = (fp_executor *)1;
  opt.max_workers = 0;
  ck_assert_int_eq(fp_thread_pool_new(&opt, &ex), FP_EINVAL);
  ck_assert_ptr_null(ex);
  ck_assert(captured("max_workers must be greater than 0"));
  opt.max_workers = -3;
  ck_assert_int_eq(fp_thread_pool_new(&opt, &ex), FP_EINVAL);
  fp_thread_pool_options_init(&opt);
  opt.queue_capacity = -1;
  ck_assert_int_eq(fp_thread_pool_new(&opt, &ex), FP_EINVAL);
  ck_assert_int_eq(fp_thread_pool_new(NULL, NULL), FP_EINVAL);

  ex = new_pool(1);
  fp_future *f;
  ck_assert_int_eq(fp_submit(NULL, task_identity, NULL, &f), FP_EINVAL);
  ck_assert_int_eq(fp_submit(ex, NULL, NULL, &f), FP_EINVAL);
  ck_assert_int_eq(fp_submit(ex, task_identity, NULL, NULL), FP_EINVAL);
  ck_assert_int_eq(fp_shutdown(NULL, true, false), FP_EINVAL);
  ck_assert_int_eq(fp_shutdown_timeout(NULL, false, 1), FP_EINVAL);
  ck_assert_int_eq(fp_executor_max_workers(NULL), FP_EINVAL);
  ck_assert_int_eq(fp_executor_get_stats(ex, NULL), FP_EINVAL);
  ck_assert_int_eq(fp_executor_free(NULL), 0);
  fp_executor_free(ex);
  ck_assert_int_eq(captured_lines(), 11); /* one line per bad call */
}
END_TEST

START_TEST(default_workers_is_min_32_ncpu_plus_4) {
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) ncpu = CPU_COUNT(&set);
  ck_assert_int_eq(fp_cpu_count(), ncpu); /* the affinity's CPUs */
  int want = ncpu + 4 < 32 ? (int)ncpu + 4 : 32;
  fp_executor *ex;
  ck_assert_int_eq(fp_thread_pool_new(NULL, &ex), 0);
  ck_assert_int_eq(fp_executor_max_workers(ex), want);
  fp_executor_free(ex);
}
END_TEST

START_TEST(threads_start_lazily_and_idle_ones_are_reused) {
  fp_executor *ex = new_pool(8);
  fp_executor_stats st;
  fp_executor_get_stats(ex, &st);
  ck_assert_uint_eq(st.threads, 0);
  /* sequential tasks: one thread does them all */
  for (int i = 0; i < 200; i++) {
    fp_future *f;
    fp_submit(ex, task_identity, NULL, &f);
    ck_assert_int_eq(fp_future_result(f, LONG_WAIT, NULL), 0);
    fp_future_release(f);
  }
  fp_executor_get_stats(ex, &st);
  ck_assert_uint_eq(st.threads, 1);
  ck_assert_uint_eq(st.submitted, 200);
  ck_assert_uint_eq(st.completed, 200);
  fp_executor_free(ex);
}
END_TEST

static atomic_int running_now, running_max;
static void *task_count_concurrency(void *arg) {
  int now = atomic_fetch_add(&running_now, 1) + 1;
  int max = atomic_load(&running_max);
  while (now > max && !atomic_compare_exchange_weak(&running_max, &max, now)) {
  }
  sleep_ms(1);
  atomic_fetch_sub(&running_now, 1);
  return arg;
}

START_TEST(never_more_than_max_workers_threads) {
  atomic_store(&running_now, 0);
  atomic_store(&running_max, 0);
  fp_executor *ex = new_pool(3);
  enum { N = 300 };
  fp_future *fs[N];
  for (int i = 0; i < N; i++) fp_submit(ex, task_count_concurrency, NULL, &fs[i]);
  fp_executor_stats st;
  fp_executor_get_stats(ex, &st);
  ck_assert_uint_le(st.threads, 3);
  for (int i = 0; i < N; i++) {
    ck_assert_int_eq(fp_future_result(fs[i], LONG_WAIT, NULL), 0);
    fp_future_release(fs[i]);
  }
  fp_executor_get_stats(ex, &st);
  ck_assert_uint_eq(st.threads, 3); /* a burst starts all of them */
  ck_assert_int_le(atomic_load(&running_max), 3);
  ck_assert_int_ge(atomic_load(&running_max), 2);
  fp_executor_free(ex);
}
END_TEST

static void *task_thread_name(void *arg) {
  (void)arg;
  char *name = calloc(1, 16);
  pthread_getname_np(pthread_self(), name, 16);
  return name;
}

START_TEST(threads_are_named_prefix_n) {
  fp_thread_pool_options opt;
  fp_thread_pool_options_init(&opt);
  opt.max_workers = 1;
  opt.thread_name_prefix = "crawler";
  fp_executor *ex;
  fp_thread_pool_new(&opt, &ex);
  fp_future *f;
  fp_submit(ex, task_thread_name, NULL, &f);
  void *name;
  ck_assert_int_eq(fp_future_result(f, LONG_WAIT, &name), 0);
  ck_assert_str_eq(name, "crawler_0");
  free(name);
  fp_future_release(f);
  fp_executor_free(ex);
}
END_TEST

static _Thread_local int initialized_here;
static atomic_int init_calls;
static int init_ok(void *arg) {
  ck_assert_ptr_eq(arg, (void *)&init_calls);
  initialized_here++;
  atomic_fetch_add(&init_calls, 1);
  return 0;
}
static void *task_initialized(void *arg) {
  (void)arg;
  return (void *)(intptr_t)initialized_here;
}

START_TEST(initializer_runs_once_per_worker_before_tasks) {
  atomic_store(&init_calls, 0);
  fp_thread_pool_options opt;
  fp_thread_pool_options_init(&opt);
  opt.max_workers = 3;
  opt.initializer = init_ok;
  opt.initializer_arg = &init_calls;
  fp_executor *ex;
  fp_thread_pool_new(&opt, &ex);
  enum { N = 60 };
  fp_future *fs[N];
  for (int i = 0; i < N; i++) fp_submit(ex, task_initialized, NULL, &fs[i]);
  for (int i = 0; i < N; i++) {
    void *r;
    ck_assert_int_eq(fp_future_result(fs[i], LONG_WAIT, &r), 0);
    ck_assert_ptr_eq(r, (void *)1); /* ran exactly once in this thread, before */
    fp_future_release(fs[i]);
  }
  fp_executor_stats st;
  fp_executor_get_stats(ex, &st);
  fp_executor_free(ex); /* a thread may still be in its initializer: join */
  ck_assert_int_eq(atomic_load(&init_calls), (int)st.threads);
}
END_TEST

static gate init_gate;
static int init_fail_after_gate(void *arg) {
  (void)arg;
  task_wait_gate(&init_gate);
  return -1;
}

START_TEST(failing_initializer_breaks_the_pool) {
  capture_start();
  gate_init(&init_gate);
  fp_thread_pool_options opt;
  fp_thread_pool_options_init(&opt);
  opt.max_workers = 1;
  opt.initializer = init_fail_after_gate;
  fp_executor *ex;
  fp_thread_pool_new(&opt, &ex);
  enum { N = 5 };
  fp_future *fs[N];
  for (int i = 0; i < N; i++) ck_assert_int_eq(fp_submit(ex, task_identity, NULL, &fs[i]), 0);
  ck_assert(gate_wait_arrived(&init_gate, 1));
  gate_open(&init_gate); /* the initializer now fails */
  for (int i = 0; i < N; i++) {
    ck_assert_int_eq(fp_future_result(fs[i], LONG_WAIT, NULL), FP_EBROKEN);
    ck_assert_ptr_nonnull(strstr(fp_future_error(fs[i])->message, "initializer failed"));
    fp_future_release(fs[i]);
  }
  fp_future *f;
  ck_assert_int_eq(fp_submit(ex, task_identity, NULL, &f), FP_EBROKEN);
  ck_assert(captured("initializer failed"));
  fp_executor_free(ex);
}
END_TEST

START_TEST(shutdown_wait_runs_what_remains) {
  fp_executor *ex = new_pool(2);
  enum { N = 50 };
  fp_future *fs[N];
  for (intptr_t i = 0; i < N; i++) fp_submit(ex, task_sleep_ms, (void *)(i % 3), &fs[i]);
  ck_assert_int_eq(fp_shutdown(ex, true, false), 0);
  for (int i = 0; i < N; i++) {
    ck_assert(fp_future_done(fs[i]));
    ck_assert_int_eq(fp_future_result(fs[i], 0, NULL), 0);
    fp_future_release(fs[i]);
  }
  fp_executor_stats st;
  fp_executor_get_stats(ex, &st);
  ck_assert_uint_eq(st.threads, 0);
  fp_executor_free(ex);
}
END_TEST

/* What has not started is cancelled: the tasks queued behind the two
 * that hold both workers, whether submitted before those started (queued
 * in a lane or in a worker's inbox) or after. */
START_TEST(shutdown_cancel_futures_cancels_what_has_not_started) {
  enum { EARLY = 10, LATE = 10 };
  for (int round = 0; round < 20; round++) {
    gate g;
    gate_init(&g);
    fp_executor *ex = new_pool(2);
    fp_future *running[2], *early[EARLY], *late[LATE];
    for (int i = 0; i < 2; i++) fp_submit(ex, task_wait_gate, &g, &running[i]);
    for (int i = 0; i < EARLY; i++) fp_submit(ex, task_identity, NULL, &early[i]);
    ck_assert(gate_wait_arrived(&g, 2));
    for (int i = 0; i < LATE; i++) fp_submit(ex, task_identity, NULL, &late[i]);
    ck_assert_int_eq(fp_shutdown(ex, false, true), 0);
    for (int i = 0; i < LATE; i++) ck_assert(fp_future_cancelled(late[i]));
    for (int i = 0; i < EARLY; i++) ck_assert(fp_future_cancelled(early[i]));
    for (int i = 0; i < 2; i++) ck_assert(fp_future_running(running[i]));
    gate_open(&g);
    ck_assert_int_eq(fp_shutdown(ex, true, false), 0);
    for (int i = 0; i < 2; i++) {
      ck_assert_int_eq(fp_future_result(running[i], 0, NULL), 0);
      fp_future_release(running[i]);
    }
    for (int i = 0; i < EARLY; i++) fp_future_release(early[i]);
    for (int i = 0; i < LATE; i++) fp_future_release(late[i]);
    fp_executor_free(ex);
  }
}
END_TEST

static void *task_shutdown_own_pool(void *arg) {
  fp_executor *ex = arg;
  int rc = fp_shutdown(ex, true, false);
  int rc2 = fp_executor_free(ex); /* refused from inside, never a crash */
  return (void *)(intptr_t)(rc == 0 && rc2 == FP_EBUSY);
}

START_TEST(shutdown_from_a_task_does_not_hang) {
  for (int workers = 1; workers <= 3; workers++) {
    fp_executor *ex = new_pool(workers);
    fp_future *f, *others[5];
    for (int i = 0; i < 5; i++) fp_submit(ex, task_sleep_ms, (void *)1, &others[i]);
    fp_submit(ex, task_shutdown_own_pool, ex, &f);
    void *ok;
    ck_assert_int_eq(fp_future_result(f, LONG_WAIT, &ok), 0);
    ck_assert_ptr_eq(ok, (void *)1);
    ck_assert_int_eq(fp_executor_free(ex), 0);
    for (int i = 0; i < 5; i++) {
      ck_assert_int_eq(fp_future_result(others[i], 0, NULL), 0);
      fp_future_release(others[i]);
    }
    fp_future_release(f);
  }
}
END_TEST

START_TEST(shutdown_right_after_cancel_does_not_hang) {
  for (int round = 0; round < 200; round++) {
    fp_executor *ex = new_pool(2);
    fp_future *fs[20];
    for (int i = 0; i < 20; i++) fp_submit(ex, task_identity, NULL, &fs[i]);
    for (int i = 0; i < 20; i += 2) fp_future_cancel(fs[i]);
    ck_assert_int_eq(fp_shutdown_timeout(ex, false, LONG_WAIT), 0);
    for (int i = 0; i < 20; i++) {
      ck_assert(fp_future_done(fs[i]));
      fp_future_release(fs[i]);
    }
    fp_executor_free(ex);
  }
}
END_TEST

START_TEST(shutdown_timeout_reports_busy_workers) {
  gate g;
  gate_init(&g);
  fp_executor *ex = new_pool(1);
  fp_future *f;
  fp_submit(ex, task_wait_gate, &g, &f);
  ck_assert(gate_wait_arrived(&g, 1));
  ck_assert_int_eq(fp_shutdown_timeout(ex, false, 0.05), FP_ETIMEDOUT);
  ck_assert_ptr_nonnull(strstr(fp_last_error_message(), "1 worker threads still busy"));
  gate_open(&g);
  ck_assert_int_eq(fp_shutdown_timeout(ex, false, LONG_WAIT), 0);
  fp_future_release(f);
  fp_executor_free(ex);
}
END_TEST

START_TEST(free_without_shutdown_runs_queued_work) {
  fp_executor *ex = new_pool(1);
  fp_future *fs[30];
  for (int i = 0; i < 30; i++) fp_submit(ex, task_sleep_ms, (void *)1, &fs[i]);
  ck_assert_int_eq(fp_executor_free(ex), 0);
  for (int i = 0; i < 30; i++) {
    ck_assert_int_eq(fp_future_result(fs[i], 0, NULL), 0);
    fp_future_release(fs[i]);
  }
}
END_TEST

static fp_executor *bounded_pool(int workers, long capacity) {
  fp_thread_pool_options opt;
  fp_thread_pool_options_init(&opt);
  opt.max_workers = workers;
  opt.queue_capacity = capacity;
  fp_executor *ex;
  ck_assert_int_eq(fp_thread_pool_new(&opt, &ex), 0);
  return ex;
}

START_TEST(bounded_queue_try_submit_and_timeout) {
  gate g;
  gate_init(&g);
  fp_executor *ex = bounded_pool(1, 2);
  fp_future *busy, *q1, *q2, *f = (fp_future *)1;
  fp_submit(ex, task_wait_gate, &g, &busy);
  ck_assert(gate_wait_arrived(&g, 1));
  ck_assert_int_eq(fp_try_submit(ex, task_identity, NULL, &q1), 0);
  ck_assert_int_eq(fp_submit_timeout(ex, task_identity, NULL, 1, &q2), 0);
  ck_assert_int_eq(fp_try_submit(ex, task_identity, NULL, &f), FP_EAGAIN);
  ck_assert_ptr_null(f);
  double t0 = now_s();
  ck_assert_int_eq(fp_submit_timeout(ex, task_identity, NULL, 0.05, &f), FP_ETIMEDOUT);
  ck_assert(now_s() - t0 >= 0.045);
  fp_executor_stats st;
  fp_executor_get_stats(ex, &st);
  ck_assert_uint_eq(st.queued, 2);
  gate_open(&g);
  fp_future_release(busy);
  fp_future_release(q1);
  fp_future_release(q2);
  fp_executor_free(ex);
}
END_TEST

typedef struct blocked_submit {
  fp_executor *ex;
  atomic_int rc; /* 1 until fp_submit returns */
  fp_future *f;
  _Atomic pid_t tid; /* the submitting thread, once it runs */
} blocked_submit;

static void *submit_blocking(void *p) {
  blocked_submit *b = p;
  atomic_store(&b->tid, thread_id_now());
  atomic_store(&b->rc, fp_submit(b->ex, task_identity, (void *)5, &b->f));
  return NULL;
}

/* The submitting thread started, and is asleep (in the submit) or done. */
static bool submit_blocked_or_done(void *p) {
  blocked_submit *b = p;
  pid_t tid = atomic_load(&b->tid);
  return tid && (atomic_load(&b->rc) != 1 || thread_blocked(&tid));
}

/* A pool of one busy worker (held at g) and a full queue of one (q). */
static fp_executor *full_pool(gate *g, fp_future **busy, fp_future **q) {
  gate_init(g);
  fp_executor *ex = bounded_pool(1, 1);
  fp_submit(ex, task_wait_gate, g, busy);
  ck_assert(gate_wait_arrived(g, 1));
  ck_assert_int_eq(fp_submit(ex, task_identity, NULL, q), 0);
  return ex;
}

START_TEST(blocking_submit_waits_for_room) {
  gate g;
  fp_future *busy, *q;
  fp_executor *ex = full_pool(&g, &busy, &q);
  blocked_submit b = {ex, 1, NULL, 0};
  pthread_t th;
  pthread_create(&th, NULL, submit_blocking, &b);
  ck_assert(wait_until(submit_blocked_or_done, &b, LONG_WAIT));
  ck_assert_int_eq(atomic_load(&b.rc), 1); /* asleep in the submit: it waits for room */
  gate_open(&g);
  pthread_join(th, NULL);
  ck_assert_int_eq(atomic_load(&b.rc), 0);
  void *r;
  ck_assert_int_eq(fp_future_result(b.f, LONG_WAIT, &r), 0);
  ck_assert_ptr_eq(r, (void *)5);
  fp_future_release(b.f);
  fp_future_release(busy);
  fp_future_release(q);
  fp_executor_free(ex);
}
END_TEST

START_TEST(shutdown_wakes_blocked_submitters) {
  gate g;
  fp_future *busy, *q;
  fp_executor *ex = full_pool(&g, &busy, &q);
  blocked_submit b[3];
  pthread_t th[3];
  for (int i = 0; i < 3; i++) {
    b[i] = (blocked_submit){ex, 1, NULL, 0};
    pthread_create(&th[i], NULL, submit_blocking, &b[i]);
  }
  for (int i = 0; i < 3; i++) ck_assert(wait_until(submit_blocked_or_done, &b[i], LONG_WAIT));
  fp_shutdown(ex, false, true);
  for (int i = 0; i < 3; i++) {
    pthread_join(th[i], NULL);
    /* each either got in before the shutdown (then it was cancelled or
     * ran) or was told the pool shut down; none hangs */
    int rc = atomic_load(&b[i].rc);
    ck_assert(rc == FP_ESHUTDOWN || rc == 0);
    if (rc == 0) fp_future_release(b[i].f);
  }
  ck_assert(fp_future_cancelled(q));
  gate_open(&g);
  fp_future_release(busy);
  fp_future_release(q);
  fp_executor_free(ex);
}
END_TEST

static void *task_until_cancel_requested(void *arg) {
  gate *g = arg;
  pthread_mutex_lock(&g->mu);
  g->arrived++;
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
  double end = now_s() + LONG_WAIT;
  while (!fp_cancel_requested() && now_s() < end) sleep_ms(1);
  return fp_cancel_requested() ? fp_raise(FP_ECANCELED, "stopped on request") : NULL;
}

START_TEST(cancel_requested_inside_a_running_task) {
  ck_assert(!fp_cancel_requested()); /* outside a task */
  gate g;
  gate_init(&g);
  fp_executor *ex = new_pool(2);
  fp_future *a, *b;
  fp_submit(ex, task_until_cancel_requested, &g, &a);
  ck_assert(gate_wait_arrived(&g, 1));
  ck_assert(!fp_future_cancel(a)); /* running: false, but asked to stop */
  ck_assert_int_eq(fp_future_result(a, LONG_WAIT, NULL), FP_ECANCELED);
  ck_assert_str_eq(fp_future_error(a)->message, "stopped on request");
  /* shutdown with cancel_futures asks running tasks to stop too */
  fp_submit(ex, task_until_cancel_requested, &g, &b);
  ck_assert(gate_wait_arrived(&g, 2));
  double t0 = now_s();
  ck_assert_int_eq(fp_shutdown(ex, true, true), 0);
  ck_assert(now_s() - t0 < LONG_WAIT / 2);
  ck_assert_int_eq(fp_future_result(b, 0, NULL), FP_ECANCELED);
  fp_future_release(a);
  fp_future_release(b);
  fp_executor_free(ex);
}
END_TEST

/* A task that waits without helping (fp_wait does not run queued tasks)
 * for a task queued right behind it: an idle worker must run that one.
 * It used to wait, with every other worker asleep, when the first worker
 * had taken both (the second into its inbox, where nobody looked). */
static fp_future *_Atomic queued_behind;
static fp_future *behind_gate;
static void *wait_without_helping(void *arg) {
  (void)arg;
  fp_future_wait(behind_gate, LONG_WAIT);
  fp_future *other = atomic_load(&queued_behind);
  fp_wait(&other, 1, FP_ALL_COMPLETED, 5, NULL, NULL, NULL, NULL);
  return (void *)(intptr_t)fp_future_done(other);
}
static void *after_the_gate(void *arg) {
  fp_future_wait(behind_gate, LONG_WAIT);
  return arg;
}

/* One round: the waiting task, the one queued behind it, and the check. */
static void queue_one_behind_a_waiting_one(fp_executor *ex, int round) {
  ck_assert_int_eq(fp_future_new(&behind_gate), 0);
  fp_future *a, *b;
  ck_assert_int_eq(fp_submit(ex, wait_without_helping, NULL, &a), 0);
  ck_assert_int_eq(fp_submit(ex, after_the_gate, NULL, &b), 0);
  atomic_store(&queued_behind, b);
  fp_future_set_result(behind_gate, NULL);
  ck_assert_msg(value_of(a) == 1, "round %d: the second task did not run", round);
  fp_future_release(a);
  fp_future_release(b);
  fp_future_release(behind_gate);
}

START_TEST(a_task_queued_behind_a_waiting_one_is_run_by_an_idle_worker) {
  fp_executor *ex = new_pool(6);
  for (int round = 0; round < 2000; round++) queue_one_behind_a_waiting_one(ex, round);
  fp_executor_free(ex);
}
END_TEST

/* The same on a pool that has not started its threads yet: when its only
 * thread takes the first task, the second needs another thread. */
START_TEST(a_pool_starts_a_thread_for_a_task_queued_behind_a_waiting_one) {
  for (int round = 0; round < 300; round++) {
    fp_executor *ex = new_pool(2);
    queue_one_behind_a_waiting_one(ex, round);
    fp_executor_free(ex);
  }
}
END_TEST

TEST_MAIN("thread_pool", submit_returns_results_and_task_errors,
          a_task_queued_behind_a_waiting_one_is_run_by_an_idle_worker,
          a_pool_starts_a_thread_for_a_task_queued_behind_a_waiting_one, ids_are_unique_within_an_executor,
          raise_with_code_zero_is_etask,
          submit_after_shutdown_fails, bad_options_and_arguments,
          default_workers_is_min_32_ncpu_plus_4, threads_start_lazily_and_idle_ones_are_reused,
          never_more_than_max_workers_threads, threads_are_named_prefix_n,
          initializer_runs_once_per_worker_before_tasks, failing_initializer_breaks_the_pool,
          shutdown_wait_runs_what_remains, shutdown_cancel_futures_cancels_what_has_not_started,
          shutdown_from_a_task_does_not_hang, shutdown_right_after_cancel_does_not_hang,
          shutdown_timeout_reports_busy_workers, free_without_shutdown_runs_queued_work,
          bounded_queue_try_submit_and_timeout, blocking_submit_waits_for_room,
          shutdown_wakes_blocked_submitters, cancel_requested_inside_a_running_task)
