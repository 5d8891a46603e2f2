/* futureproof.h - the whole public API of futureproof for C11 with POSIX
 * threads: errors, memory, tasks, futures, executors (thread pool, process
 * pool, statistics), waiting, map, the task manager and logging. Executors
 * built outside the library implement futureproof/executor.h.
 *
 * Conventions (see docs/errors.md):
 * - Functions that can fail return 0 on success or a negative FP_E* code.
 *   The calling thread's last error (code and message) is kept for
 *   fp_last_error() / fp_last_error_message().
 * - Bad arguments (NULL, zero or negative counts, unknown enum values) give
 *   FP_EINVAL and a log line; they never crash.
 * - Every blocking call takes a timeout in seconds: negative (or +inf)
 *   waits forever, 0 polls, positive waits at most that long; NaN is
 *   FP_EINVAL.
 * - Futures are reference counted. A function that hands you a future
 *   ("*out") gives you one reference; drop it with fp_future_release(). */
#ifndef FUTUREPROOF_H
#define FUTUREPROOF_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FP_VERSION_MAJOR 0
#define FP_VERSION_MINOR 1
#define FP_VERSION_PATCH 0
#define FP_VERSION_STRING "0.1.0"
/* (major << 16) | (minor << 8) | patch */
#define FP_VERSION_HEX ((FP_VERSION_MAJOR << 16) | (FP_VERSION_MINOR << 8) | FP_VERSION_PATCH)

#if defined(_WIN32)
#define FP_EXTERN
#elif defined(__GNUC__)
#define FP_EXTERN __attribute__((visibility("default")))
#else
#define FP_EXTERN
#endif

#if defined(__GNUC__)
#define FP_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define FP_PRINTF(f, a)
#endif

/* The version of the library that is linked, as "MAJOR.MINOR.PATCH". */
FP_EXTERN const char *fp_version_string(void);

/* ===================================================================== */
/* Errors                                                                */
/* ===================================================================== */

/* Library errors are negative. Those that have an errno counterpart use
 * -errno (as libuv does); the others live above 4000. */
#define FP_ERRNO_MAP(XX)                                                      \
  XX(EINVAL, -EINVAL, "invalid argument")                                     \
  XX(ENOMEM, -ENOMEM, "not enough memory")                                    \
  XX(ETIMEDOUT, -ETIMEDOUT, "timed out")                                      \
  XX(ECANCELED, -ECANCELED, "cancelled")                                      \
  XX(EAGAIN, -EAGAIN, "queue full, try again")                                \
  XX(EINTR, -EINTR, "interrupted")                                            \
  XX(EDEADLK, -EDEADLK, "deadlock: a cycle of waits")                         \
  XX(ESHUTDOWN, -ESHUTDOWN, "cannot schedule new futures after shutdown")    \
  XX(EBUSY, -EBUSY, "resource busy: called from inside the executor")         \
  XX(EBROKEN, -4001, "executor broken")                                       \
  XX(ECRASHED, -4002, "worker crashed")                                       \
  XX(ESTATE, -4003, "invalid state")                                          \
  XX(ETASK, -4004, "task failed")                                             \
  XX(EOF, -4095, "end of iteration")

typedef enum {
#define FP__ERR_ENUM(name, value, text) FP_##name = (value),
  FP_ERRNO_MAP(FP__ERR_ENUM)
#undef FP__ERR_ENUM
} fp_errno;

/* A message for any code (library codes and every -errno the C library
 * names; "unknown error" for others). Never NULL; the string is static. */
FP_EXTERN const char *fp_strerror(int code);
/* The code's name, e.g. "FP_ETIMEDOUT"; -errno values a task may fail
 * with are named too ("ENOENT", "EBADMSG"); "FP_UNKNOWN" for others. */
FP_EXTERN const char *fp_err_name(int code);

/* An error: a code and a message. Owned by whoever hands it out. */
typedef struct fp_error {
  int code;            /* negative FP_E* code, or a task's own code */
  const char *message; /* never NULL */
} fp_error;

/* The calling thread's last error, set by every public function that
 * fails (and by fp_map_next / fp_future_result when they report a task's
 * error). The pointer is valid until the thread's next failing call. */
FP_EXTERN const fp_error *fp_last_error(void);
FP_EXTERN const char *fp_last_error_message(void);

/* ===================================================================== */
/* Memory                                                                */
/* ===================================================================== */

/* Redirect every allocation the library makes. All four must be given.
 * Call it before any other fp_ function, while no executor exists.
 * Allocation failure anywhere is reported as FP_ENOMEM, never a crash. */
typedef void *(*fp_malloc_fn)(size_t size);
typedef void *(*fp_calloc_fn)(size_t count, size_t size);
typedef void *(*fp_realloc_fn)(void *ptr, size_t size);
typedef void (*fp_free_fn)(void *ptr);
FP_EXTERN int fp_set_allocator(fp_malloc_fn malloc_fn, fp_calloc_fn calloc_fn,
                               fp_realloc_fn realloc_fn, fp_free_fn free_fn);
