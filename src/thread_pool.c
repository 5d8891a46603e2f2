/* thread_pool.c - the thread pool executor.
 *
 * Work lives in deques (deque.h). A thread outside the pool submits into a
 * lane of its own, pushed with plain stores: no lock, no fence (below,
 * "Lanes"); past LANES_MAX such threads, or on a bounded pool, into a
 * shared deque under a lock. Workers take from both in batches, one
 * worker at a time (take_lock), never under the submitters' lock.
 * Each worker has two deques: its tasks' own submissions, which it
 * runs newest first (a task's children before older work, which keeps
 * fan-out/fan-in shallow), and an inbox for the batch it took from the
 * shared deque, which everyone, itself included, takes oldest first, so
 * outside submissions start in order and none waits behind a busy worker.
 * An idle worker looks in its own deque, its inbox, the shared deque, then
 * steals from the other workers. Having found nothing it spins a little, then sleeps;
 * a submitter wakes one sleeper only when no worker is awake and looking.
 * A worker that waits on a future of its own pool runs queued tasks
 * meanwhile (vt->run_queued, from future.c). Threads start lazily, one at a time,
 * while the queue outgrows the threads not running a task. */
#define _GNU_SOURCE
#include "deque.h"

#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

enum {
  DEQUE_CAPACITY = 256, /* first ring of each deque; they grow */
  BATCH_MAX = 32,       /* most tasks a worker takes from the shared deque at once */
  BATCH_BACKLOG = 4,    /* queued per worker before it takes more than one */
  /* A worker back from a task, finding fewer than LAG_BATCH queued, looks
   * again after LAG_PAUSES pauses (~200 ns here), up to LAG_LOOKS times,
   * for as long as the queue grows (see take_shared). */
  LAG_BATCH = 16,
  LAG_LOOKS = 2,
  LAG_PAUSES = 8,
};
#define WORKER_SPIN_S 50e-6 /* how long an idle worker looks before it sleeps */
enum { SPIN_PAUSE_MAX = 32 }; /* pauses between two looks, at most */
enum { SPIN_YIELD_LOOKS = 8 }; /* a spinner yields its core every so many looks */
enum { LANES_MAX = 8, LANE_CACHE = 4 };

/* ---- Lanes ----
 * A submitter needs one ordering a plain store does not give: its push
 * before its look at the sleepers (else both it and a worker falling
 * asleep can miss the other). For lanes the side that seldom runs pays for
 * it: a worker about to sleep, and shutdown, issue membarrier(), a barrier
 * on every core running this process, and a submitter into its own lane
 * needs only to keep the compiler from reordering. That barrier interrupts
 * the other cores, so a sleeper pays it only while some lane is *active*,
 * and retires the idle ones as it does (sleep_fence): a retired lane's
 * owner fences its next submit, which makes the lane active again. So a
 * burst of submits costs one fence at its start and one membarrier after
 * its end, not one a sleep. A task's own submissions keep their fence.
 * Without membarrier (not Linux, an old kernel, valgrind) there are no
 * lanes. */
typedef struct lane {
  fp__deque dq; /* pushed by its owner thread only */
  /* Written by the owner at every submit, read by shutdown. */
  _Alignas(FP__APART) atomic_bool busy; /* between its look at the flags and its push */
  atomic_uint_fast64_t submitted;
  atomic_bool ready;           /* dq is set up (release) */
  atomic_bool active;          /* its pushes may go unfenced (see Lanes); new: not */
  _Atomic(const void *) owner; /* its thread's lane_cache: unique among live threads */
} lane;

/* The lanes this thread owns, by pool serial (unique for the process's
 * life, unlike a pool's address); lane NULL: none to be had there. */
typedef struct lane_ref {
  uint64_t serial;
  struct lane *lane;
} lane_ref;
static _Thread_local lane_ref lane_cache[LANE_CACHE];
static _Thread_local unsigned lane_cache_next;
static atomic_uint_fast64_t pool_serials;

/* FP_MEMBARRIER=0 in the environment turns lanes off (a diagnostic, and
 * how the tests cover the other path). */
static bool membarrier_ready(void) {
  const char *env = getenv("FP_MEMBARRIER");
  if (env && !strcmp(env, "0")) return false;
#if defined(__linux__) && defined(SYS_membarrier)
  return syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
#else
  return false;
#endif
}

typedef struct worker {
  fp__deque dq;    /* its tasks' submissions: popped newest first by it */
  fp__deque inbox; /* a batch of the shared deque: taken oldest first by all */
  struct thread_pool *pool;
  size_t index;
  pthread_t thread;
  /* Counted by this worker alone: plain read-modify-write, atomic reads. */
  _Alignas(FP__APART) atomic_uint_fast64_t completed;
  atomic_uint_fast64_t submitted; /* by its tasks, into dq */
  unsigned rng;                   /* where to start stealing */
  size_t next_source;             /* where to start taking outside work */
  /* Sleeping (pool mu): */
  pthread_cond_t cv;
  bool asleep, woken;
} worker;

