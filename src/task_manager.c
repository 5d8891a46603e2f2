/* task_manager.c - the futureproof layer over any executor: tasks in
 * submission order through a bounded window, error policies, and fail
 * fast (the first failure cancels what is queued and asks running tasks to
 * stop). */
#include "internal.h"
#include "monitor.h"

struct fp_task {
  atomic_int refs;
  fp_fn fn;
  void *arg;
  fp_free_fn arg_free;
  char *name;                   /* given (fp_tm_submit_named, describe), or NULL */
  _Atomic(fp_future *) future; /* NULL until handed to the executor */
  atomic_bool dropped;          /* never handed over: the run stopped first */
  uint64_t index;
  double queued_at;
  /* Written by the worker before the outcome is published; the monitor
   * reads started_at of running tasks. */
  _Atomic double started_at, finished_at;
  struct fp_task_manager *tm;     /* only while in the executor */
  struct fp_task *prev, *next;    /* in one of the manager's lists */
  struct fp_task *finished_next;  /* in the manager's finished stack */
  fp__callback on_done;           /* its future's done-callback */
};

/* What is waiting to be handed to the executor, in submission order: a
 * submitted task, or a map's input. */
typedef struct tm_source {
  struct tm_source *next;
  fp_task *task; /* a single task, or NULL for a map: */
  fp_fn fn;
  fp_iter_fn iter;
  void *state;
  fp_free_fn item_free;
} tm_source;

typedef struct tm_list {
  fp_task *head, *tail;
} tm_list;

struct fp_task_manager {
  /* What the workers write or read for every task, on lines of its own
   * (the consumer writes the rest for every task): */
  /* Finished tasks, pushed by the threads that finish them without mu
   * (newest first); whoever holds mu next settles them (settle_finished). */
  _Alignas(FP__APART) _Atomic(fp_task *) finished;
  atomic_int waiters;   /* threads asleep on cv for a finished task */
  atomic_int refs;      /* the user's, plus one per task in the executor */
  atomic_bool stopping; /* read by tasks about to start */

  _Alignas(FP__APART) fp_executor *ex;
  fp_tm_options opt;
  pthread_mutex_t mu;
  pthread_cond_t cv; /* a task completed, the window has room, or a stop */

  tm_source *sources, *sources_tail;
  size_t in_flight;  /* counted from submit to consumption */
  size_t backlog;    /* of which submitted tasks not yet handed over */
  size_t peak_in_flight;
  bool feeding;      /* a thread is handing tasks over, outside the lock */
  tm_list running;   /* in the executor (and finished, until settled) */
  tm_list done;      /* completed and settled, not consumed */
  int room_waiters;   /* fp_tm_submit calls asleep on cv for room (mu) */
  fp_task **kept;    /* keep_completed */
  size_t kept_count, kept_room;
  uint64_t next_index;
  uint64_t submitted, completed, failed, cancelled, retried, timed_out, crashed;
  fp__hist *latency; /* [0] queue wait, [1] run (mu) */
  /* A map's items go to worker processes in chunks of `chunk`, sized from
   * the measured rate (as fp_map's automatic chunksize): `measured` tasks
   * settled since measured_since (mu). */
  bool auto_chunk;
  size_t chunk, measured;
  double measured_since;
  bool tracing;      /* it started the trace (trace_path): it stops it */

  int stop_code;
  char stop_message[256];
  fp_task *failed_task;
  double stop_began, stop_latency;

  fp__monitor monitor; /* monitor lines, progress, Ctrl-C (monitor.c) */
};

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* A map's items are read and handed over this many at a time, at most,
 * once 1/REFILL_PARTS of a large window is free (refilling at every free
 * slot, or at an eighth, measured slower); a map's chunks for worker
 * processes grow toward FP__CHUNK_S of work. */
enum { FEED_BATCH = 64, REFILL_PARTS = 2 };

double fp_now(void) { return fp__now(); }

/* ---- policies ---- */

static const char *const policy_names[] = {"raise", "log", "ignore"};

const char *fp_error_policy_name(fp_error_policy policy) {
  return (unsigned)policy < 3 ? policy_names[policy] : "unknown";
}

int fp_error_policy_parse(const char *name, fp_error_policy *out) {
  if (!name || !out) return fp__einval("fp_error_policy_parse: %s is NULL", name ? "out" : "name");
  for (int p = 0; p < 3; p++) {
    size_t i = 0;
    while (name[i] && tolower((unsigned char)name[i]) == policy_names[p][i]) i++;
    if (!name[i] && !policy_names[p][i]) {
      *out = (fp_error_policy)p;
      return 0;
    }
  }
  return fp__einval("unknown error policy '%s' (use raise, log or ignore)", name);
}

void fp_tm_options_init(fp_tm_options *opt) {
  if (!opt) {
    fp__einval("fp_tm_options_init: options are NULL");
    return;
  }
  memset(opt, 0, sizeof *opt);
  opt->error_policy = FP_POLICY_RAISE;
  opt->monitor_interval = 2;
}

/* ---- task handles ---- */

