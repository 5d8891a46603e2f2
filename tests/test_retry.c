/* test_retry.c - the timer's users: delayed submits (fp_submit_after,
 * fp_submit_at: on time, in order, cancellable while they wait, cancelled
 * by a shutdown) and retry with back-off (per task, per task manager, on
 * a process pool too): attempts, delays with generous but meaningful
 * bounds, which codes, the final message, retries racing with cancel and
 * shutdown. */
#include "helpers.h"

#include <sys/stat.h>

static atomic_int ran;
static void *count_run(void *arg) {
  atomic_fetch_add(&ran, 1);
  return arg;
}

START_TEST(a_delayed_task_runs_no_sooner_than_asked) {
  fp_executor *ex = new_pool(2);
  atomic_store(&ran, 0);
  double t0 = fp_now();
  fp_future *f;
  ck_assert_int_eq(fp_submit_after(ex, 0.2, count_run, (void *)7, &f), 0);
  ck_assert(!fp_future_done(f));
  ck_assert_int_eq(value_of(f), 7);
  double took = fp_now() - t0;
  ck_assert_double_ge(took, 0.2);
  ck_assert_double_lt(took, 5.0);
  fp_future_release(f);
  /* in the order of their times, whatever the order of the calls */
  fp_future *late, *early, *past;
  t0 = fp_now();
  ck_assert_int_eq(fp_submit_after(ex, 0.3, task_identity, (void *)2, &late), 0);
  ck_assert_int_eq(fp_submit_after(ex, 0.1, task_identity, (void *)1, &early), 0);
  ck_assert_int_eq(fp_submit_at(ex, fp_now() - 1, task_identity, (void *)0, &past), 0);
  ck_assert_int_eq(value_of(past), 0);
  ck_assert_double_lt(fp_now() - t0, 0.1); /* a time gone by: at once */
  ck_assert_int_eq(value_of(early), 1);
  ck_assert(!fp_future_done(late) || fp_now() - t0 >= 0.3);
  ck_assert_int_eq(value_of(late), 2);
  ck_assert_double_ge(fp_now() - t0, 0.3);
  fp_future_release(late);
  fp_future_release(early);
  fp_future_release(past);
  capture_start();
  ck_assert_int_eq(fp_submit_after(ex, -1, task_identity, NULL, &f), FP_EINVAL);
  ck_assert_ptr_null(f);
  fp_executor_free(ex);
}
END_TEST

START_TEST(a_delayed_task_is_cancelled_while_it_waits_and_by_a_shutdown) {
  fp_executor *ex = new_pool(1);
  atomic_store(&ran, 0);
  fp_future *f, *g;
  ck_assert_int_eq(fp_submit_after(ex, 0.2, count_run, NULL, &f), 0);
  ck_assert(fp_future_cancel(f));
  ck_assert_int_eq(fp_future_result(f, 0, NULL), FP_ECANCELED);
  fp_future_release(f);
  /* a shutdown cancels what is not due yet, at once */
  ck_assert_int_eq(fp_submit_after(ex, 60, count_run, NULL, &g), 0);
  double t0 = fp_now();
  ck_assert_int_eq(fp_shutdown(ex, true, false), 0);
  ck_assert_double_lt(fp_now() - t0, 5.0);
  ck_assert_int_eq(fp_future_result(g, 0, NULL), FP_ECANCELED);
  capture_start();
  ck_assert_int_eq(fp_submit_after(ex, 0, count_run, NULL, &f), FP_ESHUTDOWN);
  fp_future_release(g);
  fp_executor_free(ex);
  ck_assert_int_eq(atomic_load(&ran), 0);
  /* many at once, freed while some are due: nothing is lost or run late */
  for (int round = 0; round < 20; round++) {
    ex = new_pool(2);
    fp_future *fs[20];
    for (int i = 0; i < 20; i++)
      ck_assert_int_eq(fp_submit_after(ex, (i % 4) * 0.001, task_identity, NULL, &fs[i]), 0);
    fp_executor_free(ex); /* waits for the started, cancels the rest */
    for (int i = 0; i < 20; i++) {
      ck_assert(fp_future_done(fs[i]));
      fp_future_release(fs[i]);
    }
  }
}
END_TEST

/* Fails the first `fails` times it runs: the attempts are counted in the
 * argument. */
typedef struct flaky {
  atomic_int runs;
  int fails;
  int code;
  double at[8];
} flaky;

