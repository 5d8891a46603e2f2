/* helpers.h - what the tests share: a capturing logger, a gate that holds
 * tasks until the test opens it, small tasks, and the Check main. */
#ifndef FP_TEST_HELPERS_H
#define FP_TEST_HELPERS_H

#define _GNU_SOURCE
#include <check.h>
#include <futureproof.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Timeouts, in seconds, for Check (per test) and for waits in tests: long
 * enough for a loaded machine under ThreadSanitizer, so that only a hang
 * fails them. */
#ifndef TEST_TIMEOUT
#define TEST_TIMEOUT 60
#endif
#define LONG_WAIT 20.0

/* Built with ASan or TSan: RLIMIT_AS cannot work there, and loops that
 * fork a thousand times are shortened. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif

static inline double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Poll cond(arg) every millisecond until it holds (true) or `seconds`
 * pass (false): for conditions nothing can be waited on for, such as
 * another process's state. */
static inline bool wait_until(bool (*cond)(void *), void *arg, double seconds) {
  double end = now_s() + seconds;
  for (;;) {
    if (cond(arg)) return true;
    if (now_s() >= end) return false;
    sleep_ms(1);
  }
}

/* A process that runs nothing any more: gone, or a zombie (that someone
 * will reap). */
static inline bool process_gone(pid_t pid) {
  char path[64], state = 0;
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *fp = fopen(path, "r");
  if (!fp) return true;
  int matched = fscanf(fp, "%*d (%*[^)]) %c", &state);
  fclose(fp);
  return matched == 1 && (state == 'Z' || state == 'X');
}

/* For wait_until: the future has started. */
static inline bool future_running(void *f) { return fp_future_running(f); }

/* The calling thread's id, and whether a thread of this process is asleep
 * in the kernel (blocked on a lock, a condition, a read): how a test sees
 * that a call blocks, rather than sleeping and hoping. */
static inline pid_t thread_id_now(void) { return (pid_t)syscall(SYS_gettid); }
static inline bool thread_blocked(void *tid) {
  char path[64], state = 0;
  snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)*(pid_t *)tid);
  FILE *fp = fopen(path, "r");
  if (!fp) return false;
  int got = fscanf(fp, "%*d (%*[^)]) %c", &state);
  fclose(fp);
  return got == 1 && state == 'S';
}

/* ---- a logger that keeps the lines, for assertions ---- */
typedef struct captured_log {
  pthread_mutex_t mu;
  char text[1 << 16];
  size_t len;
  int lines;
} captured_log;

static captured_log test_log = {PTHREAD_MUTEX_INITIALIZER, {0}, 0, 0};

static inline void capture_logger(fp_log_level level, const char *message, void *ud) {
  captured_log *c = ud;
  pthread_mutex_lock(&c->mu);
  int n = snprintf(c->text + c->len, sizeof c->text - c->len, "%s: %s\n",
                   fp_log_level_name(level), message);
  if (n > 0 && c->len + (size_t)n < sizeof c->text) c->len += (size_t)n;
  c->lines++;
  pthread_mutex_unlock(&c->mu);
}

static inline void capture_start(void) {
  pthread_mutex_lock(&test_log.mu);
  test_log.len = 0;
  test_log.text[0] = 0;
  test_log.lines = 0;
  pthread_mutex_unlock(&test_log.mu);
  fp_set_logger(capture_logger, &test_log, FP_LOG_DEBUG);
}

static inline bool captured(const char *needle) {
  pthread_mutex_lock(&test_log.mu);
  bool found = strstr(test_log.text, needle) != NULL;
  pthread_mutex_unlock(&test_log.mu);
  return found;
}

static inline int captured_lines(void) {
  pthread_mutex_lock(&test_log.mu);
  int n = test_log.lines;
  pthread_mutex_unlock(&test_log.mu);
  return n;
}

/* ---- a gate: tasks wait at it until the test opens it ---- */
typedef struct gate {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool open;
  int arrived; /* tasks that reached the gate */
} gate;

static inline void gate_init(gate *g) {
  pthread_mutex_init(&g->mu, NULL);
  pthread_cond_init(&g->cv, NULL);
  g->open = false;
  g->arrived = 0;
}

static inline void gate_open(gate *g) {
  pthread_mutex_lock(&g->mu);
  g->open = true;
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
}

/* Wait (from the test) until n tasks stand at the gate; false on timeout. */
static inline bool gate_wait_arrived(gate *g, int n) {
  struct timespec end;
  clock_gettime(CLOCK_REALTIME, &end);
  end.tv_sec += (time_t)LONG_WAIT;
  pthread_mutex_lock(&g->mu);
  while (g->arrived < n)
    if (pthread_cond_timedwait(&g->cv, &g->mu, &end) != 0) break;
  bool ok = g->arrived >= n;
  pthread_mutex_unlock(&g->mu);
  return ok;
}

