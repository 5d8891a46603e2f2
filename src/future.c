/* future.c - the future state machine, its waiters, its done-callbacks,
 * reference counting, and the task-side calls (fp_raise,
 * fp_cancel_requested). */
#include "internal.h"

#include <sched.h>
#include <stdio.h>
#include <string.h>

typedef struct callback {
  fp_done_cb cb;
  void *userdata;
  struct callback *next;
} callback;

/* The state word: an fp_future_state, or COMPLETING while the thread that
 * won the race to finish writes the outcome, plus the LISTENERS bit once a
 * waiter or a callback is registered (under mu). Transitions are atomic:
 * the mutex is taken only when someone listens, so a future nobody waits
 * on is run and finished without a lock. */
enum { ST_MASK = 7, ST_COMPLETING = 4, ST_LISTENERS = 8 };

/* A lock for the few instructions that link or unlink a listener: a word,
 * not a pthread mutex, to keep a future in two cache lines. */
typedef atomic_int spinlock;
static void lock(spinlock *l) {
  for (unsigned i = 1; atomic_exchange_explicit(l, 1, memory_order_acquire); i++) {
    fp__cpu_relax();
    if (i % 64 == 0) sched_yield();
  }
}
static void unlock(spinlock *l) { atomic_store_explicit(l, 0, memory_order_release); }

/* Two cache lines of its own (slabs carve futures at 128-byte strides,
 * below); the first holds all a worker touches to run a task and publish
 * its result. */
struct fp_future {
  atomic_uint state;
  atomic_int refs;
  spinlock mu; /* the waiter list and the callbacks */
  atomic_bool cancel_requested;
  atomic_bool observed; /* the outcome was looked at */
  bool failed;          /* finished with an error */
  bool bytes;           /* arg and result are fp_bytes (fp_submit_bytes) */
  fp_fn fn;
  void *arg;
  void *result;
  fp_executor *ex;
  fp__wait_node *waiters; /* mu */
  callback *callbacks;    /* mu; newest first */
  /* second line: failures, destructors, bookkeeping */
  fp_error error;     /* message points to error_text or a static string */
  char *error_text;   /* owned */
  fp_free_fn arg_free, result_free;
  uint64_t id;
  struct slab *home; /* where it was carved from */
};

/* The task this thread runs, and what fp_raise said of it. */
typedef struct running_task {
  fp_future *f; /* NULL in a process pool's worker */
  bool raised;
  int code;
  char *text;
} running_task;
static _Thread_local running_task *current_task;

bool fp__future_is_bytes(const fp_future *f) { return f->bytes; }
bool fp__future_cancel_requested(const fp_future *f) {
  return atomic_load(&f->cancel_requested);
}
bool fp__future_failed(const fp_future *f) {
  return (atomic_load(&f->state) & ST_MASK) == FP_FINISHED && f->failed;
}

/* ---- creation and references ---- */

/* ---- where futures live: slabs ----
 * Futures are carved in order from slabs of SLAB_FUTURES, each future on
 * two cache lines of its own (a worker finishing one never writes a line
 * the submitter is filling with the next one). A slab counts the futures
 * it has handed out and not had back; when the last comes back the slab
 * is empty, and an empty slab is kept for the next carving (up to
 * SPARE_MAX of them, shared by all threads) or given back to the
 * allocator. So a steady stream of tasks allocates nothing, a burst's
 * memory goes back once the burst is over, and a future that lives long
 * holds one slab, never a cache of others. */
enum { SLAB_FUTURES = 31, SPARE_MAX = 64, FUTURE_STRIDE = 128 };
_Static_assert(sizeof(fp_future) <= FUTURE_STRIDE, "a future fits its two cache lines");

typedef struct slab {
  /* Futures not yet back: SLAB_FUTURES from the start, until the thread
   * carving it gives up the ones it did not carve. */
  atomic_uint live;
  unsigned generation; /* of the allocator it came from */
  fp_free_fn free_fn;  /* that allocator's free */
  void *raw;           /* what it returned */
  struct slab *next;   /* among the spares */
} slab;
_Static_assert(sizeof(slab) <= FUTURE_STRIDE, "a slab's header fits before its futures");
#define SLAB_BYTES ((size_t)FUTURE_STRIDE * (SLAB_FUTURES + 1))

