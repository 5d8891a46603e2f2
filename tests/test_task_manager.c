/* test_task_manager.c - the task manager: policies, task handles, order of
 * submission, the window (checked inside tasks), lazy map, fail fast,
 * monitor lines, progress, SIGINT. */
#include "helpers.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static fp_task_manager *new_tm(fp_executor *ex, fp_error_policy policy, size_t window) {
  fp_tm_options opt;
  fp_tm_options_init(&opt);
  opt.error_policy = policy;
  opt.max_in_flight = window;
  opt.monitor_interval = 0;
  fp_task_manager *tm;
  ck_assert_int_eq(fp_tm_new(ex, &opt, &tm), 0);
  return tm;
}

/* A manager that handles SIGINT, without a monitor. */
static fp_task_manager *interruptible_tm(fp_executor *ex) {
  fp_tm_options opt;
  fp_tm_options_init(&opt);
  opt.monitor_interval = 0;
  opt.handle_interrupt = true;
  fp_task_manager *tm;
  ck_assert_int_eq(fp_tm_new(ex, &opt, &tm), 0);
  return tm;
}

START_TEST(policy_from_string_any_case) {
  fp_error_policy p;
  ck_assert_int_eq(fp_error_policy_parse("raise", &p), 0);
  ck_assert_int_eq(p, FP_POLICY_RAISE);
  ck_assert_int_eq(fp_error_policy_parse("LOG", &p), 0);
  ck_assert_int_eq(p, FP_POLICY_LOG);
  ck_assert_int_eq(fp_error_policy_parse("Ignore", &p), 0);
  ck_assert_int_eq(p, FP_POLICY_IGNORE);
  capture_start();
  ck_assert_int_eq(fp_error_policy_parse("rais", &p), FP_EINVAL);
  ck_assert_int_eq(fp_error_policy_parse("raisee", &p), FP_EINVAL);
  ck_assert_int_eq(fp_error_policy_parse("", &p), FP_EINVAL);
  ck_assert_int_eq(fp_error_policy_parse(NULL, &p), FP_EINVAL);
  ck_assert(captured("unknown error policy 'rais' (use raise, log or ignore)"));
  ck_assert_str_eq(fp_error_policy_name(FP_POLICY_LOG), "log");
}
END_TEST

START_TEST(task_handles_expose_fn_arg_result_state_and_times) {
  fp_executor *ex = new_pool(2);
  fp_task_manager *tm = new_tm(ex, FP_POLICY_RAISE, 8);
  fp_task *t;
  ck_assert_int_eq(fp_tm_submit(tm, task_double, (void *)21, -1, &t), 0);
  ck_assert(fp_task_fn(t) == task_double);
  ck_assert_ptr_eq(fp_task_arg(t), (void *)21);
  ck_assert_uint_eq(fp_task_index(t), 1);
  fp_task *got;
  ck_assert_int_eq(fp_tm_next(tm, LONG_WAIT, &got), 0);
  ck_assert_ptr_eq(got, t);
  ck_assert(fp_task_complete(t));
  ck_assert_int_eq(fp_task_state(t), FP_FINISHED);
  void *r;
  ck_assert_int_eq(fp_task_result(t, &r), 0);
  ck_assert_ptr_eq(r, (void *)42);
  ck_assert_ptr_null(fp_task_error(t));
  double q, s, f;
  fp_task_times(t, &q, &s, &f);
  ck_assert(q > 0 && q <= s && s <= f && f <= fp_now());
  fp_task_release(got);
  ck_assert_int_eq(fp_tm_next(tm, LONG_WAIT, &got), FP_EOF);
  ck_assert_ptr_null(got);
  fp_task_release(t);
  fp_tm_free(tm);
  fp_executor_free(ex);
}
END_TEST

static atomic_int start_order[64];
static atomic_int started;
static void *record_start(void *arg) {
  atomic_store(&start_order[atomic_fetch_add(&started, 1)], (int)(intptr_t)arg);
  return arg;
}

