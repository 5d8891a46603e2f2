/* internal.h - private declarations shared by the files in src/. */
#ifndef FP_INTERNAL_H
#define FP_INTERNAL_H

#include "futureproof.h"
#include "futureproof/executor.h"
#include "queue.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

/* ---- memory (alloc.c) ---- */
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
char *fp__strdup(const char *s);                /* fp__malloc'd; NULL on ENOMEM */
char *fp__format(const char *fmt, ...) FP_PRINTF(1, 2); /* fp__malloc'd; NULL on ENOMEM */
/* Called before the allocator changes, to give back cached memory of the
 * one in force (the futures' slabs register theirs). */
typedef void (*fp__alloc_hook)(void);
void fp__alloc_before_change(fp__alloc_hook hook);

/* ---- errors (error.c) ---- */
/* Record the thread's last error; returns code so callers can
 * `return fp__fail(FP_EINVAL, "...")`. */
int fp__fail(int code, const char *fmt, ...) FP_PRINTF(2, 3);
int fp__vfail(int code, const char *fmt, va_list ap);
/* fp__fail(FP_EINVAL, ...), plus a warning-level log line: for bad
 * arguments (log.c). */
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
/* A condition variable that waits on CLOCK_MONOTONIC; 0 or FP_ENOMEM.
 * (Internal calls follow the public convention: 0 or a negative FP_E*.) */
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

/* ---- where futures live (slab.c) ----
 * Blocks of FP__SLAB_BLOCK bytes, each on a cache line of its own, carved
 * from slabs of FP__SLAB_BLOCKS and cached per thread. */
enum { FP__SLAB_BLOCK = 64, FP__SLAB_BLOCKS = 63 };
/* A block and its slot in its slab (what fp__slab_free needs); NULL on
 * ENOMEM. */
void *fp__slab_alloc(unsigned *slot);
void fp__slab_free(void *block, unsigned slot);

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
/* A done-callback as it waits on a future. fp__future_on_done_embedded
 * is fp_future_on_done in the caller's memory (no allocation, no
 * failure): c must stay valid until cb has run or f is freed. */
typedef struct fp__callback {
  fp__wait_node node;
  fp_done_cb cb;
  void *userdata;
  bool embedded; /* the caller's memory: never freed here */
} fp__callback;
void fp__future_on_done_embedded(fp_future *f, fp__callback *c, fp_done_cb cb, void *userdata);
/* When it was submitted (fp__now_ns), for its queue wait: set on a pending
 * future not yet handed to its executor, when its executor keeps latency
 * statistics or a trace is open. */
void fp__future_stamp(fp_future *f, uint64_t ns);



/* ---- statistics (stats.c) and traces (trace.c) ---- */
uint64_t fp__now_ns(void); /* monotonic nanoseconds */
/* A latency histogram in nanoseconds: below 16 ns one bucket a value,
 * above that 16 buckets a power of two (a bucket's middle is within 3.2%
 * of its values), up to 2^44 ns (about 5 hours; longer lands in the last
 * bucket, the max stays exact). About 5 KiB, updated with relaxed atomic
 * adds. */
enum {
  FP__HIST_SUB = 16,
  FP__HIST_EXP_MAX = 44,
  FP__HIST_BUCKETS = (FP__HIST_EXP_MAX - 3) * FP__HIST_SUB
};
typedef struct fp__hist {
  atomic_uint_fast64_t bucket[FP__HIST_BUCKETS];
  atomic_uint_fast64_t count, sum, max;
} fp__hist;
void fp__hist_add(fp__hist *h, uint64_t ns);
void fp__hist_add_owned(fp__hist *h, uint64_t ns); /* one writer at a time (a lock) */
void fp__hist_merge(fp__hist *into, const fp__hist *from);
double fp__hist_quantile(const fp__hist *h, double q); /* seconds */
void fp__hist_summary(const fp__hist *h, fp_latency *out);
/* A duration for people: "850 ns", "12.5 us", "3.2 ms", "1.25 s". Returns buf. */
const char *fp__seconds_text(double s, char *buf, size_t len);
/* An executor's latency shards (fp_executor_stats_enable). */
typedef struct fp__lat fp__lat;
void fp__stats_queue_wait(fp__lat *lat, uint64_t ns);
void fp__stats_run(fp__lat *lat, uint64_t ns);
/* Count an outcome: a task's error code (FP_ECANCELED, FP_ETIMEDOUT,
 * FP_ECRASHED have counters of their own, the rest count as failed), or
 * FP__RETRIED for an attempt that will be made again. */