static fp_future *slab_future(slab *s, unsigned i) {
  return (fp_future *)((char *)s + FUTURE_STRIDE * (i + 1));
}

/* AddressSanitizer still sees a freed future as freed. */
#if defined(__SANITIZE_ADDRESS__)
#define FP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FP_ASAN 1
#endif
#endif
#ifdef FP_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

static pthread_mutex_t spare_mu = PTHREAD_MUTEX_INITIALIZER;
static slab *spares; /* empty slabs of the current allocator */
static size_t spare_n;
static atomic_uint alloc_generation; /* bumped when the allocator changes */

static void slab_release(slab *s) {
  UNPOISON(s, SLAB_BYTES);
  s->free_fn(s->raw);
}

/* The last future of s came back. */
static void slab_empty(slab *s) {
  bool kept = false;
  pthread_mutex_lock(&spare_mu);
  if (s->generation == atomic_load_explicit(&alloc_generation, memory_order_relaxed) &&
      spare_n < SPARE_MAX) {
    s->next = spares;
    spares = s;
    spare_n++;
    kept = true;
  }
  pthread_mutex_unlock(&spare_mu);
  if (!kept) slab_release(s);
}

static slab *slab_get(unsigned generation) {
  pthread_mutex_lock(&spare_mu);
  slab *s = spares;
  if (s) {
    spares = s->next;
    spare_n--;
  }
  pthread_mutex_unlock(&spare_mu);
  if (!s) {
    void *raw = fp__malloc(SLAB_BYTES + FUTURE_STRIDE - 1);
    if (!raw) return NULL;
    s = (slab *)(((uintptr_t)raw + FUTURE_STRIDE - 1) & ~(uintptr_t)(FUTURE_STRIDE - 1));
    s->raw = raw;
    s->free_fn = fp__current_free();
    s->generation = generation;
    POISON(slab_future(s, 0), FUTURE_STRIDE * SLAB_FUTURES);
  }
  atomic_store_explicit(&s->live, SLAB_FUTURES, memory_order_relaxed);
  return s;
}

/* A future comes back to its slab. acq_rel: every use of it happens
 * before the slab's reuse, whichever thread frees last. */
static void slab_put(fp_future *f, slab *s) {
  POISON(f, FUTURE_STRIDE);
  if (atomic_fetch_sub_explicit(&s->live, 1, memory_order_acq_rel) == 1) slab_empty(s);
}

/* The slab a thread carves from. */
typedef struct carver {
  slab *s;
  unsigned carved;     /* futures taken from it */
  bool registered;     /* the thread-exit destructor knows it */
} carver;
static _Thread_local carver carving;
static pthread_key_t carver_key;
static pthread_once_t carver_key_once = PTHREAD_ONCE_INIT;

/* Give back what was not carved: the slab is empty once those carved are. */
static void carver_drop(void *arg) {
  carver *c = arg;
  slab *s = c->s;
  if (!s) return;
  c->s = NULL;
  unsigned left = SLAB_FUTURES - c->carved;
  if (left && atomic_fetch_sub_explicit(&s->live, left, memory_order_acq_rel) == left)
    slab_empty(s);
}

static void make_carver_key(void) { pthread_key_create(&carver_key, carver_drop); }

void fp__future_cache_flush(void) {
  carver_drop(&carving);
  pthread_mutex_lock(&spare_mu);
  atomic_fetch_add(&alloc_generation, 1); /* slabs emptied from now on are not kept */
  slab *s = spares;
  spares = NULL;
  spare_n = 0;
  pthread_mutex_unlock(&spare_mu);
  while (s) {
    slab *next = s->next;
    slab_release(s);
    s = next;
  }
}