START_TEST(submit_and_map_keep_submission_order) {
  atomic_store(&started, 0);
  fp_executor *ex = new_pool(1); /* one worker: start order is run order */
  fp_task_manager *tm = new_tm(ex, FP_POLICY_RAISE, 16);
  counter c = {100, 105, 0, 0};
  ck_assert_int_eq(fp_tm_submit(tm, record_start, (void *)1, -1, NULL), 0);
  ck_assert_int_eq(fp_tm_map(tm, record_start, count_up, &c, NULL), 0);
  ck_assert_int_eq(fp_tm_submit(tm, record_start, (void *)2, -1, NULL), 0);
  ck_assert_int_eq(fp_tm_run(tm, LONG_WAIT), 0);
  int want[] = {1, 100, 101, 102, 103, 104, 2};
  ck_assert_int_eq(atomic_load(&started), 7);
  for (int i = 0; i < 7; i++) ck_assert_int_eq(atomic_load(&start_order[i]), want[i]);
  fp_tm_free(tm);
  fp_executor_free(ex);
}
END_TEST

/* Counted from the moment a task starts until the test consumes it: the
 * task sees how many are in flight, which must never pass the window. */
static atomic_int unconsumed, worst;
static void *task_check_window(void *arg) {
  int now = atomic_fetch_add(&unconsumed, 1) + 1;
  int w = atomic_load(&worst);
  while (now > w && !atomic_compare_exchange_weak(&worst, &w, now)) {
  }
  if ((intptr_t)arg % 3 == 0) sleep_ms(1);
  return arg;
}

START_TEST(the_window_is_never_exceeded) {
  atomic_store(&unconsumed, 0);
  atomic_store(&worst, 0);
  fp_executor *ex = new_pool(4);
  fp_task_manager *tm = new_tm(ex, FP_POLICY_RAISE, 5);
  counter c = {0, 3000, 0, 0};
  fp_tm_map(tm, task_check_window, count_up, &c, NULL);
  fp_task *t;
  int n = 0;
  while (fp_tm_next(tm, LONG_WAIT, &t) == 0) {
    atomic_fetch_sub(&unconsumed, 1);
    /* read ahead: never more than the window past what was consumed */
    ck_assert_int_le(atomic_load(&c.read), n + 1 + 5);
    n++;
    if (n % 100 == 0) sleep_ms(1); /* a slow consumer: tasks must wait */
    fp_task_release(t);
  }
  ck_assert_int_eq(n, 3000);
  ck_assert_int_le(atomic_load(&worst), 5);
  ck_assert_int_ge(atomic_load(&worst), 2);
  fp_tm_stats st;
  fp_tm_get_stats(tm, &st);
  ck_assert_uint_le(st.peak_in_flight, 5);
  ck_assert_uint_eq(st.completed, 3000);
  fp_tm_free(tm);
  fp_executor_free(ex);
}
END_TEST

START_TEST(map_over_an_endless_input_stops_after_n_results) {
  fp_executor *ex = new_pool(2);
  fp_task_manager *tm = new_tm(ex, FP_POLICY_RAISE, 4);
  counter c = {0, -1, 0, 0};
  fp_tm_map(tm, task_double, count_up, &c, NULL);
  fp_task *t;
  for (int i = 0; i < 1000; i++) {
    ck_assert_int_eq(fp_tm_next(tm, LONG_WAIT, &t), 0);
    fp_task_release(t);
  }
  fp_tm_free(tm); /* abandons the rest: no hang */
  fp_executor_free(ex);
  ck_assert_int_le(atomic_load(&c.read), 1000 + 4 + 1);
}
END_TEST

START_TEST(submit_waits_for_room_with_a_deadline) {
  fp_executor *ex = new_pool(2);
  fp_task_manager *tm = new_tm(ex, FP_POLICY_RAISE, 2);
  ck_assert_int_eq(fp_tm_submit(tm, task_identity, NULL, 0, NULL), 0);
  ck_assert_int_eq(fp_tm_submit(tm, task_identity, NULL, 0, NULL), 0);
  ck_assert_int_eq(fp_tm_submit(tm, task_identity, NULL, 0, NULL), FP_EAGAIN);
  double t0 = now_s();
  ck_assert_int_eq(fp_tm_submit(tm, task_identity, NULL, 0.05, NULL), FP_ETIMEDOUT);
  ck_assert(now_s() - t0 >= 0.045);
  ck_assert_ptr_nonnull(strstr(fp_last_error_message(), "the window is full (2 tasks in flight)"));
  fp_task *t;
  ck_assert_int_eq(fp_tm_next(tm, LONG_WAIT, &t), 0); /* consuming makes room */
  fp_task_release(t);
  ck_assert_int_eq(fp_tm_submit(tm, task_identity, NULL, 0, NULL), 0);
  ck_assert_int_eq(fp_tm_run(tm, LONG_WAIT), 0);
  fp_tm_free(tm);
  fp_executor_free(ex);
}
END_TEST