enum { FP__RETRIED = 1 };
void fp__stats_outcome(fp_executor *ex, int code);
void fp__stats_free(fp_executor *ex); /* at fp_executor_free */
/* What an executor that finishes futures away from where their tasks ran
 * (the process pool's dispatcher) says of the one it finishes now: the
 * trace row (its worker's pid) and when it really started (0: the
 * future's own start). Set around fp_future_set_result / _error; row 0
 * clears it. */
void fp__run_context_set(int row, uint64_t started_ns);
/* The row (this thread's id when none was set) and the start (0: none). */
int fp__run_context(uint64_t *started_ns);
/* Tracing (trace.c): on while a trace file is open. */
bool fp__trace_on(void);
/* One complete event for the task of ex's future number id (code 0: it
 * succeeded; else error is its message, may be NULL). */
void fp__trace_task(fp_executor *ex, uint64_t id, const char *name, uint64_t started_ns,
                    uint64_t finished_ns, int code, const char *error);
/* Number a new executor (fp__executor_init), and open FP_TRACE's file the
 * first time. */
uint64_t fp__executor_serial(void);

/* ---- the timer (timer.c) ----
 * fire(ctx) runs on the timer's thread at fp_now() time `at` (or soon
 * after); quick, please. Returns its id, 0 on ENOMEM. fp__timer_cancel:
 * true if it was removed before it fired; else it has fired (waits for a
 * callback running now to return: never call it from that callback). */
uint64_t fp__timer_at(double at, void (*fire)(void *ctx), void *ctx);
bool fp__timer_cancel(uint64_t id);

/* ---- wait-cycle detection (deadlock.c) ----
 * Before a task sleeps in a wait, it records what it waits for (targets,
 * which must stay valid until the edge is removed; any: it waits for one
 * of them, else for all); fp__wait_edge_add fails with FP_EDEADLK (the
 * thread's last error naming the cycle) if that wait could never end. */
/* What the graph asks of its nodes (futures): whether one is done, and
 * its id and name for the message. */
typedef struct fp__wait_node_ops {
  bool (*done)(const fp_future *f);
  uint64_t (*id)(const fp_future *f);
  const char *(*name)(const fp_future *f, char *buf, size_t len);
} fp__wait_node_ops;
typedef struct fp__wait_edge {
  fp_future *waiter; /* the future of the task that waits; NULL outside a task */
  fp_future *const *targets;
  size_t n;
  bool any;
  bool linked;
  /* A task the waiting thread runs meanwhile (helping): the waiter
   * resumes only once it returns, so it waits for that one too. */
  fp_future *nested;
  struct fp__wait_edge *next;
} fp__wait_edge;
int fp__wait_edge_add(fp__wait_edge *e, fp_future *waiter, fp_future *const *targets, size_t n,
                      bool any, const fp__wait_node_ops *ops);
void fp__wait_edge_remove(fp__wait_edge *e);
void fp__wait_edge_nest(fp__wait_edge *e, fp_future *nested);
/* Link e (if it is not) as waiter's wait for targets[0], with nested as
 * the task it runs meanwhile; no check (the sleep above it checks). */
void fp__wait_edge_hold(fp__wait_edge *e, fp_future *waiter, fp_future *const *targets,
                        fp_future *nested);
/* The future of the task this thread runs; NULL outside a task. */
fp_future *fp__current_future(void);
/* Before the task this thread runs sleeps waiting for targets: its edge
 * (in e), after those of the tasks below it on this thread, which help
 * while they wait and wait for the one above them. 0 (nothing outside a
 * task), or FP_EDEADLK. (future.c) */
int fp__record_wait(fp__wait_edge *e, fp_future *const *targets, size_t n, bool any);

/* A function's name for messages, in buf: its registered name, else its
 * symbol (dladdr), else "fn 0x...". Returns buf. (registry.c) */
const char *fp__fn_name(fp_fn fn, char *buf, size_t len);
/* Who names the futures it wraps (the task manager: its trampoline runs
 * the task), for fp_future_name: in buf, or NULL if f is not one of its.
 * One, set once by its first user. (future.c) */
typedef const char *(*fp__wrapper_name_fn)(const fp_future *f, char *buf, size_t len);
void fp__future_wrapper_names(fp__wrapper_name_fn fn);

/* An executor's own thread, waiting on a future of its executor, runs the
 * executor's queued tasks meanwhile (vt->run_queued, future.c). Nested
 * waits count: past FP__HELP_DEPTH_MAX the thread only sleeps, so the
 * stack stays bounded. */
enum { FP__HELP_DEPTH_MAX = 128 };

/* How long a waiter spins before it sleeps, and a pause for spin loops. */
#define FP__WAIT_SPIN_S 20e-6
/* A waiter polls an executor (vt->poll) this long after the last thing it
 * brought, then sleeps. */
