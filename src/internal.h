/* internal.h - private declarations shared by the files in src/. */
#ifndef FP_INTERNAL_H
#define FP_INTERNAL_H

#include "futureproof.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

/* ---- memory (error.c) ---- */
/* How far apart to keep data that different threads write: a cache line
 * and the one the adjacent-line prefetcher fetches with it. */
#define FP__APART 128

void *fp__malloc(size_t size);
void *fp__calloc(size_t count, size_t size);
void *fp__realloc(void *ptr, size_t size);
/* count * size bytes, or NULL (as for ENOMEM) when the product overflows:
 * every array the library sizes from a caller's count goes through it. */
void *fp__malloc_array(size_t count, size_t size);
void fp__free(void *ptr);
fp_free_fn fp__current_free(void); /* the free that goes with fp__malloc now */
/* Zeroed memory starting on a cache line, for structures whose members
 * are _Alignas(FP__APART) (malloc aligns to 16 only); freed by fp__free_lines. */
void *fp__calloc_lines(size_t size);
void fp__free_lines(void *ptr);
char *fp__vformat(const char *fmt, va_list ap); /* fp__malloc'd; NULL on ENOMEM */

/* ---- errors (error.c) ---- */
/* Record the thread's last error; returns code so callers can
 * `return fp__fail(FP_EINVAL, "...")`. */
int fp__fail(int code, const char *fmt, ...) FP_PRINTF(2, 3);
/* fp__fail, plus a warning-level log line: for bad arguments. */
int fp__einval(const char *fmt, ...) FP_PRINTF(1, 2);

/* ---- time ---- */
/* FP_EINVAL (and a log line naming fn) for a NaN timeout; 0 otherwise.
 * Negative and +inf timeouts mean "no limit", as the header says. */
int fp__check_timeout(double timeout_s, const char *fn);
/* An absolute CLOCK_MONOTONIC deadline; infinite when timeout_s < 0. */
typedef struct fp__deadline {
  struct timespec at;
  bool infinite;
} fp__deadline;
fp__deadline fp__deadline_in(double timeout_s);
bool fp__deadline_passed(const fp__deadline *d);
double fp__deadline_remaining(const fp__deadline *d); /* -1 if infinite */
double fp__now(void);                                  /* monotonic seconds */
/* pthread_cond_wait / timedwait to the deadline; ETIMEDOUT when passed. */
int fp__cond_wait(pthread_cond_t *cv, pthread_mutex_t *mu, const fp__deadline *d);
/* A condition variable that waits on CLOCK_MONOTONIC. */
int fp__cond_init(pthread_cond_t *cv);

/* ---- waiters (future.c): how a thread sleeps until futures complete ----
 * A waiter is registered on futures through one node per future. When a
 * future completes it appends the node to the waiter's ready list and
 * signals it, under the waiter's lock while holding the future's lock
 * (lock order: future, then waiter). */
typedef struct fp__waiter fp__waiter;
typedef struct fp__wait_node {
  fp_future *future;
  fp__waiter *waiter;
  struct fp__wait_node *prev, *next; /* in the future's list */
  struct fp__wait_node *ready_next;  /* in the waiter's ready list */
  bool linked;                       /* in the future's list (future's lock) */
} fp__wait_node;

struct fp__waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  fp__wait_node *ready_head, *ready_tail;
  size_t ready;  /* nodes appended so far */
  size_t failed; /* of which finished with an error */
};

int fp__waiter_init(fp__waiter *w);
void fp__waiter_destroy(fp__waiter *w);
/* Link node to f unless f is done; returns true if linked, false if done. */
bool fp__waiter_add(fp__waiter *w, fp__wait_node *node, fp_future *f);
/* Unlink (if still linked). After it the future no longer touches node. */
void fp__waiter_remove(fp__wait_node *node);
/* Pop a ready node, waiting until the deadline; NULL on timeout. */
fp__wait_node *fp__waiter_pop(fp__waiter *w, const fp__deadline *d);

/* ---- futures, for executors (future.c) ---- */
struct fp__executor_base;
/* A pending future for fn(arg) owned by ex, with two references: the
 * caller's and the executor's. NULL on ENOMEM. */
fp_future *fp__future_new_task(fp_executor *ex, fp_fn fn, void *arg,
                               const fp_task_options *topt, bool bytes);