typedef struct consumer_arg {
  fp_task_manager *tm;
  int consumed, expected;
} consumer_arg;

/* FP_EOF means "nothing in flight now": a consumer that catches up with
 * its producer sees it, and goes on until the producer is done. */
static void *consume_all(void *p) {
  consumer_arg *c = p;
  double end = now_s() + LONG_WAIT;
  while (c->consumed < c->expected && now_s() < end) {
    fp_task *t;
    int rc = fp_tm_next(c->tm, 0.01, &t);
    if (rc == 0) c->consumed++;
    else ck_assert(rc == FP_EOF || rc == FP_ETIMEDOUT);
    if (rc == FP_EOF) sleep_ms(1);
    fp_task_release(t);
  }
  return NULL;
}

START_TEST(a_consumer_in_another_thread_unblocks_submit) {
  fp_executor *ex = new_pool(2);
  fp_task_manager *tm = new_tm(ex, FP_POLICY_RAISE, 3);
  ck_assert_int_eq(fp_tm_submit(tm, task_identity, NULL, -1, NULL), 0);
  consumer_arg c = {tm, 0, 200};
  pthread_t th;
  pthread_create(&th, NULL, consume_all, &c);
  for (int i = 1; i < 200; i++)
    ck_assert_int_eq(fp_tm_submit(tm, task_sleep_ms, (void *)(intptr_t)(i % 2), LONG_WAIT, NULL), 0);
  pthread_join(th, NULL);
  ck_assert_int_eq(c.consumed, 200);
  fp_tm_free(tm);
  fp_executor_free(ex);
}
END_TEST

/* Every fifth task fails; the others take a while. */
static atomic_int ran_count;
static void *every_fifth_fails(void *arg) {
  atomic_fetch_add(&ran_count, 1);
  intptr_t i = (intptr_t)arg;
  if (i % 5 == 4) return fp_raise(-5, "task for item %ld failed", (long)i);
  for (int k = 0; k < 20 && !fp_cancel_requested(); k++) sleep_ms(1);
  return arg;
}

START_TEST(raise_stops_everything_at_the_first_failure) {
  atomic_store(&ran_count, 0);
  fp_executor *ex = new_pool(2);
  fp_task_manager *tm = new_tm(ex, FP_POLICY_RAISE, 8);
  counter c = {0, 10000, 0, 0};
  fp_tm_map(tm, every_fifth_fails, count_up, &c, NULL);
  double t0 = now_s();
  int rc = fp_tm_run(tm, LONG_WAIT);
  ck_assert_int_eq(rc, -5);
  ck_assert_ptr_nonnull(strstr(fp_last_error_message(), "task for item 4 failed"));
  ck_assert(now_s() - t0 < LONG_WAIT / 2);
  fp_task *failed;
  ck_assert_int_eq(fp_tm_failed_task(tm, &failed), 0);
  ck_assert_ptr_eq(fp_task_arg(failed), (void *)4);
  ck_assert_int_eq(fp_task_error(failed)->code, -5);
  /* later calls say the same; nothing more is submitted */
  fp_task *t;
  ck_assert_int_eq(fp_tm_next(tm, 0, &t), -5);
  ck_assert_ptr_eq(t, failed);
  fp_task_release(t);
  ck_assert_int_eq(fp_tm_submit(tm, task_identity, NULL, 0, NULL), -5);
  fp_tm_stats st;
  fp_tm_get_stats(tm, &st);
  ck_assert_int_eq(st.stop_code, -5);
  ck_assert_uint_lt(st.submitted, 30);
  ck_assert_uint_eq(st.failed, 1);
  fp_task_release(failed);
  fp_tm_free(tm);
  fp_executor_free(ex);
  ck_assert_int_lt(atomic_load(&ran_count), 30); /* not the 10000 */
}
END_TEST

