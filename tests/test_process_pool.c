/* test_process_pool.c - the process pool: values and bytes across, crash
 * isolation, timeouts, cancel, kill, initializer, per-child limits, and a
 * named error (never a hang) at every failure point. */
#include "helpers.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void *square(void *arg) {
  long x = (long)(intptr_t)arg;
  return (void *)(intptr_t)(x * x);
}
static void *my_pid(void *arg) {
  (void)arg;
  return (void *)(intptr_t)getpid();
}
static void *reverse(void *arg) {
  const fp_bytes *in = arg;
  fp_bytes *out = fp_bytes_new(in->size);
  for (size_t i = 0; i < in->size; i++) out->data[i] = in->data[in->size - 1 - i];
  return out;
}
static void *crash_segv(void *arg) {
  (void)arg;
  raise(SIGSEGV);
  return NULL;
}
static void *crash_abort(void *arg) {
  (void)arg;
  abort();
}
static void *crash_exit(void *arg) {
  exit((int)(intptr_t)arg);
}
static void *crash_kill(void *arg) {
  (void)arg;
  kill(getpid(), SIGKILL);
  return NULL;
}
static void *spin_forever(void *arg) {
  for (volatile unsigned long i = 0;; i++) {
  }
  return arg;
}
static void *crash_after_a_moment(void *arg) {
  (void)arg;
  usleep(100000);
  raise(SIGSEGV);
  return NULL;
}

static void *fail_with_code(void *arg) {
  return fp_raise(-5, "value %ld is bad", (long)(intptr_t)arg);
}

START_TEST(values_cross_and_run_in_other_processes) {
  fp_executor *ex = new_process_pool(2, 0);
  enum { N = 200 };
  fp_future *fs[N];
  for (intptr_t i = 0; i < N; i++) ck_assert_int_eq(fp_submit(ex, square, (void *)i, &fs[i]), 0);
  for (long i = 0; i < N; i++) {
    ck_assert_int_eq(value_of(fs[i]), i * i);
    fp_future_release(fs[i]);
  }
  fp_future *f;
  fp_submit(ex, my_pid, NULL, &f);
  ck_assert_int_ne(value_of(f), getpid());
  fp_future_release(f);
  fp_submit(ex, fail_with_code, (void *)7, &f);
  ck_assert_int_eq(fp_future_result(f, LONG_WAIT, NULL), -5);
  ck_assert_str_eq(fp_future_error(f)->message, "value 7 is bad");
  fp_future_release(f);
  ck_assert_int_eq(fp_executor_free(ex), 0);
}
END_TEST

START_TEST(bytes_cross_both_ways_even_64_mib) {
  fp_executor *ex = new_process_pool(2, 0);
  fp_future *f;
  ck_assert_int_eq(fp_submit_bytes(ex, reverse, "abc", 3, &f), 0);
  void *r;
  ck_assert_int_eq(fp_future_result(f, LONG_WAIT, &r), 0);
  ck_assert_uint_eq(((fp_bytes *)r)->size, 3);
  ck_assert_int_eq(memcmp(((fp_bytes *)r)->data, "cba", 3), 0);
  fp_future_release(f); /* frees the result too */
  size_t big = 64u << 20;
  unsigned char *data = malloc(big);
  for (size_t i = 0; i < big; i++) data[i] = (unsigned char)(i * 7);
  ck_assert_int_eq(fp_submit_bytes(ex, reverse, data, big, &f), 0);
  ck_assert_int_eq(fp_future_result(f, LONG_WAIT * 2, &r), 0);
  fp_bytes *out = r;
  ck_assert_uint_eq(out->size, big);
  for (size_t i = 0; i < big; i += 4099) ck_assert_int_eq(out->data[i], data[big - 1 - i]);
  fp_future_release(f);
  free(data);
  /* the same task runs on a thread pool */
  fp_executor *tp = new_pool(1);
  fp_submit_bytes(tp, reverse, "xy", 2, &f);
  ck_assert_int_eq(fp_future_result(f, LONG_WAIT, &r), 0);
  ck_assert_int_eq(memcmp(((fp_bytes *)r)->data, "yx", 2), 0);
  fp_future_release(f);
  fp_executor_free(tp);
  fp_executor_free(ex);
}
END_TEST