/* Back to the C library's allocator. */
FP_EXTERN void fp_reset_allocator(void);

/* ===================================================================== */
/* Tasks                                                                 */
/* ===================================================================== */

/* A task: takes its argument, returns its result (pthread style). */
typedef void *(*fp_fn)(void *arg);

/* Inside a task: fail it with a code and a printf-style message, then
 * return what fp_raise returns (NULL):  return fp_raise(-EIO, "read %s", p);
 * A code of 0 becomes FP_ETASK. Outside a task it logs and does nothing. */
FP_EXTERN void *fp_raise(int code, const char *fmt, ...) FP_PRINTF(2, 3);

/* ---- Tasks by name: what crosses to another program's memory ----
 * A function pointer means nothing in a process that was not forked from
 * this one (address space layout randomisation). Registered under a name,
 * a function has a stable id -- the same in every process running the
 * same program -- that executors on other machines (futureproof-mpi) send
 * instead of the pointer. */

/* Register fn under name (at most FP_TASK_NAME_MAX bytes). Registering the
 * same pair again is harmless. FP_EINVAL for a NULL or empty or too long
 * name, a name already taken by another function, or a function already
 * registered under another name; FP_ENOMEM. Thread-safe. */
#define FP_TASK_NAME_MAX 127
FP_EXTERN int fp_task_register(const char *name, fp_fn fn);
/* Register fn under its own name when the program (or library) is loaded,
 * before main:   FP_TASK_REGISTER(square);   at file scope. */
#define FP_TASK_REGISTER(fn)                                                   \
  __attribute__((constructor)) static void fp__register_task_##fn(void) {      \
    (void)fp_task_register(#fn, (fp_fn)(fn));                                  \
  }
/* The id of a registered function (a 64-bit hash of its name, never 0),
 * or 0 if it is not registered. */
FP_EXTERN uint64_t fp_task_id(fp_fn fn);
/* The registered function with this id, or NULL. */
FP_EXTERN fp_fn fp_task_by_id(uint64_t id);
/* The name of a registered function, or NULL (valid for the program's
 * life). */
FP_EXTERN const char *fp_task_name(fp_fn fn);

/* Inside a task: true when its future was cancelled while running, or its
 * executor is shutting down with cancel_futures. A long task should poll
 * it and return early. Outside a task: false. */
FP_EXTERN bool fp_cancel_requested(void);

/* ===================================================================== */
/* Futures                                                               */
/* ===================================================================== */

typedef struct fp_future fp_future;

typedef enum {
  FP_PENDING = 0,
  FP_RUNNING = 1,
  FP_FINISHED = 2, /* with a result or an error */
  FP_CANCELLED = 3
} fp_future_state;

/* Called when a future is done (finished or cancelled). */
typedef void (*fp_done_cb)(fp_future *f, void *userdata);

/* A future not tied to any executor (what an executor, or a bridge to
 * another event source, completes with the fp_future_set_* calls). */
FP_EXTERN int fp_future_new(fp_future **out);

/* Reference counting. The last release frees the future, its result (when
 * a result destructor was given) and its argument (when an argument
 * destructor was given). A future that failed and whose error nobody
 * retrieved (fp_future_result or fp_future_error) is reported through the
 * logger, at warning level, when its last reference goes. */
FP_EXTERN fp_future *fp_future_retain(fp_future *f);
FP_EXTERN void fp_future_release(fp_future *f);

FP_EXTERN fp_future_state fp_future_get_state(const fp_future *f);
FP_EXTERN bool fp_future_done(const fp_future *f);      /* finished or cancelled */
FP_EXTERN bool fp_future_running(const fp_future *f);
FP_EXTERN bool fp_future_cancelled(const fp_future *f);

/* Cancel: a pending future becomes cancelled (waiters wake, callbacks run)
 * and true is returned; an already cancelled one returns true; a running
 * or finished one returns false. A running task is still asked to stop
 * (fp_cancel_requested() turns true inside it). */
FP_EXTERN bool fp_future_cancel(fp_future *f);

/* Wait until done, at most timeout_s. 0 or FP_ETIMEDOUT; in a task,
 * FP_EDEADLK at once when the wait could never end (a cycle of waits,
 * named in the message: docs/deadlocks.md). */
FP_EXTERN int fp_future_wait(fp_future *f, double timeout_s);

/* The result: waits at most timeout_s, then returns
 *   0 and *out = the task's return value;
 *   the task's error code (its message in fp_future_error / fp_last_error);
 *   FP_ECANCELED if cancelled; FP_ETIMEDOUT if not done in time;
 *   FP_EDEADLK (in a task) if the wait could never end.
 * With a result destructor the future still owns the result. out may be
 * NULL. */
FP_EXTERN int fp_future_result(fp_future *f, double timeout_s, void **out);

/* The error of a failed future, or NULL (pending, running, successful or
 * cancelled). Never blocks. The pointer lives as long as the future. */
FP_EXTERN const fp_error *fp_future_error(fp_future *f);