static fp_task *task_new(fp_fn fn, void *arg, fp_free_fn arg_free, double now) {
  fp_task *t = fp__calloc(1, sizeof *t); /* (calloc: the zeroes are most of it) */
  if (!t) return NULL;
  atomic_init(&t->refs, 1);
  t->fn = fn;
  t->arg = arg;
  t->arg_free = arg_free;
  t->queued_at = now;
  return t;
}

fp_task *fp_task_retain(fp_task *t) {
  if (!t) {
    fp__einval("fp_task_retain: task is NULL");
    return NULL;
  }
  atomic_fetch_add(&t->refs, 1);
  return t;
}

void fp_task_release(fp_task *t) {
  if (!t || atomic_fetch_sub(&t->refs, 1) != 1) return;
  fp_future_release(atomic_load(&t->future));
  if (t->arg_free) t->arg_free(t->arg);
  fp__free(t->name);
  fp__free(t);
}

/* The task's name for messages, in buf. */
static const char *task_name(const fp_task *t, char *buf, size_t len) {
  if (t->name) {
    snprintf(buf, len, "%s", t->name);
    return buf;
  }
  return fp__fn_name(t->fn, buf, len);
}

static bool task_present(const fp_task *t, const char *fn) {
  if (!t) fp__einval("%s: task is NULL", fn);
  return t != NULL;
}

fp_fn fp_task_fn(const fp_task *t) { return task_present(t, __func__) ? t->fn : NULL; }
void *fp_task_arg(const fp_task *t) { return task_present(t, __func__) ? t->arg : NULL; }
uint64_t fp_task_index(const fp_task *t) { return task_present(t, __func__) ? t->index : 0; }

fp_future_state fp_task_state(const fp_task *t) {
  if (!task_present(t, __func__)) return FP_PENDING;
  fp_future *f = atomic_load(&t->future);
  if (f) return fp_future_get_state(f);
  return atomic_load(&t->dropped) ? FP_CANCELLED : FP_PENDING;
}

bool fp_task_complete(const fp_task *t) {
  fp_future_state s = fp_task_state(t);
  return s == FP_FINISHED || s == FP_CANCELLED;
}

int fp_task_result(const fp_task *t, void **out) {
  if (out) *out = NULL;
  if (!task_present(t, __func__)) return FP_EINVAL;
  fp_future *f = atomic_load(&t->future);
  if (f) return fp_future_result(f, 0, out);
  if (atomic_load(&t->dropped))
    return fp__fail(FP_ECANCELED, "task %llu never ran: the run stopped first",
                    (unsigned long long)t->index);
  return fp__fail(FP_ETIMEDOUT, "task %llu is not complete", (unsigned long long)t->index);
}

const fp_error *fp_task_error(const fp_task *t) {
  fp_future *f = task_present(t, __func__) ? atomic_load(&t->future) : NULL;
  return f ? fp_future_error(f) : NULL;
}

void fp_task_times(const fp_task *t, double *queued, double *started, double *finished) {
  bool ok = task_present(t, __func__);
  bool done = ok && fp_task_complete(t); /* the worker's writes are visible */
  if (queued) *queued = ok ? t->queued_at : 0;
  if (started) *started = done ? t->started_at : 0;
  if (finished) *finished = done ? t->finished_at : 0;
}

/* ---- lists ---- */

static void list_push(tm_list *l, fp_task *t) {
  t->prev = l->tail; /* doubly linked: any task leaves when it completes */
  FP__QUEUE_PUSH(l->head, l->tail, t, next);
}

static void list_remove(tm_list *l, fp_task *t) {
  if (t->prev)
    t->prev->next = t->next;
  else
    l->head = t->next;
  if (t->next)
    t->next->prev = t->prev;
  else
    l->tail = t->prev;
  t->prev = t->next = NULL;
}

/* ---- the manager's own references ---- */

static void tm_destroy(fp_task_manager *tm) {
  for (fp_task *t = atomic_load(&tm->finished), *next; t; t = next) {
    next = t->finished_next;
    fp_task_release(t);
  }
  for (fp_task *t = tm->done.head, *next; t; t = next) {
    next = t->next;
    fp_task_release(t);
  }
  for (tm_source *s = tm->sources, *next; s; s = next) {
    next = s->next;
    if (s->task) fp_task_release(s->task);
    fp__free(s);
  }
  for (size_t i = 0; i < tm->kept_count; i++) fp_task_release(tm->kept[i]);
  fp__free(tm->kept);
  fp__free(tm->latency);
  fp_task_release(tm->failed_task);
  pthread_cond_destroy(&tm->cv);
  pthread_mutex_destroy(&tm->mu);
  fp__free_lines(tm);
}

static void tm_release(fp_task_manager *tm) {
  if (atomic_fetch_sub(&tm->refs, 1) == 1) tm_destroy(tm);
}

/* ---- running a task ---- */

/* What the executor runs: the user's function, timed, unless the run is
 * stopping (a task the stop's cancel did not reach in time). */
static void *trampoline(void *arg) {
  fp_task *t = arg;
  atomic_store_explicit(&t->started_at, fp__now(), memory_order_relaxed);
  void *result;
  if (atomic_load(&t->tm->stopping))
    result = fp_raise(FP_ECANCELED, "task %llu not started: the run is stopping",
                      (unsigned long long)t->index);
  else
    result = t->fn(t->arg);
  atomic_store_explicit(&t->finished_at, fp__now(), memory_order_relaxed);
  return result;
}

