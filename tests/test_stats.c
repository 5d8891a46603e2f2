/* test_stats.c - latency statistics (histogram accuracy against known
 * distributions, an executor's counters and percentiles, the growable
 * stats structs), the Prometheus text, the Chrome trace (valid JSON after
 * a normal end, a stop, a crash, a killed run) and the monitor line. */
#include "helpers.h"

#include "../src/internal.h"

#include <ctype.h>
#include <math.h>
#include <signal.h>
#include <sys/wait.h>

/* ---- histograms ---- */

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Feed n values from gen, and compare each percentile with the exact one
 * (sorted): within the histogram's resolution (a bucket's half-width,
 * 1/32 of the value). */
static void check_distribution(uint64_t (*gen)(unsigned *seed), size_t n) {
  fp__hist *h = calloc(1, sizeof *h);
  uint64_t *v = malloc(n * sizeof *v), max = 0;
  unsigned seed = 12345;
  double sum = 0;
  for (size_t i = 0; i < n; i++) {
    v[i] = gen(&seed);
    fp__hist_add(h, v[i]);
    sum += (double)v[i];
    if (v[i] > max) max = v[i];
  }
  qsort(v, n, sizeof *v, cmp_u64);
  fp_latency l;
  fp__hist_summary(h, &l);
  ck_assert_uint_eq(l.count, n);
  ck_assert_double_eq_tol(l.max, (double)max * 1e-9, 1e-12);
  ck_assert_double_eq_tol(l.mean, sum / (double)n * 1e-9, l.mean * 1e-9);
  const double qs[] = {0.5, 0.9, 0.99};
  const double got[] = {l.p50, l.p90, l.p99};
  for (int i = 0; i < 3; i++) {
    double exact = (double)v[(size_t)(qs[i] * (double)n + 0.5) - 1] * 1e-9;
    ck_assert_msg(fabs(got[i] - exact) <= exact / 32 + 1e-9,
                  "p%g: %g s, exactly %g s (off by %.2f%%)", qs[i] * 100, got[i], exact,
                  100 * fabs(got[i] - exact) / exact);
  }
  free(v);
  free(h);
}

static unsigned next_rand(unsigned *seed) { return *seed = *seed * 1103515245u + 12345u; }
static double uniform01(unsigned *seed) { return (next_rand(seed) >> 8) / 16777216.0; }

static uint64_t uniform_us(unsigned *seed) { return 1000 + (uint64_t)(uniform01(seed) * 1e6); }
static uint64_t exponential_ms(unsigned *seed) {
  return 1 + (uint64_t)(-log(1 - uniform01(seed)) * 1e6);
}
static uint64_t bimodal(unsigned *seed) { /* 90% fast, 10% slow: a straggler tail */
  return uniform01(seed) < 0.9 ? 200 + next_rand(seed) % 100 : 50000000 + next_rand(seed) % 1000;
}
static uint64_t tiny(unsigned *seed) { return next_rand(seed) % 40; }

START_TEST(histogram_matches_known_distributions) {
  check_distribution(uniform_us, 100000);
  check_distribution(exponential_ms, 100000);
  check_distribution(bimodal, 100000);
  check_distribution(tiny, 10000);
  /* one value, and values past the last bucket: the max stays exact */
  fp__hist *h = calloc(1, sizeof *h);
  fp__hist_add(h, (uint64_t)1 << 50);
  fp_latency l;
  fp__hist_summary(h, &l);
  ck_assert_double_eq_tol(l.max, (double)((uint64_t)1 << 50) * 1e-9, 1e-3);
  ck_assert(l.p50 <= l.max);
  free(h);
}
END_TEST

/* ---- an executor's statistics ---- */

static void *sleep_ms_task(void *arg) {
  sleep_ms((int)(intptr_t)arg);
  return NULL;
}