/* Callbacks run in the order added, in the thread that completes the
 * future; one added to a done future runs at once in the caller. On an
 * error (FP_EINVAL, FP_ENOMEM) the callback is never called. userdata must
 * live until the callback has run, which can be after fp_future_wait (or
 * any other waiter) has returned: waiters are woken first. */
FP_EXTERN int fp_future_on_done(fp_future *f, fp_done_cb cb, void *userdata);

/* What the future runs, and a number unique within its executor (tasks
 * are numbered from 1 in submission order; 0 for fp_future_new futures).
 * The pair is the task's identity in logs. */
FP_EXTERN fp_fn fp_future_fn(const fp_future *f);
FP_EXTERN void *fp_future_arg(const fp_future *f);
FP_EXTERN uint64_t fp_future_id(const fp_future *f);
/* The task's name (fp_task_options.name, or its function's name: see
 * there) in buf, truncated to len; returns buf ("" if f is NULL). */
FP_EXTERN const char *fp_future_name(const fp_future *f, char *buf, size_t len);
/* How many times its task started (1 without retries; 0 before it ran). */
FP_EXTERN int fp_future_attempts(const fp_future *f);

/* For the party that completes a future (executors, bridges):
 * set_running: pending -> running (0); FP_ECANCELED if it was cancelled
 *   (the caller must not run it); FP_ESTATE otherwise.
 * set_result / set_error: -> finished; FP_ESTATE if already done (the first
 *   outcome stays). set_error's code 0 becomes FP_ETASK. */
FP_EXTERN int fp_future_set_running(fp_future *f);
FP_EXTERN int fp_future_set_result(fp_future *f, void *result);
FP_EXTERN int fp_future_set_error(fp_future *f, int code, const char *fmt, ...)
    FP_PRINTF(3, 4);

/* ===================================================================== */
/* Executors                                                             */
/* ===================================================================== */

typedef struct fp_executor fp_executor;

typedef struct fp_thread_pool_options {
  int max_workers;     /* >= 1; fp_thread_pool_options_init: min(32, ncpu + 4) */
  const char *thread_name_prefix; /* threads are named PREFIX_N; NULL: "fp" */
  /* Runs once in each worker before its first task. A non-zero return
   * breaks the pool: queued futures fail with FP_EBROKEN, and so do later
   * submits. */
  int (*initializer)(void *arg);
  void *initializer_arg;
  /* How many tasks may wait in the queue: 0 = unbounded (default). When
   * full, fp_submit waits for room, fp_submit_timeout waits at most its
   * timeout (FP_ETIMEDOUT), fp_try_submit fails with FP_EAGAIN at once. */
  long queue_capacity;
} fp_thread_pool_options;

/* Fill opt with the defaults. */
FP_EXTERN void fp_thread_pool_options_init(fp_thread_pool_options *opt);

/* A pool of threads. opt NULL = defaults. Threads start lazily: an idle
 * thread is reused before a new one starts, and there are never more than
 * max_workers. FP_EINVAL for bad options, FP_ENOMEM. */
FP_EXTERN int fp_thread_pool_new(const fp_thread_pool_options *opt, fp_executor **out);

/* Retry with back-off (fp_task_options.retry, fp_tm_options.retry): a
 * task that fails runs again, after a delay, until it succeeds or
 * max_attempts were made; its future fails only then, with the last error
 * and "(after N attempts)" in the message. The waits between attempts
 * occupy no worker and no thread (the library's timer). Zero: no retry. */
typedef struct fp_retry {
  int max_attempts;   /* attempts in all; 0 or 1: no retry */
  double first_delay; /* seconds before the second attempt */
  double factor;      /* each next delay is the last one times this (below 1: 1) */
  double max_delay;   /* seconds, the longest delay; 0: no cap */
  double jitter;      /* 0 to 1: each delay times a random 1 - jitter .. 1 + jitter */
  /* The codes retried: codes[0..ncodes); ncodes 0: every error but
   * FP_ECANCELED, FP_ESHUTDOWN and FP_EBROKEN. */
  int codes[8];
  int ncodes;
} fp_retry;

/* Per-task options for fp_submit_ex. Zero-initialise what you do not use. */
typedef struct fp_task_options {
  /* Called with the argument when the future is freed (the task ran, failed
   * or was cancelled). Not called when the submit itself fails. */
  fp_free_fn arg_free;
  /* Called with a non-NULL result when the future is freed. */
  fp_free_fn result_free;
  /* The task's name in messages (deadlocks, unretrieved errors), copied.
   * NULL: its function's registered name (fp_task_register), else its
   * symbol where it can be found (dladdr), else its address. */
  const char *name;
  fp_retry retry; /* none by default */
} fp_task_options;

/* Submit fn(arg). On success *out holds a new future (one reference).
 * Errors: FP_EINVAL, FP_ENOMEM, FP_ESHUTDOWN (after shutdown), FP_EBROKEN
 * (initializer failed), FP_EAGAIN / FP_ETIMEDOUT (bounded queue full).
 * On error nothing was submitted and the argument is still yours. */