static const char *wrapped_task_name(const fp_future *f, char *buf, size_t len) {
  if (fp_future_fn(f) != trampoline) return NULL;
  return task_name(fp_future_arg(f), buf, len);
}

/* Begin a stop (mu held): returns true if this call began it. */
static bool begin_stop(fp_task_manager *tm, int code, fp_task *failed, const char *fmt, ...)
    FP_PRINTF(4, 5);
static bool begin_stop(fp_task_manager *tm, int code, fp_task *failed, const char *fmt, ...) {
  if (atomic_load(&tm->stopping)) return false;
  atomic_store(&tm->stopping, true);
  tm->stop_code = code;
  tm->stop_began = fp__now();
  if (failed) tm->failed_task = fp_task_retain(failed);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tm->stop_message, sizeof tm->stop_message, fmt, ap);
  va_end(ap);
  pthread_cond_broadcast(&tm->cv);
  return true;
}

/* Cancel what the executor has not started; ask running tasks to stop.
 * Called without mu. */
static void cancel_running(fp_task_manager *tm) {
  pthread_mutex_lock(&tm->mu);
  size_t n = 0, room = tm->in_flight;
  fp_future **fs = room ? fp__malloc_array(room, sizeof *fs) : NULL;
  for (fp_task *t = tm->running.head; t && n < room && fs; t = t->next) {
    fp_future *f = atomic_load(&t->future);
    if (f) fs[n++] = fp_future_retain(f); /* else mid-handover: the trampoline turns it away */
  }
  pthread_mutex_unlock(&tm->mu);
  if (room && !fs) /* the trampoline still turns each away as it starts */
    fp_log(FP_LOG_WARNING, "task manager: no memory to cancel %zu tasks at once", room);
  for (size_t i = 0; i < n; i++) {
    fp_future_cancel(fs[i]); /* queued: cancelled; running: asked to stop */
    fp_future_release(fs[i]);
  }
  fp__free(fs);
  pthread_mutex_lock(&tm->mu);
  if (tm->stop_latency == 0) tm->stop_latency = fp__now() - tm->stop_began;
  pthread_mutex_unlock(&tm->mu);
}

/* Whether a finished task counts as failed: a cancel the stop made is
 * not a failure of its own. */
static bool counts_failed(fp_task_manager *tm, const fp_error *err) {
  return err && !(atomic_load(&tm->stopping) && err->code == FP_ECANCELED);
}

/* A map on worker processes: once a round of chunks has settled, size the
 * next ones (fp__chunk_size; at most a feed's batch). (mu held) */
static void resize_chunks(fp_task_manager *tm, const fp_task *settling) {
  for (; settling; settling = settling->finished_next) tm->measured++;
  if (tm->measured < tm->chunk * (size_t)tm->ex->max_workers) return;
  double now = fp__now();
  tm->chunk = fp__chunk_size(tm->chunk, tm->measured, now - tm->measured_since,
                             tm->ex->max_workers, FEED_BATCH);
  tm->measured = 0;
  tm->measured_since = now;
}

/* Settle the finished tasks (mu held): to the done list, in the order
 * they finished, counted and timed. */
static void settle_finished(fp_task_manager *tm) {
  if (!atomic_load(&tm->finished)) return; /* (seq_cst: see fp_tm_next's wait) */
  fp_task *t = atomic_exchange_explicit(&tm->finished, NULL, memory_order_acquire);
  fp_task *in_order = NULL;
  while (t) { /* newest first: reverse */
    fp_task *next = t->finished_next;
    t->finished_next = in_order;
    in_order = t;
    t = next;
  }
  if (tm->auto_chunk) resize_chunks(tm, in_order);
  for (t = in_order; t; t = in_order) {
    in_order = t->finished_next;
    t->finished_next = NULL;
    fp_future *f = atomic_load_explicit(&t->future, memory_order_relaxed);
    list_remove(&tm->running, t);
    list_push(&tm->done, t);
    if (tm->opt.retry.max_attempts > 1) {
      int attempts = fp_future_attempts(f);
      if (attempts > 1) tm->retried += (uint64_t)attempts - 1;
    }
    fp_future_state state = fp_future_get_state(f);
    if (state == FP_CANCELLED)
      tm->cancelled++;
    else
      tm->completed++;
    const fp_error *err = state == FP_FINISHED && fp__future_failed(f) ? fp_future_error(f) : NULL;
    if (counts_failed(tm, err)) {
      tm->failed++;
      tm->timed_out += err->code == FP_ETIMEDOUT;
      tm->crashed += err->code == FP_ECRASHED;
    }
    double started = t->started_at, finished = t->finished_at;
    if (started > 0 && finished >= started) {
      fp__hist_add_owned(&tm->latency[0], started > t->queued_at
                                        ? (uint64_t)((started - t->queued_at) * 1e9) : 0);
      fp__hist_add_owned(&tm->latency[1], (uint64_t)((finished - started) * 1e9));
    }
  }
}

/* A task's future is done (in the thread that completed it): apply the
 * error policy if it failed, and push the task for the consumer -- no
 * lock unless it failed or someone sleeps waiting for it. */
