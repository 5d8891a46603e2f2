/* future.c - the future state machine, its waiters, its done-callbacks,
 * reference counting, and the task-side calls (fp_raise,
 * fp_cancel_requested). */
#include "internal.h"

#include <sched.h>
#include <stdio.h>
#include <string.h>

/* A done-callback waits in the future's listener list as a node with no
 * waiter (fp__callback, internal.h). */
typedef fp__callback callback;

/* The state word: an fp_future_state, or COMPLETING while the thread that
 * won the race to finish writes the outcome, and flags. Every transition
 * is a compare-and-swap that keeps the flags. LISTENERS: a waiter or a
 * callback was registered, so whoever finishes the future takes LOCKED
 * (the listener list's lock) to tell them; a future nobody listens to is
 * run and finished without it. */
enum {
  ST_MASK = 7,
  ST_COMPLETING = 4,
  ST_LISTENERS = 8,
  ST_LOCKED = 16,
  ST_FAILED = 32,           /* finished with an error (set with FINISHED) */
  ST_CANCEL_REQUESTED = 64, /* cancelled while running */
};

/* The tag word: fixed at creation, but for OBSERVED, which only ever goes
 * from 0 to 1, so a plain store sets it. */
enum { TAG_OBSERVED = 1, TAG_BYTES = 2, TAG_SLOT_SHIFT = 2, TAG_ID_SHIFT = 8 };

/* What a future needs only when a task fails or a submit gave destructors:
 * allocated then, so that a future is one cache line. */
typedef struct extra {
  fp_free_fn arg_free, result_free;
  fp_error error;   /* message points to text or a static string */
  char *text;       /* owned */
  char *name;       /* fp_task_options.name, owned */
  fp_retry retry;   /* fp_task_options.retry */
  atomic_int attempts; /* with retry: how many times it started */
  double last_delay;   /* with retry: the delay before the latest attempt */
} extra;

/* One cache line (slabs carve futures at 64-byte strides, below): 10^6
 * futures alive at once are 64 MB, and a worker reads and writes one line
 * to run a task and publish its result. */
struct fp_future {
  atomic_uint state;
  atomic_int refs;
  fp_fn fn;
  void *arg;
  union {
    void *result; /* once finished */
    /* Before: when it was submitted (pending) or started (running), in
     * fp__now_ns, if latency statistics or a trace wanted it; else 0. */
    uint64_t stamp;
  };
  fp_executor *ex;
  fp__wait_node *listeners; /* waiters and callbacks, newest first (LOCKED) */
  extra *extra;             /* NULL until needed */
  atomic_uint_fast64_t tag; /* id << 8 | slot in its slab << 2 | BYTES | OBSERVED */
};

/* The error of a failed task whose extra block could not be allocated. */
static const extra no_memory_for_error = {
    .error = {FP_ENOMEM, "out of memory recording the task's error"}};

static void lock(fp_future *f) {
  for (unsigned i = 1;; i++) {
    unsigned s = atomic_load_explicit(&f->state, memory_order_relaxed);
    if (!(s & ST_LOCKED) &&
        atomic_compare_exchange_weak_explicit(&f->state, &s, s | ST_LOCKED, memory_order_acquire,
                                              memory_order_relaxed))
      return;
    fp__cpu_relax();
    if (i % 64 == 0) sched_yield();
  }
}
static void unlock(fp_future *f) {
  atomic_fetch_and_explicit(&f->state, ~(unsigned)ST_LOCKED, memory_order_release);
}

/* The state word s with its state part set to v, its flags kept. */
static unsigned with_state(unsigned s, unsigned v) { return (s & ~(unsigned)ST_MASK) | v; }

static uint64_t tag_of(const fp_future *f) {
  return atomic_load_explicit(&((fp_future *)f)->tag, memory_order_relaxed);
}

/* The task this thread runs, and what fp_raise said of it. */
typedef struct running_task {
  fp_future *f; /* NULL in a process pool's worker */
  bool raised;
  int code;
  char *text;
  /* Wait-cycle detection (deadlock.c). A worker that helps while it waits
   * runs other tasks on top of this one, on this thread's stack: */
  struct running_task *outer; /* the task below this one on the thread, or NULL */
  fp_future *help_target;     /* the future it waits for while it helps, or NULL */
  fp__wait_edge help_edge;    /* its edge, linked only once a task above it sleeps */
} running_task;
static _Thread_local running_task *current_task;

bool fp__future_is_bytes(const fp_future *f) { return tag_of(f) & TAG_BYTES; }

fp_future *fp__current_future(void) { return current_task ? current_task->f : NULL; }