START_TEST(executor_latency_and_counters) {
  fp_executor *ex = new_pool(1);
  fp_executor_stats st;
  ck_assert_int_eq(fp_executor_get_stats(ex, &st), 0);
  ck_assert(!st.latency);
  ck_assert_uint_eq(st.size, sizeof st);
  ck_assert_int_eq(fp_executor_stats_enable(ex), 0);
  ck_assert_int_eq(fp_executor_stats_enable(ex), 0); /* twice is fine */
  /* 10 tasks of 20 ms on one thread: each runs 20 ms, the last waits ~180 */
  fp_future *fs[10];
  for (int i = 0; i < 10; i++)
    ck_assert_int_eq(fp_submit(ex, sleep_ms_task, (void *)20, &fs[i]), 0);
  for (int i = 0; i < 10; i++) ck_assert_int_eq(fp_future_result(fs[i], LONG_WAIT, NULL), 0);
  fp_future *bad;
  fp_submit(ex, task_fail, NULL, &bad);
  ck_assert_int_ne(fp_future_result(bad, LONG_WAIT, NULL), 0);
  ck_assert_int_eq(fp_executor_get_stats(ex, &st), 0);
  ck_assert(st.latency);
  ck_assert_uint_eq(st.run.count, 11);
  ck_assert_uint_eq(st.queue_wait.count, 11);
  ck_assert_msg(st.run.p50 >= 0.019 && st.run.p50 < 2, "run p50 %g", st.run.p50);
  ck_assert_msg(st.run.max >= 0.019, "run max %g", st.run.max);
  ck_assert_msg(st.queue_wait.max >= 0.15, "queue wait max %g", st.queue_wait.max);
  ck_assert(st.queue_wait.p50 <= st.queue_wait.p99 && st.queue_wait.p99 <= st.queue_wait.max);
  ck_assert_uint_eq(st.failed, 1);
  for (int i = 0; i < 10; i++) fp_future_release(fs[i]);
  fp_future_release(bad);
  fp_executor_free(ex);
}
END_TEST

static void *crash_task(void *arg) {
  (void)arg;
  raise(SIGKILL);
  return NULL;
}

START_TEST(process_pool_counts_crashes_timeouts_cancels) {
  fp_executor *ex = new_process_pool(1, 0.3);
  ck_assert_int_eq(fp_executor_stats_enable(ex), 0);
  fp_future *crash, *slow, *queued, *ok;
  fp_submit(ex, crash_task, NULL, &crash);
  fp_submit(ex, sleep_ms_task, (void *)5000, &slow);
  fp_submit(ex, sleep_ms_task, (void *)1, &queued);
  ck_assert(fp_future_cancel(queued));
  fp_submit(ex, sleep_ms_task, (void *)30, &ok);
  ck_assert_int_eq(fp_future_result(crash, LONG_WAIT, NULL), FP_ECRASHED);
  ck_assert_int_eq(fp_future_result(slow, LONG_WAIT, NULL), FP_ETIMEDOUT);
  ck_assert_int_eq(fp_future_result(ok, LONG_WAIT, NULL), 0);
  fp_executor_stats st;
  fp_executor_get_stats(ex, &st);
  ck_assert_uint_eq(st.crashed, 1);
  ck_assert_uint_eq(st.timed_out, 1);
  ck_assert_uint_eq(st.cancelled, 1);
  ck_assert_uint_eq(st.failed, 0);
  ck_assert_uint_eq(st.run.count, 3);
  /* the worker's own time: 30 ms, not the queue before it */
  ck_assert_msg(st.run.p50 >= 0.025 && st.run.max >= 0.29 && st.run.max < 4, "run p50 %g max %g",
                st.run.p50, st.run.max);
  fp_future *fs[] = {crash, slow, queued, ok};
  for (int i = 0; i < 4; i++) fp_future_release(fs[i]);
  fp_executor_free(ex);
}
END_TEST

static int flaky_calls;
static void *flaky(void *arg) {
  (void)arg;
  return __atomic_add_fetch(&flaky_calls, 1, __ATOMIC_SEQ_CST) < 3 ? fp_raise(FP_EAGAIN, "not yet")
                                                                    : (void *)7;
}