static void *flaky_task(void *arg) {
  flaky *k = arg;
  int n = atomic_fetch_add(&k->runs, 1);
  if (n < 8) k->at[n] = fp_now();
  if (n < k->fails) return fp_raise(k->code, "attempt %d failed", n + 1);
  return (void *)(intptr_t)(n + 1);
}

static fp_task_options with_retry(int attempts, double first_delay, double factor) {
  fp_task_options o = {
      .retry = {.max_attempts = attempts, .first_delay = first_delay, .factor = factor}};
  return o;
}

START_TEST(a_failed_task_runs_again_after_its_back_off) {
  fp_executor *ex = new_pool(2);
  flaky k = {.fails = 2, .code = -5};
  fp_task_options o = with_retry(4, 0.05, 2);
  fp_future *f;
  ck_assert_int_eq(fp_submit_ex(ex, flaky_task, &k, &o, -1, &f), 0);
  ck_assert_int_eq(value_of(f), 3); /* succeeded on its third attempt */
  ck_assert_int_eq(fp_future_attempts(f), 3);
  /* the delays: 0.05 s, then 0.1 s (generous above: a loaded machine) */
  ck_assert_double_ge(k.at[1] - k.at[0], 0.05);
  ck_assert_double_ge(k.at[2] - k.at[1], 0.1);
  ck_assert_double_lt(k.at[2] - k.at[0], 5.0);
  fp_future_release(f);
  /* every attempt fails: the last error, and how many there were */
  flaky always = {.fails = 100, .code = -5};
  o = with_retry(3, 0.01, 1);
  ck_assert_int_eq(fp_submit_ex(ex, flaky_task, &always, &o, -1, &f), 0);
  ck_assert_int_eq(fp_future_result(f, LONG_WAIT, NULL), -5);
  ck_assert_str_eq(fp_last_error_message(), "attempt 3 failed (after 3 attempts)");
  ck_assert_int_eq(atomic_load(&always.runs), 3);
  fp_future_release(f);
  /* max_delay caps, jitter stays within its bounds */
  flaky capped = {.fails = 3, .code = -5};
  o = with_retry(4, 0.02, 10);
  o.retry.max_delay = 0.03;
  o.retry.jitter = 0.5;
  ck_assert_int_eq(fp_submit_ex(ex, flaky_task, &capped, &o, -1, &f), 0);
  ck_assert_int_eq(value_of(f), 4);
  ck_assert_double_ge(capped.at[1] - capped.at[0], 0.02 * 0.5);
  ck_assert_double_ge(capped.at[3] - capped.at[2], 0.03 * 0.5); /* 0.2 capped to 0.03 */
  ck_assert_double_lt(capped.at[3] - capped.at[2], 0.03 * 1.5 + 1.0);
  fp_future_release(f);
  fp_executor_free(ex);
}
END_TEST

START_TEST(only_the_codes_asked_for_are_retried) {
  fp_executor *ex = new_pool(1);
  fp_task_options o = with_retry(5, 0.001, 1);
  o.retry.codes[0] = -11; /* EAGAIN only */
  o.retry.ncodes = 1;
  flaky other = {.fails = 100, .code = -5};
  fp_future *f;
  ck_assert_int_eq(fp_submit_ex(ex, flaky_task, &other, &o, -1, &f), 0);
  ck_assert_int_eq(fp_future_result(f, LONG_WAIT, NULL), -5);
  ck_assert_int_eq(atomic_load(&other.runs), 1);
  ck_assert_str_eq(fp_last_error_message(), "attempt 1 failed"); /* one attempt: no count */
  fp_future_release(f);
  flaky again = {.fails = 2, .code = -11};
  ck_assert_int_eq(fp_submit_ex(ex, flaky_task, &again, &o, -1, &f), 0);
  ck_assert_int_eq(value_of(f), 3);
  fp_future_release(f);
  /* by default a cancel is not retried */
  flaky cancelled = {.fails = 100, .code = FP_ECANCELED};
  o.retry.ncodes = 0;
  ck_assert_int_eq(fp_submit_ex(ex, flaky_task, &cancelled, &o, -1, &f), 0);
  ck_assert_int_eq(fp_future_result(f, LONG_WAIT, NULL), FP_ECANCELED);
  ck_assert_int_eq(atomic_load(&cancelled.runs), 1);
  fp_future_release(f);
  fp_executor_free(ex);
}
END_TEST