static void on_task_done(fp_future *f, void *userdata) {
  fp_task *t = userdata;
  fp_task_manager *tm = t->tm;
  if (!fp__executor_shares_memory(tm->ex)) {
    uint64_t started_ns; /* a process pool tells when it really began */
    fp__run_context(&started_ns);
    if (started_ns) t->started_at = (double)started_ns * 1e-9;
    t->finished_at = fp__now();
  }
  const fp_error *err = fp__future_failed(f) ? fp_future_error(f) : NULL;
  bool began_stop = false;
  if (err) {
    pthread_mutex_lock(&tm->mu);
    if (counts_failed(tm, err)) {
      char name[128];
      if (tm->opt.error_policy == FP_POLICY_RAISE)
        began_stop = begin_stop(tm, err->code, t, "task %llu (%s) failed: %s: %s",
                                (unsigned long long)t->index, task_name(t, name, sizeof name),
                                fp_err_name(err->code), err->message);
      else if (tm->opt.error_policy == FP_POLICY_LOG)
        fp_log(FP_LOG_WARNING, "task %llu (%s, arg %p) failed: %s: %s",
               (unsigned long long)t->index, task_name(t, name, sizeof name), t->arg,
               fp_err_name(err->code), err->message);
    }
    pthread_mutex_unlock(&tm->mu);
  }
  fp_task *head = atomic_load_explicit(&tm->finished, memory_order_relaxed);
  do t->finished_next = head;
  while (!atomic_compare_exchange_weak(&tm->finished, &head, t));
  if (atomic_load(&tm->waiters)) { /* (seq_cst, against the sleeper's check) */
    pthread_mutex_lock(&tm->mu);
    pthread_cond_broadcast(&tm->cv);
    pthread_mutex_unlock(&tm->mu);
  }
  if (began_stop) cancel_running(tm);
  tm_release(tm); /* the task's hold on the manager */
}

/* ---- feeding the executor ---- */


/* The executor refused tasks (shut down, broken, out of memory): that
 * ends the run whatever the policy, since nothing more can run (mu held,
 * released for the cancel). Each held a reference on the manager. */
static void refused(fp_task_manager *tm, fp_task **ts, size_t n, int rc) {
  bool began = false;
  for (size_t i = 0; i < n; i++) {
    list_remove(&tm->running, ts[i]);
    atomic_store(&ts[i]->dropped, true);
    list_push(&tm->done, ts[i]);
    began |= begin_stop(tm, rc, NULL, "the executor refused task %llu: %s",
                        (unsigned long long)ts[i]->index, fp_last_error_message());
  }
  pthread_mutex_unlock(&tm->mu);
  for (size_t i = 0; i < n; i++) tm_release(tm);
  if (began) cancel_running(tm);
  pthread_mutex_lock(&tm->mu);
}

/* Hand one task to the executor (mu held on entry and exit; released
 * while submitting, which may block on a bounded queue and may complete
 * the task at once). */
static void hand_over(fp_task_manager *tm, fp_task *t) {
  t->index = ++tm->next_index;
  t->tm = tm;
  atomic_fetch_add(&tm->refs, 1);
  list_push(&tm->running, t);
  pthread_mutex_unlock(&tm->mu);
  fp_future *f = NULL;
  /* The trampoline times the task and turns it away once the run stops;
   * it needs the task's memory, so a worker process gets fn(arg) itself
   * (timed from here; a stop kills its worker instead). */
  bool shared = fp__executor_shares_memory(tm->ex);
  if (!shared) t->started_at = fp__now();
  /* a worker process's future is fn's own: it carries the name */
  fp_task_options topt = {.name = shared ? NULL : t->name, .retry = tm->opt.retry};
  bool plain = !topt.name && tm->opt.retry.max_attempts < 2;
  int rc = fp_submit_ex(tm->ex, shared ? trampoline : t->fn, shared ? t : t->arg,
                        plain ? NULL : &topt, -1, &f);
  pthread_mutex_lock(&tm->mu);
  if (rc == 0) {
    atomic_store(&t->future, f);
    tm->submitted++;
    pthread_mutex_unlock(&tm->mu);
    fp__future_on_done_embedded(f, &t->on_done, on_task_done, t);
    pthread_mutex_lock(&tm->mu);
    return;
  }
  refused(tm, &t, 1, rc);
}

/* Hand k tasks to the executor in one submit (mu held on entry and exit,
 * released while submitting): as independent tasks, or as one chunk (a
 * unit of work for a worker process; the same fn, their args). */
static void submit_group(fp_task_manager *tm, fp_task **ts, size_t k, bool chunk) {
  bool shared = fp__executor_shares_memory(tm->ex);
  double now = shared ? 0 : fp__now(); /* a worker process's start, unless it says */
  void *items[FEED_BATCH];
  for (size_t i = 0; i < k; i++) {
    ts[i]->index = ++tm->next_index;
    ts[i]->tm = tm;
    if (!shared) ts[i]->started_at = now;
    list_push(&tm->running, ts[i]);
    items[i] = shared ? (void *)ts[i] : ts[i]->arg;
  }
  atomic_fetch_add(&tm->refs, (int)k);
  pthread_mutex_unlock(&tm->mu);
  fp_future *fs[FEED_BATCH];
  fp_task_options topt = {.retry = tm->opt.retry};
  int rc = fp__submit_batch(tm->ex, shared ? trampoline : ts[0]->fn, items, k,
                            tm->opt.retry.max_attempts < 2 ? NULL : &topt, chunk, fs);
  pthread_mutex_lock(&tm->mu);
  if (rc) {
    refused(tm, ts, k, rc);
    return;
  }
  for (size_t i = 0; i < k; i++) atomic_store(&ts[i]->future, fs[i]);
  tm->submitted += k;
  pthread_mutex_unlock(&tm->mu);
  /* Registered now, a task already done is settled in this thread: cheaper
   * than a hand-off from a worker for a short task (measured). */
  for (size_t i = 0; i < k; i++)
    fp__future_on_done_embedded(fs[i], &ts[i]->on_done, on_task_done, ts[i]);
  pthread_mutex_lock(&tm->mu);
}