static gate long_gate;
static void *long_task_until_asked(void *arg) {
  pthread_mutex_lock(&long_gate.mu);
  long_gate.arrived++;
  pthread_cond_broadcast(&long_gate.cv);
  pthread_mutex_unlock(&long_gate.mu);
  double end = now_s() + LONG_WAIT;
  while (!fp_cancel_requested() && now_s() < end) sleep_ms(1);
  return fp_cancel_requested() ? fp_raise(FP_ECANCELED, "asked to stop") : arg;
}
static gate submitted_gate; /* opened once the test has submitted all */
static void *fail_after_gate(void *arg) {
  ck_assert(gate_wait_arrived(&long_gate, 1));
  task_wait_gate(&submitted_gate);
  return fp_raise(-5, "failure %ld", (long)(intptr_t)arg);
}

START_TEST(raise_asks_running_tasks_to_stop_and_cancels_queued) {
  gate_init(&long_gate);
  gate_init(&submitted_gate);
  fp_executor *ex = new_pool(2);
  fp_task_manager *tm = new_tm(ex, FP_POLICY_RAISE, 10);
  fp_task *runner, *failer, *queued[5];
  fp_tm_submit(tm, long_task_until_asked, NULL, -1, &runner);
  fp_tm_submit(tm, fail_after_gate, (void *)7, -1, &failer);
  for (int i = 0; i < 5; i++)
    ck_assert_int_eq(fp_tm_submit(tm, task_identity, NULL, -1, &queued[i]), 0);
  gate_open(&submitted_gate);
  ck_assert_int_eq(fp_tm_run(tm, LONG_WAIT), -5);
  fp_tm_free(tm);
  fp_executor_free(ex); /* joins: every task has settled */
  ck_assert_int_eq(fp_task_result(runner, NULL), FP_ECANCELED);
  ck_assert_str_eq(fp_task_error(runner)->message, "asked to stop");
  for (int i = 0; i < 5; i++) {
    int rc = fp_task_result(queued[i], NULL);
    ck_assert_msg(rc == FP_ECANCELED, "queued task %d: %s", i, fp_err_name(rc));
    fp_task_release(queued[i]);
  }
  fp_task_release(runner);
  fp_task_release(failer);
}
END_TEST

/* Names: a describe callback names each map item's task, fp_tm_submit_named
 * a task, in the log policy's line and in the fail-fast error. */
static void describe_item(const void *item, char *buf, size_t len) {
  snprintf(buf, len, "https://example.org/%ld", (long)(intptr_t)item);
}

START_TEST(tasks_are_named_in_the_log_line_and_the_fail_fast_error) {
  capture_start();
  fp_executor *ex = new_pool(2);
  fp_tm_options opt;
  fp_tm_options_init(&opt);
  opt.error_policy = FP_POLICY_LOG;
  opt.monitor_interval = 0;
  opt.describe = describe_item;
  fp_task_manager *tm;
  fp_tm_new(ex, &opt, &tm);
  counter c = {0, 10, 0, 0};
  fp_tm_map(tm, every_fifth_fails, count_up, &c, NULL);
  ck_assert_int_eq(fp_tm_run(tm, LONG_WAIT), 0);
  ck_assert(captured("(https://example.org/4, arg 0x4) failed: EIO: task for item 4 failed"));
  fp_tm_free(tm);
  opt.error_policy = FP_POLICY_RAISE;
  opt.describe = NULL;
  fp_tm_new(ex, &opt, &tm);
  fp_task *t;
  ck_assert_int_eq(fp_tm_submit_named(tm, every_fifth_fails, (void *)4, "the fifth", LONG_WAIT, &t), 0);
  ck_assert_int_eq(fp_tm_run(tm, LONG_WAIT), -5);
  ck_assert_msg(strstr(fp_last_error_message(), "task 1 (the fifth) failed: EIO"), "%s",
                fp_last_error_message());
  fp_task_release(t);
  fp_tm_free(tm);
  fp_executor_free(ex);
}
END_TEST