START_TEST(futures_mix_with_thread_pools_and_the_task_manager) {
  fp_executor *pp = new_process_pool(2, 0), *tp = new_pool(2);
  fp_future *fs[4];
  fp_submit(pp, square, (void *)3, &fs[0]);
  fp_submit(tp, task_double, (void *)5, &fs[1]);
  fp_submit(pp, crash_segv, NULL, &fs[2]);
  fp_submit(tp, task_identity, NULL, &fs[3]);
  size_t nd;
  ck_assert_int_eq(fp_wait(fs, 4, FP_ALL_COMPLETED, LONG_WAIT, NULL, &nd, NULL, NULL), 0);
  ck_assert_uint_eq(nd, 4);
  fp_as_completed *it;
  fp_as_completed_new(fs, 4, LONG_WAIT, &it);
  fp_future *f;
  int n = 0;
  while (fp_as_completed_next(it, &f) == 0) n++;
  ck_assert_int_eq(n, 4);
  fp_as_completed_free(it);
  ck_assert_int_eq(fp_future_result(fs[2], 0, NULL), FP_ECRASHED);
  for (int i = 0; i < 4; i++) fp_future_release(fs[i]);

  fp_tm_options opt;
  fp_tm_options_init(&opt);
  opt.monitor_interval = 0;
  opt.error_policy = FP_POLICY_LOG;
  capture_start();
  fp_task_manager *tm;
  fp_tm_new(pp, &opt, &tm);
  for (intptr_t i = 0; i < 4; i++) fp_tm_submit(tm, i == 2 ? crash_abort : square, (void *)i, LONG_WAIT, NULL);
  ck_assert_int_eq(fp_tm_run(tm, LONG_WAIT), 0);
  fp_tm_stats st;
  fp_tm_get_stats(tm, &st);
  ck_assert_uint_eq(st.completed, 4);
  ck_assert_uint_eq(st.failed, 1);
  fp_tm_free(tm);
  ck_assert(captured("killed by SIGABRT"));
  fp_executor_free(tp);
  fp_executor_free(pp);
}
END_TEST

START_TEST(a_crash_fails_its_task_names_it_and_the_pool_goes_on) {
  capture_start();
  fp_executor *ex = new_process_pool(2, 0);
  struct {
    fp_fn fn;
    void *arg;
    const char *says;
  } crashes[] = {
      {crash_segv, NULL, "killed by SIGSEGV (signal 11)"},
      {crash_abort, NULL, "killed by SIGABRT (signal 6)"},
      {crash_exit, (void *)3, "exited with status 3"},
      {crash_kill, NULL, "killed by SIGKILL (signal 9)"},
  };
  for (size_t i = 0; i < 4; i++) {
    fp_future *bad, *good;
    fp_submit(ex, crashes[i].fn, crashes[i].arg, &bad);
    fp_submit(ex, square, (void *)9, &good);
    ck_assert_int_eq(fp_future_result(bad, LONG_WAIT, NULL), FP_ECRASHED);
    ck_assert_msg(strstr(fp_future_error(bad)->message, crashes[i].says), "%s",
                  fp_future_error(bad)->message);
    ck_assert_int_eq(value_of(good), 81);
    fp_future_release(bad);
    fp_future_release(good);
  }
  fp_executor_free(ex);
}
END_TEST

START_TEST(break_on_crash_breaks_the_pool) {
  capture_start();
  fp_process_pool_options opt;
  fp_process_pool_options_init(&opt);
  opt.max_workers = 1;
  opt.break_on_crash = true;
  fp_executor *ex;
  fp_process_pool_new(&opt, &ex);
  fp_future *bad, *pending[3], *later;
  fp_submit(ex, crash_segv, NULL, &bad);
  for (int i = 0; i < 3; i++) fp_submit(ex, square, (void *)2, &pending[i]);
  ck_assert_int_eq(fp_future_result(bad, LONG_WAIT, NULL), FP_ECRASHED);
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(fp_future_result(pending[i], LONG_WAIT, NULL), FP_EBROKEN);
    fp_future_release(pending[i]);
  }
  ck_assert_int_eq(fp_submit(ex, square, (void *)2, &later), FP_EBROKEN);
  ck_assert_ptr_nonnull(strstr(fp_last_error_message(), "the process pool is broken"));
  fp_future_release(bad);
  fp_executor_free(ex);
}
END_TEST