START_TEST(retries_are_counted) {
  fp_executor *ex = new_pool(2);
  fp_task_options topt = {.retry = {.max_attempts = 5, .first_delay = 0.001}};
  fp_future *f;
  ck_assert_int_eq(fp_submit_ex(ex, flaky, NULL, &topt, -1, &f), 0);
  ck_assert_int_eq(fp_future_result(f, LONG_WAIT, NULL), 0);
  fp_executor_stats st;
  fp_executor_get_stats(ex, &st);
  ck_assert_uint_eq(st.retried, 2);
  ck_assert_uint_eq(st.failed, 0);
  fp_future_release(f);
  fp_executor_free(ex);
}
END_TEST

/* A program compiled against an older, shorter struct gets only that much. */
START_TEST(stats_structs_grow_safely) {
  fp_executor *ex = new_pool(1);
  unsigned char buf[sizeof(fp_executor_stats) + 16];
  memset(buf, 0xAB, sizeof buf);
  size_t old = offsetof(fp_executor_stats, failed); /* the fields before this version */
  ck_assert_int_eq(fp_executor_stats_get(ex, (fp_executor_stats *)buf, old), 0);
  ck_assert_uint_eq(((fp_executor_stats *)buf)->size, old);
  for (size_t i = old; i < sizeof buf; i++) ck_assert_uint_eq(buf[i], 0xAB);
  /* a newer, longer one: the library fills what it knows and says so */
  ck_assert_int_eq(fp_executor_stats_get(ex, (fp_executor_stats *)buf, sizeof buf), 0);
  ck_assert_uint_eq(((fp_executor_stats *)buf)->size, sizeof(fp_executor_stats));
  ck_assert_int_eq(fp_executor_stats_get(ex, (fp_executor_stats *)buf, 4), FP_EINVAL);
  fp_task_manager *tm;
  fp_tm_new(ex, NULL, &tm);
  fp_tm_stats ts;
  ck_assert_int_eq(fp_tm_get_stats(tm, &ts), 0);
  ck_assert_uint_eq(ts.size, sizeof ts);
  ck_assert_int_eq(fp_tm_stats_get(tm, &ts, 3), FP_EINVAL);
  fp_tm_free(tm);
  fp_executor_free(ex);
}
END_TEST

/* ---- the Prometheus text ---- */

/* Every line is a comment (# HELP / # TYPE) or `name{labels} value`;
 * each histogram's buckets are cumulative and end at its count. Returns
 * the number of samples. */
static int parse_prometheus(const char *text) {
  int samples = 0;
  double last_bucket = -1;
  for (const char *line = text; *line;) {
    const char *end = strchr(line, '\n');
    ck_assert_msg(end != NULL, "the text ends with a newline");
    char l[512];
    size_t n = (size_t)(end - line);
    ck_assert(n < sizeof l);
    memcpy(l, line, n);
    l[n] = 0;
    line = end + 1;
    if (l[0] == '#') {
      ck_assert_msg(!strncmp(l, "# HELP fp_", 10) || !strncmp(l, "# TYPE fp_", 10), "%s", l);
      if (!strncmp(l, "# TYPE", 6))
        ck_assert_msg(strstr(l, " counter") || strstr(l, " gauge") || strstr(l, " histogram"),
                      "%s", l);
      last_bucket = -1;
      continue;
    }
    char *p = l;
    ck_assert_msg(isalpha((unsigned char)*p) || *p == '_', "%s", l);
    while (isalnum((unsigned char)*p) || *p == '_') p++;
    ck_assert_msg(*p == '{', "labels in %s", l);
    for (p++; *p != '}';) { /* name="value" pairs */
      ck_assert_msg(isalpha((unsigned char)*p), "%s", l);
      while (isalnum((unsigned char)*p) || *p == '_') p++;
      ck_assert_msg(p[0] == '=' && p[1] == '"', "%s", l);
      p = strchr(p + 2, '"');
      ck_assert_msg(p != NULL, "%s", l);
      p++;
      if (*p == ',') p++;
    }
    ck_assert_msg(p[1] == ' ', "%s", l);
    char *num_end;
    double v = strtod(p + 2, &num_end);
    ck_assert_msg(*num_end == 0 && p[2] && v >= 0, "a value in %s", l);
    if (strstr(l, "_bucket{")) {
      ck_assert_msg(v >= last_bucket, "cumulative buckets: %s", l);
      last_bucket = v;
    } else if (strstr(l, "_count{") && last_bucket >= 0) {
      ck_assert_msg(v == last_bucket, "the +Inf bucket is the count: %s", l);
    }
    samples++;
  }
  return samples;
}