/* The running future was cancelled. */
bool fp__future_cancel_requested(const fp_future *f) {
  return atomic_load(&((fp_future *)f)->state) & ST_CANCEL_REQUESTED;
}

bool fp_future_cancel_requested(const fp_future *f) {
  if (!f) return false;
  return fp__future_cancel_requested(f) ||
         (f->ex && atomic_load_explicit(&f->ex->cancel_all, memory_order_relaxed));
}
static bool failed_state(unsigned s) {
  return (s & ST_MASK) == FP_FINISHED && (s & ST_FAILED);
}
bool fp__future_failed(const fp_future *f) {
  return failed_state(atomic_load(&((fp_future *)f)->state));
}
void fp__future_stamp(fp_future *f, uint64_t ns) { f->stamp = ns; }

/* ---- statistics and traces (stats.c, trace.c) ---- */

static fp__lat *latency_of(const fp_executor *ex) {
  return atomic_load_explicit(&((fp_executor *)ex)->lat, memory_order_acquire);
}

/* f (of an executor) starts: its queue wait, and its start for later. */
static void note_start(fp_future *f) {
  fp__lat *lat = latency_of(f->ex);
  if (!lat && !fp__trace_on()) return;
  uint64_t now = fp__now_ns();
  if (lat && f->stamp && now >= f->stamp) fp__stats_queue_wait(lat, now - f->stamp);
  f->stamp = now;
}

/* f (of an executor) ends: failed with code and error (0: it did not), after
 * running since started (0: it never ran, or no one noted it). */
static void note_end(fp_future *f, uint64_t started, int code, const char *error) {
  if (code) fp__stats_outcome(f->ex, code);
  fp__lat *lat = latency_of(f->ex);
  bool tracing = fp__trace_on();
  if (!lat && !tracing) return;
  uint64_t real_start;
  fp__run_context(&real_start); /* a process pool's item: when it really began */
  if (real_start && started) started = real_start;
  if (!started) return;
  uint64_t now = fp__now_ns();
  if (now < started) now = started;
  if (lat) fp__stats_run(lat, now - started);
  if (tracing) {
    char name[160];
    fp__trace_task(f->ex, tag_of(f) >> TAG_ID_SHIFT, fp_future_name(f, name, sizeof name),
                   started, now, code, error);
  }
}

/* ---- creation and references ---- */

/* Futures live in slabs (slab.c): one cache line each, its slot in its
 * slab kept in the tag so that it finds its way back. */
_Static_assert(sizeof(fp_future) <= FP__SLAB_BLOCK, "a future fits its cache line");
_Static_assert(FP__SLAB_BLOCKS < 1 << (TAG_ID_SHIFT - TAG_SLOT_SHIFT), "a slot fits its tag bits");

static unsigned slot_of(const fp_future *f) {
  return (unsigned)(tag_of(f) >> TAG_SLOT_SHIFT) & ((1u << (TAG_ID_SHIFT - TAG_SLOT_SHIFT)) - 1);
}

static fp_future *future_alloc(void) {
  unsigned slot;
  fp_future *f = fp__slab_alloc(&slot);
  if (!f) return NULL;
  memset(f, 0, sizeof *f);
  atomic_init(&f->state, FP_PENDING);
  atomic_init(&f->refs, 1);
  atomic_init(&f->tag, (uint64_t)slot << TAG_SLOT_SHIFT);
  return f;
}

int fp_future_new(fp_future **out) {
  if (!out) return fp__einval("fp_future_new: out is NULL");
  *out = future_alloc();
  return *out ? 0 : fp__fail(FP_ENOMEM, "fp_future_new: out of memory");
}

fp_future *fp__future_new_task(fp_executor *ex, fp_fn fn, void *arg,
                               const fp_task_options *topt, bool bytes) {
  /* The numbering first: its locked add then waits for no store to the
   * fresh future (a future not yet published needs no ordering). */
  uint64_t id = atomic_fetch_add_explicit(&ex->next_id, 1, memory_order_relaxed) + 1;
  fp_future *f = future_alloc();
  if (!f) return NULL;
  bool retry = topt && topt->retry.max_attempts > 1;
  if (topt && (topt->arg_free || topt->result_free || topt->name || retry)) {
    if (!(f->extra = fp__calloc(1, sizeof *f->extra)) ||
        (topt->name && !(f->extra->name = fp__strdup(topt->name)))) {
      fp__free(f->extra);
      fp__slab_free(f, slot_of(f));
      return NULL;
    }
    f->extra->arg_free = topt->arg_free;
    f->extra->result_free = topt->result_free;
    if (retry) f->extra->retry = topt->retry;
  }
  atomic_store_explicit(&f->refs, 2, memory_order_relaxed);
  f->fn = fn;
  f->arg = arg;
  f->ex = ex;
  atomic_store_explicit(&f->tag, tag_of(f) | id << TAG_ID_SHIFT | (bytes ? TAG_BYTES : 0),
                        memory_order_relaxed);
  return f;
}