/* Hand n tasks (of one map when n > 1) to the executor (mu held on entry
 * and exit): all in one submit where the executor runs tasks in this
 * address space and takes batches; in chunks of the size the manager
 * measured where it runs them in worker processes (a single task too:
 * one path keeps the executor's order); else one by one. */
static void hand_over_many(fp_task_manager *tm, fp_task **ts, size_t n) {
  if (fp__executor_shares_memory(tm->ex) && fp__executor_batches(tm->ex, false)) {
    submit_group(tm, ts, n, false);
  } else if (tm->auto_chunk && n > 1) {
    for (size_t i = 0; i < n; i += tm->chunk)
      submit_group(tm, ts + i, n - i < tm->chunk ? n - i : tm->chunk, true);
  } else {
    for (size_t i = 0; i < n; i++) hand_over(tm, ts[i]);
  }
}

/* A task enters the window (mu held); it leaves when consumed. */
static void enter_window(fp_task_manager *tm) {
  tm->in_flight++;
  if (tm->in_flight > tm->peak_in_flight) tm->peak_in_flight = tm->in_flight;
}

/* Hand over what the window allows, in submission order (mu held). */
static void feed(fp_task_manager *tm) {
  if (tm->feeding) return; /* another thread is at it: order stays */
  tm->feeding = true;
  while (tm->sources && !atomic_load(&tm->stopping)) {
    tm_source *s = tm->sources;
    if (s->task) { /* submitted: already counted in the window */
      FP__QUEUE_SHIFT(tm->sources, tm->sources_tail, next);
      fp_task *t = s->task;
      fp__free(s);
      tm->backlog--;
      hand_over_many(tm, &t, 1);
      continue;
    }
    /* A map pulls only when the window has room -- or when everything in
     * it is submitted tasks queued behind this map, which could otherwise
     * never run -- and then refills at least half the window at once
     * while tasks of its own are in flight: fewer, larger hand-overs. */
    size_t max = tm->opt.max_in_flight;
    size_t room = tm->in_flight < max ? max - tm->in_flight : 0;
    bool own_in_flight = tm->in_flight > tm->backlog;
    /* (only a window of 4 times the workers or more: half of it in flight
     * still keeps every worker busy; a smaller one refills every slot, or
     * workers would sit idle while their slots wait) */
    size_t refill_at = max >= 4 * (size_t)tm->ex->max_workers ? max / REFILL_PARTS : 1;
    if (own_in_flight && (room == 0 || room < refill_at)) break;
    if (room == 0) room = 1;
    size_t want = room < FEED_BATCH ? room : FEED_BATCH, got = 0;
    fp_task *batch[FEED_BATCH];
    int rc = 1;
    pthread_mutex_unlock(&tm->mu); /* the input is the caller's code */
    double now = fp__now();
    while (got < want) {
      void *item = NULL;
      if ((rc = s->iter(s->state, &item)) <= 0) break;
      fp_task *t = task_new(s->fn, item, s->item_free, now);
      if (t && tm->opt.describe) { /* the caller's code too: outside the lock */
        char name[256] = "";
        tm->opt.describe(item, name, sizeof name);
        if (name[0] && !(t->name = fp__strdup(name))) {
          fp__free(t);
          t = NULL;
        }
      }
      if (!t) {
        if (s->item_free) s->item_free(item);
        rc = FP_ENOMEM;
        break;
      }
      batch[got++] = t;
    }
    pthread_mutex_lock(&tm->mu);
    for (size_t k = 0; k < got; k++) enter_window(tm);
    if (got) hand_over_many(tm, batch, got);
    if (rc <= 0) { /* this input ended (or failed): on to the next source */
      FP__QUEUE_SHIFT(tm->sources, tm->sources_tail, next);
      fp__free(s);
      if (rc < 0 &&
          begin_stop(tm, rc, NULL, "a map's input failed: %s (%d)", fp_err_name(rc), rc)) {
        pthread_mutex_unlock(&tm->mu);
        cancel_running(tm);
        pthread_mutex_lock(&tm->mu);
      }
    }
  }
  tm->feeding = false;
  pthread_cond_broadcast(&tm->cv); /* consumers that waited while we fed */
}

/* ---- what the monitor sees of the manager (monitor.h) ---- */