START_TEST(prometheus_text_parses) {
  fp_executor *ex = new_pool(2);
  fp_executor_stats_enable(ex);
  fp_future *fs[50];
  for (int i = 0; i < 50; i++) fp_submit(ex, sleep_ms_task, (void *)(intptr_t)(i % 3), &fs[i]);
  for (int i = 0; i < 50; i++) fp_future_wait(fs[i], LONG_WAIT);
  int need = fp_executor_stats_format(ex, NULL, 0, FP_STATS_PROMETHEUS);
  ck_assert_int_gt(need, 0);
  char *text = malloc((size_t)need + 1);
  ck_assert_int_eq(fp_executor_stats_format(ex, text, (size_t)need + 1, FP_STATS_PROMETHEUS),
                   need);
  ck_assert_int_eq(parse_prometheus(text), 10 + 2 * 23); /* 20 bounds, +Inf, sum, count */
  ck_assert(strstr(text, "fp_task_run_seconds_count{executor=\"thread pool\",id=\""));
  ck_assert(strstr(text, "} 50\n"));
  /* too small a buffer: cut, terminated, the length still right */
  char small[64];
  ck_assert_int_eq(fp_executor_stats_format(ex, small, sizeof small, FP_STATS_PROMETHEUS), need);
  ck_assert_uint_eq(strlen(small), sizeof small - 1);
  ck_assert_int_gt(fp_executor_stats_format(ex, text, (size_t)need + 1, FP_STATS_TEXT), 0);
  ck_assert(strstr(text, "run: 50, mean "));
  ck_assert_int_eq(fp_executor_stats_format(ex, text, 10, (fp_stats_format)7), FP_EINVAL);
  free(text);
  for (int i = 0; i < 50; i++) fp_future_release(fs[i]);
  fp_executor_free(ex);
}
END_TEST

/* ---- the trace ---- */

/* A small JSON parser that only says whether the text is JSON. */
static const char *json_value(const char *p);
static const char *json_ws(const char *p) {
  while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
  return p;
}
static const char *json_string(const char *p) {
  if (*p++ != '"') return NULL;
  for (; *p != '"'; p++) {
    if (!*p || (unsigned char)*p < 0x20) return NULL;
    if (*p == '\\' && !*++p) return NULL;
  }
  return p + 1;
}
static const char *json_value(const char *p) {
  p = json_ws(p);
  if (*p == '{' || *p == '[') {
    char close = *p == '{' ? '}' : ']';
    p = json_ws(p + 1);
    if (*p == close) return p + 1;
    for (;;) {
      if (close == '}') {
        if (!(p = json_string(json_ws(p)))) return NULL;
        p = json_ws(p);
        if (*p++ != ':') return NULL;
      }
      if (!(p = json_value(p))) return NULL;
      p = json_ws(p);
      if (*p == close) return p + 1;
      if (*p++ != ',') return NULL;
    }
  }
  if (*p == '"') return json_string(p);
  if (!strncmp(p, "true", 4) || !strncmp(p, "null", 4)) return p + 4;
  if (!strncmp(p, "false", 5)) return p + 5;
  char *end;
  strtod(p, &end);
  return end == p ? NULL : end;
}

static char *read_file(const char *path) {
  FILE *fp = fopen(path, "r");
  if (!fp) return NULL;
  static char buf[1 << 22];
  size_t n = fread(buf, 1, sizeof buf - 1, fp);
  fclose(fp);
  buf[n] = 0;
  return buf;
}