START_TEST(log_reports_each_failure_and_goes_on) {
  capture_start();
  atomic_store(&ran_count, 0);
  fp_executor *ex = new_pool(2);
  fp_tm_options opt;
  fp_tm_options_init(&opt);
  opt.error_policy = FP_POLICY_LOG;
  opt.monitor_interval = 0;
  opt.keep_completed = true;
  fp_task_manager *tm;
  fp_tm_new(ex, &opt, &tm);
  counter c = {0, 50, 0, 0};
  fp_tm_map(tm, every_fifth_fails, count_up, &c, NULL);
  ck_assert_int_eq(fp_tm_run(tm, LONG_WAIT), 0);
  ck_assert_int_eq(atomic_load(&ran_count), 50);
  ck_assert(captured("warning: task 5 (fn 0x")); /* a static function: its address */
  ck_assert(captured("failed: EIO: task for item 4 failed"));
  ck_assert(captured("failed: EIO: task for item 49 failed"));
  fp_task *const *done;
  size_t n = fp_tm_completed_tasks(tm, &done);
  ck_assert_uint_eq(n, 50);
  int failures = 0;
  for (size_t i = 0; i < n; i++)
    if (fp_task_error(done[i])) failures++;
  ck_assert_int_eq(failures, 10);
  fp_tm_stats st;
  fp_tm_get_stats(tm, &st);
  ck_assert_uint_eq(st.failed, 10);
  ck_assert_int_eq(st.stop_code, 0);
  fp_tm_free(tm);
  fp_executor_free(ex);
}
END_TEST

START_TEST(ignore_is_silent_and_keeps_errors) {
  capture_start();
  fp_executor *ex = new_pool(2);
  fp_task_manager *tm = new_tm(ex, FP_POLICY_IGNORE, 4);
  counter c = {0, 20, 0, 0};
  fp_tm_map(tm, every_fifth_fails, count_up, &c, NULL);
  fp_task *t;
  int failures = 0;
  while (fp_tm_next(tm, LONG_WAIT, &t) == 0) {
    if (fp_task_error(t)) {
      failures++;
      ck_assert_int_eq(fp_task_result(t, NULL), -5);
    }
    fp_task_release(t);
  }
  ck_assert_int_eq(failures, 4);
  fp_tm_free(tm);
  fp_executor_free(ex);
  ck_assert_int_eq(captured_lines(), 0);
}
END_TEST

START_TEST(monitor_lines_at_its_interval) {
  capture_start();
  fp_executor *ex = new_pool(2);
  fp_tm_options opt;
  fp_tm_options_init(&opt);
  ck_assert(opt.monitor_interval == 2); /* the default */
  opt.monitor_interval = 0.1;
  fp_task_manager *tm;
  fp_tm_new(ex, &opt, &tm);
  counter c = {0, 60, 0, 0};
  fp_tm_map(tm, task_sleep_ms, count_up, &c, NULL); /* item i sleeps i ms */
  ck_assert_int_eq(fp_tm_run(tm, LONG_WAIT), 0);
  fp_tm_free(tm);
  fp_executor_free(ex);
  ck_assert(captured("info: starting executor monitor\n"));
  ck_assert(captured(" tasks completed in the last 0.1 s ("));
  ck_assert(captured(" in flight, 0 failed; run p50 "));
  ck_assert(captured(", queue wait p99 "));
  ck_assert(captured("info: shutting down monitor\n"));
  /* the order: start, lines, end */
  pthread_mutex_lock(&test_log.mu);
  char *start = strstr(test_log.text, "starting executor monitor");
  char *line = strstr(test_log.text, "tasks completed in the last");
  char *end = strstr(test_log.text, "shutting down monitor");
  pthread_mutex_unlock(&test_log.mu);
  ck_assert(start < line && line < end);
}
END_TEST

START_TEST(progress_as_log_lines_when_not_a_terminal) {
  capture_start();
  fp_executor *ex = new_pool(2);
  fp_tm_options opt;
  fp_tm_options_init(&opt);
  opt.monitor_interval = 0.05;
  opt.progress = true;
  opt.total = 40;
  fp_task_manager *tm;
  fp_tm_new(ex, &opt, &tm);
  counter c = {0, 40, 0, 0};
  fp_tm_map(tm, task_sleep_ms, count_up, &c, NULL);
  ck_assert_int_eq(fp_tm_run(tm, LONG_WAIT), 0);
  fp_tm_free(tm);
  fp_executor_free(ex);
  if (!isatty(STDERR_FILENO)) {
    ck_assert(captured("info: progress: "));
    ck_assert(captured("progress: 40/40 (100%)")); /* the final line */
  }
}
END_TEST

static void *interrupt_soon(void *arg) {
  sleep_ms(100);
  pthread_kill(*(pthread_t *)arg, SIGINT);
  return NULL;
}