static void monitor_counts(void *ctx, fp__monitor_counts *out) {
  fp_task_manager *tm = ctx;
  double now = fp__now();
  pthread_mutex_lock(&tm->mu);
  settle_finished(tm);
  *out = (fp__monitor_counts){.completed = tm->completed,
                              .failed = tm->failed,
                              .cancelled = tm->cancelled,
                              .retried = tm->retried,
                              .in_flight = tm->in_flight,
                              .run_p50 = fp__hist_quantile(&tm->latency[1], 0.5),
                              .run_p99 = fp__hist_quantile(&tm->latency[1], 0.99),
                              .queue_p99 = fp__hist_quantile(&tm->latency[0], 0.99)};
  fp_task *longest = NULL; /* the window bounds this walk */
  for (fp_task *t = tm->running.head; t; t = t->next) {
    double started = t->started_at;
    if (started > 0 && !(t->finished_at > 0) && now - started > out->running) {
      out->running = now - started;
      longest = t;
    }
  }
  if (longest) {
    char name[64];
    snprintf(out->running_name, sizeof out->running_name, "task %llu (%s)",
             (unsigned long long)longest->index, task_name(longest, name, sizeof name));
  }
  pthread_mutex_unlock(&tm->mu);
}

static bool monitor_interrupt(void *ctx) {
  fp_task_manager *tm = ctx;
  pthread_mutex_lock(&tm->mu);
  bool began = begin_stop(tm, FP_EINTR, NULL, "interrupted by SIGINT");
  pthread_mutex_unlock(&tm->mu);
  if (began) cancel_running(tm);
  return began;
}

/* ---- the public calls ---- */

int fp_tm_new(fp_executor *ex, const fp_tm_options *opt, fp_task_manager **out) {
  if (!out) return fp__einval("fp_tm_new: out is NULL");
  *out = NULL;
  if (!ex) return fp__einval("fp_tm_new: executor is NULL");
  fp_tm_options defaults;
  if (!opt) {
    fp_tm_options_init(&defaults);
    opt = &defaults;
  }
  if ((unsigned)opt->error_policy > FP_POLICY_IGNORE)
    return fp__einval("fp_tm_new: unknown error policy %d", (int)opt->error_policy);
  if (!(opt->monitor_interval == 0 || opt->monitor_interval >= FP__MONITOR_INTERVAL_MIN))
    return fp__einval("fp_tm_new: monitor_interval must be 0 (off) or at least %g s (got %g)",
                      FP__MONITOR_INTERVAL_MIN, opt->monitor_interval);
  fp_task_manager *tm = fp__calloc_lines(sizeof *tm);
  fp__hist *latency = fp__calloc(2, sizeof *latency);
  if (!tm || !latency) {
    fp__free_lines(tm);
    fp__free(latency);
    return fp__fail(FP_ENOMEM, "fp_tm_new: out of memory");
  }
  tm->latency = latency;
  tm->ex = ex;
  tm->auto_chunk = !fp__executor_shares_memory(ex) && ex->vt->submit_chunk &&
                   opt->retry.max_attempts < 2;
  tm->measured_since = fp__now();
  tm->opt = *opt;
  /* The default: 2 x workers, what they can run and one more each -- the
   * manager never buffers more. (64 made trivial tasks 6x faster here, and
   * fail fast submit 64 of 100 tasks before the first failure.) */
  if (!tm->opt.max_in_flight) tm->opt.max_in_flight = 2 * (size_t)ex->max_workers;
  /* First chunks of 1: a task may take a second, and a chunk's tasks run
   * one after another (the window's first round trips are the price) */
  tm->chunk = 1;
  atomic_init(&tm->refs, 1);
  atomic_init(&tm->stopping, false);
  if (pthread_mutex_init(&tm->mu, NULL) || fp__cond_init(&tm->cv)) {
    fp__free(latency);
    fp__free_lines(tm);
    return fp__fail(FP_ENOMEM, "fp_tm_new: out of resources");
  }
  tm->monitor = (fp__monitor){.interval = opt->monitor_interval,
                              .progress = opt->progress,
                              .total = opt->total,
                              .handle_interrupt = opt->handle_interrupt,
                              .ctx = tm,
                              .counts = monitor_counts,
                              .interrupt = monitor_interrupt};
  fp__future_wrapper_names(wrapped_task_name); /* its futures are named by their tasks */
  int rc = opt->trace_path ? fp_trace_start(opt->trace_path) : 0;
  tm->tracing = opt->trace_path && !rc;
  if (rc == FP_EBUSY) { /* FP_TRACE, say: the run goes on, into that trace */
    fp_log(FP_LOG_WARNING, "task manager: not tracing to %s: %s; its tasks go there",
           opt->trace_path, fp_last_error_message());
    rc = 0;
  }
  if (!rc) rc = fp__monitor_start(&tm->monitor);
  if (rc) {
    if (tm->tracing) fp_trace_stop();
    tm_destroy(tm);
    return rc;
  }
  *out = tm;
  return 0;
}

static int add_source(fp_task_manager *tm, tm_source *s) {
  FP__QUEUE_PUSH(tm->sources, tm->sources_tail, s, next);
  feed(tm);
  return 0;
}

int fp_tm_submit(fp_task_manager *tm, fp_fn fn, void *arg, double timeout_s, fp_task **out) {
  return fp_tm_submit_named(tm, fn, arg, NULL, timeout_s, out);
}