START_TEST(a_task_past_its_timeout_is_killed_and_replaced) {
  fp_process_pool_options opt;
  fp_process_pool_options_init(&opt);
  opt.max_workers = 1;
  opt.task_timeout = 0.2;
  fp_executor *ex;
  fp_process_pool_new(&opt, &ex);
  fp_future *slow, *next;
  fp_submit(ex, spin_forever, NULL, &slow);
  fp_submit(ex, square, (void *)4, &next);
  double t0 = now_s();
  ck_assert_int_eq(fp_future_result(slow, LONG_WAIT, NULL), FP_ETIMEDOUT);
  ck_assert(now_s() - t0 < LONG_WAIT / 2);
  ck_assert_ptr_nonnull(strstr(fp_future_error(slow)->message, "exceeded its timeout of 0.2 s"));
  ck_assert_int_eq(value_of(next), 16); /* on a replacement */
  fp_future_release(slow);
  fp_future_release(next);
  fp_executor_free(ex);
}
END_TEST

static void *sleep_50ms(void *arg) {
  usleep(50000);
  return arg;
}

/* The timeout is per item: a chunk of items that each fit in it is fine,
 * however long the whole chunk takes. */
START_TEST(task_timeout_is_per_item_in_a_chunk) {
  fp_process_pool_options popt;
  fp_process_pool_options_init(&popt);
  popt.max_workers = 1;
  popt.task_timeout = 0.5;
  fp_executor *ex;
  fp_process_pool_new(&popt, &ex);
  fp_map_options opt;
  fp_map_options_init(&opt);
  opt.chunksize = 20; /* 20 x 50 ms = 1 s > 0.5 s */
  counter c = {0, 20, 0, 0};
  fp_map *m;
  fp_map_new(ex, sleep_50ms, count_up, &c, &opt, &m);
  void *r;
  for (long i = 0; i < 20; i++) ck_assert_int_eq(fp_map_next(m, &r), 0);
  ck_assert_int_eq(fp_map_next(m, &r), FP_EOF);
  fp_map_free(m);
  fp_executor_free(ex);
}
END_TEST

START_TEST(cancelling_a_running_task_kills_its_worker) {
  fp_executor *ex = new_process_pool(1, 0);
  fp_future *running, *queued, *after;
  fp_submit(ex, spin_forever, NULL, &running);
  fp_submit(ex, square, (void *)5, &queued);
  ck_assert(wait_until(future_running, running, LONG_WAIT));
  ck_assert(fp_future_cancel(queued));  /* pending: plainly cancelled */
  ck_assert(!fp_future_cancel(running)); /* running: false, but its worker dies */
  ck_assert_int_eq(fp_future_result(running, LONG_WAIT, NULL), FP_ECANCELED);
  ck_assert_ptr_nonnull(strstr(fp_future_error(running)->message, "its worker was killed"));
  ck_assert(fp_future_cancelled(queued));
  fp_submit(ex, square, (void *)6, &after);
  ck_assert_int_eq(value_of(after), 36);
  fp_future_release(running);
  fp_future_release(queued);
  fp_future_release(after);
  fp_executor_free(ex);
}
END_TEST

static void kill_test(int (*stop)(fp_executor *)) {
  fp_executor *ex = new_process_pool(2, 0);
  fp_future *running[2], *queued[4];
  for (int i = 0; i < 2; i++) fp_submit(ex, spin_forever, NULL, &running[i]);
  for (int i = 0; i < 4; i++) fp_submit(ex, square, (void *)1, &queued[i]);
  ck_assert(wait_until(future_running, running[0], LONG_WAIT));
  ck_assert(wait_until(future_running, running[1], LONG_WAIT));
  double t0 = now_s();
  ck_assert_int_eq(stop(ex), 0);
  ck_assert(now_s() - t0 < LONG_WAIT / 2);
  for (int i = 0; i < 2; i++) {
    ck_assert_int_eq(fp_future_result(running[i], 0, NULL), FP_ECANCELED);
    fp_future_release(running[i]);
  }
  for (int i = 0; i < 4; i++) {
    ck_assert(fp_future_cancelled(queued[i]));
    fp_future_release(queued[i]);
  }
  fp_future *f;
  ck_assert_int_eq(fp_submit(ex, square, NULL, &f), FP_ESHUTDOWN);
  fp_executor_free(ex);
}

START_TEST(kill_workers_stops_everything_now) { kill_test(fp_process_pool_kill_workers); }
END_TEST

START_TEST(terminate_workers_stops_everything_now) {
  kill_test(fp_process_pool_terminate_workers);
}
END_TEST

/* Pipelining: a busy worker running short jobs gets the next one sent
 * ahead. When it crashes, times out or is cancelled, what was sent behind
 * runs on another worker: nothing is lost or blamed. */
