/* thread_pool.c - the thread pool executor: one FIFO queue under one mutex,
 * threads started lazily, an idle thread woken before a new one starts,
 * an optional bound on the queue. */
#define _GNU_SOURCE
#include "internal.h"

#include <stdio.h>
#include <string.h>

typedef struct worker {
  struct thread_pool *pool;
  size_t index;
  pthread_t thread;
} worker;

typedef struct thread_pool {
  fp_executor base;
  pthread_mutex_t mu;
  pthread_cond_t work_cv;  /* workers wait here for tasks */
  pthread_cond_t space_cv; /* submitters wait here for queue room */
  pthread_cond_t exit_cv;  /* shutdown waits here for workers to exit */
  fp_future *head, *tail;
  size_t queued;
  size_t capacity; /* 0: unbounded */
  worker *workers; /* max_workers slots, the first `started` in use */
  size_t started;  /* threads created */
  size_t alive;    /* threads not yet exited */
  size_t idle;     /* threads waiting on work_cv */
  /* Threads not running a task (idle, starting, or returning from one).
   * A submit starts a thread only when the queue outgrows them. */
  atomic_size_t available;
  size_t space_waiters;
  bool shutting_down; /* under mu; base.shut_down mirrors it for fast checks */
  bool broken;
  char broken_message[256];
  int (*initializer)(void *arg);
  void *initializer_arg;
  char prefix[11];
  uint64_t submitted;
  atomic_uint_fast64_t completed;
} thread_pool;

static _Thread_local thread_pool *current_pool; /* the pool this worker serves */

static void queue_push(thread_pool *p, fp_future *f) {
  *fp__future_next_link(f) = NULL;
  if (p->tail)
    *fp__future_next_link(p->tail) = f;
  else
    p->head = f;
  p->tail = f;
  p->queued++;
}

static fp_future *queue_pop(thread_pool *p) {
  fp_future *f = p->head;
  p->head = *fp__future_next_link(f);
  if (!p->head) p->tail = NULL;
  p->queued--;
  return f;
}

/* Take the whole queue (mu held), to complete its futures after unlocking:
 * completing runs callbacks, which may call back into this pool. */
static fp_future *queue_detach(thread_pool *p) {
  fp_future *list = p->head;
  p->head = p->tail = NULL;
  p->queued = 0;
  if (p->space_waiters) pthread_cond_broadcast(&p->space_cv);
  return list;
}

/* Fail (code != 0) or cancel (code == 0) every future of a detached list. */
static void settle_detached(fp_future *list, int code, const char *message) {
  while (list) {
    fp_future *next = *fp__future_next_link(list);
    if (code)
      fp__future_fail_static(list, code, message);
    else
      fp_future_cancel(list);
    fp_future_release(list); /* the executor's reference */
    list = next;
  }
}

static void break_pool(thread_pool *p, int code) {
  pthread_mutex_lock(&p->mu);
  fp_future *list = NULL;
  if (!p->broken) {
    p->broken = true;
    snprintf(p->broken_message, sizeof p->broken_message,
             "a thread initializer failed (%s), the thread pool is not usable anymore",
             fp_err_name(code));
    list = queue_detach(p);
    pthread_cond_broadcast(&p->work_cv);
  }
  pthread_mutex_unlock(&p->mu);
  fp_log(FP_LOG_ERROR, "thread pool initializer failed with %d (%s): the pool is broken", code,
         fp_err_name(code));
  settle_detached(list, FP_EBROKEN, p->broken_message);
}

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

/* Counted before the outcome is published: a submit that follows a
 * result sees this thread as free, and stats include the task. */
static void task_returned(void *ctx, bool ran) {
  thread_pool *p = ctx;
  atomic_fetch_add(&p->available, 1);
  if (ran) atomic_fetch_add_explicit(&p->completed, 1, memory_order_relaxed);
}

static void *worker_main(void *arg) {
  worker *w = arg;
  thread_pool *p = w->pool;
  current_pool = p;
  name_thread(p, w->index);
  if (p->initializer) {
    int rc = p->initializer(p->initializer_arg);
    if (rc) break_pool(p, rc);
  }
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->head && !p->shutting_down && !p->broken) {
      p->idle++;
      pthread_cond_wait(&p->work_cv, &p->mu);
      p->idle--;
    }
    if (!p->head || p->broken) break; /* shut down and drained, or broken */
    fp_future *f = queue_pop(p);
    atomic_fetch_sub(&p->available, 1);
    if (p->space_waiters) pthread_cond_signal(&p->space_cv);
    pthread_mutex_unlock(&p->mu);
    fp__future_run(f, task_returned, p);
    fp_future_release(f); /* the executor's reference */
    pthread_mutex_lock(&p->mu);
  }
  atomic_fetch_sub(&p->available, 1);
  p->alive--;
  pthread_cond_broadcast(&p->exit_cv);
  pthread_mutex_unlock(&p->mu);
  current_pool = NULL;
  return NULL;
}