int fp_tm_submit_named(fp_task_manager *tm, fp_fn fn, void *arg, const char *name,
                       double timeout_s, fp_task **out) {
  if (out) *out = NULL;
  if (!tm || !fn) return fp__einval("fp_tm_submit: %s is NULL", tm ? "function" : "manager");
  if (fp__check_timeout(timeout_s, "fp_tm_submit")) return FP_EINVAL;
  fp__deadline d = fp__deadline_in(timeout_s);
  pthread_mutex_lock(&tm->mu);
  int rc = 0;
  while (!atomic_load(&tm->stopping) && tm->in_flight >= tm->opt.max_in_flight) {
    int waited = 0;
    if (timeout_s != 0) {
      tm->room_waiters++;
      waited = fp__cond_wait(&tm->cv, &tm->mu, &d);
      tm->room_waiters--;
    }
    if (timeout_s == 0 || waited == ETIMEDOUT) {
      if (atomic_load(&tm->stopping) || tm->in_flight < tm->opt.max_in_flight) break;
      rc = fp__fail(timeout_s == 0 ? FP_EAGAIN : FP_ETIMEDOUT,
                    "the window is full (%zu tasks in flight): consume results with "
                    "fp_tm_next or fp_tm_run, or use fp_tm_map",
                    tm->in_flight);
      break;
    }
  }
  if (!rc && atomic_load(&tm->stopping)) rc = fp__fail(tm->stop_code, "%s", tm->stop_message);
  fp_task *t = NULL;
  tm_source *s = NULL;
  if (!rc) {
    t = task_new(fn, arg, NULL, fp__now());
    s = fp__calloc(1, sizeof *s);
    if (t && name && !(t->name = fp__strdup(name))) {
      fp__free(t);
      t = NULL;
    }
    if (!t || !s) {
      fp__free(t);
      fp__free(s);
      rc = fp__fail(FP_ENOMEM, "fp_tm_submit: out of memory");
    }
  }
  if (!rc) {
    if (out) *out = fp_task_retain(t);
    s->task = t;
    enter_window(tm);
    tm->backlog++;
    add_source(tm, s);
  }
  pthread_mutex_unlock(&tm->mu);
  return rc;
}

int fp_tm_map(fp_task_manager *tm, fp_fn fn, fp_iter_fn next, void *state, fp_free_fn item_free) {
  if (!tm || !fn || !next)
    return fp__einval("fp_tm_map: %s is NULL", !tm ? "manager" : !fn ? "function" : "input");
  tm_source *s = fp__calloc(1, sizeof *s);
  if (!s) return fp__fail(FP_ENOMEM, "fp_tm_map: out of memory");
  s->fn = fn;
  s->iter = next;
  s->state = state;
  s->item_free = item_free;
  pthread_mutex_lock(&tm->mu);
  int rc = 0;
  if (atomic_load(&tm->stopping)) {
    rc = fp__fail(tm->stop_code, "%s", tm->stop_message);
    fp__free(s);
  } else {
    add_source(tm, s);
  }
  pthread_mutex_unlock(&tm->mu);
  return rc;
}

/* The consumed task leaves the window (mu held). */
static void consume(fp_task_manager *tm, fp_task *t) {
  list_remove(&tm->done, t);
  tm->in_flight--;
  if (tm->room_waiters) pthread_cond_broadcast(&tm->cv); /* a submitter waits for room */
  if (tm->opt.keep_completed) {
    if (tm->kept_count == tm->kept_room) {
      size_t room = tm->kept_room ? 2 * tm->kept_room : 64;
      fp_task **grown = room <= SIZE_MAX / sizeof *grown ? fp__realloc(tm->kept, room * sizeof *grown) : NULL;
      if (!grown) {
        fp_log(FP_LOG_WARNING, "task manager: no memory to keep task %llu in the list",
               (unsigned long long)t->index);
        return;
      }
      tm->kept = grown;
      tm->kept_room = room;
    }
    tm->kept[tm->kept_count++] = fp_task_retain(t);
  }
}

/* Before the consumer sleeps: a task about to finish is seen sooner by
 * spinning a moment outside the lock (mu held on entry and exit), and
 * its finisher then need not take the lock to wake anyone. */
static bool spin_for_finished(fp_task_manager *tm) {
  pthread_mutex_unlock(&tm->mu);
  double until = fp__now() + FP__WAIT_SPIN_S;
  bool seen = false;
  for (unsigned i = 1; !(seen = atomic_load_explicit(&tm->finished, memory_order_relaxed)); i++) {
    fp__cpu_relax();
    if (i % 64 == 0 && (atomic_load(&tm->stopping) || fp__now() > until)) break;
  }
  pthread_mutex_lock(&tm->mu);
  return seen;
}