#define FP__WAIT_POLL_S 1e-3
static inline void fp__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* ---- executors (executor.c): the front door ----
 * Every executor kind fills an fp_executor_vtable (futureproof/executor.h,
 * the same interface outside libraries use); everything they share --
 * arguments, refusal after shutdown or breakage, making and numbering
 * futures -- is here, written once. */
struct fp_executor {
  const fp_executor_vtable *vt;
  fp_executor_vtable vt_upgraded; /* an older version's vtable, completed with zeros */
  void *impl;
  int max_workers;
  bool owns_base; /* made by fp_executor_new: freed after vt->destroy */
  atomic_bool shut_down;
  atomic_bool cancel_all; /* shutdown with cancel_futures: tasks see it */
  atomic_bool broken;     /* broken_message is written before it is raised */
  atomic_bool breaking;   /* taken by the one fp_executor_break that writes it */
  char broken_message[256];
  /* Delayed submits not yet due (fp_submit_at): a shutdown cancels them. */
  pthread_mutex_t delayed_mu;
  pthread_cond_t delayed_cv;      /* a due one was handed over */
  struct fp__delayed *delayed;    /* (delayed_mu) */
  int handing_over;               /* due ones being submitted now (delayed_mu) */
  /* Hand f (pending, with a reference for the executor) to it again at
   * fp_now() time `at` (a retry, from future.c); a shutdown before then
   * cancels it. 0, or the refusal / FP_ENOMEM (f untouched). Set by
   * fp__executor_init (executor.c). */
  int (*resubmit_at)(fp_executor *ex, fp_future *f, double at);
  /* Written at every submit: a line of its own, away from what workers
   * read for every task. */
  _Alignas(FP__APART) atomic_uint_fast64_t next_id;
  char pad_[FP__APART - sizeof(atomic_uint_fast64_t)];
  /* Statistics (stats.c): latency when enabled (NULL until then), and
   * outcome counters, written only when a task fails, is cancelled or is
   * retried. serial numbers executors in the process (traces, metrics). */
  _Alignas(FP__APART) _Atomic(struct fp__lat *) lat;
  uint64_t serial;
  atomic_uint_fast64_t trace_named; /* the trace that named it (trace.c) */
  struct fp__outcomes {
    atomic_uint_fast64_t failed, cancelled, timed_out, crashed, retried;
  } outcomes;
};

/* For an executor embedded at the start of its kind's own struct. */
void fp__executor_init(fp_executor *ex, const fp_executor_vtable *vt, void *impl,
                       int max_workers);

/* The refusal every submit path makes: FP_EBROKEN or FP_ESHUTDOWN (with
 * the thread's last error set) once the executor is broken or shut down,
 * else 0. Inline: the dispatch path pays two loads. */
static inline int fp__executor_refusal(fp_executor *ex) {
  if (atomic_load_explicit(&ex->broken, memory_order_acquire))
    return fp__fail(FP_EBROKEN, "%s", ex->broken_message);
  if (atomic_load_explicit(&ex->shut_down, memory_order_relaxed))
    return fp__fail(FP_ESHUTDOWN, "cannot schedule new futures after shutdown");
  return 0;
}

/* fp_submit_ex, with the future marked as carrying fp_bytes. */
int fp__submit(fp_executor *ex, fp_fn fn, void *arg, const fp_task_options *topt,
               double timeout_s, bool bytes, fp_future **out);
/* An automatic chunksize (map.c, and the task manager's map): `measured`
 * items came back in `elapsed` seconds from `workers` workers; the next
 * chunk holds about FP__CHUNK_S of work, at most 8x larger or 2x smaller
 * than `chunk`, within [1, most]. */
#define FP__CHUNK_S 1e-3
size_t fp__chunk_size(size_t chunk, size_t measured, double elapsed, int workers, size_t most);

/* Can fp__submit_batch take several at once (as one unit of work if
 * chunk)? If not, submit one by one. */
bool fp__executor_batches(const fp_executor *ex, bool chunk);
/* fn over items[0..n), as n futures submitted at once, all or none (one
 * unit of work if chunk), never waiting for room. On success fs[] holds
 * them; on error none was submitted and the items are still the caller's. */
int fp__submit_batch(fp_executor *ex, fp_fn fn, void *const *items, size_t n,
                     const fp_task_options *topt, bool chunk, fp_future **fs);
bool fp__executor_shares_memory(const fp_executor *ex);

/* The thread pool's default, min(32, fp_cpu_count() + 4). */
int fp__default_workers(void);

#endif /* FP_INTERNAL_H */