/* The file is one JSON array; returns how many complete events it holds. */
static int valid_trace(const char *path) {
  char *text = read_file(path);
  ck_assert_msg(text != NULL, "%s exists", path);
  const char *end = json_value(text);
  ck_assert_msg(end && !*json_ws(end), "%s is JSON: %.200s", path, text);
  int events = 0;
  for (const char *p = text; (p = strstr(p, "\"ph\":\"X\"")); p++) events++;
  return events;
}

static void trace_path(char *buf, size_t len, const char *what) {
  snprintf(buf, len, "/tmp/fp_test_trace_%d_%s.json", (int)getpid(), what);
}

/* A manager that traces its run to path, with a window for what this
 * thread submits before it consumes. */
static fp_tm_options traced(const char *path, size_t window, fp_error_policy policy,
                            bool interrupt) {
  fp_tm_options opt;
  fp_tm_options_init(&opt);
  opt.monitor_interval = 0;
  opt.max_in_flight = window;
  opt.error_policy = policy;
  opt.handle_interrupt = interrupt;
  opt.trace_path = path;
  return opt;
}

START_TEST(trace_is_json_after_a_normal_end) {
  capture_start(); /* the failure's log line */
  char path[128];
  trace_path(path, sizeof path, "normal");
  fp_executor *ex = new_pool(2);
  fp_tm_options opt = traced(path, 1000, FP_POLICY_LOG, false);
  fp_task_manager *tm;
  ck_assert_int_eq(fp_tm_new(ex, &opt, &tm), 0);
  /* One trace at a time: a second manager says so, and runs into this one */
  ck_assert_int_eq(fp_trace_start(path), FP_EBUSY);
  fp_task_manager *second;
  ck_assert_int_eq(fp_tm_new(ex, &opt, &second), 0);
  ck_assert(captured("not tracing to /tmp/fp_test_trace_"));
  ck_assert_int_eq(fp_tm_submit(second, task_identity, NULL, LONG_WAIT, NULL), 0);
  ck_assert_int_eq(fp_tm_run(second, LONG_WAIT), 0);
  fp_tm_free(second); /* it did not open the trace: it does not close it */
  for (int i = 0; i < 300; i++)
    fp_tm_submit_named(tm, i == 7 ? task_fail : task_identity, NULL, i == 7 ? "bad \"one\"" : NULL,
                       LONG_WAIT, NULL);
  fp_tm_run(tm, LONG_WAIT);
  fp_tm_free(tm);
  fp_executor_free(ex);
  ck_assert_int_eq(valid_trace(path), 301); /* one event a task, the second manager's too */
  char *text = read_file(path);
  ck_assert(strstr(text, "\"name\":\"bad \\\"one\\\"\""));
  ck_assert(strstr(text, "\"error\":\"item 0 failed on purpose\""));
  ck_assert(strstr(text, "\"name\":\"process_name\""));
  ck_assert_int_eq(fp_trace_stop(), FP_EOF);
  unlink(path);
}
END_TEST

START_TEST(trace_records_a_crashed_process_task) {
  char path[128];
  trace_path(path, sizeof path, "crash");
  ck_assert_int_eq(fp_trace_start(path), 0);
  fp_executor *ex = new_process_pool(2, 0);
  fp_future *fs[6];
  for (int i = 0; i < 6; i++) fp_submit(ex, i == 3 ? crash_task : sleep_ms_task, (void *)1, &fs[i]);
  for (int i = 0; i < 6; i++) fp_future_wait(fs[i], LONG_WAIT);
  ck_assert_int_eq(fp_trace_stop(), 0);
  ck_assert_int_eq(valid_trace(path), 6);
  ck_assert(strstr(read_file(path), "\"outcome\":\"FP_ECRASHED\""));
  for (int i = 0; i < 6; i++) fp_future_release(fs[i]);
  fp_executor_free(ex);
  unlink(path);
}
END_TEST

static bool trace_has_an_event(void *path) {
  char *text = read_file(path);
  return text && strstr(text, "\"ph\":\"X\"");
}

/* A run killed outright (no exit handler, no flush at the end) still
 * leaves a valid trace, at most a flush interval behind. */