static uint64_t id_of(const fp_future *f) { return tag_of(f) >> TAG_ID_SHIFT; }

/* Its outcome was looked at: no report when it is freed. */
static void mark_observed(fp_future *f) {
  uint64_t t = tag_of(f);
  if (!(t & TAG_OBSERVED)) atomic_store_explicit(&f->tag, t | TAG_OBSERVED, memory_order_relaxed);
}

/* The failure of a failed future. */
static const fp_error *error_of(const fp_future *f) { return &f->extra->error; }

static const char *own_name(const fp_future *f, char *buf, size_t len);

static void future_free(fp_future *f, bool run_destructors) {
  for (fp__wait_node *n = f->listeners, *next; n; n = next) { /* callbacks never run */
    next = n->next;
    if (!((callback *)n)->embedded) fp__free((callback *)n);
  }
  unsigned state = atomic_load(&f->state);
  extra *x = f->extra;
  if (run_destructors) {
    if (failed_state(state) && !(tag_of(f) & TAG_OBSERVED)) {
      char name[128];
      fp_log(FP_LOG_WARNING,
             "future %llu (%s, arg %p) failed and nobody retrieved its error: %s: %s",
             (unsigned long long)id_of(f), own_name(f, name, sizeof name), f->arg,
             fp_err_name(error_of(f)->code), error_of(f)->message);
    }
    if ((state & ST_MASK) == FP_FINISHED && !failed_state(state) && f->result && x &&
        x->result_free)
      x->result_free(f->result);
    if (x && x->arg_free) x->arg_free(f->arg);
  }
  if (x && x != &no_memory_for_error) {
    fp__free(x->text);
    fp__free(x->name);
    fp__free(x);
  }
  fp__slab_free(f, slot_of(f));
}

void fp__future_discard(fp_future *f) { future_free(f, false); }

fp_future *fp_future_retain(fp_future *f) {
  if (!f) {
    fp__einval("fp_future_retain: future is NULL");
    return NULL;
  }
  atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
  return f;
}

void fp_future_release(fp_future *f) {
  if (!f) return;
  int before = atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel);
  if (before == 1) future_free(f, true);
}

/* ---- reading the state ---- */

/* For the accessors that cannot return a code: false after the log line. */
static bool present(const fp_future *f, const char *fn) {
  if (!f) fp__einval("%s: future is NULL", fn);
  return f != NULL;
}

static unsigned st_value(unsigned s) {
  s &= ST_MASK;
  return s == ST_COMPLETING ? FP_RUNNING : s;
}

fp_future_state fp_future_get_state(const fp_future *f) {
  return present(f, __func__) ? (fp_future_state)st_value(atomic_load(&f->state)) : FP_PENDING;
}

static bool is_done_state(unsigned s) {
  s &= ST_MASK;
  return s == FP_FINISHED || s == FP_CANCELLED;
}

bool fp_future_done(const fp_future *f) {
  return present(f, __func__) && is_done_state(atomic_load(&f->state));
}
bool fp_future_running(const fp_future *f) {
  return present(f, __func__) && st_value(atomic_load(&f->state)) == FP_RUNNING;
}
bool fp_future_cancelled(const fp_future *f) {
  return present(f, __func__) && (atomic_load(&f->state) & ST_MASK) == FP_CANCELLED;
}

bool fp_future_carries_bytes(const fp_future *f) {
  return present(f, __func__) && fp__future_is_bytes(f);
}
fp_fn fp_future_fn(const fp_future *f) { return present(f, __func__) ? f->fn : NULL; }
void *fp_future_arg(const fp_future *f) { return present(f, __func__) ? f->arg : NULL; }
uint64_t fp_future_id(const fp_future *f) { return present(f, __func__) ? id_of(f) : 0; }

/* Its name from what the future itself holds: fp_task_options.name, else
 * its function's. */
static const char *own_name(const fp_future *f, char *buf, size_t len) {
  const extra *x = f->extra;
  if (x && x != &no_memory_for_error && x->name) {
    snprintf(buf, len, "%s", x->name);
    return buf;
  }
  return fp__fn_name(f->fn, buf, len);
}

static _Atomic(fp__wrapper_name_fn) wrapper_names;

void fp__future_wrapper_names(fp__wrapper_name_fn fn) {
  atomic_store_explicit(&wrapper_names, fn, memory_order_release);
}