static volatile sig_atomic_t own_handler_calls;
static void own_handler(int sig) {
  (void)sig;
  own_handler_calls++;
}

static void install_own_handler(void) {
  struct sigaction mine;
  memset(&mine, 0, sizeof mine);
  mine.sa_handler = own_handler;
  sigaction(SIGINT, &mine, NULL);
}

static bool own_handler_installed(void) {
  struct sigaction seen;
  sigaction(SIGINT, NULL, &seen);
  return seen.sa_handler == own_handler;
}

START_TEST(one_sigint_stops_the_run_quickly_and_the_handler_is_restored) {
  install_own_handler();
  capture_start();
  fp_executor *ex = new_pool(2);
  fp_task_manager *tm = interruptible_tm(ex);
  ck_assert(!own_handler_installed());
  counter c = {0, -1, 0, 0};
  fp_tm_map(tm, task_sleep_ms, count_up, &c, NULL); /* endless; item i sleeps i ms */
  pthread_t self = pthread_self(), th;
  pthread_create(&th, NULL, interrupt_soon, &self);
  double t0 = now_s();
  int rc = fp_tm_run(tm, LONG_WAIT);
  double took = now_s() - t0;
  pthread_join(th, NULL);
  ck_assert_int_eq(rc, FP_EINTR);
  ck_assert_str_eq(fp_last_error_message(), "interrupted by SIGINT");
  ck_assert(took < 0.1 + 2.0); /* ~0.1 s until the signal, then a generous bound */
  fp_tm_stats st;
  fp_tm_get_stats(tm, &st);
  ck_assert_int_eq(st.stop_code, FP_EINTR);
  ck_assert(st.stop_latency < 2.0);
  fp_tm_free(tm); /* joins the monitor thread, which logs the interrupt */
  ck_assert(captured("interrupted: stopping the run"));
  ck_assert(own_handler_installed());
  raise(SIGINT);
  ck_assert_int_eq(own_handler_calls, 1);
  fp_executor_free(ex);
}
END_TEST

/* Two managers that handle Ctrl-C, freed in the order they were made: one
 * Ctrl-C stops both, and afterwards the program's own handler is back. */
START_TEST(two_interruptible_managers_share_ctrl_c_and_restore_the_handler) {
  install_own_handler();
  capture_start();
  fp_executor *ex = new_pool(2);
  gate gates[3]; /* one per round: a task of the round before may still be leaving its own */
  for (int round = 0; round < 3; round++) {
    own_handler_calls = 0;
    gate *g = &gates[round];
    gate_init(g);
    fp_task_manager *first = interruptible_tm(ex), *second = interruptible_tm(ex);
    ck_assert_int_eq(fp_tm_submit(first, task_wait_gate, g, LONG_WAIT, NULL), 0);
    ck_assert_int_eq(fp_tm_submit(second, task_wait_gate, g, LONG_WAIT, NULL), 0);
    ck_assert(gate_wait_arrived(g, 2));
    raise(SIGINT);
    fp_task *t;
    ck_assert_int_eq(fp_tm_next(first, LONG_WAIT, &t), FP_EINTR);
    ck_assert_int_eq(fp_tm_next(second, LONG_WAIT, &t), FP_EINTR);
    ck_assert_int_eq(own_handler_calls, 0);
    gate_open(g);
    if (round == 1) { /* any order */
      fp_task_manager *swap = first;
      first = second;
      second = swap;
    }
    fp_tm_free(first);
    ck_assert(!own_handler_installed()); /* the second still lives: still the library's */
    fp_tm_free(second);
    ck_assert(own_handler_installed());
    raise(SIGINT);
    ck_assert_int_eq(own_handler_calls, 1);
  }
  fp_executor_free(ex);
}
END_TEST

START_TEST(a_second_sigint_exits_the_process) {
  int survived[2];
  ck_assert_int_eq(pipe(survived), 0);
  pid_t child = fork();
  if (child == 0) {
    close(survived[0]);
    fp_executor *ex = new_pool(2);
    fp_task_manager *tm = interruptible_tm(ex);
    counter c = {0, -1, 0, 0};
    fp_tm_map(tm, task_sleep_ms, count_up, &c, NULL);
    raise(SIGINT);
    int rc = fp_tm_run(tm, LONG_WAIT);
    char said = rc == FP_EINTR ? 'y' : 'n'; /* the first one only stopped the run */
    if (write(survived[1], &said, 1) != 1) _exit(5);
    raise(SIGINT); /* the second: the process ends here */
    _exit(4);
  }
  close(survived[1]);
  char said = 0;
  ck_assert_int_eq(read(survived[0], &said, 1), 1);
  ck_assert_int_eq(said, 'y');
  close(survived[0]);
  int status;
  ck_assert_int_eq(waitpid(child, &status, 0), child);
  ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT, "status %d", status);
}
END_TEST