/* A task: arrive at the gate (arg), wait until it opens. */
static inline void *task_wait_gate(void *arg) {
  gate *g = arg;
  pthread_mutex_lock(&g->mu);
  g->arrived++;
  pthread_cond_broadcast(&g->cv);
  while (!g->open) pthread_cond_wait(&g->cv, &g->mu);
  pthread_mutex_unlock(&g->mu);
  return arg;
}

/* ---- small tasks ---- */
static inline void *task_identity(void *arg) { return arg; }
static inline void *task_double(void *arg) { return (void *)((intptr_t)arg * 2); }
static inline void *task_fail(void *arg) {
  return fp_raise(-5 /* -EIO */, "item %ld failed on purpose", (long)(intptr_t)arg);
}
static inline void *task_sleep_ms(void *arg) {
  sleep_ms((int)(intptr_t)arg);
  return arg;
}

/* ---- an allocator that counts, for fp_set_allocator ---- */
static atomic_long allocations; /* calls that allocated */
static atomic_long live_blocks; /* blocks allocated and not freed */
static inline void *counting_malloc(size_t n) {
  atomic_fetch_add(&allocations, 1);
  atomic_fetch_add(&live_blocks, 1);
  return malloc(n);
}
static inline void *counting_calloc(size_t c, size_t n) {
  atomic_fetch_add(&allocations, 1);
  atomic_fetch_add(&live_blocks, 1);
  return calloc(c, n);
}
static inline void *counting_realloc(void *p, size_t n) {
  atomic_fetch_add(&allocations, 1);
  if (!p) atomic_fetch_add(&live_blocks, 1);
  return realloc(p, n);
}
static inline void counting_free(void *p) {
  if (p) atomic_fetch_sub(&live_blocks, 1);
  free(p);
}

/* ---- an input for map: next, next+1, ... up to limit ---- */
typedef struct counter {
  long next, limit; /* limit < 0: endless */
  atomic_long read; /* items handed out */
  int fail_at;      /* the input fails (-EPROTO) at this item; 0: never */
} counter;

static inline int count_up(void *state, void **item) {
  counter *c = state;
  if (c->limit >= 0 && c->next >= c->limit) return 0;
  if (c->fail_at && c->next == c->fail_at) return -71; /* -EPROTO */
  *item = (void *)(intptr_t)c->next++;
  atomic_fetch_add(&c->read, 1);
  return 1;
}

/* A process pool of `workers`, each task limited to task_timeout s (0:
 * none). */
static inline fp_executor *new_process_pool(int workers, double task_timeout) {
  fp_process_pool_options opt;
  fp_process_pool_options_init(&opt);
  opt.max_workers = workers;
  opt.task_timeout = task_timeout;
  fp_executor *ex = NULL;
  int rc = fp_process_pool_new(&opt, &ex);
  ck_assert_msg(rc == 0, "fp_process_pool_new: %s (%s)", fp_err_name(rc), fp_last_error_message());
  return ex;
}

/* A future's result, as a number, which must be there: the task succeeded. */
static inline long value_of(fp_future *f) {
  void *r = NULL;
  int rc = fp_future_result(f, LONG_WAIT, &r);
  ck_assert_msg(rc == 0, "task failed: %s (%s)", fp_err_name(rc), fp_last_error_message());
  return (long)(intptr_t)r;
}

static inline fp_executor *new_pool(int workers) {
  fp_thread_pool_options opt;
  fp_thread_pool_options_init(&opt);
  opt.max_workers = workers;
  fp_executor *ex = NULL;
  ck_assert_int_eq(fp_thread_pool_new(&opt, &ex), 0);
  return ex;
}

/* ---- Check main: one suite per file, every test with a timeout ---- */
#define TEST_MAIN(suite_name, ...)                                         \
  int main(void) {                                                         \
    Suite *s = suite_create(suite_name);                                   \
    TCase *tc = tcase_create("core");                                      \
    tcase_set_timeout(tc, TEST_TIMEOUT);                                   \
    const TTest *tests[] = {__VA_ARGS__};                                  \
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)            \
      tcase_add_test(tc, tests[i]);                                        \
    suite_add_tcase(s, tc);                                                \
    SRunner *sr = srunner_create(s);                                       \
    srunner_run_all(sr, CK_NORMAL);                                        \
    int failed = srunner_ntests_failed(sr);                                \
    srunner_free(sr);                                                      \
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;                           \
  }

#endif