int fp_future_attempts(const fp_future *f) {
  if (!present(f, __func__)) return 0;
  const extra *x = f->extra;
  if (x && x != &no_memory_for_error && x->retry.max_attempts > 1)
    return atomic_load(&((extra *)x)->attempts);
  unsigned s = atomic_load(&((fp_future *)f)->state) & ST_MASK;
  return s == FP_RUNNING || s == FP_FINISHED || s == ST_COMPLETING ? 1 : 0;
}

const char *fp_future_name(const fp_future *f, char *buf, size_t len) {
  if (!buf || !len) return buf;
  buf[0] = 0;
  if (!present(f, __func__)) return buf;
  fp__wrapper_name_fn wrapper = atomic_load_explicit(&wrapper_names, memory_order_acquire);
  if (wrapper && wrapper(f, buf, len)) return buf; /* a task manager's: its task's name */
  return own_name(f, buf, len);
}

/* ---- completing ---- */

/* f is done and had listeners (LOCKED held): wake every waiter and hand
 * back the callbacks, oldest first, for the caller to run once the lock is
 * released. */
static callback *notify_locked(fp_future *f, bool failed) {
  callback *cbs = NULL; /* the list is newest first: prepending reverses it */
  for (fp__wait_node *n = f->listeners, *next; n; n = next) {
    next = n->next;
    fp__waiter *w = n->waiter;
    if (!w) {
      n->ready_next = cbs ? &cbs->node : NULL;
      cbs = (callback *)n;
      continue;
    }
    pthread_mutex_lock(&w->mu);
    FP__QUEUE_PUSH(w->ready_head, w->ready_tail, n, ready_next);
    w->ready++;
    if (failed) w->failed++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    n->linked = false;
  }
  f->listeners = NULL;
  return cbs;
}

static void run_callbacks(fp_future *f, callback *cbs) {
  while (cbs) {
    callback *next = (callback *)cbs->node.ready_next;
    bool embedded = cbs->embedded; /* (its owner may free it in cb) */
    cbs->cb(f, cbs->userdata);
    if (!embedded) fp__free(cbs);
    cbs = next;
  }
}

/* Publish a done state (from COMPLETING, which only this thread leaves;
 * add: ST_FAILED or 0); tell the listeners, if any. */
static void publish(fp_future *f, unsigned state, unsigned add) {
  unsigned old = atomic_load(&f->state);
  while (!atomic_compare_exchange_weak(&f->state, &old, with_state(old, state) | add)) {
  }
  if (!(old & ST_LISTENERS)) return;
  lock(f);
  callback *cbs = notify_locked(f, add & ST_FAILED);
  unlock(f);
  run_callbacks(f, cbs);
}

/* Mark that a listener is about to be linked (LOCKED held); false if f is
 * done. */
static bool listen_locked(fp_future *f) {
  unsigned s = atomic_load(&f->state);
  do
    if (is_done_state(s)) return false;
  while (!atomic_compare_exchange_weak(&f->state, &s, s | ST_LISTENERS));
  return true;
}

/* A failed attempt of a task with retries left: back to pending, and
 * handed to its executor again after the back-off (on the timer). true
 * if so: the outcome is not published. */
static bool retry_later(fp_future *f, int code, char *text) {
  extra *x = f->extra;
  if (!x || x == &no_memory_for_error || x->retry.max_attempts < 2 || !f->ex) return false;
  const fp_retry *r = &x->retry;
  if (atomic_load(&x->attempts) >= r->max_attempts) return false;
  bool wanted =
      r->ncodes <= 0 && code != FP_ECANCELED && code != FP_ESHUTDOWN && code != FP_EBROKEN;
  for (int i = 0; i < r->ncodes && i < 8; i++) wanted |= r->codes[i] == code;
  if (!wanted) return false;
  double delay = atomic_load(&x->attempts) <= 1 ? r->first_delay
                                                : x->last_delay * (r->factor > 1 ? r->factor : 1);
  if (r->max_delay > 0 && delay > r->max_delay) delay = r->max_delay;
  x->last_delay = delay;
  if (r->jitter > 0) { /* a thread's own xorshift: no lock, no libc state */
    static _Thread_local uint64_t seed;
    if (!seed) seed = (uint64_t)(uintptr_t)&seed ^ (uint64_t)(fp__now() * 1e9);
    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
    double u = (double)(seed >> 11) / 9007199254740992.0; /* [0, 1) */
    delay *= 1 + (r->jitter > 1 ? 1 : r->jitter) * (2 * u - 1);
  }
  /* Running (not asked to stop) -> pending; the retry's reference becomes
   * the executor's for the next attempt. */
  unsigned s = atomic_load(&f->state);
  do {
    if ((s & ST_MASK) != FP_RUNNING || (s & ST_CANCEL_REQUESTED)) return false;
  } while (!atomic_compare_exchange_weak(&f->state, &s, with_state(s, FP_PENDING)));
  fp_future_retain(f);
  if (f->ex->resubmit_at(f->ex, f, fp__now() + (delay > 0 ? delay : 0)) == 0) {
    fp__free(text); /* the next attempt's outcome will do */
    fp__stats_outcome(f->ex, FP__RETRIED);
    return true;
  }
  fp_future_release(f); /* shut down, no memory: this outcome is the last */
  return false;
}