FP_EXTERN int fp_submit(fp_executor *ex, fp_fn fn, void *arg, fp_future **out);
FP_EXTERN int fp_submit_timeout(fp_executor *ex, fp_fn fn, void *arg, double timeout_s,
                                fp_future **out);
FP_EXTERN int fp_try_submit(fp_executor *ex, fp_fn fn, void *arg, fp_future **out);
/* topt may be NULL; timeout_s bounds the wait for queue room. */
FP_EXTERN int fp_submit_ex(fp_executor *ex, fp_fn fn, void *arg, const fp_task_options *topt,
                           double timeout_s, fp_future **out);
/* Submit fn(arg) delay_s seconds from now (fp_submit_at: at fp_now()
 * time `at`). The future is pending meanwhile: fp_future_cancel cancels it
 * before it starts, and a shutdown cancels it if it is not due yet. No
 * thread waits for it: the library's one timer hands it over when due.
 * FP_EINVAL for a negative or NaN delay. */
FP_EXTERN int fp_submit_after(fp_executor *ex, double delay_s, fp_fn fn, void *arg,
                              fp_future **out);
FP_EXTERN int fp_submit_at(fp_executor *ex, double at, fp_fn fn, void *arg, fp_future **out);

/* ---- combinators (no thread blocks while they wait; any executor) ----
 * Each gives a new future (one reference in *out). Errors and cancels of
 * what it waits on pass through (code and message); cancelling it cancels
 * what it waits on. FP_EINVAL for NULL arguments, FP_ENOMEM. */
/* When f succeeds, run fn(f's result) on ex; out gets fn's outcome. f's
 * failure or cancel becomes out's, and fn does not run. */
FP_EXTERN int fp_future_then(fp_future *f, fp_executor *ex, fp_fn fn, fp_future **out);
/* Done when all of fs[0..n) succeed (result NULL), or at the first that
 * fails or is cancelled (with its outcome); n 0: done at once. */
FP_EXTERN int fp_when_all(fp_future *const *fs, size_t n, fp_future **out);
/* Done when the first of fs[0..n) is: its index as the result
 * ((uintptr_t)), or its failure or cancel. n must be at least 1. */
FP_EXTERN int fp_when_any(fp_future *const *fs, size_t n, fp_future **out);

/* No new work. cancel_futures cancels what has not started (and running
 * tasks see fp_cancel_requested()). wait: return once every worker has
 * finished what remains and exited. Called from one of the pool's own tasks,
 * wait covers the other workers only (a thread cannot wait for itself).
 * Calling it again is harmless. */
FP_EXTERN int fp_shutdown(fp_executor *ex, bool wait, bool cancel_futures);
/* The same as fp_shutdown(ex, true, cancel_futures), but waits at most
 * timeout_s: FP_ETIMEDOUT if workers are still busy then (the executor stays
 * shut down; call again to wait more). */
FP_EXTERN int fp_shutdown_timeout(fp_executor *ex, bool cancel_futures, double timeout_s);

/* Shut down (wait = true, unless already shut down) and free. Futures stay
 * valid: they hold their own references. FP_EBUSY (nothing freed) when
 * called from one of the executor's own tasks. NULL is a no-op. */
FP_EXTERN int fp_executor_free(fp_executor *ex);

/* The number of workers the executor may run at once. */
FP_EXTERN int fp_executor_max_workers(const fp_executor *ex);

/* The CPUs this process may run on (its affinity, as Python's
 * os.process_cpu_count), at least 1: the process pool's default size. */
FP_EXTERN int fp_cpu_count(void);

/* ---- Bytes: what crosses into a process pool's workers ---- */

/* A byte buffer in one allocation (the library's allocator). */
typedef struct fp_bytes {
  size_t size;
  unsigned char data[];
} fp_bytes;
FP_EXTERN fp_bytes *fp_bytes_new(size_t size);                 /* NULL on ENOMEM */
FP_EXTERN fp_bytes *fp_bytes_copy(const void *data, size_t size);
FP_EXTERN void fp_bytes_free(void *bytes);                     /* an fp_free_fn */

/* Submit fn over a copy of data[0..size). fn receives a `const fp_bytes *`
 * (the copy) and returns an fp_bytes * (fp_bytes_new / fp_bytes_copy; NULL
 * means empty) or fails with fp_raise. The future owns the result (an
 * `fp_bytes *`) and frees it with itself. On a process pool the bytes
 * travel to the worker and back; on a thread pool they are simply handed
 * over, so the same task runs on both. */
FP_EXTERN int fp_submit_bytes(fp_executor *ex, fp_fn fn, const void *data, size_t size,
                              fp_future **out);

/* ---- The process pool ---- */