/* A cancel or a shutdown during the back-off ends the retries: no attempt
 * after it, no hang. Repeated: they race with the timer. */
START_TEST(retries_race_with_cancel_and_shutdown) {
  for (int round = 0; round < 100; round++) {
    fp_executor *ex = new_pool(2);
    flaky k = {.fails = 1 << 30, .code = -5}; /* never succeeds */
    fp_task_options o = with_retry(1000, 0.0005 * (round % 4), 1);
    fp_future *f;
    ck_assert_int_eq(fp_submit_ex(ex, flaky_task, &k, &o, -1, &f), 0);
    double t0 = fp_now(); /* some attempts first, with a deadline */
    while (atomic_load(&k.runs) < 2 + round % 3 && fp_now() - t0 < LONG_WAIT)
      fp_future_wait(f, 0.001);
    ck_assert_int_ge(atomic_load(&k.runs), 2 + round % 3);
    if (round % 2) {
      fp_future_cancel(f);
    } else {
      ck_assert_int_eq(fp_shutdown(ex, true, round % 4 == 0), 0);
    }
    ck_assert_int_eq(fp_future_wait(f, LONG_WAIT), 0);
    int runs = atomic_load(&k.runs);
    fp_executor_free(ex); /* nothing runs after: the pool has stopped */
    ck_assert_int_le(atomic_load(&k.runs), runs + 1);
    ck_assert(fp_future_cancelled(f) || fp_future_error(f) != NULL);
    fp_future_release(f);
  }
}
END_TEST

START_TEST(the_task_manager_retries_and_counts) {
  capture_start();
  fp_executor *ex = new_pool(2);
  fp_tm_options opt;
  fp_tm_options_init(&opt);
  opt.monitor_interval = 0;
  opt.retry = (fp_retry){.max_attempts = 3, .first_delay = 0.001, .factor = 2};
  opt.max_in_flight = 16; /* all ten submitted before they are consumed */
  fp_task_manager *tm;
  ck_assert_int_eq(fp_tm_new(ex, &opt, &tm), 0);
  flaky ks[10];
  for (int i = 0; i < 10; i++) {
    ks[i] = (flaky){.fails = 2, .code = -5};
    ck_assert_int_eq(fp_tm_submit(tm, flaky_task, &ks[i], LONG_WAIT, NULL), 0);
  }
  ck_assert_int_eq(fp_tm_run(tm, LONG_WAIT), 0); /* raise policy: only the last outcome counts */
  fp_tm_stats st;
  fp_tm_get_stats(tm, &st);
  ck_assert_uint_eq(st.completed, 10);
  ck_assert_uint_eq(st.failed, 0);
  ck_assert_uint_eq(st.retried, 20);
  fp_tm_free(tm);
  fp_executor_free(ex);
}
END_TEST

/* In a worker process: the first attempt leaves a file and fails, the
 * second finds it. */
static void *fail_first_time(void *arg) {
  const char *path = arg;
  struct stat st;
  if (stat(path, &st) == 0) return (void *)42;
  FILE *f = fopen(path, "w");
  if (f) fclose(f);
  return fp_raise(-5, "first time");
}

START_TEST(a_process_pool_task_is_retried_too) {
  static char path[64]; /* before the pool: its workers fork from a copy of this memory */
  snprintf(path, sizeof path, "/tmp/fp-retry-%d", (int)getpid());
  unlink(path);
  fp_executor *ex = new_process_pool(1, 0);
  fp_task_options o = with_retry(2, 0.01, 1);
  fp_future *f;
  ck_assert_int_eq(fp_submit_ex(ex, fail_first_time, path, &o, -1, &f), 0);
  ck_assert_int_eq(value_of(f), 42);
  ck_assert_int_eq(fp_future_attempts(f), 2);
  fp_future_release(f);
  unlink(path);
  fp_executor_free(ex);
}
END_TEST

TEST_MAIN("retry", a_delayed_task_runs_no_sooner_than_asked,
          a_delayed_task_is_cancelled_while_it_waits_and_by_a_shutdown,
          a_failed_task_runs_again_after_its_back_off, only_the_codes_asked_for_are_retried,
          retries_race_with_cancel_and_shutdown, the_task_manager_retries_and_counts,
          a_process_pool_task_is_retried_too)