/* Finish f with a result or an error (text owned, may be NULL for the
 * code's standard message). */
static int finish(fp_future *f, void *result, bool failed, int code, char *text) {
  if (failed && retry_later(f, code, text)) return 0; /* not noted: its last attempt is */
  if (failed && f->extra && f->extra != &no_memory_for_error && f->extra->retry.max_attempts > 1 &&
      atomic_load(&f->extra->attempts) > 1) { /* the last of several: say so */
    char *said = fp__format("%s (after %d attempts)",
                            text ? text : fp_strerror(code ? code : FP_ETASK),
                            atomic_load(&f->extra->attempts));
    if (said) {
      fp__free(text);
      text = said;
    }
  }
  unsigned s = atomic_load(&f->state);
  do {
    unsigned v = s & ST_MASK;
    if (v == FP_FINISHED || v == FP_CANCELLED || v == ST_COMPLETING) {
      fp__free(text);
      return fp__fail(FP_ESTATE, "future %llu is already done: its first outcome stays",
                      (unsigned long long)id_of(f));
    }
  } while (!atomic_compare_exchange_weak(&f->state, &s, with_state(s, ST_COMPLETING)));
  uint64_t started = (s & ST_MASK) == FP_RUNNING ? f->stamp : 0;
  f->result = result;
  if (failed && !f->extra && !(f->extra = fp__calloc(1, sizeof *f->extra))) {
    fp__free(text); /* a named error all the same: FP_ENOMEM */
    f->extra = (extra *)&no_memory_for_error;
  } else if (failed) {
    f->extra->error.code = code ? code : FP_ETASK;
    f->extra->text = text;
    f->extra->error.message = text ? text : fp_strerror(f->extra->error.code);
  }
  if (f->ex)
    note_end(f, started, failed ? f->extra->error.code : 0,
             failed ? f->extra->error.message : NULL);
  publish(f, FP_FINISHED, failed ? ST_FAILED : 0);
  return 0;
}

int fp_future_set_result(fp_future *f, void *result) {
  if (!f) return fp__einval("fp_future_set_result: future is NULL");
  return finish(f, result, false, 0, NULL);
}

int fp_future_set_error(fp_future *f, int code, const char *fmt, ...) {
  if (!f) return fp__einval("fp_future_set_error: future is NULL");
  char *text = NULL;
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    text = fp__vformat(fmt, ap); /* NULL on ENOMEM: the code's own message */
    va_end(ap);
  }
  return finish(f, NULL, true, code, text);
}

void fp__future_fail_static(fp_future *f, int code, const char *message) {
  char *text = NULL;
  if (message) {
    size_t len = strlen(message);
    text = fp__malloc(len + 1);
    if (text) memcpy(text, message, len + 1);
  }
  finish(f, NULL, true, code, text);
}

int fp_future_set_running(fp_future *f) {
  if (!f) return fp__einval("fp_future_set_running: future is NULL");
  unsigned s = atomic_load(&f->state);
  while ((s & ST_MASK) == FP_PENDING)
    if (atomic_compare_exchange_weak(&f->state, &s, with_state(s, FP_RUNNING))) {
      if (f->extra && f->extra->retry.max_attempts > 1) atomic_fetch_add(&f->extra->attempts, 1);
      if (f->ex) note_start(f);
      return 0;
    }
  unsigned state = s & ST_MASK;
  if (state == FP_CANCELLED)
    return fp__fail(FP_ECANCELED, "future %llu was cancelled", (unsigned long long)id_of(f));
  return fp__fail(FP_ESTATE, "future %llu is not pending", (unsigned long long)id_of(f));
}