START_TEST(jobs_sent_ahead_survive_what_happens_before_them) {
  fp_process_pool_options opt;
  fp_process_pool_options_init(&opt);
  opt.max_workers = 1;
  opt.task_timeout = 2;
  fp_executor *ex;
  ck_assert_int_eq(fp_process_pool_new(&opt, &ex), 0);
  for (int round = 0; round < 30; round++) {
    fp_future *warm, *bad, *behind[3];
    fp_submit(ex, square, (void *)2, &warm); /* a short last job: pipelining on */
    ck_assert_int_eq(value_of(warm), 4);
    int what = round % 3;
    fp_submit(ex, what == 0 ? crash_after_a_moment : spin_forever, NULL, &bad);
    for (intptr_t i = 0; i < 3; i++) fp_submit(ex, square, (void *)(i + 3), &behind[i]);
    if (what == 2) { /* cancel the running one */
      ck_assert(wait_until(future_running, bad, LONG_WAIT));
      fp_future_cancel(bad);
    }
    int rc = fp_future_result(bad, LONG_WAIT, NULL);
    ck_assert_int_eq(rc, what == 0 ? FP_ECRASHED : what == 1 ? FP_ETIMEDOUT : FP_ECANCELED);
    for (intptr_t i = 0; i < 3; i++) {
      ck_assert_int_eq(value_of(behind[i]), (i + 3) * (i + 3));
      fp_future_release(behind[i]);
    }
    fp_future_release(warm);
    fp_future_release(bad);
    if (what == 1) round += 3; /* a timeout costs 2 s: fewer of them */
  }
  fp_executor_free(ex);
}
END_TEST

/* A job sent ahead and cancelled while it waits never gives a result. */
START_TEST(a_job_sent_ahead_can_still_be_cancelled) {
  fp_executor *ex = new_process_pool(1, 0);
  for (int round = 0; round < 10; round++) {
    fp_future *warm, *first, *ahead;
    fp_submit(ex, square, (void *)2, &warm);
    ck_assert_int_eq(value_of(warm), 4);
    fp_submit(ex, sleep_50ms, (void *)3, &first);
    fp_submit(ex, square, (void *)3, &ahead); /* sent ahead, as a rule, at once */
    wait_until(future_running, ahead, 0.04); /* running once sent; first takes 50 ms */
    fp_future_cancel(ahead);
    ck_assert_int_eq(fp_future_result(ahead, LONG_WAIT, NULL), FP_ECANCELED);
    ck_assert_int_eq(value_of(first), 3);
    fp_future_release(warm);
    fp_future_release(first);
    fp_future_release(ahead);
  }
  fp_executor_free(ex);
}
END_TEST

/* A job is never sent to wait behind a long one: with one worker busy for
 * long, short tasks run on the other as they come. */
START_TEST(short_tasks_do_not_wait_behind_a_long_one) {
  fp_executor *ex = new_process_pool(2, 0);
  fp_future *warm[4];
  for (int i = 0; i < 4; i++) fp_submit(ex, square, (void *)1, &warm[i]);
  for (int i = 0; i < 4; i++) {
    value_of(warm[i]);
    fp_future_release(warm[i]);
  }
  fp_future *slow;
  fp_submit(ex, spin_forever, NULL, &slow);
  ck_assert(wait_until(future_running, slow, LONG_WAIT));
  /* The dispatcher sends a job ahead only behind one that has run under a
   * millisecond: the condition here is time itself, so the slow task is
   * given 10 ms of it. */
  sleep_ms(10);
  fp_future *fs[50];
  for (intptr_t i = 0; i < 50; i++) fp_submit(ex, square, (void *)i, &fs[i]);
  for (intptr_t i = 0; i < 50; i++) {
    ck_assert_int_eq(value_of(fs[i]), i * i);
    fp_future_release(fs[i]);
  }
  ck_assert(fp_future_running(slow));
  fp_future_cancel(slow);
  ck_assert_int_eq(fp_future_result(slow, LONG_WAIT, NULL), FP_ECANCELED);
  fp_future_release(slow);
  fp_executor_free(ex);
}
END_TEST

START_TEST(max_tasks_per_child_replaces_workers) {
  fp_process_pool_options opt;
  fp_process_pool_options_init(&opt);
  opt.max_workers = 1;
  opt.max_tasks_per_child = 2;
  fp_executor *ex;
  fp_process_pool_new(&opt, &ex);
  long pids[6];
  for (int i = 0; i < 6; i++) {
    fp_future *f;
    fp_submit(ex, my_pid, NULL, &f);
    pids[i] = value_of(f);
    fp_future_release(f);
  }
  for (int i = 0; i < 6; i += 2) ck_assert_int_eq(pids[i], pids[i + 1]);
  ck_assert_int_ne(pids[0], pids[2]);
  ck_assert_int_ne(pids[2], pids[4]);
  fp_executor_free(ex);
}
END_TEST