START_TEST(trace_survives_a_killed_run) {
  char path[128];
  trace_path(path, sizeof path, "killed");
  pid_t child = fork();
  if (child == 0) {
    fp_trace_start(path);
    fp_executor *ex = new_pool(2);
    for (;;) { /* until killed */
      fp_future *f;
      if (fp_submit(ex, sleep_ms_task, (void *)1, &f) == 0) fp_future_release(f);
      sleep_ms(1);
    }
  }
  /* events in the file (another process's state: polled with a deadline),
   * then kill it */
  ck_assert_msg(wait_until(trace_has_an_event, path, LONG_WAIT), "no event reached the trace");
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  ck_assert_int_ge(valid_trace(path), 1);
  unlink(path);
}
END_TEST

/* Ctrl-C: the task manager stops, and the trace ends whole. */
START_TEST(trace_is_json_after_ctrl_c) {
  char path[128];
  trace_path(path, sizeof path, "sigint");
  fp_executor *ex = new_pool(2);
  fp_tm_options opt = traced(path, 100, FP_POLICY_RAISE, true);
  fp_task_manager *tm;
  ck_assert_int_eq(fp_tm_new(ex, &opt, &tm), 0);
  for (int i = 0; i < 20; i++) fp_tm_submit(tm, sleep_ms_task, (void *)2, LONG_WAIT, NULL);
  fp_task *t;
  ck_assert_int_eq(fp_tm_next(tm, LONG_WAIT, &t), 0);
  fp_task_release(t);
  kill(getpid(), SIGINT);
  int rc = fp_tm_run(tm, LONG_WAIT);
  ck_assert_msg(rc == FP_EINTR || rc == 0, "%d", rc); /* 0 if all ended before it */
  fp_tm_free(tm);
  fp_executor_free(ex);
  ck_assert_int_ge(valid_trace(path), 1);
  unlink(path);
}
END_TEST

/* ---- the monitor line ---- */

static gate straggler_gate;
static void *straggler(void *arg) {
  (void)arg;
  return task_wait_gate(&straggler_gate);
}

static bool names_straggler(void *arg) {
  (void)arg;
  return captured("task 101 (the straggler) has run ");
}

START_TEST(monitor_names_a_straggler) {
  capture_start();
  gate_init(&straggler_gate);
  fp_executor *ex = new_pool(2);
  fp_tm_options opt;
  fp_tm_options_init(&opt);
  opt.monitor_interval = 0.02;
  opt.max_in_flight = 1000;
  fp_task_manager *tm;
  fp_tm_new(ex, &opt, &tm);
  for (int i = 0; i < 100; i++) fp_tm_submit(tm, task_identity, NULL, LONG_WAIT, NULL);
  for (int i = 0; i < 100; i++) { /* consumed: 100 fast ones set the p50 */
    fp_task *t;
    ck_assert_int_eq(fp_tm_next(tm, LONG_WAIT, &t), 0);
    fp_task_release(t);
  }
  fp_tm_submit_named(tm, straggler, NULL, "the straggler", LONG_WAIT, NULL);
  ck_assert_msg(wait_until(names_straggler, NULL, LONG_WAIT), "%s", test_log.text);
  ck_assert(captured("; run p50 "));
  gate_open(&straggler_gate);
  ck_assert_int_eq(fp_tm_run(tm, LONG_WAIT), 0);
  fp_tm_stats st;
  fp_tm_get_stats(tm, &st);
  ck_assert_uint_eq(st.run.count, 101);
  ck_assert(st.run.max >= st.run.p99 && st.run.p99 >= st.run.p50);
  fp_tm_free(tm);
  fp_executor_free(ex);
  fp_set_logger(NULL, NULL, FP_LOG_INFO);
}
END_TEST

TEST_MAIN("stats", histogram_matches_known_distributions, executor_latency_and_counters,
          process_pool_counts_crashes_timeouts_cancels, retries_are_counted,
          stats_structs_grow_safely, prometheus_text_parses, trace_is_json_after_a_normal_end,
          trace_records_a_crashed_process_task, trace_survives_a_killed_run,
          trace_is_json_after_ctrl_c, monitor_names_a_straggler)