typedef struct thread_pool {
  fp_executor base;
  /* Read for every task, written seldom. */
  atomic_bool shutting_down;
  atomic_int space_waiters;
  size_t capacity; /* of the shared deque, 0: unbounded */
  worker *workers; /* max_workers slots */
  atomic_size_t started; /* slots in use (release: a slot is ready) */
  bool asymmetric; /* membarrier works: pushes need no fence, lanes are on */
  uint64_t serial;
  atomic_size_t lanes_claimed; /* may exceed LANES_MAX: only the first are lanes */

  fp__deque shared; /* from outside the pool; pushed under submit_mu */
  _Alignas(FP__APART) pthread_mutex_t submit_mu;
  atomic_uint_fast64_t submitted; /* from outside, under submit_mu */
  pthread_cond_t space_cv; /* submitters wait here for queue room */

  /* Asleep and not yet woken: raised under submit_mu (see
   * sleep_until_woken), read at every submit. */
  _Alignas(FP__APART) atomic_int sleepers;

  /* Written by idle workers. */
  _Alignas(FP__APART) atomic_int spinners; /* idle, looking for work */
  /* Threads not running a task (starting, idle, or returning from one);
   * kept only while the pool may still start threads. */
  atomic_int available;

  /* Written at every take from outside, read by workers only: apart
   * from spinners, which every submit reads. */
  _Alignas(FP__APART) atomic_bool taking; /* see take_outside */

  _Alignas(FP__APART) pthread_mutex_t mu; /* starting, sleeping, waking, exiting */
  pthread_cond_t exit_cv;          /* shutdown waits here for workers to exit */
  size_t alive;                    /* threads not yet exited (mu) */
  int (*initializer)(void *arg);
  void *initializer_arg;
  char prefix[11];
  lane lanes[LANES_MAX];
} thread_pool;

static _Thread_local worker *current_worker; /* the worker this thread is */

static size_t lanes_in_use(thread_pool *p) {
  size_t n = atomic_load(&p->lanes_claimed);
  return n < LANES_MAX ? n : LANES_MAX;
}

/* Every thread's stores so far visible to this one's loads from here on
 * (the caller fences too). Cannot fail once registered (membarrier(2)). */
static void barrier_everywhere(void) {
#if defined(__linux__) && defined(SYS_membarrier)
  syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
#endif
}

/* Lane i's deque, NULL if it is not set up (yet or ever). */
static fp__deque *lane_deque(thread_pool *p, size_t i) {
  return atomic_load_explicit(&p->lanes[i].ready, memory_order_acquire) ? &p->lanes[i].dq : NULL;
}

static bool fully_started(thread_pool *p) {
  return atomic_load_explicit(&p->started, memory_order_relaxed) >= (size_t)p->base.max_workers;
}

/* ---- finding work ---- */

static bool any_work(thread_pool *p) {
  if (fp__deque_size(&p->shared)) return true;
  for (size_t i = 0, lanes = lanes_in_use(p); i < lanes; i++) {
    fp__deque *d = lane_deque(p, i);
    if (d && fp__deque_size(d)) return true;
  }
  size_t n = atomic_load_explicit(&p->started, memory_order_acquire);
  for (size_t i = 0; i < n; i++)
    if (fp__deque_size(&p->workers[i].dq) || fp__deque_size(&p->workers[i].inbox)) return true;
  return false;
}

static void space_freed(thread_pool *p) {
  if (atomic_load(&p->space_waiters)) {
    pthread_mutex_lock(&p->submit_mu);
    pthread_cond_broadcast(&p->space_cv);
    pthread_mutex_unlock(&p->submit_mu);
  }
}

/* One worker at a time takes outside work (taking), and it takes older
 * work first: whatever waits in another worker's inbox was taken before
 * and goes first. So outside submissions start oldest first on any
 * number of workers (up to batches run side by side). Checking the
 * inboxes before taking, without the lock, left a window: another
 * worker's batch could land in its inbox between one worker's look and
 * its take, and the younger task started first. The lock is held for a
 * steal and at most BATCH_MAX pushes; its holder may be preempted, so a
 * waiter yields now and then. */
static void take_lock(thread_pool *p) {
  for (unsigned i = 1;; i++) {
    if (!atomic_load_explicit(&p->taking, memory_order_relaxed) &&
        !atomic_exchange_explicit(&p->taking, true, memory_order_acquire))
      return;
    fp__cpu_relax();
    if (i % 64 == 0) sched_yield();
  }
}
static void take_unlock(thread_pool *p) {
  atomic_store_explicit(&p->taking, false, memory_order_release);
}

static fp_future *steal_from_others(thread_pool *p, worker *w, bool inboxes);

/* From the shared deque or a lane: one task, or a batch of them when a few are
 * queued (a share, so that the other workers get theirs). A batch saves
 * CASes on the deque's top and, above all, trips of the deque's lines
 * between the submitter's core and this one; the rest of a batch waits in
 * this worker's inbox, where every worker takes from it oldest first.
 *
 * lag: this worker has just run a task. A submitter streaming tasks
 * about as fast as they run keeps a worker right behind it, taking them
 * one by one: every push then finds its lines in the worker's cache and
 * waits for them (measured: 2x the cost per task). So while fewer than
 * LAG_BATCH are queued and the queue grows, wait a moment for a batch.
 * A queue that does not grow (a burst, a lone task) is taken at once;
 * a worker back from idle never lags (round-trip latency). */