static long set_by_initializer;
static int initializer(void *arg) {
  set_by_initializer = (long)(intptr_t)arg;
  return 0;
}
static int failing_initializer(void *arg) {
  (void)arg;
  return -13;
}
static void *read_initialized(void *arg) {
  (void)arg;
  return (void *)(intptr_t)set_by_initializer;
}

START_TEST(initializer_runs_in_each_worker_and_its_failure_breaks) {
  capture_start();
  fp_process_pool_options opt;
  fp_process_pool_options_init(&opt);
  opt.max_workers = 2;
  opt.initializer = initializer;
  opt.initializer_arg = (void *)42;
  fp_executor *ex;
  fp_process_pool_new(&opt, &ex);
  fp_future *f;
  fp_submit(ex, read_initialized, NULL, &f);
  ck_assert_int_eq(value_of(f), 42);
  ck_assert_int_eq(set_by_initializer, 0); /* in the worker, not here */
  fp_future_release(f);
  fp_executor_free(ex);

  opt.initializer = failing_initializer;
  ck_assert_int_eq(fp_process_pool_new(&opt, &ex), 0);
  /* The first worker's initializer may fail before this submit (the pool
   * is broken: the submit is refused) or after it (the future fails). */
  int rc = fp_submit(ex, square, (void *)1, &f);
  if (rc == 0) {
    ck_assert_int_eq(fp_future_result(f, LONG_WAIT, NULL), FP_EBROKEN);
    ck_assert_ptr_nonnull(strstr(fp_future_error(f)->message, "initializer failed with -13"));
    fp_future_release(f);
  } else {
    ck_assert_int_eq(rc, FP_EBROKEN);
    ck_assert_ptr_nonnull(strstr(fp_last_error_message(), "initializer failed with -13"));
  }
  ck_assert_int_eq(fp_submit(ex, square, (void *)1, &f), FP_EBROKEN);
  fp_executor_free(ex);
}
END_TEST

static void *allocate_mib(void *arg) {
  size_t size = (size_t)(intptr_t)arg << 20;
  char *p = malloc(size);
  /* the barrier keeps the compiler from eliding malloc and free (clang does) */
  __asm__ volatile("" : : "r"(p) : "memory");
  if (!p) return fp_raise(-ENOMEM, "could not allocate %zu MiB", size >> 20);
  memset(p, 1, size);
  __asm__ volatile("" : : "r"(p) : "memory");
  free(p);
  return arg;
}

/* RLIMIT_AS cannot work under ASan or TSan (UNDER_SANITIZER): their
 * shadow memory reserves terabytes of address space, so a limited worker
 * cannot even start. The plain build runs this test. */
START_TEST(memory_limit_bounds_each_worker) {
#ifdef UNDER_SANITIZER
  return;
#endif
  fp_process_pool_options opt;
  fp_process_pool_options_init(&opt);
  opt.max_workers = 1;
  opt.memory_limit = (size_t)1 << 30; /* 1 GiB of address space */
  fp_executor *ex;
  fp_process_pool_new(&opt, &ex);
  fp_future *small, *huge;
  fp_submit(ex, allocate_mib, (void *)16, &small);
  fp_submit(ex, allocate_mib, (void *)4096, &huge);
  ck_assert_int_eq(value_of(small), 16);
  ck_assert_int_eq(fp_future_result(huge, LONG_WAIT, NULL), -ENOMEM);
  fp_future_release(small);
  fp_future_release(huge);
  fp_executor_free(ex);
}
END_TEST

/* FUTUREPROOF_TEST_FAULT makes workers fail at one point of the protocol;
 * each must end in a named error, never a hang. */
static void fault_test(const char *fault, bool bytes) {
  capture_start();
  setenv("FUTUREPROOF_TEST_FAULT", fault, 1);
  fp_executor *ex = new_process_pool(1, 0);
  unsetenv("FUTUREPROOF_TEST_FAULT");
  fp_future *f;
  if (bytes)
    fp_submit_bytes(ex, reverse, "abcdef", 6, &f);
  else
    fp_submit(ex, square, (void *)3, &f);
  int rc = fp_future_result(f, LONG_WAIT, NULL);
  ck_assert_msg(rc == FP_ECRASHED, "fault %s: %s", fault, fp_err_name(rc));
  fp_future_release(f);
  ck_assert_int_eq(fp_shutdown_timeout(ex, true, LONG_WAIT), 0);
  fp_executor_free(ex);
}