typedef struct fp_process_pool_options {
  int max_workers;         /* >= 1; default: the number of CPUs */
  int (*initializer)(void *arg); /* in each worker first; non-zero breaks the pool */
  void *initializer_arg;
  long max_tasks_per_child;  /* replace a worker after this many tasks (jobs); 0: never */
  double task_timeout;       /* seconds a task may run before its worker is killed; 0: none */
  size_t memory_limit;       /* bytes of address space per worker (RLIMIT_AS); 0: none */
  /* A crash replaces the worker and fails only its task (default). With
   * break_on_crash, as in Python: every pending future fails with
   * FP_EBROKEN and so do later submits. */
  bool break_on_crash;
} fp_process_pool_options;
FP_EXTERN void fp_process_pool_options_init(fp_process_pool_options *opt);

/* A pool of worker processes, forked from a single-threaded fork server
 * created here (so create it while every function your tasks call exists;
 * in a threaded program that is safe). The first worker starts here too:
 * FP_ENOMEM (the message says why) when no process can be started. Tasks
 * run as fn(arg) in a worker: with fp_submit the pointer's *value* crosses
 * (use it for integers), with fp_submit_bytes the bytes do. A task that
 * crashes fails its future with FP_ECRASHED naming the signal or exit
 * status; the worker is replaced, and what the task started (its process
 * group) is killed with it. When no worker can be started for a second
 * (fork fails), queued tasks fail with FP_ENOMEM; the pool tries again,
 * backing off, for later ones. */
FP_EXTERN int fp_process_pool_new(const fp_process_pool_options *opt, fp_executor **out);

/* Stop everything now: shut down (cancel what is queued) and kill every
 * worker with SIGKILL (terminate: SIGTERM, then SIGKILL for a worker still
 * there after a second); running tasks fail with FP_ECANCELED. Returns
 * once the workers are gone (reaped). */
FP_EXTERN int fp_process_pool_kill_workers(fp_executor *ex);
FP_EXTERN int fp_process_pool_terminate_workers(fp_executor *ex);

/* ===================================================================== */
/* Executor statistics                                                   */
/* ===================================================================== */

/* Latency of tasks, in seconds: how many, their mean, percentiles (each
 * within about 3% of the true value) and the largest. */
typedef struct fp_latency {
  uint64_t count;
  double mean, p50, p90, p99, max;
} fp_latency;

/* Counters for monitoring (a snapshot), for any executor kind. The struct
 * grows at its end in later versions: fp_executor_get_stats passes the
 * size your header knows, and the library fills that much. */
typedef struct fp_executor_stats {
  size_t size;       /* set by the library: the bytes it filled */
  size_t threads;    /* threads started and not yet exited */
  size_t idle;       /* of which waiting for work */
  size_t queued;     /* tasks waiting in the queue */
  uint64_t submitted; /* tasks accepted so far */
  uint64_t completed; /* tasks that finished (result or error) */
  /* Thread pools: threads outside the pool that submit through a lane of
   * their own (no lock; their tasks take turns with other threads', see
   * docs/executors.md); 0 where lanes are off. */
  size_t lanes;
  /* Outcomes, always counted: tasks that failed (other than below), were
   * cancelled (before or while running), ran out of time (FP_ETIMEDOUT),
   * crashed their worker (FP_ECRASHED), and attempts made again
   * (fp_retry). */
  uint64_t failed, cancelled, timed_out, crashed, retried;
  /* With fp_executor_stats_enable: */
  bool latency;          /* on */
  fp_latency queue_wait; /* submitted -> started */
  fp_latency run;        /* started -> finished */
} fp_executor_stats;
FP_EXTERN int fp_executor_stats_get(const fp_executor *ex, fp_executor_stats *out, size_t size);
/* 0 and the snapshot, or FP_EINVAL / FP_ENOMEM (the merge needs 10 KiB). */
#define fp_executor_get_stats(ex, out) \
  fp_executor_stats_get((ex), (out), sizeof(fp_executor_stats))

/* Record every task's queue wait and run time from now on (log-bucketed
 * histograms: fixed memory, no lock; each worker adds to its own, a read
 * merges them). Off by default: it reads the clock three times a task,
 * which a trivial task feels (see docs/observability.md); a task manager
 * keeps its own, always. There is no turning it off. 0 or FP_ENOMEM. */
FP_EXTERN int fp_executor_stats_enable(fp_executor *ex);

typedef enum {
  FP_STATS_TEXT = 0,      /* a few lines for people */
  FP_STATS_PROMETHEUS = 1 /* the Prometheus text exposition format */
} fp_stats_format;
/* Write the executor's statistics into buf (len bytes, always
 * terminated when len > 0), as snprintf does: returns the length the
 * whole text needs (call again with more room when it is >= len), or
 * FP_EINVAL / FP_ENOMEM. Prometheus: counters fp_tasks_*_total, gauges,
 * and histograms fp_task_queue_wait_seconds and fp_task_run_seconds (with
 * latency on), labelled executor="<kind>",id="<n>". */
FP_EXTERN int fp_executor_stats_format(const fp_executor *ex, char *buf, size_t len,
                                       fp_stats_format format);