int fp_tm_next(fp_task_manager *tm, double timeout_s, fp_task **out) {
  if (out) *out = NULL;
  if (!tm || !out) return fp__einval("fp_tm_next: %s is NULL", tm ? "out" : "manager");
  if (fp__check_timeout(timeout_s, "fp_tm_next")) return FP_EINVAL;
  fp__deadline d = fp__deadline_in(timeout_s);
  pthread_mutex_lock(&tm->mu);
  int rc;
  for (;;) {
    if (atomic_load(&tm->stopping)) {
      if (tm->failed_task) *out = fp_task_retain(tm->failed_task);
      rc = fp__fail(tm->stop_code, "%s", tm->stop_message);
      break;
    }
    feed(tm);
    settle_finished(tm);
    if (tm->done.head && !atomic_load(&tm->stopping)) {
      fp_task *t = tm->done.head;
      consume(tm, t);
      *out = t; /* the list's reference becomes the caller's */
      rc = 0;
      break;
    }
    if (atomic_load(&tm->stopping)) continue;
    if (!tm->in_flight && !tm->sources) {
      rc = fp__fail(FP_EOF, "every task was consumed");
      break;
    }
    int waited = 0;
    if (timeout_s != 0 && tm->in_flight > tm->backlog && spin_for_finished(tm)) continue;
    if (timeout_s != 0) {
      atomic_fetch_add(&tm->waiters, 1); /* then look once more: a finisher */
      settle_finished(tm);               /* that saw no waiter pushed before */
      if (!tm->done.head) waited = fp__cond_wait(&tm->cv, &tm->mu, &d);
      atomic_fetch_sub(&tm->waiters, 1);
    }
    if (timeout_s == 0 || waited == ETIMEDOUT) {
      settle_finished(tm);
      if (tm->done.head || atomic_load(&tm->stopping)) continue;
      rc = fp__fail(FP_ETIMEDOUT, "%zu tasks still in flight", tm->in_flight);
      break;
    }
  }
  pthread_mutex_unlock(&tm->mu);
  return rc;
}

int fp_tm_run(fp_task_manager *tm, double timeout_s) {
  if (!tm) return fp__einval("fp_tm_run: manager is NULL");
  if (fp__check_timeout(timeout_s, "fp_tm_run")) return FP_EINVAL;
  fp__deadline d = fp__deadline_in(timeout_s);
  for (;;) {
    if (fp__deadline_passed(&d)) /* tasks may complete for ever: check it here */
      return fp__fail(FP_ETIMEDOUT, "fp_tm_run: not done within %g s", timeout_s);
    fp_task *t;
    int rc = fp_tm_next(tm, timeout_s < 0 ? -1 : fp__deadline_remaining(&d), &t);
    fp_task_release(t);
    if (rc == FP_EOF) return 0;
    if (rc) return rc;
  }
}

int fp_tm_failed_task(fp_task_manager *tm, fp_task **out) {
  if (!tm || !out) return fp__einval("fp_tm_failed_task: %s is NULL", tm ? "out" : "manager");
  pthread_mutex_lock(&tm->mu);
  *out = tm->failed_task ? fp_task_retain(tm->failed_task) : NULL;
  pthread_mutex_unlock(&tm->mu);
  return *out ? 0 : fp__fail(FP_EOF, "no task failed the run");
}

size_t fp_tm_completed_tasks(fp_task_manager *tm, fp_task *const **tasks) {
  if (!tm || !tasks) {
    fp__einval("fp_tm_completed_tasks: %s is NULL", tm ? "tasks" : "manager");
    return 0;
  }
  pthread_mutex_lock(&tm->mu);
  *tasks = tm->kept;
  size_t n = tm->kept_count;
  pthread_mutex_unlock(&tm->mu);
  return n;
}

int fp_tm_stats_get(fp_task_manager *tm, fp_tm_stats *out, size_t size) {
  if (!tm || !out) return fp__einval("fp_tm_get_stats: %s is NULL", tm ? "out" : "manager");
  if (size < offsetof(fp_tm_stats, stop_latency) + sizeof out->stop_latency)
    return fp__einval("fp_tm_get_stats: a stats struct of %zu bytes is too small", size);
  fp_tm_stats st;
  pthread_mutex_lock(&tm->mu);
  settle_finished(tm);
  st = (fp_tm_stats){.submitted = tm->submitted,
                       .completed = tm->completed,
                       .failed = tm->failed,
                       .cancelled = tm->cancelled,
                       .retried = tm->retried,
                       .in_flight = tm->in_flight,
                       .max_in_flight = tm->opt.max_in_flight,
                       .peak_in_flight = tm->peak_in_flight,
                       .stop_code = tm->stop_code,
                       .stop_latency = tm->stop_latency,
                       .timed_out = tm->timed_out,
                       .crashed = tm->crashed};
  fp__hist_summary(&tm->latency[0], &st.queue_wait);
  fp__hist_summary(&tm->latency[1], &st.run);
  pthread_mutex_unlock(&tm->mu);
  if (size > sizeof st) size = sizeof st; /* a newer header than this library */
  st.size = size;
  memcpy(out, &st, size);
  return 0;
}

void fp_tm_free(fp_task_manager *tm) {
  if (!tm) return;
  pthread_mutex_lock(&tm->mu);
  bool began = begin_stop(tm, FP_ECANCELED, NULL, "the task manager was freed");
  for (tm_source *s = tm->sources; s; s = s->next)
    if (s->task) atomic_store(&s->task->dropped, true);
  pthread_mutex_unlock(&tm->mu);
  if (began) cancel_running(tm);
  fp__monitor_stop(&tm->monitor);
  if (tm->tracing) fp_trace_stop();
  tm_release(tm); /* tasks still in the executor hold the rest */
}