/* Free a future that was never handed out (submit failed): no destructors. */
void fp__future_discard(fp_future *f);
/* Run a pending future's task in this thread: set running (skip if it was
 * cancelled), call fn, set the outcome. Does not release the reference.
 * `returned(ctx, ran)` (may be NULL) is called once the task's function has
 * returned (ran) or was skipped, before the outcome is published: an
 * executor's counters are then right before anyone sees the result. */
typedef void (*fp__returned_fn)(void *ctx, bool ran);
void fp__future_run(fp_future *f, fp__returned_fn returned, void *ctx);
/* Fail or cancel a future that never ran (queued when the pool broke). */
void fp__future_fail_static(fp_future *f, int code, const char *message);
/* Call fn(arg) as a task outside any executor (a process pool's worker):
 * fp_raise works inside; *code / *text (fp__malloc'd or NULL) get its error. */
void *fp__call_task(fp_fn fn, void *arg, int *code, char **text);
bool fp__future_is_bytes(const fp_future *f);
bool fp__future_cancel_requested(const fp_future *f);
/* Finished with an error; unlike fp_future_error it does not count as
 * looking at the error. */
bool fp__future_failed(const fp_future *f);

/* Return every cached free future to the allocator (before it changes). */
void fp__future_cache_flush(void);

/* A thread pool's worker, waiting on a future of its own pool, runs the
 * pool's queued tasks meanwhile (future.c calls run_one; false when there
 * is nothing to run). depth counts nested waits: past
 * FP__HELP_DEPTH_MAX the worker only sleeps, so the stack stays bounded. */
typedef struct fp__helper {
  fp_executor *ex;
  bool (*run_one)(struct fp__helper *h);
  int depth;
} fp__helper;
void fp__set_helper(fp__helper *h); /* for the calling thread; NULL: none */
enum { FP__HELP_DEPTH_MAX = 128 };

/* How long a waiter spins before it sleeps, and a pause for spin loops. */
#define FP__WAIT_SPIN_S 20e-6
static inline void fp__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* ---- executors (executor.c) ---- */
typedef struct fp__executor_vtable {
  const char *kind;
  /* Enqueue f (already holding the executor's reference), waiting at most
   * timeout_s for room (0: FP_EAGAIN at once). On error f is untouched. */
  int (*submit)(fp_executor *ex, fp_future *f, double timeout_s);
  int (*shutdown)(fp_executor *ex, bool wait, bool cancel_futures, const fp__deadline *d);
  bool (*is_own_thread)(const fp_executor *ex); /* called from its own worker? */
  void (*destroy)(fp_executor *ex);             /* after shutdown with wait */
  void (*stats)(const fp_executor *ex, fp_executor_stats *out);
  /* A running future of this executor was cancelled (may be NULL). */
  void (*cancel_running)(fp_executor *ex, fp_future *f);
  /* Tasks run in this address space (threads), so they may be handed
   * pointers to the caller's memory; false for worker processes. */
  bool shares_memory;
  /* Enqueue n futures as one unit of work (may be NULL: one at a time). */
  int (*submit_chunk)(fp_executor *ex, fp_future **fs, size_t n);
  /* Enqueue n independent futures at once, all or none, not waiting for
   * room (may be NULL: one at a time). */
  int (*submit_many)(fp_executor *ex, fp_future **fs, size_t n);
} fp__executor_vtable;

/* fp_submit_ex, with the future marked as carrying fp_bytes. */
int fp__submit(fp_executor *ex, fp_fn fn, void *arg, const fp_task_options *topt,
               double timeout_s, bool bytes, fp_future **out);

struct fp_executor {
  const fp__executor_vtable *vt;
  int max_workers;
  atomic_bool shut_down;
  atomic_bool cancel_all; /* shutdown with cancel_futures: tasks see it */
  /* Written at every submit: a line of its own, away from what workers
   * read for every task. */
  _Alignas(FP__APART) atomic_uint_fast64_t next_id;
  char pad_[FP__APART - sizeof(atomic_uint_fast64_t)];
};

void fp__executor_init(fp_executor *ex, const fp__executor_vtable *vt, int max_workers);

/* CPUs this process may use; the thread pool's default, min(32, ncpu + 4). */
int fp__cpu_count(void);
int fp__default_workers(void);

#endif /* FP_INTERNAL_H */