/* Write a Chrome trace (the Trace Event format, JSON) of every task of
 * every executor from now on to path: one complete event per task, its
 * executor as the process and its worker (thread, or worker process) as
 * the row, with its name and outcome; open it in Perfetto or
 * chrome://tracing. Written as tasks end, through a bounded buffer; the
 * file is a whole JSON array after every write (at most 0.2 s of events
 * behind), so a run that is killed leaves a valid trace. FP_TRACE=path in
 * the environment starts one when the first executor is made. One trace
 * at a time: FP_EBUSY when one is open; FP_EINVAL; -errno (say
 * -EACCES) for a file it cannot open. */
FP_EXTERN int fp_trace_start(const char *path);
/* Write what is buffered and close the trace (also done at exit). 0, or
 * FP_EOF when none was open. */
FP_EXTERN int fp_trace_stop(void);

/* ===================================================================== */
/* Waiting: over futures from any executors, mixed                        */
/* ===================================================================== */

typedef enum {
  FP_ALL_COMPLETED = 0,
  FP_FIRST_COMPLETED = 1,
  FP_FIRST_EXCEPTION = 2 /* a finished future with an error; else as ALL */
} fp_return_when;

/* Wait until `when` holds or timeout_s passes. A future listed twice counts
 * once. done / not_done (each may be NULL, else room for n) receive the
 * distinct futures (borrowed: no reference is taken); their counts go to
 * n_done / n_not_done. A timeout is not an error: the unfinished are in
 * not_done. Returns 0, FP_EINVAL or FP_ENOMEM; in a task, FP_EDEADLK at
 * once if the wait could never end (done / not_done still filled). O(n). */
FP_EXTERN int fp_wait(fp_future *const *fs, size_t n, fp_return_when when, double timeout_s,
                      fp_future **done, size_t *n_done, fp_future **not_done,
                      size_t *n_not_done);

/* Iterate over futures as they complete: those already done first (in the
 * order given), then each as it completes. Duplicates once. The timeout
 * counts from fp_as_completed_new. The iterator holds a reference on each
 * future until it is freed. O(n) overall. */
typedef struct fp_as_completed fp_as_completed;
FP_EXTERN int fp_as_completed_new(fp_future *const *fs, size_t n, double timeout_s,
                                  fp_as_completed **out);
/* 0 and *out = the next done future (borrowed, valid until the iterator is
 * freed); FP_EOF when every future was yielded; FP_ETIMEDOUT with the
 * message "N (of M) futures unfinished" in fp_last_error(); in a task,
 * FP_EDEADLK if every one left waits on it. */
FP_EXTERN int fp_as_completed_next(fp_as_completed *it, fp_future **out);
FP_EXTERN void fp_as_completed_free(fp_as_completed *it);

/* ===================================================================== */
/* map: ordered, lazy, bounded                                            */
/* ===================================================================== */

/* The input: put the next item in *item and return 1; return 0 at the end;
 * a negative code stops the input with that error. Called only from the
 * thread that calls fp_map_new / fp_map_next. */
typedef int (*fp_iter_fn)(void *state, void **item);

#define FP_CHUNKSIZE_AUTO 0

typedef struct fp_map_options {
  /* Items read ahead of the consumer (submitted, not yet returned).
   * 0 = default: 2 x the executor's max_workers x chunksize, at least 64
   * (with an automatic chunksize it follows the chunks, and the window
   * has room for chunks of up to 1024 items). */
  size_t buffersize;
  /* Items sent to a process pool's worker (or an MPI rank) at once; results
   * still come one by one, in order. FP_CHUNKSIZE_AUTO (0, the default):
   * start at 1 and size chunks from the measured time an item takes,
   * toward about 1 ms of work a chunk (at most 1024 items), so that tiny
   * tasks do not pay a round trip each. A thread pool runs each item as a
   * task of its own whatever it says, and takes them many at a time. */
  int chunksize;
  double timeout_s;       /* from fp_map_new; negative = none (the default) */
  fp_free_fn item_free;   /* called on each item when its task is done with it */
  fp_free_fn result_free; /* called on each non-NULL result at the next
                           * fp_map_next / fp_map_free: the map keeps
                           * ownership. NULL: results are yours. */
} fp_map_options;
FP_EXTERN void fp_map_options_init(fp_map_options *opt);

typedef struct fp_map fp_map;

/* Start mapping fn over the items next() produces. opt NULL = defaults.
 * Reads at most buffersize items before the first fp_map_next. */
FP_EXTERN int fp_map_new(fp_executor *ex, fp_fn fn, fp_iter_fn next, void *state,
                         const fp_map_options *opt, fp_map **out);
/* The next result in input order:
 *   0 and *result;  the item's task error code (message in fp_last_error;
 *   the iteration can go on);  FP_EOF at the end;  the input's own error
 *   code when next() failed (after the items before it);  FP_ETIMEDOUT when
 *   the map's timeout passed (then every later call too);  FP_ESHUTDOWN
 *   when the executor was shut down under the map. */
FP_EXTERN int fp_map_next(fp_map *m, void **result);
/* Abandon or end the map: tasks not started are cancelled, nothing waits
 * for running ones. NULL is a no-op. */