static fp_future *future_alloc(void) {
  carver *c = &carving;
  unsigned gen = atomic_load_explicit(&alloc_generation, memory_order_relaxed);
  if (c->s && (c->carved == SLAB_FUTURES || c->s->generation != gen)) carver_drop(c);
  if (!c->s) {
    if (!c->registered) { /* else a thread's last slab is never given back */
      pthread_once(&carver_key_once, make_carver_key);
      c->registered = pthread_setspecific(carver_key, c) == 0;
    }
    if (!(c->s = slab_get(gen))) return NULL;
    c->carved = 0;
  }
  slab *s = c->s;
  fp_future *f = slab_future(s, c->carved++);
  if (c->carved < SLAB_FUTURES) { /* the next one, for writing: it is likely cold */
    __builtin_prefetch(slab_future(s, c->carved), 1);
    __builtin_prefetch((char *)slab_future(s, c->carved) + 64, 1);
  }
  if (!c->registered) carver_drop(c); /* one future from it, the rest given back */
  UNPOISON(f, FUTURE_STRIDE);
  memset(f, 0, sizeof *f);
  f->home = s;
  atomic_init(&f->mu, 0);
  atomic_init(&f->state, FP_PENDING);
  atomic_init(&f->refs, 1);
  atomic_init(&f->cancel_requested, false);
  atomic_init(&f->observed, false);
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
  atomic_store_explicit(&f->refs, 2, memory_order_relaxed);
  f->fn = fn;
  f->arg = arg;
  f->bytes = bytes;
  if (topt) {
    f->arg_free = topt->arg_free;
    f->result_free = topt->result_free;
  }
  f->ex = ex;
  f->id = id;
  return f;
}