/* The manager never buffers more than its workers can run and one more
 * each: the default window is 2 x workers (64 was tried: fail fast then
 * submitted 64 of 100 tasks before the first failure). */
START_TEST(the_default_window_is_twice_the_workers) {
  fp_executor *ex = new_pool(3);
  fp_task_manager *tm;
  ck_assert_int_eq(fp_tm_new(ex, NULL, &tm), 0);
  fp_tm_stats st;
  fp_tm_get_stats(tm, &st);
  ck_assert_uint_eq(st.max_in_flight, 6);
  fp_tm_free(tm);
  fp_executor_free(ex);
}
END_TEST

START_TEST(no_handler_is_installed_unasked) {
  struct sigaction before, after;
  sigaction(SIGINT, NULL, &before);
  fp_executor *ex = new_pool(1);
  fp_task_manager *tm;
  fp_tm_new(ex, NULL, &tm);
  sigaction(SIGINT, NULL, &after);
  ck_assert_ptr_eq((void *)(uintptr_t)before.sa_handler, (void *)(uintptr_t)after.sa_handler);
  fp_tm_free(tm);
  fp_executor_free(ex);
}
END_TEST

static void *raise_sigint_in_task(void *arg) {
  (void)arg;
  raise(SIGINT); /* a signal landing in a worker thread */
  return NULL;
}

START_TEST(sigint_in_a_worker_thread_stops_the_run_too) {
  fp_executor *ex = new_pool(2);
  fp_task_manager *tm = interruptible_tm(ex);
  counter c = {0, -1, 0, 0};
  /* submitted first: what comes after an endless map never runs */
  fp_tm_submit(tm, raise_sigint_in_task, NULL, -1, NULL);
  fp_tm_map(tm, task_sleep_ms, count_up, &c, NULL);
  ck_assert_int_eq(fp_tm_run(tm, LONG_WAIT), FP_EINTR);
  fp_tm_free(tm);
  fp_executor_free(ex);
}
END_TEST

START_TEST(run_times_out_even_while_tasks_keep_completing) {
  fp_executor *ex = new_pool(2);
  fp_task_manager *tm = new_tm(ex, FP_POLICY_RAISE, 4);
  counter c = {0, -1, 0, 0};
  fp_tm_map(tm, task_identity, count_up, &c, NULL);
  double t0 = now_s();
  ck_assert_int_eq(fp_tm_run(tm, 0.1), FP_ETIMEDOUT);
  ck_assert(now_s() - t0 < LONG_WAIT / 2);
  fp_tm_free(tm);
  fp_executor_free(ex);
}
END_TEST

START_TEST(free_in_the_middle_does_not_hang) {
  for (int round = 0; round < 50; round++) {
    fp_executor *ex = new_pool(2);
    fp_task_manager *tm = new_tm(ex, FP_POLICY_RAISE, 6);
    counter c = {0, -1, 0, 0};
    fp_tm_map(tm, task_sleep_ms, count_up, &c, NULL);
    fp_task *t;
    for (int i = 0; i < round % 5; i++) {
      fp_tm_next(tm, LONG_WAIT, &t);
      fp_task_release(t);
    }
    fp_tm_free(tm);
    fp_executor_free(ex);
  }
}
END_TEST