static fp_future *take_outside(thread_pool *p, worker *w, fp__deque *d, bool lag) {
  if (fp__deque_size(d) == 0 || fp__deque_size(&w->inbox)) return NULL;
  size_t workers = atomic_load_explicit(&p->started, memory_order_relaxed);
  size_t queued = (size_t)fp__deque_size(d);
  for (int k = 0; lag && queued < LAG_BATCH && k < LAG_LOOKS; k++) {
    for (int j = 0; j < LAG_PAUSES; j++) fp__cpu_relax();
    size_t now = (size_t)fp__deque_size(d);
    bool growing = now > queued;
    queued = now;
    if (!growing) break;
  }
  size_t want = 1;
  if (queued >= BATCH_BACKLOG * workers) want = queued / (2 * workers);
  if (want > BATCH_MAX) want = BATCH_MAX;
  fp_future *batch[BATCH_MAX];
  size_t n = 0;
  take_lock(p);
  /* started read again (a worker that started meanwhile may hold some) */
  fp_future *older = steal_from_others(p, w, true);
  if (!older)
    for (int tries = 0; !(n = fp__deque_steal_batch(d, batch, want)); tries++)
      if (tries == 4 || !fp__deque_size(d)) break;
  /* The inbox has room for a batch whenever it is empty: it cannot fail. */
  for (size_t i = 1; i < n; i++) fp__deque_push(&w->inbox, batch[i]);
  take_unlock(p);
  if (older) return older;
  if (!n) return NULL;
  space_freed(p);
  return batch[0];
}

/* One task from another worker's inbox (inboxes: true) or own deque. */
static fp_future *steal_from_others(thread_pool *p, worker *w, bool inboxes) {
  size_t n = atomic_load_explicit(&p->started, memory_order_acquire);
  size_t start = (w->rng = w->rng * 1103515245u + 12345u) % n;
  for (size_t k = 0; k < n; k++) {
    worker *v = &p->workers[(start + k) % n];
    if (v == w) continue;
    fp__deque *d = inboxes ? &v->inbox : &v->dq;
    fp_future *f;
    while (fp__deque_size(d))
      if ((f = fp__deque_steal(d)) != NULL) return f;
  }
  return NULL;
}

/* Outside submissions: the shared deque and the lanes, each worker starting
 * one further on each time, so that none waits behind a busy one. */
static void wake_one(thread_pool *p, bool sleeping);

static fp_future *take_any_outside(thread_pool *p, worker *w, bool lag) {
  size_t sources = 1 + lanes_in_use(p);
  for (size_t k = 0; k < sources; k++) {
    size_t i = (w->next_source + k) % sources;
    fp__deque *d = i ? lane_deque(p, i - 1) : &p->shared;
    fp_future *f = d ? take_outside(p, w, d, lag) : NULL;
    if (f) {
      w->next_source = i + 1;
      /* More is queued (there, or in the batch now in our inbox) and
       * nobody is looking: wake a sleeper for it. Else it could wait for
       * as long as this task runs -- for ever, if the task waits for it
       * without helping (fp_wait). */
      if ((fp__deque_size(d) || fp__deque_size(&w->inbox)) &&
          atomic_load_explicit(&p->sleepers, memory_order_relaxed))
        wake_one(p, true);
      return f;
    }
  }
  return NULL;
}

/* Own work first, newest first; then outside submissions, oldest first
 * (the inboxes hold older ones than the shared deque and the lanes); then
 * the other workers' own work. lag: see take_outside. */
static fp_future *find_work(thread_pool *p, worker *w, bool lag) {
  fp_future *f = fp__deque_pop(&w->dq);
  while (!f && fp__deque_size(&w->inbox)) f = fp__deque_steal(&w->inbox);
  if (!f) f = steal_from_others(p, w, true);
  if (!f) f = take_any_outside(p, w, lag);
  if (!f) f = steal_from_others(p, w, false);
  return f;
}

/* ---- sleeping and waking ---- */

/* Wake the first sleeping worker, or every one. */
static void wake(thread_pool *p, bool all) {
  pthread_mutex_lock(&p->mu);
  size_t n = atomic_load_explicit(&p->started, memory_order_relaxed);
  for (size_t i = 0; i < n; i++) {
    worker *w = &p->workers[i];
    if (!w->asleep || w->woken) continue;
    w->woken = true;
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_cond_signal(&w->cv);
    if (!all) break;
  }
  pthread_mutex_unlock(&p->mu);
}

/* After new work: wake one sleeper, unless none is looking. sleeping: as
 * read after the push, under submit_mu for the shared deque, past a
 * seq_cst fence for the others. */
static void wake_one(thread_pool *p, bool sleeping) {
  if (sleeping && !atomic_load(&p->spinners)) wake(p, false);
}

static void wake_all(thread_pool *p) { wake(p, true); }

static bool stopping(thread_pool *p) {
  return atomic_load_explicit(&p->shutting_down, memory_order_relaxed) ||
         atomic_load_explicit(&p->base.broken, memory_order_relaxed);
}