FP_EXTERN void fp_map_free(fp_map *m);

/* ===================================================================== */
/* Task manager: fail fast, error policies, backpressure, monitor        */
/* ===================================================================== */

/* What happens when a task fails. */
typedef enum {
  FP_POLICY_RAISE = 0,  /* stop everything at the first failure (default) */
  FP_POLICY_LOG = 1,    /* log it with the task's identity, go on */
  FP_POLICY_IGNORE = 2  /* go on silently; the error stays in the task */
} fp_error_policy;

/* "raise", "log" or "ignore", in any case. FP_EINVAL for anything else. */
FP_EXTERN int fp_error_policy_parse(const char *name, fp_error_policy *out);
FP_EXTERN const char *fp_error_policy_name(fp_error_policy policy);

typedef struct fp_tm_options {
  fp_error_policy error_policy;
  /* Tasks submitted and not yet consumed, at most. 0 = default: 2 x the
   * executor's max_workers. A larger window (64, 256) makes tiny tasks
   * several times faster (docs/observability.md). */
  size_t max_in_flight;
  /* Seconds between monitor lines ("N tasks completed in the last X s"),
   * logged at info level. Default 2; 0 = no monitor; at least 0.001. */
  double monitor_interval;
  /* Install a SIGINT handler for the manager's life: one Ctrl-C stops the
   * run of every live manager that asked (fp_tm_next / fp_tm_run return
   * FP_EINTR); a second one during the stop exits the process. The
   * program's handler is restored when the last such manager is freed, in
   * whatever order they are. Off by default: the library installs no
   * handler unasked. */
  bool handle_interrupt;
  /* Show progress when `total` is known: a bar redrawn in place on stderr
   * when it is a terminal, plain info log lines otherwise. */
  bool progress;
  uint64_t total; /* tasks expected in all (0: unknown) */
  /* Keep every consumed task for fp_tm_completed_tasks. Off by default:
   * memory would grow with the number of tasks. */
  bool keep_completed;
  /* Name each fp_tm_map item's task in messages (the log policy's line,
   * the fail-fast error, deadlocks): write a short description of item,
   * e.g. its URL, into buf (len bytes). NULL: the function's name. */
  void (*describe)(const void *item, char *buf, size_t len);
  /* Retry every task (fp_retry): the policy sees only the last outcome,
   * and the monitor line and fp_tm_stats count the retries. */
  fp_retry retry;
  /* Write a Chrome trace of the run to this file (fp_trace_start: every
   * task of every executor while the manager lives), closed by
   * fp_tm_free. NULL: none (FP_TRACE in the environment still works).
   * When a trace is open already (FP_TRACE, another manager), a warning
   * says so and the run's tasks go into that one; a file it cannot write
   * fails fp_tm_new. */
  const char *trace_path;
} fp_tm_options;
FP_EXTERN void fp_tm_options_init(fp_tm_options *opt);

typedef struct fp_task_manager fp_task_manager;
/* A task handle: its function and argument, its outcome, its timings.
 * Reference counted like futures. */
typedef struct fp_task fp_task;

/* A manager over any executor (which must outlive it). opt NULL =
 * defaults. Monitor lines and progress tick on the library's timer;
 * handle_interrupt starts one thread of its own (never a worker of the
 * executor). */
FP_EXTERN int fp_tm_new(fp_executor *ex, const fp_tm_options *opt, fp_task_manager **out);

/* Add fn(arg). Tasks run in the order of fp_tm_submit and fp_tm_map calls.
 * When max_in_flight tasks are submitted and not consumed, waits at most
 * timeout_s for the consumer (fp_tm_next / fp_tm_run, in another thread):
 * FP_ETIMEDOUT then (FP_EAGAIN for timeout 0). After a stop: the stop's
 * code. out (may be NULL) receives a reference to the task. */
FP_EXTERN int fp_tm_submit(fp_task_manager *tm, fp_fn fn, void *arg, double timeout_s,
                           fp_task **out);
/* fp_tm_submit with the task's name for messages (copied; NULL: the
 * function's name). */
FP_EXTERN int fp_tm_submit_named(fp_task_manager *tm, fp_fn fn, void *arg, const char *name,
                                 double timeout_s, fp_task **out);

/* Add fn over every item next() produces, read lazily: an item is read only
 * when the window has room, so an endless input runs in constant memory.
 * item_free (may be NULL) is called on each item when its task is freed. */
FP_EXTERN int fp_tm_map(fp_task_manager *tm, fp_fn fn, fp_iter_fn next, void *state,
                        fp_free_fn item_free);

/* The next completed task, in completion order (one reference in *out):
 *   0 (with log/ignore policies the task may hold an error);
 *   FP_EOF when every task was consumed and the inputs are exhausted;
 *   FP_ETIMEDOUT;
 *   after a stop, the stop's code every time: the failed task's error
 *   (raise policy; *out = that task, see fp_tm_failed_task) or FP_EINTR. */