START_TEST(bad_arguments) {
  capture_start();
  fp_executor *ex = new_pool(1);
  fp_task_manager *tm;
  fp_tm_options opt;
  fp_tm_options_init(&opt);
  opt.error_policy = (fp_error_policy)9;
  ck_assert_int_eq(fp_tm_new(ex, &opt, &tm), FP_EINVAL);
  fp_tm_options_init(&opt);
  opt.monitor_interval = -1;
  ck_assert_int_eq(fp_tm_new(ex, &opt, &tm), FP_EINVAL);
  ck_assert_int_eq(fp_tm_new(NULL, NULL, &tm), FP_EINVAL);
  ck_assert_int_eq(fp_tm_new(ex, NULL, NULL), FP_EINVAL);
  tm = new_tm(ex, FP_POLICY_RAISE, 2); /* no monitor thread to log meanwhile */
  fp_task *t;
  ck_assert_int_eq(fp_tm_submit(NULL, task_identity, NULL, 0, NULL), FP_EINVAL);
  ck_assert_int_eq(fp_tm_submit(tm, NULL, NULL, 0, NULL), FP_EINVAL);
  ck_assert_int_eq(fp_tm_map(tm, task_identity, NULL, NULL, NULL), FP_EINVAL);
  ck_assert_int_eq(fp_tm_next(tm, 0, NULL), FP_EINVAL);
  ck_assert_int_eq(fp_tm_run(NULL, 0), FP_EINVAL);
  ck_assert_int_eq(fp_tm_failed_task(tm, NULL), FP_EINVAL);
  ck_assert_int_eq(fp_tm_get_stats(tm, NULL), FP_EINVAL);
  ck_assert_int_eq(fp_task_result(NULL, NULL), FP_EINVAL);
  ck_assert_int_eq(captured_lines(), 12); /* one line per bad call */
  ck_assert_int_eq(fp_tm_failed_task(tm, &t), FP_EOF);
  ck_assert_int_eq(fp_tm_next(tm, 0, &t), FP_EOF);
  fp_tm_free(tm);
  fp_tm_free(NULL);
  fp_task_release(NULL);
  fp_executor_free(ex);
}
END_TEST

static gate slot_gate;
static void *held_but_the_first(void *arg) {
  return (intptr_t)arg == 0 ? arg : task_wait_gate(&slot_gate);
}

/* A window under 4x the workers refills every free slot: with 4 threads
 * and a window of 4, three tasks held at a gate and the first consumed,
 * the freed slot takes the next item at once. (Refilling by halves left
 * it empty, and a thread idle, until a second slot was free.) */
START_TEST(a_small_window_refills_every_free_slot) {
  gate_init(&slot_gate);
  fp_executor *ex = new_pool(4);
  fp_task_manager *tm = new_tm(ex, FP_POLICY_RAISE, 4);
  counter c = {0, 8, 0, 0};
  ck_assert_int_eq(fp_tm_map(tm, held_but_the_first, count_up, &c, NULL), 0);
  fp_task *t;
  ck_assert_int_eq(fp_tm_next(tm, LONG_WAIT, &t), 0); /* item 0: the only one that ends */
  ck_assert_int_eq((intptr_t)fp_task_arg(t), 0);
  fp_task_release(t);
  ck_assert_int_eq(fp_tm_next(tm, 0, &t), FP_ETIMEDOUT); /* feeds, waits for nothing */
  ck_assert_msg(gate_wait_arrived(&slot_gate, 4), "the free slot stayed empty");
  gate_open(&slot_gate);
  ck_assert_int_eq(fp_tm_run(tm, LONG_WAIT), 0);
  fp_tm_free(tm);
  fp_executor_free(ex);
}
END_TEST

TEST_MAIN("task_manager", a_small_window_refills_every_free_slot,
          the_default_window_is_twice_the_workers, tasks_are_named_in_the_log_line_and_the_fail_fast_error, policy_from_string_any_case,
          task_handles_expose_fn_arg_result_state_and_times, submit_and_map_keep_submission_order,
          the_window_is_never_exceeded, map_over_an_endless_input_stops_after_n_results,
          submit_waits_for_room_with_a_deadline, a_consumer_in_another_thread_unblocks_submit,
          raise_stops_everything_at_the_first_failure,
          raise_asks_running_tasks_to_stop_and_cancels_queued, log_reports_each_failure_and_goes_on,
          ignore_is_silent_and_keeps_errors, monitor_lines_at_its_interval,
          progress_as_log_lines_when_not_a_terminal,
          one_sigint_stops_the_run_quickly_and_the_handler_is_restored,
          two_interruptible_managers_share_ctrl_c_and_restore_the_handler,
          a_second_sigint_exits_the_process, no_handler_is_installed_unasked,
          sigint_in_a_worker_thread_stops_the_run_too,
          run_times_out_even_while_tasks_keep_completing, free_in_the_middle_does_not_hang,
          bad_arguments)