/* Look for work a little while before sleeping: a submitter that comes
 * back within microseconds finds a worker awake. The looks back off (up
 * to ~1 us apart): each reads cache lines the submitters write, and a
 * spinner polling them flat out slows every push.
 *
 * Every few looks the spinner yields its core. A pool's threads and the
 * threads submitting to it often outnumber the cores (2 workers and a
 * submitter on 2 here), and a spinner that shares its core with a
 * submitter stops the very work it waits for: the kernel often runs it
 * there after a wake-up (the waker's core), and each such wake-up cost the
 * submitter the whole spin. With the yield, a twentieth of the sleeps
 * and wake-ups, and 10^6 tasks from one thread on 2 workers ~53 ns a task
 * from ~67 (docs/performance.md). Alone on its core it returns at once. A
 * yield may hand the core to another process for a time slice: while it
 * yields the spinner does not count as one, so a submit meanwhile wakes
 * a sleeper rather than wait for it. */
static fp_future *spin_for_work(thread_pool *p, worker *w) {
  /* Half the workers at most (one of two; one more may start while
   * another yields, below): the others sleep at once. Every
   * spinner holds a core, and a submitter that outruns none of them needs
   * its own more than a second idle worker does. More queued work than
   * one spinner takes wakes the next (below). */
  size_t workers = atomic_load_explicit(&p->started, memory_order_relaxed);
  int most = workers > 2 ? (int)(workers / 2) : 1;
  if (atomic_fetch_add(&p->spinners, 1) >= most) {
    atomic_fetch_sub(&p->spinners, 1);
    return NULL;
  }
  fp_future *f = NULL;
  double until = fp__now() + WORKER_SPIN_S;
  for (unsigned i = 1, pause = 1; !(f = find_work(p, w, false)) && !stopping(p); i++) {
    for (unsigned k = 0; k < pause; k++) fp__cpu_relax();
    if (pause < SPIN_PAUSE_MAX) pause *= 2;
    if (i % SPIN_YIELD_LOOKS) continue;
    if (fp__now() >= until) break;
    atomic_fetch_sub(&p->spinners, 1);
    sched_yield();
    atomic_fetch_add(&p->spinners, 1);
  }
  atomic_fetch_sub(&p->spinners, 1);
  /* The last one looking found work: if more waits, another should look. */
  if (f && any_work(p)) wake_one(p, atomic_load(&p->sleepers));
  return f;
}

/* Before a would-be sleeper's last look for work: every push into an
 * active lane made visible. Active lanes with nothing queued and no submit
 * under way are retired first; one that a push got into before the
 * barrier stays active (its push is seen below, or its owner sees this
 * sleeper). With no lane active, a fence: an inactive lane's owner fences
 * its own push. A worker that sees a lane another is retiring as inactive
 * skips the barrier: the retiring one pays it and looks for work after. */
static void sleep_fence(thread_pool *p) {
  size_t lanes = lanes_in_use(p);
  bool any_active = false, retired[LANES_MAX] = {false};
  for (size_t i = 0; i < lanes; i++) {
    lane *l = &p->lanes[i];
    if (!lane_deque(p, i) || !atomic_load(&l->active)) continue;
    any_active = true;
    if (!atomic_load(&l->busy) && !fp__deque_size(&l->dq)) {
      atomic_store(&l->active, false);
      retired[i] = true;
    }
  }
  if (any_active) barrier_everywhere();
  atomic_thread_fence(memory_order_seq_cst);
  for (size_t i = 0; i < lanes; i++)
    if (retired[i] && (atomic_load(&p->lanes[i].busy) || fp__deque_size(&p->lanes[i].dq)))
      atomic_store(&p->lanes[i].active, true);
}

/* Sleep until woken. A worker becomes a sleeper, then looks for work once
 * more; a submitter pushes, then looks at the sleepers. One of the two
 * sees the other. For the shared deque submit_mu orders them: both happen
 * under it. For the workers' own deques, a fence on each side; for the
 * lanes, pushed with none, sleep_fence (see Lanes). */
static void sleep_until_woken(thread_pool *p, worker *w) {
  pthread_mutex_lock(&p->submit_mu); /* before mu, as in grow() */
  pthread_mutex_lock(&p->mu);
  w->asleep = true;
  w->woken = false;
  atomic_fetch_add(&p->sleepers, 1);
  pthread_mutex_unlock(&p->mu);
  pthread_mutex_unlock(&p->submit_mu);
  sleep_fence(p); /* a wake-up meanwhile sets woken: seen below */
  pthread_mutex_lock(&p->mu);
  if (!any_work(p) && !stopping(p))
    while (!w->woken) pthread_cond_wait(&w->cv, &p->mu);
  if (!w->woken) atomic_fetch_sub(&p->sleepers, 1);
  w->asleep = false;
  pthread_mutex_unlock(&p->mu);
}

/* After raising a flag that lane submitters look at (shut_down, broken):
 * once this returns, every lane submitter has either seen the flag and
 * pushed nothing, or finished its push, which is visible here. */
static void quiet_lanes(thread_pool *p) {
  if (lanes_in_use(p)) barrier_everywhere();
  atomic_thread_fence(memory_order_seq_cst);
  for (size_t i = 0, lanes = lanes_in_use(p); i < lanes; i++)
    for (unsigned k = 1; atomic_load_explicit(&p->lanes[i].busy, memory_order_acquire); k++) {
      fp__cpu_relax(); /* a push takes nanoseconds, unless its thread is preempted */
      if (k % 64 == 0) sched_yield();
    }
}