bool fp_future_cancel(fp_future *f) {
  if (!f) {
    fp__einval("fp_future_cancel: future is NULL");
    return false;
  }
  unsigned s = atomic_load(&f->state);
  while ((s & ST_MASK) == FP_PENDING) {
    if (atomic_compare_exchange_weak(&f->state, &s, with_state(s, ST_COMPLETING))) {
      f->result = NULL; /* not a stamp any more */
      if (f->ex) fp__stats_outcome(f->ex, FP_ECANCELED);
      publish(f, FP_CANCELLED, 0);
      return true;
    }
  }
  unsigned state = st_value(s);
  if (state == FP_RUNNING) {
    atomic_fetch_or(&f->state, ST_CANCEL_REQUESTED);
    /* An executor that can stop a running task (a process pool kills its
     * worker) hears of it; a thread's task only sees fp_cancel_requested. */
    if (f->ex && f->ex->vt->cancel_running) f->ex->vt->cancel_running(f->ex, f);
  }
  return state == FP_CANCELLED;
}

/* ---- running a task ---- */

void fp__future_run(fp_future *f, fp__returned_fn returned, void *ctx) {
  if (fp_future_set_running(f) != 0) { /* cancelled while queued */
    if (returned) returned(ctx, false);
    return;
  }
  running_task *outer = current_task; /* a task may run another (helping) */
  running_task task = {.f = f, .outer = outer};
  current_task = &task;
  void *result = f->fn(f->arg);
  current_task = outer;
  /* It may be named as what outer waits for: not once it is gone. */
  if (outer && outer->help_edge.linked) fp__wait_edge_nest(&outer->help_edge, NULL);
  if (returned) returned(ctx, true);
  if (task.raised) {
    if (result && f->extra && f->extra->result_free) f->extra->result_free(result);
    finish(f, NULL, true, task.code, task.text);
  } else {
    finish(f, result, false, 0, NULL);
  }
}

void fp_executor_run(fp_future *f) {
  if (!f) {
    fp__einval("fp_executor_run: future is NULL");
    return;
  }
  fp__future_run(f, NULL, NULL);
}

void *fp__call_task(fp_fn fn, void *arg, int *code, char **text) {
  running_task *outer = current_task;
  /* Called from inside a task (an executor running units in its own
   * threads), it shares that task's cancel: fp_cancel_requested works. */
  running_task task = {.f = outer ? outer->f : NULL, .outer = outer};
  current_task = &task;
  void *result = fn(arg);
  current_task = outer;
  *code = task.raised ? task.code : 0;
  *text = task.text;
  return result;
}

void *fp_call_task(fp_fn fn, void *arg, int *code, char *message, size_t message_len) {
  int raised = 0;
  char *text = NULL;
  void *result = NULL;
  if (fn)
    result = fp__call_task(fn, arg, &raised, &text);
  else
    raised = fp__einval("fp_call_task: fn is NULL");
  if (code) *code = raised;
  if (message && message_len) { /* no printf for a task that raised nothing (a map's items) */
    const char *m = text ? text : fn ? "" : fp_last_error_message();
    size_t n = strnlen(m, message_len - 1);
    memcpy(message, m, n);
    message[n] = 0;
  }
  fp__free(text);
  return result;
}

void *fp_raise(int code, const char *fmt, ...) {
  running_task *t = current_task;
  if (!t) {
    fp_log(FP_LOG_WARNING, "fp_raise called outside a task (code %d): ignored", code);
    return NULL;
  }
  if (t->raised) return NULL; /* the first error is the cause: keep it */
  t->raised = true;
  t->code = code ? code : FP_ETASK;
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    t->text = fp__vformat(fmt, ap);
    va_end(ap);
  }
  return NULL;
}

bool fp_cancel_requested(void) {
  return current_task && fp_future_cancel_requested(current_task->f);
}

/* ---- callbacks ---- */

/* Link a waiter's node or a callback's unless f is done; false if done. */
static bool link_listener(fp_future *f, fp__wait_node *node) {
  node->future = f;
  node->prev = NULL;
  node->ready_next = NULL;
  lock(f);
  if (!listen_locked(f)) {
    unlock(f);
    node->linked = false;
    return false;
  }
  node->next = f->listeners;
  if (f->listeners) f->listeners->prev = node;
  f->listeners = node;
  node->linked = true;
  unlock(f);
  return true;
}

int fp_future_on_done(fp_future *f, fp_done_cb cb, void *userdata) {
  if (!f || !cb) return fp__einval("fp_future_on_done: %s is NULL", f ? "callback" : "future");
  callback *c = fp__malloc(sizeof *c);
  if (!c) return fp__fail(FP_ENOMEM, "fp_future_on_done: out of memory");
  c->node.waiter = NULL;
  c->cb = cb;
  c->userdata = userdata;
  c->embedded = false;
  if (!link_listener(f, &c->node)) {
    fp__free(c);
    cb(f, userdata);
  }
  return 0;
}