static void future_free(fp_future *f, bool run_destructors) {
  for (callback *c = f->callbacks, *next; c; c = next) {
    next = c->next;
    fp__free(c);
  }
  if (run_destructors) {
    unsigned state = atomic_load(&f->state) & ST_MASK;
    if (state == FP_FINISHED && f->failed && !atomic_load(&f->observed))
      fp_log(FP_LOG_WARNING,
             "future %llu (task %p, arg %p) failed and nobody retrieved its error: %s: %s",
             (unsigned long long)f->id, (void *)(uintptr_t)f->fn, f->arg,
             fp_err_name(f->error.code), f->error.message);
    if (state == FP_FINISHED && !f->failed && f->result && f->result_free)
      f->result_free(f->result);
    if (f->arg_free) f->arg_free(f->arg);
  }
  fp__free(f->error_text);
  slab_put(f, f->home);
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

fp_fn fp_future_fn(const fp_future *f) { return present(f, __func__) ? f->fn : NULL; }
void *fp_future_arg(const fp_future *f) { return present(f, __func__) ? f->arg : NULL; }
uint64_t fp_future_id(const fp_future *f) { return present(f, __func__) ? f->id : 0; }

/* ---- completing ---- */

/* f is done and had listeners (mu held): wake every waiter and hand back
 * the callbacks for the caller to run once mu is released. */
static callback *notify_locked(fp_future *f) {
  for (fp__wait_node *n = f->waiters; n; n = n->next) {
    fp__waiter *w = n->waiter;
    pthread_mutex_lock(&w->mu);
    n->ready_next = NULL;
    if (w->ready_tail)
      w->ready_tail->ready_next = n;
    else
      w->ready_head = n;
    w->ready_tail = n;
    w->ready++;
    if (f->failed) w->failed++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    n->linked = false;
  }
  f->waiters = NULL;
  callback *cbs = NULL, *c = f->callbacks; /* oldest first: reversed */
  while (c) {
    callback *next = c->next;
    c->next = cbs;
    cbs = c;
    c = next;
  }
  f->callbacks = NULL;
  return cbs;
}

static void run_callbacks(fp_future *f, callback *cbs) {
  while (cbs) {
    callback *next = cbs->next;
    cbs->cb(f, cbs->userdata);
    fp__free(cbs);
    cbs = next;
  }
}

/* Publish a done state; tell the listeners, if any. */
static void publish(fp_future *f, unsigned state) {
  unsigned old = atomic_exchange(&f->state, state);
  if (!(old & ST_LISTENERS)) return;
  lock(&f->mu);
  callback *cbs = notify_locked(f);
  unlock(&f->mu);
  run_callbacks(f, cbs);
}

/* Mark that a listener is about to be linked (mu held); false if f is done. */
static bool listen_locked(fp_future *f) {
  unsigned s = atomic_load(&f->state);
  do
    if (is_done_state(s)) return false;
  while (!atomic_compare_exchange_weak(&f->state, &s, s | ST_LISTENERS));
  return true;
}

/* Finish f with a result or an error (text owned, may be NULL for the
 * code's standard message). */
static int finish(fp_future *f, void *result, bool failed, int code, char *text) {
  unsigned s = atomic_load(&f->state);
  do {
    unsigned v = s & ST_MASK;
    if (v == FP_FINISHED || v == FP_CANCELLED || v == ST_COMPLETING) {
      fp__free(text);
      return fp__fail(FP_ESTATE, "future %llu is already done: its first outcome stays",
                      (unsigned long long)f->id);
    }
  } while (!atomic_compare_exchange_weak(&f->state, &s, ST_COMPLETING | (s & ST_LISTENERS)));
  f->result = result;
  f->failed = failed;
  if (failed) {
    f->error.code = code ? code : FP_ETASK;
    f->error_text = text;
    f->error.message = text ? text : fp_strerror(f->error.code);
  }
  publish(f, FP_FINISHED);
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
    if (atomic_compare_exchange_weak(&f->state, &s, FP_RUNNING | (s & ST_LISTENERS))) return 0;
  unsigned state = s & ST_MASK;
  if (state == FP_CANCELLED)
    return fp__fail(FP_ECANCELED, "future %llu was cancelled", (unsigned long long)f->id);
  return fp__fail(FP_ESTATE, "future %llu is not pending", (unsigned long long)f->id);
}

bool fp_future_cancel(fp_future *f) {
  if (!f) {
    fp__einval("fp_future_cancel: future is NULL");
    return false;
  }
  unsigned s = atomic_load(&f->state);
  while ((s & ST_MASK) == FP_PENDING) {
    if (atomic_compare_exchange_weak(&f->state, &s, ST_COMPLETING | (s & ST_LISTENERS))) {
      publish(f, FP_CANCELLED);
      return true;
    }
  }
  unsigned state = st_value(s);
  if (state == FP_RUNNING) {
    atomic_store(&f->cancel_requested, true);
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
  running_task task = {f, false, 0, NULL};
  running_task *outer = current_task; /* a task may run another (helping) */
  current_task = &task;
  void *result = f->fn(f->arg);
  current_task = outer;
  if (returned) returned(ctx, true);
  if (task.raised) {
    if (result && f->result_free) f->result_free(result);
    finish(f, NULL, true, task.code, task.text);
  } else {
    finish(f, result, false, 0, NULL);
  }
}

void *fp__call_task(fp_fn fn, void *arg, int *code, char **text) {
  running_task task = {NULL, false, 0, NULL};
  running_task *outer = current_task;
  current_task = &task;
  void *result = fn(arg);
  current_task = outer;
  *code = task.raised ? task.code : 0;
  *text = task.text;
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
  fp_future *f = current_task ? current_task->f : NULL;
  if (!f) return false;
  if (atomic_load_explicit(&f->cancel_requested, memory_order_relaxed)) return true;
  return f->ex && atomic_load_explicit(&f->ex->cancel_all, memory_order_relaxed);
}

/* ---- callbacks ---- */

int fp_future_on_done(fp_future *f, fp_done_cb cb, void *userdata) {
  if (!f || !cb) return fp__einval("fp_future_on_done: %s is NULL", f ? "callback" : "future");
  callback *c = fp__malloc(sizeof *c);
  if (!c) return fp__fail(FP_ENOMEM, "fp_future_on_done: out of memory");
  c->cb = cb;
  c->userdata = userdata;
  c->next = NULL;
  lock(&f->mu);
  if (!listen_locked(f)) {
    unlock(&f->mu);
    fp__free(c);
    cb(f, userdata);
    return 0;
  }
  c->next = f->callbacks;
  f->callbacks = c;
  unlock(&f->mu);
  return 0;
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
  node->future = f;
  node->waiter = w;
  node->prev = NULL;
  node->ready_next = NULL;
  lock(&f->mu);
  if (!listen_locked(f)) {
    unlock(&f->mu);
    node->linked = false;
    return false;
  }
  node->next = f->waiters;
  if (f->waiters) f->waiters->prev = node;
  f->waiters = node;
  node->linked = true;
  unlock(&f->mu);
  return true;
}

void fp__waiter_remove(fp__wait_node *node) {
  fp_future *f = node->future;
  /* Taking the lock even when the node was unlinked waits out a completer
   * that may still be signalling this waiter. */
  lock(&f->mu);
  if (node->linked) {
    if (node->prev)
      node->prev->next = node->next;
    else
      f->waiters = node->next;
    if (node->next) node->next->prev = node->prev;
    node->linked = false;
  }
  unlock(&f->mu);
}

fp__wait_node *fp__waiter_pop(fp__waiter *w, const fp__deadline *d) {
  pthread_mutex_lock(&w->mu);
  while (!w->ready_head) {
    if (fp__cond_wait(&w->cv, &w->mu, d) == ETIMEDOUT && !w->ready_head) break;
  }
  fp__wait_node *n = w->ready_head;
  if (n) {
    w->ready_head = n->ready_next;
    if (!w->ready_head) w->ready_tail = NULL;
  }
  pthread_mutex_unlock(&w->mu);
  return n;
}

/* ---- waiting for one future ---- */

static _Thread_local fp__helper *helper; /* set on a thread pool's workers */

void fp__set_helper(fp__helper *h) { helper = h; }

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

/* Sleep until f is done or the deadline passes; true if done. */
static bool wait_sleeping(fp_future *f, const fp__deadline *d, int *rc) {
  fp__waiter w;
  if (fp__waiter_init(&w)) {
    *rc = fp__fail(FP_ENOMEM, "fp_future_wait: out of resources");
    return false;
  }
  fp__wait_node node;
  bool done = true;
  if (fp__waiter_add(&w, &node, f)) {
    done = fp__waiter_pop(&w, d) != NULL;
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
  helper->depth++;
  bool done;
  while (!(done = is_done_state(atomic_load(&f->state)))) {
    if (helper->depth <= FP__HELP_DEPTH_MAX && helper->run_one(helper)) continue;
    if (fp__deadline_passed(d)) break;
    double left = fp__deadline_remaining(d);
    fp__deadline slice = fp__deadline_in(left < 0 || left > 1e-3 ? 1e-3 : left);
    if (!wait_sleeping(f, &slice, rc) && *rc) break;
  }
  helper->depth--;
  return done;
}

int fp_future_wait(fp_future *f, double timeout_s) {
  if (!f) return fp__einval("fp_future_wait: future is NULL");
  if (is_done_state(atomic_load(&f->state))) return 0;
  if (timeout_s == 0)
    return fp__fail(FP_ETIMEDOUT, "future %llu is not done", (unsigned long long)f->id);
  fp__deadline d = fp__deadline_in(timeout_s);
  int rc = 0;
  bool helping = helper && f->ex && helper->ex == f->ex;
  if (helping ? help_until_done(f, &d, &rc) : spin_until_done(f) || wait_sleeping(f, &d, &rc))
    return 0;
  if (rc) return rc;
  return fp__fail(FP_ETIMEDOUT, "future %llu not done within %g s", (unsigned long long)f->id,
                  timeout_s);
}

int fp_future_result(fp_future *f, double timeout_s, void **out) {
  if (!f) return fp__einval("fp_future_result: future is NULL");
  if (out) *out = NULL;
  int rc = fp_future_wait(f, timeout_s);
  if (rc) return rc;
  atomic_store_explicit(&f->observed, true, memory_order_relaxed);
  if ((atomic_load(&f->state) & ST_MASK) == FP_CANCELLED)
    return fp__fail(FP_ECANCELED, "future %llu was cancelled", (unsigned long long)f->id);
  if (f->failed) return fp__fail(f->error.code, "%s", f->error.message);
  if (out) *out = f->result;
  return 0;
}

const fp_error *fp_future_error(fp_future *f) {
  if (!f) {
    fp__einval("fp_future_error: future is NULL");
    return NULL;
  }
  if ((atomic_load(&f->state) & ST_MASK) != FP_FINISHED) return NULL;
  atomic_store_explicit(&f->observed, true, memory_order_relaxed);
  return f->failed ? &f->error : NULL;
}