START_TEST(worker_dies_while_reading_the_task) {
  fault_test("1", false);
  fault_test("1", true);
}
END_TEST

START_TEST(worker_dies_while_writing_its_result) {
  fault_test("2", false);
  fault_test("2", true);
}
END_TEST

START_TEST(parent_cannot_read_the_result) { fault_test("3", false); }
END_TEST

START_TEST(task_cannot_be_sent_to_a_dead_worker) {
  for (int round = 0; round < 5; round++) {
    fp_executor *ex = new_process_pool(1, 0);
    fp_future *f;
    fp_submit(ex, my_pid, NULL, &f);
    pid_t worker = (pid_t)value_of(f);
    fp_future_release(f);
    kill(worker, SIGKILL); /* idle, then the next task goes its way */
    fp_submit(ex, square, (void *)7, &f);
    int rc = fp_future_result(f, LONG_WAIT, NULL);
    /* either it was sent to the dead worker (named crash), or the pool saw
     * the death first and used a replacement */
    ck_assert_msg(rc == 0 || rc == FP_ECRASHED, "%s", fp_err_name(rc));
    fp_future_release(f);
    fp_executor_free(ex);
  }
}
END_TEST

START_TEST(a_crash_right_after_shutdown) {
  capture_start();
  fp_executor *ex = new_process_pool(1, 0);
  fp_future *f;
  fp_submit(ex, crash_after_a_moment, NULL, &f);
  ck_assert(wait_until(future_running, f, LONG_WAIT));
  fp_shutdown(ex, false, false);
  ck_assert_int_eq(fp_future_result(f, LONG_WAIT, NULL), FP_ECRASHED);
  ck_assert_int_eq(fp_shutdown_timeout(ex, false, LONG_WAIT), 0);
  fp_future_release(f);
  fp_executor_free(ex);
}
END_TEST

START_TEST(many_tasks_completing_at_once) {
  fp_executor *ex = new_process_pool(4, 0);
  enum { N = 20000 };
  fp_future **fs = malloc(N * sizeof *fs);
  for (intptr_t i = 0; i < N; i++) fp_submit(ex, square, (void *)(i % 1000), &fs[i]);
  fp_as_completed *it;
  fp_as_completed_new(fs, N, LONG_WAIT * 2, &it);
  fp_future *f;
  int n = 0;
  while (fp_as_completed_next(it, &f) == 0) n++;
  ck_assert_int_eq(n, N);
  fp_as_completed_free(it);
  for (long i = 0; i < N; i++) {
    ck_assert_int_eq(value_of(fs[i]), (i % 1000) * (i % 1000));
    fp_future_release(fs[i]);
  }
  free(fs);
  fp_executor_free(ex);
}
END_TEST

/* A fork server and its workers, as /proc lists them. */
typedef struct family {
  pid_t fork_server;
  char path[64]; /* the fork server's children */
  pid_t workers[16];
  int n;
} family;

static bool two_workers(void *arg) {
  family *f = arg;
  f->n = 0;
  FILE *fp = fopen(f->path, "r");
  int pid;
  while (fp && f->n < 16 && fscanf(fp, "%d", &pid) == 1) f->workers[f->n++] = pid;
  if (fp) fclose(fp);
  return f->n >= 2;
}

static bool family_gone(void *arg) {
  family *f = arg;
  bool gone = process_gone(f->fork_server);
  for (int i = 0; i < f->n; i++) gone = gone && process_gone(f->workers[i]);
  return gone;
}

START_TEST(workers_never_outlive_the_parent) {
  int report[2];
  ck_assert_int_eq(pipe(report), 0);
  pid_t parent = fork();
  if (parent == 0) { /* the pool's parent, to be killed with SIGKILL */
    fp_executor *ex = new_process_pool(2, 0);
    fp_future *fs[2];
    for (int i = 0; i < 2; i++) fp_submit(ex, spin_forever, NULL, &fs[i]);
    /* both workers are busy now; the test finds them through /proc */
    char line[64];
    int len = snprintf(line, sizeof line, "%d\n", (int)getpid());
    if (write(report[1], line, (size_t)len) < 0) _exit(2);
    for (;;) pause();
  }
  close(report[1]);
  char buf[64] = {0};
  ck_assert_int_gt(read(report[0], buf, sizeof buf - 1), 0);
  close(report[0]);
  /* the fork server is the parent's child; the workers are its children */
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)parent, (int)parent);
  FILE *fp = fopen(path, "r");
  int pid;
  family f = {0};
  while (fp && fscanf(fp, "%d", &pid) == 1) f.fork_server = pid;
  if (fp) fclose(fp);
  ck_assert_int_gt(f.fork_server, 0);
  snprintf(f.path, sizeof f.path, "/proc/%d/task/%d/children", (int)f.fork_server,
           (int)f.fork_server);
  ck_assert(wait_until(two_workers, &f, LONG_WAIT));
  kill(parent, SIGKILL);
  waitpid(parent, NULL, 0);
  bool all_gone = wait_until(family_gone, &f, LONG_WAIT);
  ck_assert_msg(all_gone, "a worker or the fork server outlived its parent");
}
END_TEST