FP_EXTERN int fp_tm_next(fp_task_manager *tm, double timeout_s, fp_task **out);

/* Consume everything: 0 when all tasks are done (with log/ignore, failures
 * included), or what fp_tm_next returned that was not 0 or FP_EOF. */
FP_EXTERN int fp_tm_run(fp_task_manager *tm, double timeout_s);

/* The task whose failure stopped the run (raise policy), with a reference;
 * FP_EOF (and NULL) if no task failed the run. */
FP_EXTERN int fp_tm_failed_task(fp_task_manager *tm, fp_task **out);

/* With keep_completed: the consumed tasks, in consumption order (borrowed,
 * valid until fp_tm_free). Returns their count. */
FP_EXTERN size_t fp_tm_completed_tasks(fp_task_manager *tm, fp_task *const **tasks);

/* Grows at its end like fp_executor_stats: fp_tm_get_stats passes the
 * size your header knows. */
typedef struct fp_tm_stats {
  size_t size;          /* set by the library: the bytes it filled */
  uint64_t submitted;   /* tasks handed to the executor */
  uint64_t completed;   /* finished (result or error) */
  uint64_t failed;      /* of which with an error */
  uint64_t cancelled;   /* cancelled before they ran */
  uint64_t retried;     /* attempts made again (fp_retry) */
  size_t in_flight;     /* submitted, not consumed */
  size_t max_in_flight; /* the window */
  size_t peak_in_flight;/* the most ever in flight at once */
  int stop_code;        /* 0 while running, else why it stopped */
  double stop_latency;  /* seconds from the failure (or the signal) to the
                           moment every queued task was cancelled */
  uint64_t timed_out;   /* of the failed: FP_ETIMEDOUT */
  uint64_t crashed;     /* of the failed: FP_ECRASHED */
  /* Always kept: from fp_tm_submit (or a map reading the item) to the
   * start, and from the start to the end, of the tasks consumed or done.
   * On an executor that does not share memory (processes) the start is
   * the hand-over, unless the executor keeps statistics itself. */
  fp_latency queue_wait, run;
} fp_tm_stats;
FP_EXTERN int fp_tm_stats_get(fp_task_manager *tm, fp_tm_stats *out, size_t size);
/* 0 and the snapshot, or FP_EINVAL. */
#define fp_tm_get_stats(tm, out) fp_tm_stats_get((tm), (out), sizeof(fp_tm_stats))

/* Stop what was not consumed (queued tasks are cancelled, running ones are
 * asked to stop), stop the monitor, restore the SIGINT handler, and free
 * the manager. Never waits for running tasks: they finish on their own.
 * Task handles you hold stay valid. NULL is a no-op. */
FP_EXTERN void fp_tm_free(fp_task_manager *tm);

/* Task handles. */
FP_EXTERN fp_task *fp_task_retain(fp_task *t);
FP_EXTERN void fp_task_release(fp_task *t);
FP_EXTERN fp_fn fp_task_fn(const fp_task *t);
FP_EXTERN void *fp_task_arg(const fp_task *t);
FP_EXTERN uint64_t fp_task_index(const fp_task *t); /* 1, 2, ... in submission order */
FP_EXTERN fp_future_state fp_task_state(const fp_task *t);
FP_EXTERN bool fp_task_complete(const fp_task *t); /* finished or cancelled */
/* 0 and the result; the task's error code; FP_ECANCELED; FP_ETIMEDOUT if
 * not complete (it never waits). */
FP_EXTERN int fp_task_result(const fp_task *t, void **out);
FP_EXTERN const fp_error *fp_task_error(const fp_task *t); /* NULL unless failed */
/* Monotonic seconds (as fp_now()) it was queued, started and finished; 0
 * for what has not happened. */
FP_EXTERN void fp_task_times(const fp_task *t, double *queued, double *started,
                             double *finished);

/* Monotonic clock, in seconds, as the task timings use it. */
FP_EXTERN double fp_now(void);

/* ===================================================================== */
/* Logging                                                               */
/* ===================================================================== */

typedef enum {
  FP_LOG_DEBUG = 0,
  FP_LOG_INFO = 1,
  FP_LOG_WARNING = 2,
  FP_LOG_ERROR = 3
} fp_log_level;

/* Receives every log line at or above the logger's level; may be called
 * from any thread, at once from several. */
typedef void (*fp_log_fn)(fp_log_level level, const char *message, void *userdata);

/* Install a logger (NULL: back to the default, which writes
 * "[HH:MM:SS thread-id] level: message" to stderr). min_level filters. */
FP_EXTERN int fp_set_logger(fp_log_fn fn, void *userdata, fp_log_level min_level);
/* Log through the installed logger (what the library uses itself). */
FP_EXTERN void fp_log(fp_log_level level, const char *fmt, ...) FP_PRINTF(2, 3);
FP_EXTERN const char *fp_log_level_name(fp_log_level level);

#ifdef __cplusplus
}
#endif
#endif /* FUTUREPROOF_H */