/* Start one more thread (mu held). */
static int spawn(thread_pool *p) {
  worker *w = &p->workers[p->started];
  w->pool = p;
  w->index = p->started;
  atomic_fetch_add(&p->available, 1);
  int rc = pthread_create(&w->thread, NULL, worker_main, w);
  if (rc) {
    atomic_fetch_sub(&p->available, 1);
    return rc;
  }
  p->started++;
  p->alive++;
  return 0;
}

static int pool_submit(fp_executor *ex, fp_future *f, double timeout_s) {
  thread_pool *p = (thread_pool *)ex;
  fp__deadline d = fp__deadline_in(timeout_s);
  pthread_mutex_lock(&p->mu);
  for (;;) {
    int rc = 0;
    if (p->broken)
      rc = fp__fail(FP_EBROKEN, "%s", p->broken_message);
    else if (p->shutting_down)
      rc = fp__fail(FP_ESHUTDOWN, "cannot schedule new futures after shutdown");
    else if (!p->capacity || p->queued < p->capacity)
      break;
    else if (timeout_s == 0)
      rc = fp__fail(FP_EAGAIN, "the queue is full (%zu tasks)", p->capacity);
    else if (fp__deadline_passed(&d))
      rc = fp__fail(FP_ETIMEDOUT, "the queue stayed full (%zu tasks) for %g s", p->capacity,
                    timeout_s);
    if (rc) {
      pthread_mutex_unlock(&p->mu);
      return rc;
    }
    p->space_waiters++;
    fp__cond_wait(&p->space_cv, &p->mu, &d);
    p->space_waiters--;
  }
  queue_push(p, f);
  p->submitted++;
  if (p->idle) pthread_cond_signal(&p->work_cv);
  if (p->queued > atomic_load(&p->available) && p->started < (size_t)p->base.max_workers) {
    int rc = spawn(p);
    if (rc && p->alive == 0) { /* nobody would ever run it */
      p->head = p->tail = NULL;
      p->queued = 0;
      p->submitted--;
      pthread_mutex_unlock(&p->mu);
      return fp__fail(FP_ENOMEM, "cannot start a worker thread: %s", strerror(rc));
    }
    if (rc) fp_log(FP_LOG_WARNING, "cannot start another worker thread: %s", strerror(rc));
  }
  pthread_mutex_unlock(&p->mu);
  return 0;
}

static bool pool_is_own_thread(const fp_executor *ex) {
  return current_pool == (const thread_pool *)ex;
}

static int pool_shutdown(fp_executor *ex, bool wait, bool cancel_futures,
                         const fp__deadline *d) {
  thread_pool *p = (thread_pool *)ex;
  pthread_mutex_lock(&p->mu);
  p->shutting_down = true;
  atomic_store(&p->base.shut_down, true);
  fp_future *cancelled = NULL;
  if (cancel_futures) {
    atomic_store(&p->base.cancel_all, true);
    cancelled = queue_detach(p);
  }
  pthread_cond_broadcast(&p->work_cv);
  pthread_cond_broadcast(&p->space_cv);
  pthread_mutex_unlock(&p->mu);
  settle_detached(cancelled, 0, NULL);
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
  for (size_t i = 0; i < p->started; i++) pthread_join(p->workers[i].thread, NULL);
  pthread_cond_destroy(&p->work_cv);
  pthread_cond_destroy(&p->space_cv);
  pthread_cond_destroy(&p->exit_cv);
  pthread_mutex_destroy(&p->mu);
  fp__free(p->workers);
  fp__free(p);
}

static void pool_stats(const fp_executor *ex, fp_executor_stats *out) {
  thread_pool *p = (thread_pool *)ex;
  pthread_mutex_lock(&p->mu);
  out->threads = p->alive;
  out->idle = p->idle;
  out->queued = p->queued;
  out->submitted = p->submitted;
  pthread_mutex_unlock(&p->mu);
  out->completed = atomic_load(&p->completed);
}

static const fp__executor_vtable thread_pool_vtable = {
    "thread pool", pool_submit, pool_shutdown, pool_is_own_thread,
    pool_destroy,  pool_stats,  NULL,          true,
    NULL,
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
  thread_pool *p = fp__calloc(1, sizeof *p);
  worker *workers = fp__calloc((size_t)opt->max_workers, sizeof *workers);
  if (!p || !workers) {
    fp__free(p);
    fp__free(workers);
    return fp__fail(FP_ENOMEM, "fp_thread_pool_new: out of memory");
  }
  if (pthread_mutex_init(&p->mu, NULL) || fp__cond_init(&p->work_cv) ||
      fp__cond_init(&p->space_cv) || fp__cond_init(&p->exit_cv)) {
    fp__free(p);
    fp__free(workers);
    return fp__fail(FP_ENOMEM, "fp_thread_pool_new: out of resources");
  }
  fp__executor_init(&p->base, &thread_pool_vtable, opt->max_workers);
  p->workers = workers;
  p->capacity = (size_t)opt->queue_capacity;
  p->initializer = opt->initializer;
  p->initializer_arg = opt->initializer_arg;
  snprintf(p->prefix, sizeof p->prefix, "%s",
           opt->thread_name_prefix ? opt->thread_name_prefix : "fp");
  atomic_init(&p->available, 0);
  atomic_init(&p->completed, 0);
  *out = &p->base;
  return 0;
}
