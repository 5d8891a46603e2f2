/* example_deadlock.c - the two deadlocks the concurrent.futures docs warn
 * about, in Python (run for 2 s, where python3 is installed) and here.
 *   1. wait_on_a and wait_on_b, each waiting on the other's future: Python
 *      waits for ever; here the wait that closes the cycle fails at once
 *      with FP_EDEADLK, naming it.
 *   2. A task of a one-worker pool waits on pow(5, 2), which it submitted
 *      to the same pool: Python waits for ever; here the waiting worker
 *      runs pow itself. */
#define _POSIX_C_SOURCE 200809L
#include <futureproof.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *python_cycle =
    "import time\n"
    "from concurrent.futures import ThreadPoolExecutor\n"
    "def wait_on_b():\n"
    "    time.sleep(0.1)\n"
    "    return b.result()\n"
    "def wait_on_a():\n"
    "    time.sleep(0.1)\n"
    "    return a.result()\n"
    "executor = ThreadPoolExecutor(max_workers=2)\n"
    "a = executor.submit(wait_on_b)\n"
    "b = executor.submit(wait_on_a)\n"
    "print(a.result())\n";

static const char *python_nested =
    "from concurrent.futures import ThreadPoolExecutor\n"
    "def wait_on_future():\n"
    "    f = executor.submit(pow, 5, 2)\n"
    "    return f.result()\n"
    "executor = ThreadPoolExecutor(max_workers=1)\n"
    "print(executor.submit(wait_on_future).result())\n";

/* Run a Python program for 2 s at most; what became of it. */
static void python(const char *program) {
  char path[] = "/tmp/fp-deadlock-XXXXXX";
  int fd = mkstemp(path);
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
  if (!f) return;
  fputs(program, f);
  fclose(f);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "timeout 2 python3 %s >/dev/null 2>&1", path);
  double t0 = fp_now();
  int status = system(cmd);
  unlink(path);
  if (status == -1 || (status >> 8) == 127)
    printf("   Python:      (python3 not found)\n");
  else if ((status >> 8) == 124)
    printf("   Python:      still waiting after %.1f s: killed\n", fp_now() - t0);
  else
    printf("   Python:      ended with status %d\n", status >> 8);
}

/* ---- 1: a cycle of waits ---- */

static fp_future *_Atomic a, *_Atomic b;
static fp_future *both_submitted;

static void *wait_on(fp_future *_Atomic *other) {
  fp_future_wait(both_submitted, 10);
  void *r;
  int rc = fp_future_result(atomic_load(other), 10, &r);
  return rc ? fp_raise(rc, "%s", fp_last_error_message()) : r;
}
static void *wait_on_b(void *arg) {
  (void)arg;
  return wait_on(&b);
}
static void *wait_on_a(void *arg) {
  (void)arg;
  return wait_on(&a);
}
FP_TASK_REGISTER(wait_on_a)
FP_TASK_REGISTER(wait_on_b)

static void cycle(void) {
  printf("1. wait_on_a and wait_on_b wait on each other (2 workers)\n");
  python(python_cycle);
  fp_thread_pool_options opt;
  fp_thread_pool_options_init(&opt);
  opt.max_workers = 2;
  fp_executor *ex;
  fp_thread_pool_new(&opt, &ex);
  fp_future_new(&both_submitted);
  fp_future *fa, *fb;
  double t0 = fp_now();
  fp_submit(ex, wait_on_b, NULL, &fa);
  fp_submit(ex, wait_on_a, NULL, &fb);
  atomic_store(&a, fa);
  atomic_store(&b, fb);
  fp_future_set_result(both_submitted, NULL);
  int rc = fp_future_result(fa, 10, NULL);
  printf("   futureproof: %s after %.3f s: %s\n", fp_err_name(rc), fp_now() - t0,
         fp_last_error_message());
  fp_future_release(fa);
  fp_future_wait(fb, 10);
  fp_future_release(fb);
  fp_future_release(both_submitted);
  fp_executor_free(ex);
}

/* ---- 2: pow(5, 2) on the pool the waiting task runs on ---- */

static fp_executor *single;
static void *power(void *arg) { return (void *)((intptr_t)arg * (intptr_t)arg); }
static void *wait_on_future(void *arg) {
  (void)arg;
  fp_future *f;
  fp_submit(single, power, (void *)5, &f);
  void *r = NULL;
  int rc = fp_future_result(f, 10, &r);
  fp_future_release(f);
  return rc ? fp_raise(rc, "%s", fp_last_error_message()) : r;
}

static void nested(void) {
  printf("2. a task waits on pow(5, 2), submitted to its own one-worker pool\n");
  python(python_nested);
  fp_thread_pool_options opt;
  fp_thread_pool_options_init(&opt);
  opt.max_workers = 1;
  fp_thread_pool_new(&opt, &single);
  fp_future *f;
  double t0 = fp_now();
  fp_submit(single, wait_on_future, NULL, &f);
  void *r = NULL;
  int rc = fp_future_result(f, 10, &r);
  printf("   futureproof: %s after %.3f s: %ld (the waiting worker ran pow itself)\n",
         rc ? fp_err_name(rc) : "result", fp_now() - t0, (long)(intptr_t)r);
  fp_future_release(f);
  fp_executor_free(single);
}

int main(void) {
  printf("== deadlocks: Python's concurrent.futures waits for ever; futureproof does not\n");
  cycle();
  nested();
  return 0;
}