void fp__future_on_done_embedded(fp_future *f, fp__callback *c, fp_done_cb cb, void *userdata) {
  c->node.waiter = NULL;
  c->cb = cb;
  c->userdata = userdata;
  c->embedded = true;
  if (!link_listener(f, &c->node)) cb(f, userdata);
}

/* ---- waiters ---- */

int fp__waiter_init(fp__waiter *w) {
  memset(w, 0, sizeof *w);
  if (pthread_mutex_init(&w->mu, NULL)) return FP_ENOMEM;
  if (fp__cond_init(&w->cv)) {
    pthread_mutex_destroy(&w->mu);
    return FP_ENOMEM;
  }
  return 0;
}

void fp__waiter_destroy(fp__waiter *w) {
  pthread_cond_destroy(&w->cv);
  pthread_mutex_destroy(&w->mu);
}

bool fp__waiter_add(fp__waiter *w, fp__wait_node *node, fp_future *f) {
  node->waiter = w;
  return link_listener(f, node);
}

void fp__waiter_remove(fp__wait_node *node) {
  fp_future *f = node->future;
  /* Taking the lock even when the node was unlinked waits out a completer
   * that may still be signalling this waiter. */
  lock(f);
  if (node->linked) {
    if (node->prev)
      node->prev->next = node->next;
    else
      f->listeners = node->next;
    if (node->next) node->next->prev = node->prev;
    node->linked = false;
  }
  unlock(f);
}

fp__wait_node *fp__waiter_pop(fp__waiter *w, const fp__deadline *d) {
  pthread_mutex_lock(&w->mu);
  while (!w->ready_head) {
    if (fp__cond_wait(&w->cv, &w->mu, d) == ETIMEDOUT && !w->ready_head) break;
  }
  fp__wait_node *n = w->ready_head;
  if (n) FP__QUEUE_SHIFT(w->ready_head, w->ready_tail, ready_next);
  pthread_mutex_unlock(&w->mu);
  return n;
}

/* ---- waiting for one future ---- */

/* How deep a worker's helping waits are nested. */
static _Thread_local int help_depth;

/* Waiting in one of the executor's own threads, on a future of its own:
 * help (vt->run_queued) rather than sleep. */
static bool should_help(const fp_future *f) {
  const fp_executor *ex = f->ex;
  return ex && ex->vt->run_queued && ex->vt->is_own_thread && ex->vt->is_own_thread(ex);
}

/* A task that ends within microseconds is seen without sleeping: a sleep
 * and a wake-up cost tens of microseconds across cores. */
static bool spin_until_done(fp_future *f) {
  double until = 0;
  for (unsigned i = 1;; i++) {
    if (is_done_state(atomic_load_explicit(&f->state, memory_order_acquire))) return true;
    fp__cpu_relax();
    if (i % 64 == 0) { /* no sched_yield: it may give the core away for milliseconds */
      double now = fp__now();
      if (!until)
        until = now + FP__WAIT_SPIN_S;
      else if (now >= until)
        return false;
    }
  }
}

/* What the wait-for graph (deadlock.c) asks of a future. */
static const fp__wait_node_ops node_ops = {fp_future_done, fp_future_id, fp_future_name};

/* The edge goes in e, or in the task's help edge when it is a helper's
 * own sleep (fp__record_wait in internal.h). */
int fp__record_wait(fp__wait_edge *e, fp_future *const *targets, size_t n, bool any) {
  running_task *me = current_task;
  if (!me || !me->f) {
    *e = (fp__wait_edge){0};
    return 0;
  }
  for (running_task *above = me, *o = me->outer; o; above = o, o = o->outer)
    if (o->help_target && o->f) fp__wait_edge_hold(&o->help_edge, o->f, &o->help_target, above->f);
  if (n == 1 && !any && me->help_target == targets[0]) { /* a helper's sleep: its help edge */
    fp__wait_edge_remove(&me->help_edge);
    *e = (fp__wait_edge){0};
    return fp__wait_edge_add(&me->help_edge, me->f, &me->help_target, 1, false, &node_ops);
  }
  return fp__wait_edge_add(e, me->f, targets, n, any, &node_ops);
}

/* Sleep until f is done or the deadline passes; true if done. In a task,
 * a sleep that could never end (a cycle of waits) fails at once: *rc =
 * FP_EDEADLK. */