static void *square_but_crash_at_250(void *arg) {
  if ((intptr_t)arg == 250) raise(SIGSEGV);
  return square(arg);
}

START_TEST(chunked_map_keeps_order_and_reports_a_crash_in_its_item) {
  capture_start();
  fp_executor *ex = new_process_pool(2, 0);
  fp_map_options opt;
  fp_map_options_init(&opt);
  ck_assert_int_eq(opt.chunksize, FP_CHUNKSIZE_AUTO);
  opt.chunksize = 100;
  counter c = {0, 1000, 0, 0};
  fp_map *m;
  ck_assert_int_eq(fp_map_new(ex, square_but_crash_at_250, count_up, &c, &opt, &m), 0);
  void *r;
  int crashed = 0, skipped = 0;
  for (long i = 0; i < 1000; i++) {
    int rc = fp_map_next(m, &r);
    if (i == 250) {
      ck_assert_int_eq(rc, FP_ECRASHED);
      crashed++;
    } else if (rc == FP_ECANCELED) { /* after it, in its chunk: never ran */
      ck_assert(i > 250 && i < 300);
      skipped++;
    } else {
      ck_assert_int_eq(rc, 0);
      ck_assert_int_eq((long)(intptr_t)r, i * i);
    }
  }
  ck_assert_int_eq(fp_map_next(m, &r), FP_EOF);
  ck_assert_int_eq(crashed, 1);
  ck_assert_int_eq(skipped, 49);
  fp_map_free(m);
  /* a thread pool takes the option and goes one by one */
  fp_executor *tp = new_pool(2);
  c.next = 0;
  c.limit = 50;
  ck_assert_int_eq(fp_map_new(tp, square, count_up, &c, &opt, &m), 0);
  for (long i = 0; i < 50; i++) {
    ck_assert_int_eq(fp_map_next(m, &r), 0);
    ck_assert_int_eq((long)(intptr_t)r, i * i);
  }
  fp_map_free(m);
  fp_executor_free(tp);
  opt.chunksize = -1;
  ck_assert_int_eq(fp_map_new(ex, square, count_up, &c, &opt, &m), FP_EINVAL);
  ck_assert(captured("chunksize must be 1 or more, or 0 for automatic (got -1)"));
  fp_executor_free(ex);
}
END_TEST

/* A chunk bigger than a socket buffer: the worker must read it all before
 * replying, or both sides block writing (a hang this test once caught). */
START_TEST(a_chunk_larger_than_the_socket_buffer) {
  fp_executor *ex = new_process_pool(2, 0);
  fp_map_options opt;
  fp_map_options_init(&opt);
  opt.chunksize = 20000; /* 320 KB of item headers in one request */
  counter c = {0, 100000, 0, 0};
  fp_map *m;
  ck_assert_int_eq(fp_map_new(ex, square, count_up, &c, &opt, &m), 0);
  void *r;
  for (long i = 0; i < 100000; i++) {
    ck_assert_int_eq(fp_map_next(m, &r), 0);
    ck_assert_int_eq((long)(intptr_t)r, i * i);
  }
  ck_assert_int_eq(fp_map_next(m, &r), FP_EOF);
  fp_map_free(m);
  fp_executor_free(ex);
}
END_TEST