/* ---- running tasks ---- */

/* Counted before the outcome is published: a submit that follows a
 * result sees this thread as free, and stats include the task. */
static void task_returned(void *ctx, bool ran) {
  worker *w = ctx;
  if (!fully_started(w->pool)) atomic_fetch_add(&w->pool->available, 1);
  if (ran)
    atomic_store_explicit(&w->completed,
                          atomic_load_explicit(&w->completed, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static int spawn(thread_pool *p);

static void start_another(thread_pool *p) {
  pthread_mutex_lock(&p->mu);
  int rc = fully_started(p) ? 0 : spawn(p);
  pthread_mutex_unlock(&p->mu);
  if (rc) fp_log(FP_LOG_WARNING, "cannot start another worker thread: %s", fp_strerror(rc));
}

static void run_task(thread_pool *p, worker *w, fp_future *f) {
  if (atomic_load_explicit(&p->base.broken, memory_order_acquire)) {
    fp__future_fail_static(f, FP_EBROKEN, p->base.broken_message);
  } else if (atomic_load_explicit(&p->base.cancel_all, memory_order_relaxed)) {
    fp_future_cancel(f); /* taken from the queue as shutdown cancelled it */
  } else {
    /* The last free thread takes a task while more is queued (a submit
     * that counted it free just before it took this one): start another,
     * else the rest waits for as long as this task runs. Every submit
     * either saw available drop (and grew the pool itself) or has pushed
     * by the time the lanes are quiet and submit_mu is free. */
    if (!fully_started(p) && atomic_fetch_sub(&p->available, 1) <= 1) {
      quiet_lanes(p);
      pthread_mutex_lock(&p->submit_mu);
      pthread_mutex_unlock(&p->submit_mu);
      if (any_work(p)) start_another(p);
    }
    fp__future_run(f, task_returned, w);
  }
  fp_future_release(f); /* the executor's reference */
}

/* A worker waiting on a future of its own pool runs a queued task. */
static bool pool_run_queued(fp_executor *ex) {
  worker *w = current_worker;
  if (!w || &w->pool->base != ex) return false;
  fp_future *f = find_work(w->pool, w, false);
  if (!f) return false;
  run_task(w->pool, w, f);
  return true;
}

/* ---- breaking, draining ---- */

/* Take every queued task (shutdown's cancel, a broken pool): the shared
 * deque, the lanes and every worker's, as a thief, so running workers may
 * go on. */
static void drain(thread_pool *p, int code, const char *message) {
  size_t n = atomic_load_explicit(&p->started, memory_order_acquire);
  for (size_t i = 0; i <= 2 * n + LANES_MAX; i++) {
    fp__deque *d = i >= 2 * n + 1 ? lane_deque(p, i - 2 * n - 1)
                   : i == 2 * n   ? &p->shared
                   : i % 2        ? &p->workers[i / 2].inbox
                                  : &p->workers[i / 2].dq;
    fp_future *f;
    while (d && fp__deque_size(d))
      if ((f = fp__deque_steal(d)) != NULL) {
        if (code)
          fp__future_fail_static(f, code, message);
        else
          fp_future_cancel(f);
        fp_future_release(f);
      }
  }
  space_freed(p);
}

static void break_pool(thread_pool *p, int code) {
  if (!fp_executor_break(&p->base,
                         "a thread initializer failed with %d (%s), the thread pool is not "
                         "usable anymore",
                         code, fp_err_name(code)))
    return;
  quiet_lanes(p);
  drain(p, FP_EBROKEN, p->base.broken_message);
  wake_all(p);
  pthread_mutex_lock(&p->submit_mu);
  pthread_cond_broadcast(&p->space_cv);
  pthread_mutex_unlock(&p->submit_mu);
}

/* ---- workers ---- */

static void name_thread(thread_pool *p, size_t index) {
#ifdef __linux__
  char name[16];
  snprintf(name, sizeof name, "%s_%zu", p->prefix, index);
  pthread_setname_np(pthread_self(), name);
#else
  (void)p;
  (void)index;
#endif
}

static void *worker_main(void *arg) {
  worker *w = arg;
  thread_pool *p = w->pool;
  current_worker = w;
  name_thread(p, w->index);
  if (p->initializer) {
    int rc = p->initializer(p->initializer_arg);
    if (rc) break_pool(p, rc);
  }
  for (bool ran = false;;) {
    fp_future *f = find_work(p, w, ran);
    if (!f && !stopping(p)) f = spin_for_work(p, w);
    ran = f != NULL;
    if (f) {
      run_task(p, w, f);
      continue;
    }
    if (atomic_load(&p->base.broken)) break;
    if (atomic_load(&p->shutting_down)) {
      if (!any_work(p)) break; /* shut down and drained */
      continue;
    }
    sleep_until_woken(p, w);
  }
  current_worker = NULL;
  if (!fully_started(p)) atomic_fetch_sub(&p->available, 1);
  pthread_mutex_lock(&p->mu);
  p->alive--;
  pthread_cond_broadcast(&p->exit_cv);
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

/* Start one more thread (mu held). */
static int spawn(thread_pool *p) {
  size_t i = atomic_load_explicit(&p->started, memory_order_relaxed);
  worker *w = &p->workers[i];
  memset(w, 0, sizeof *w);
  w->pool = p;
  w->index = i;
  w->rng = (unsigned)i * 2654435761u + 1;
  if (fp__deque_init(&w->dq, DEQUE_CAPACITY)) return FP_ENOMEM;
  if (fp__deque_init(&w->inbox, BATCH_MAX) || fp__cond_init(&w->cv)) {
    fp__deque_destroy(&w->inbox);
    fp__deque_destroy(&w->dq);
    return FP_ENOMEM;
  }
  atomic_fetch_add(&p->available, 1);
  atomic_store_explicit(&p->started, i + 1, memory_order_release); /* thieves may look */
  int rc = pthread_create(&w->thread, NULL, worker_main, w);
  if (rc) { /* nothing was pushed into its deque: only thieves read it */
    atomic_fetch_sub(&p->available, 1);
    atomic_store_explicit(&p->started, i, memory_order_release);
    pthread_cond_destroy(&w->cv);
    fp__deque_destroy(&w->inbox);
    fp__deque_destroy(&w->dq);
    return -rc;
  }
  p->alive++;
  return 0;
}

/* Before adding n tasks to d: one more thread if the queue would outgrow
 * the threads free to take it. An error only if there is no thread at
 * all, so that the submit fails before anything is queued. */
static int grow(thread_pool *p, fp__deque *d, size_t n) {
  if (fully_started(p)) return 0;
  if (fp__deque_size(d) + (int64_t)n <= atomic_load(&p->available)) return 0;
  pthread_mutex_lock(&p->mu);
  int rc = 0;
  if (!fully_started(p) && fp__deque_size(d) + (int64_t)n > atomic_load(&p->available)) {
    rc = spawn(p);
    if (rc && p->alive == 0) {
      pthread_mutex_unlock(&p->mu);
      return fp__fail(FP_ENOMEM, "cannot start a worker thread: %s", fp_strerror(rc));
    }
    if (rc) fp_log(FP_LOG_WARNING, "cannot start another worker thread: %s", fp_strerror(rc));
    rc = 0;
  }
  pthread_mutex_unlock(&p->mu);
  return rc;
}

/* ---- the executor interface ---- */

/* shut_down is raised first, shutting_down once no push is under way: a
 * push checks the common refusal after it has announced itself. */
static int refusal(thread_pool *p) { return fp__executor_refusal(&p->base); }

/* The calling thread's lane in p, claimed on its first submit; NULL where
 * there is none (no membarrier, a bounded pool, LANES_MAX taken, no
 * memory): the shared deque then. */
static lane *my_lane(thread_pool *p) {
  if (!p->asymmetric || p->capacity) return NULL;
  for (unsigned k = 0; k < LANE_CACHE; k++)
    if (lane_cache[k].serial == p->serial) return lane_cache[k].lane;
  /* Not in the cache: this thread may own one all the same (the cache
   * holds LANE_CACHE pools), or inherit one from an exited thread whose
   * thread-local block it reuses. Else a new one. */
  lane *l = NULL;
  for (size_t i = 0, lanes = lanes_in_use(p); i < lanes && !l; i++)
    if (atomic_load(&p->lanes[i].owner) == (const void *)lane_cache && lane_deque(p, i))
      l = &p->lanes[i];
  if (!l) {
    size_t i = atomic_fetch_add(&p->lanes_claimed, 1);
    l = i < LANES_MAX ? &p->lanes[i] : NULL;
    if (l && fp__deque_init(&l->dq, DEQUE_CAPACITY)) l = NULL; /* stays unready: skipped */
    if (l) {
      atomic_store(&l->owner, (const void *)lane_cache);
      atomic_store_explicit(&l->ready, true, memory_order_release);
    }
  }
  lane_cache[lane_cache_next++ % LANE_CACHE] = (lane_ref){p->serial, l};
  return l;
}

/* Into the caller's own lane: no lock, and no fence while the lane is
 * active (see Lanes). busy spans the look at the flags and the push, for
 * quiet_lanes and sleep_fence. */
static int lane_submit(thread_pool *p, lane *l, fp_future *f) {
  atomic_store_explicit(&l->busy, true, memory_order_relaxed);
  /* A retired (or new) lane: no sleeper paid a barrier for it. */
  bool fenced = !atomic_load_explicit(&l->active, memory_order_relaxed);
  if (fenced) {
    atomic_store_explicit(&l->active, true, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst); /* busy and active, then the flags */
  } else {
    atomic_signal_fence(memory_order_seq_cst); /* busy, then the flags */
  }
  int rc = refusal(p);
  if (!rc) rc = grow(p, &l->dq, 1);
  if (!rc && fp__deque_push(&l->dq, f))
    rc = fp__fail(FP_ENOMEM, "thread pool: no memory to queue a task");
  if (!rc)
    atomic_store_explicit(&l->submitted,
                          atomic_load_explicit(&l->submitted, memory_order_relaxed) + 1,
                          memory_order_relaxed);
  atomic_store_explicit(&l->busy, false, memory_order_release);
  if (rc) return rc;
  /* The push, then the sleepers and spinners. A spinner leaving for a
   * task looks for more work only after it stops counting as a spinner:
   * where one spins, fence, so that it and this thread cannot both miss
   * the other (and the task wait behind the spinner's own). */
  if (fenced || atomic_load_explicit(&p->spinners, memory_order_relaxed))
    atomic_thread_fence(memory_order_seq_cst);
  else
    atomic_signal_fence(memory_order_seq_cst);
  wake_one(p, atomic_load(&p->sleepers));
  return 0;
}

/* Push n futures into the shared deque (submit_mu held); on error none.
 * *sleeping: whether a worker sleeps, for wake_one once the lock is let go. */
static int push_shared(thread_pool *p, fp_future **fs, size_t n, bool *sleeping) {
  /* All or none: workers steal from the shared deque while it is pushed
   * to, so nothing pushed can be taken back. */
  if (fp__deque_push_many(&p->shared, fs, n))
    return fp__fail(FP_ENOMEM, "thread pool: no memory to queue %zu tasks", n);
  atomic_store_explicit(&p->submitted,
                        atomic_load_explicit(&p->submitted, memory_order_relaxed) + n,
                        memory_order_relaxed);
  *sleeping = atomic_load_explicit(&p->sleepers, memory_order_relaxed);
  return 0;
}

static int pool_submit(fp_executor *ex, fp_future *f, double timeout_s) {
  thread_pool *p = (thread_pool *)ex;
  worker *w = current_worker;
  if (w && w->pool == p) { /* a task's own submission: no lock, no bound */
    int rc = refusal(p);
    if (!rc) rc = grow(p, &w->dq, 1);
    if (rc) return rc;
    if (fp__deque_push(&w->dq, f)) return fp__fail(FP_ENOMEM, "thread pool: no memory to queue a task");
    atomic_store_explicit(&w->submitted,
                          atomic_load_explicit(&w->submitted, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst); /* the push, then the sleepers */
    wake_one(p, atomic_load(&p->sleepers));
    return 0;
  }
  lane *l = my_lane(p);
  if (l) return lane_submit(p, l, f);
  fp__deadline d = {{0, 0}, true};
  bool timed = false;
  pthread_mutex_lock(&p->submit_mu);
  for (;;) {
    int rc = refusal(p);
    if (!rc && (!p->capacity || (size_t)fp__deque_size(&p->shared) < p->capacity)) break;
    if (!rc && !timed) {
      d = fp__deadline_in(timeout_s);
      timed = true;
    }
    if (rc)
      ;
    else if (timeout_s == 0)
      rc = fp__fail(FP_EAGAIN, "the queue is full (%zu tasks)", p->capacity);
    else if (fp__deadline_passed(&d))
      rc = fp__fail(FP_ETIMEDOUT, "the queue stayed full (%zu tasks) for %g s", p->capacity,
                    timeout_s);
    if (rc) {
      pthread_mutex_unlock(&p->submit_mu);
      return rc;
    }
    atomic_fetch_add(&p->space_waiters, 1);
    fp__cond_wait(&p->space_cv, &p->submit_mu, &d);
    atomic_fetch_sub(&p->space_waiters, 1);
  }
  bool sleeping = false;
  int rc = grow(p, &p->shared, 1);
  if (!rc) rc = push_shared(p, &f, 1, &sleeping);
  pthread_mutex_unlock(&p->submit_mu);
  if (rc) return rc;
  wake_one(p, sleeping);
  return 0;
}

/* Many independent tasks in one go (fp_map): one lock, one wake-up. The
 * queue bound does not apply: the map bounds its own window. */
static int pool_submit_many(fp_executor *ex, fp_future **fs, size_t n) {
  thread_pool *p = (thread_pool *)ex;
  pthread_mutex_lock(&p->submit_mu);
  bool sleeping = false;
  int rc = refusal(p);
  if (!rc) rc = grow(p, &p->shared, n);
  if (!rc) rc = push_shared(p, fs, n, &sleeping);
  pthread_mutex_unlock(&p->submit_mu);
  if (rc) return rc;
  wake_one(p, sleeping);
  return 0;
}

static bool pool_is_own_thread(const fp_executor *ex) {
  return current_worker && current_worker->pool == (const thread_pool *)ex;
}

/* The common code raised shut_down (and cancel_all) before. */
static int pool_shutdown(fp_executor *ex, bool wait, bool cancel_futures, double timeout_s) {
  thread_pool *p = (thread_pool *)ex;
  fp__deadline deadline = fp__deadline_in(timeout_s), *d = &deadline;
  pthread_mutex_lock(&p->submit_mu); /* no push to the shared deque is half done */
  pthread_cond_broadcast(&p->space_cv);
  pthread_mutex_unlock(&p->submit_mu);
  quiet_lanes(p); /* nor to a lane: what was submitted is queued */
  atomic_store(&p->shutting_down, true); /* workers may exit once it is done */
  if (cancel_futures) drain(p, 0, NULL);
  wake_all(p);
  if (!wait) return 0;

  /* A task that shuts down its own pool cannot wait for its own thread. */
  size_t self = pool_is_own_thread(ex) ? 1 : 0;
  int rc = 0;
  pthread_mutex_lock(&p->mu);
  while (p->alive > self) {
    if (fp__cond_wait(&p->exit_cv, &p->mu, d) == ETIMEDOUT && p->alive > self) {
      rc = fp__fail(FP_ETIMEDOUT, "shutdown: %zu worker threads still busy", p->alive - self);
      break;
    }
  }
  pthread_mutex_unlock(&p->mu);
  return rc;
}

static void pool_destroy(fp_executor *ex) {
  thread_pool *p = (thread_pool *)ex;
  size_t n = atomic_load(&p->started);
  for (size_t i = 0; i < n; i++) {
    pthread_join(p->workers[i].thread, NULL);
    pthread_cond_destroy(&p->workers[i].cv);
    fp__deque_destroy(&p->workers[i].inbox);
    fp__deque_destroy(&p->workers[i].dq);
  }
  fp__deque_destroy(&p->shared);
  for (size_t i = 0, lanes = lanes_in_use(p); i < lanes; i++)
    if (lane_deque(p, i)) fp__deque_destroy(&p->lanes[i].dq);
  pthread_cond_destroy(&p->space_cv);
  pthread_cond_destroy(&p->exit_cv);
  pthread_mutex_destroy(&p->submit_mu);
  pthread_mutex_destroy(&p->mu);
  fp__free_lines(p->workers);
  fp__free_lines(p);
}

static void pool_stats(const fp_executor *ex, fp_executor_stats *out) {
  thread_pool *p = (thread_pool *)ex;
  pthread_mutex_lock(&p->mu);
  size_t n = atomic_load(&p->started);
  out->threads = p->alive;
  out->idle = (size_t)atomic_load(&p->sleepers) + (size_t)atomic_load(&p->spinners);
  pthread_mutex_unlock(&p->mu);
  out->queued = (size_t)fp__deque_size(&p->shared);
  out->submitted = atomic_load(&p->submitted);
  out->completed = 0;
  for (size_t i = 0, lanes = lanes_in_use(p); i < lanes; i++)
    if (lane_deque(p, i)) {
      out->lanes++;
      out->queued += (size_t)fp__deque_size(&p->lanes[i].dq);
      out->submitted += atomic_load(&p->lanes[i].submitted);
    }
  for (size_t i = 0; i < n; i++) {
    out->queued += (size_t)fp__deque_size(&p->workers[i].dq);
    out->queued += (size_t)fp__deque_size(&p->workers[i].inbox);
    out->submitted += atomic_load(&p->workers[i].submitted);
    out->completed += atomic_load(&p->workers[i].completed);
  }
}

static const fp_executor_vtable thread_pool_vtable = {
    .version = FP_EXECUTOR_INTERFACE_VERSION,
    .kind = "thread pool",
    .submit = pool_submit,
    .submit_many = pool_submit_many,
    .shutdown = pool_shutdown,
    .is_own_thread = pool_is_own_thread,
    .destroy = pool_destroy,
    .stats = pool_stats,
    .run_queued = pool_run_queued,
    .shares_memory = true,
};

void fp_thread_pool_options_init(fp_thread_pool_options *opt) {
  if (!opt) {
    fp__einval("fp_thread_pool_options_init: options are NULL");
    return;
  }
  memset(opt, 0, sizeof *opt);
  opt->max_workers = fp__default_workers();
}

int fp_thread_pool_new(const fp_thread_pool_options *opt, fp_executor **out) {
  if (!out) return fp__einval("fp_thread_pool_new: out is NULL");
  *out = NULL;
  fp_thread_pool_options defaults;
  if (!opt) {
    fp_thread_pool_options_init(&defaults);
    opt = &defaults;
  }
  if (opt->max_workers <= 0)
    return fp__einval("fp_thread_pool_new: max_workers must be greater than 0 (got %d)",
                      opt->max_workers);
  if (opt->queue_capacity < 0)
    return fp__einval("fp_thread_pool_new: queue_capacity must be 0 (unbounded) or more (got %ld)",
                      opt->queue_capacity);
  thread_pool *p = fp__calloc_lines(sizeof *p);
  worker *workers = fp__calloc_lines((size_t)opt->max_workers * sizeof *workers);
  if (!p || !workers || fp__deque_init(&p->shared, DEQUE_CAPACITY)) {
    if (p && workers) fp__free(atomic_load(&p->shared.ring));
    fp__free_lines(p);
    fp__free_lines(workers);
    return fp__fail(FP_ENOMEM, "fp_thread_pool_new: out of memory");
  }
  if (pthread_mutex_init(&p->mu, NULL) || pthread_mutex_init(&p->submit_mu, NULL) ||
      fp__cond_init(&p->space_cv) || fp__cond_init(&p->exit_cv)) {
    fp__deque_destroy(&p->shared);
    fp__free_lines(p);
    fp__free_lines(workers);
    return fp__fail(FP_ENOMEM, "fp_thread_pool_new: out of resources");
  }
  fp__executor_init(&p->base, &thread_pool_vtable, p, opt->max_workers);
  p->workers = workers;
  p->capacity = (size_t)opt->queue_capacity;
  p->asymmetric = membarrier_ready();
  p->serial = atomic_fetch_add(&pool_serials, 1) + 1;
  p->initializer = opt->initializer;
  p->initializer_arg = opt->initializer_arg;
  snprintf(p->prefix, sizeof p->prefix, "%s",
           opt->thread_name_prefix ? opt->thread_name_prefix : "fp");
  *out = &p->base;
  return 0;
}