static bool wait_sleeping(fp_future *f, const fp__deadline *d, int *rc) {
  fp__waiter w;
  if (fp__waiter_init(&w)) {
    *rc = fp__fail(FP_ENOMEM, "fp_future_wait: out of resources");
    return false;
  }
  fp__wait_node node;
  bool done = true;
  if (fp__waiter_add(&w, &node, f)) {
    fp__wait_edge edge = {0};
    if ((*rc = fp__record_wait(&edge, &f, 1, false))) { /* f lives as long as the sleep */
      done = false;
    } else {
      done = fp__waiter_pop(&w, d) != NULL;
      fp__wait_edge_remove(&edge);
    }
    fp__waiter_remove(&node);
  }
  fp__waiter_destroy(&w);
  return done;
}

/* A worker waiting on a future of its own pool runs the pool's queued
 * tasks meanwhile: the task it waits for may be one of them (fan-out and
 * fan-in on a pool of one thread), and a blocked worker is a lost one.
 * When nothing is queued it sleeps on the future a millisecond at a time,
 * looking again for work in between. */
static bool help_until_done(fp_future *f, const fp__deadline *d, int *rc) {
  running_task *me = current_task; /* helping: what a task above it may wait for */
  if (me) me->help_target = f;
  help_depth++;
  bool done;
  while (!(done = is_done_state(atomic_load(&f->state)))) {
    if (help_depth <= FP__HELP_DEPTH_MAX && f->ex->vt->run_queued(f->ex)) continue;
    if (fp__deadline_passed(d)) break;
    double left = fp__deadline_remaining(d);
    fp__deadline slice = fp__deadline_in(left < 0 || left > 1e-3 ? 1e-3 : left);
    if (!wait_sleeping(f, &slice, rc) && *rc) break;
  }
  help_depth--;
  if (me) {
    fp__wait_edge_remove(&me->help_edge);
    me->help_target = NULL;
  }
  return done;
}

/* Waiting outside an executor that can be polled (vt->poll): poll it in
 * this thread while that brings something, then sleep on the future. */
static bool poll_until_done(fp_future *f, const fp__deadline *d, int *rc) {
  fp_executor *ex = f->ex;
  double quiet_until = fp__now() + FP__WAIT_POLL_S;
  while (!is_done_state(atomic_load(&f->state))) {
    double now = fp__now();
    if (ex->vt->poll(ex)) {
      quiet_until = now + FP__WAIT_POLL_S;
      continue;
    }
    if (now >= quiet_until || fp__deadline_passed(d)) return wait_sleeping(f, d, rc);
    sched_yield(); /* the threads that bring the outcome may need this core */
  }
  return true;
}

static bool should_poll(const fp_future *f) {
  const fp_executor *ex = f->ex;
  return ex && ex->vt->poll && !(ex->vt->is_own_thread && ex->vt->is_own_thread(ex));
}

int fp_future_wait(fp_future *f, double timeout_s) {
  if (!f) return fp__einval("fp_future_wait: future is NULL");
  if (fp__check_timeout(timeout_s, "fp_future_wait")) return FP_EINVAL;
  if (is_done_state(atomic_load(&f->state))) return 0;
  if (timeout_s == 0)
    return fp__fail(FP_ETIMEDOUT, "future %llu is not done", (unsigned long long)id_of(f));
  fp__deadline d = fp__deadline_in(timeout_s);
  int rc = 0;
  bool done = should_help(f)   ? help_until_done(f, &d, &rc)
              : should_poll(f) ? poll_until_done(f, &d, &rc)
                               : spin_until_done(f) || wait_sleeping(f, &d, &rc);
  if (done) return 0;
  if (rc) return rc;
  return fp__fail(FP_ETIMEDOUT, "future %llu not done within %g s", (unsigned long long)id_of(f),
                  timeout_s);
}

int fp_future_result(fp_future *f, double timeout_s, void **out) {
  if (!f) return fp__einval("fp_future_result: future is NULL");
  if (out) *out = NULL;
  int rc = fp_future_wait(f, timeout_s);
  if (rc) return rc;
  mark_observed(f);
  unsigned s = atomic_load(&f->state);
  if ((s & ST_MASK) == FP_CANCELLED)
    return fp__fail(FP_ECANCELED, "future %llu was cancelled", (unsigned long long)id_of(f));
  if (s & ST_FAILED) return fp__fail(error_of(f)->code, "%s", error_of(f)->message);
  if (out) *out = f->result;
  return 0;
}

const fp_error *fp_future_error(fp_future *f) {
  if (!f) {
    fp__einval("fp_future_error: future is NULL");
    return NULL;
  }
  unsigned s = atomic_load(&f->state);
  if ((s & ST_MASK) != FP_FINISHED) return NULL;
  mark_observed(f);
  return s & ST_FAILED ? error_of(f) : NULL;
}