START_TEST(bad_arguments) {
  capture_start();
  fp_process_pool_options opt;
  fp_process_pool_options_init(&opt);
  fp_executor *ex;
  opt.max_workers = 0;
  ck_assert_int_eq(fp_process_pool_new(&opt, &ex), FP_EINVAL);
  fp_process_pool_options_init(&opt);
  opt.task_timeout = -1;
  ck_assert_int_eq(fp_process_pool_new(&opt, &ex), FP_EINVAL);
  ck_assert_int_eq(fp_process_pool_new(NULL, NULL), FP_EINVAL);
  fp_executor *tp = new_pool(1);
  ck_assert_int_eq(fp_process_pool_kill_workers(tp), FP_EINVAL);
  ck_assert_int_eq(fp_process_pool_kill_workers(NULL), FP_EINVAL);
  fp_future *f;
  ck_assert_int_eq(fp_submit_bytes(tp, reverse, NULL, 3, &f), FP_EINVAL);
  ck_assert_int_eq(captured_lines(), 6);
  fp_executor_free(tp);
}
END_TEST

/* With no chunksize given, tiny items go many to a worker at once: the
 * results of consecutive items mostly come from the same process. One by
 * one (chunksize 1), two thirds of neighbours differ here. */
START_TEST(an_automatic_chunksize_grows_for_tiny_items) {
  fp_executor *ex = new_process_pool(2, 0);
  counter c = {0, 20000, 0, 0};
  fp_map *m;
  ck_assert_int_eq(fp_map_new(ex, my_pid, count_up, &c, NULL, &m), 0); /* defaults: automatic */
  void *r, *prev = NULL;
  long switches = 0;
  for (long i = 0; i < 20000; i++) {
    ck_assert_int_eq(fp_map_next(m, &r), 0);
    switches += i && r != prev;
    prev = r;
  }
  ck_assert_int_eq(fp_map_next(m, &r), FP_EOF);
  ck_assert_msg(switches < 2000, "%ld of 20000 neighbours ran in different workers", switches);
  fp_map_free(m);
  fp_executor_free(ex);
}
END_TEST

/* The task manager's map does the same on worker processes, within its
 * window: tasks next to each other in the input mostly ran in the same
 * worker. */
START_TEST(the_task_manager_chunks_tiny_items_for_workers) {
  enum { N = 5000 };
  fp_executor *ex = new_process_pool(2, 0);
  fp_tm_options opt;
  fp_tm_options_init(&opt);
  opt.max_in_flight = 64; /* room for chunks: the default window is 2 x workers */
  fp_task_manager *tm;
  ck_assert_int_eq(fp_tm_new(ex, &opt, &tm), 0);
  counter c = {0, N, 0, 0};
  ck_assert_int_eq(fp_tm_map(tm, my_pid, count_up, &c, NULL), 0);
  static intptr_t pid_of[N + 1];
  fp_task *t;
  int got = 0;
  while (fp_tm_next(tm, LONG_WAIT, &t) == 0) {
    void *r;
    ck_assert_int_eq(fp_task_result(t, &r), 0);
    ck_assert_uint_le(fp_task_index(t), N);
    pid_of[fp_task_index(t)] = (intptr_t)r;
    got++;
    fp_task_release(t);
  }
  ck_assert_int_eq(got, N);
  long switches = 0;
  for (int i = 2; i <= N; i++) switches += pid_of[i] != pid_of[i - 1];
  ck_assert_msg(switches < N / 5, "%ld of %d neighbours ran in different workers", switches, N);
  fp_tm_free(tm);
  fp_executor_free(ex);
}
END_TEST

TEST_MAIN("process_pool", an_automatic_chunksize_grows_for_tiny_items,
          the_task_manager_chunks_tiny_items_for_workers,
          values_cross_and_run_in_other_processes, bytes_cross_both_ways_even_64_mib,
          futures_mix_with_thread_pools_and_the_task_manager,
          a_crash_fails_its_task_names_it_and_the_pool_goes_on, break_on_crash_breaks_the_pool,
          a_task_past_its_timeout_is_killed_and_replaced, task_timeout_is_per_item_in_a_chunk,
          cancelling_a_running_task_kills_its_worker,
          kill_workers_stops_everything_now, terminate_workers_stops_everything_now,
          jobs_sent_ahead_survive_what_happens_before_them,
          a_job_sent_ahead_can_still_be_cancelled, short_tasks_do_not_wait_behind_a_long_one, max_tasks_per_child_replaces_workers,
          initializer_runs_in_each_worker_and_its_failure_breaks, memory_limit_bounds_each_worker,
          worker_dies_while_reading_the_task, worker_dies_while_writing_its_result,
          parent_cannot_read_the_result, task_cannot_be_sent_to_a_dead_worker,
          a_crash_right_after_shutdown, many_tasks_completing_at_once,
          workers_never_outlive_the_parent, chunked_map_keeps_order_and_reports_a_crash_in_its_item,
          a_chunk_larger_than_the_socket_buffer,
          bad_arguments)
