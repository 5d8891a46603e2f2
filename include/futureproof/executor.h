/* futureproof/executor.h - the interface for executors built outside the
 * library: a vtable an executor fills, how it is created and handed to the
 * common code, and the calls it makes on the futures it runs.
 *
 * The common code (fp_submit and friends, fp_shutdown, fp_executor_free,
 * fp_map, the task manager, fp_wait ...) does everything executors share:
 * it checks arguments, refuses work after shutdown or breakage, makes and
 * numbers the futures, and counts them. An executor only queues futures and
 * runs them. The library's own thread and process pools are written
 * against this same interface.
 *
 * A future handed to submit carries one reference for the executor. The
 * executor runs it with fp_executor_run(f) in whatever thread it likes (or
 * completes it otherwise: fp_future_set_running, then fp_future_set_result
 * or fp_future_set_error; or fp_future_cancel if it never ran), then drops
 * its reference with fp_future_release(f).
 *
 * Versioned: a vtable says which version of this interface it was written
 * for, and fp_executor_new refuses one it does not know. */
#ifndef FUTUREPROOF_EXECUTOR_H
#define FUTUREPROOF_EXECUTOR_H

#include <futureproof.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FP_EXECUTOR_INTERFACE_VERSION 2 /* 2 added poll; 1 is still taken */

typedef struct fp_executor_vtable {
  int version;      /* FP_EXECUTOR_INTERFACE_VERSION */
  const char *kind; /* a name for logs: "serial", "thread pool" */
  /* Take f (with the executor's reference) and run it later. Wait at most
   * timeout_s for room (0: fail with FP_EAGAIN at once; negative: no
   * limit). On error f is untouched and the error is returned (set it
   * with fp_executor_fail). Required. */
  int (*submit)(fp_executor *ex, fp_future *f, double timeout_s);
  /* Take n independent futures at once, all or none, without waiting for
   * room (fp_map's window). Optional: NULL submits them one by one. */
  int (*submit_many)(fp_executor *ex, fp_future **fs, size_t n);
  /* Take n futures as one unit of work, in order (fp_map's chunksize).
   * Optional: NULL treats them as independent. */
  int (*submit_chunk)(fp_executor *ex, fp_future **fs, size_t n);
  /* Shut down: no submit comes any more (the common code refuses them).
   * cancel_futures: cancel what has not started (fp_executor_cancelling is
   * true from now on). wait: return once everything is done, waiting at
   * most timeout_s (FP_ETIMEDOUT then; called again later). Required. */
  int (*shutdown)(fp_executor *ex, bool wait, bool cancel_futures, double timeout_s);
  /* Called from one of the executor's own threads? (fp_executor_free is
   * refused there, and shutdown cannot wait for that thread.) Optional. */
  bool (*is_own_thread)(const fp_executor *ex);
  /* Free what the executor allocated; called after shutdown with wait.
   * Required. */
  void (*destroy)(fp_executor *ex);
  /* Fill the counters the executor keeps (the rest stay 0). Optional. */
  void (*stats)(const fp_executor *ex, fp_executor_stats *out);
  /* A running future of this executor was cancelled: stop it if it can
   * (a worker process is killed); a task may also poll
   * fp_cancel_requested. Optional. */
  void (*cancel_running)(fp_executor *ex, fp_future *f);
  /* Run one queued task in the calling thread, one of the executor's own,
   * which waits on a future of this executor (so that a task waiting on
   * another never deadlocks a full pool). false when there is none.
   * Optional. */
  bool (*run_queued)(fp_executor *ex);
  /* Tasks run in this address space, so they may be handed pointers to
   * the caller's memory (false for worker processes, other machines). */
  bool shares_memory;
  /* Version 2. A thread that is not the executor's own waits on one of
   * its futures (fp_future_wait, fp_future_result): do a little of the
   * executor's progress work in this thread -- look for outcomes on the
   * network, say -- and return within microseconds; true if something
   * came of it. The waiter calls it again and again while it returns true
   * now and then, and sleeps on the future after a millisecond of false,
   * so no hand-off to the executor's own thread lies on a round trip's
   * path. Optional. */
  bool (*poll)(fp_executor *ex);
} fp_executor_vtable;

/* Create an executor that runs at most max_workers tasks at once, with
 * impl as its own state (fp_executor_impl). FP_EINVAL for a missing
 * required slot, an unknown version or max_workers < 1; FP_ENOMEM. The
 * vtable must outlive the executor. Free it with fp_executor_free. */
FP_EXTERN int fp_executor_new(const fp_executor_vtable *vt, void *impl, int max_workers,
                              fp_executor **out);
FP_EXTERN void *fp_executor_impl(const fp_executor *ex);

/* Run a pending future's task in this thread: set it running (skip it if
 * it was cancelled), call fn(arg) with fp_raise and fp_cancel_requested
 * working inside, and publish the outcome. Does not drop the executor's
 * reference. */
FP_EXTERN void fp_executor_run(fp_future *f);

/* For executors that run a task where the future cannot go (another
 * process, another machine): the task is fp_future_fn(f) over
 * fp_future_arg(f); with fp_submit_bytes the argument is a `const
 * fp_bytes *` and the result must be an `fp_bytes *` (or NULL), which the
 * future then owns (fp_future_set_result). */
FP_EXTERN bool fp_future_carries_bytes(const fp_future *f);

/* Call fn(arg) in this thread as a task, outside any future (in a worker
 * process, on another machine): fp_raise works inside. Returns what fn
 * returned; *code gets the error it raised (0 if none) and message (if
 * not NULL) its message, truncated to message_len. */
FP_EXTERN void *fp_call_task(fp_fn fn, void *arg, int *code, char *message,
                             size_t message_len);

/* True once the future was cancelled while running, or its executor shuts
 * down with cancel_futures: a long task should stop (what
 * fp_cancel_requested says inside the task). */
FP_EXTERN bool fp_future_cancel_requested(const fp_future *f);
/* True once the executor shuts down with cancel_futures. */
FP_EXTERN bool fp_executor_cancelling(const fp_executor *ex);

/* Break the executor: from now on submits fail with FP_EBROKEN and this
 * message (logged once, at error level). The executor fails what it holds
 * itself. Returns true for the call that broke it. */
FP_EXTERN bool fp_executor_break(fp_executor *ex, const char *fmt, ...) FP_PRINTF(2, 3);

/* Set the calling thread's last error (fp_last_error) and return code:
 * return fp_executor_fail(FP_EAGAIN, "the queue is full (%d)", n); */
FP_EXTERN int fp_executor_fail(int code, const char *fmt, ...) FP_PRINTF(2, 3);

#ifdef __cplusplus
}
#endif
#endif /* FUTUREPROOF_EXECUTOR_H */
