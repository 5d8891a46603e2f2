/* serial_executor.c - a serial executor written against the installed
 * headers only: a FIFO of futures and one thread that runs them with
 * fp_executor_run. fp_submit, fp_wait, fp_map, the task manager and the
 * rest work on it unchanged; the common code refuses work after shutdown,
 * makes and numbers the futures. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "serial_executor.h"

#include <futureproof/executor.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

typedef struct serial {
  pthread_mutex_t mu;
  pthread_cond_t cv; /* work queued, shutting down, or the thread exited */
  fp_future **queue; /* a ring */
  size_t head, count, room;
  bool stopping, exited, started;
  pthread_t thread;
  uint64_t submitted, completed;
} serial;

static serial *of(const fp_executor *ex) { return fp_executor_impl(ex); }

/* The oldest queued future, or NULL (mu held). */
static fp_future *pop(serial *s) {
  if (!s->count) return NULL;
  fp_future *f = s->queue[s->head];
  s->head = (s->head + 1) % s->room;
  s->count--;
  return f;
}

static void run(serial *s, fp_future *f) {
  fp_executor_run(f);
  fp_future_release(f); /* the executor's reference */
  pthread_mutex_lock(&s->mu);
  s->completed++;
  pthread_mutex_unlock(&s->mu);
}

static void *serial_main(void *arg) {
  serial *s = arg;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    fp_future *f = pop(s);
    if (f) {
      pthread_mutex_unlock(&s->mu);
      run(s, f);
      pthread_mutex_lock(&s->mu);
    } else if (s->stopping) {
      break;
    } else {
      pthread_cond_wait(&s->cv, &s->mu);
    }
  }
  s->exited = true;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

static int serial_submit(fp_executor *ex, fp_future *f, double timeout_s) {
  (void)timeout_s; /* the queue is unbounded: never waits */
  serial *s = of(ex);
  pthread_mutex_lock(&s->mu);
  if (s->count == s->room) { /* grow the ring, oldest first */
    size_t room = s->room ? 2 * s->room : 64;
    fp_future **grown = malloc(room * sizeof *grown);
    if (!grown) {
      pthread_mutex_unlock(&s->mu);
      return fp_executor_fail(FP_ENOMEM, "serial executor: no memory to queue a task");
    }
    for (size_t i = 0; i < s->count; i++) grown[i] = s->queue[(s->head + i) % s->room];
    free(s->queue);
    s->queue = grown;
    s->head = 0;
    s->room = room;
  }
  s->queue[(s->head + s->count++) % s->room] = f;
  s->submitted++;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
  return 0;
}

static bool serial_is_own_thread(const fp_executor *ex) {
  return of(ex)->started && pthread_equal(pthread_self(), of(ex)->thread);
}

static int serial_shutdown(fp_executor *ex, bool wait, bool cancel_futures, double timeout_s) {
  serial *s = of(ex);
  pthread_mutex_lock(&s->mu);
  s->stopping = true;
  while (cancel_futures && s->count) { /* what has not started */
    fp_future *f = pop(s);
    fp_future_cancel(f);
    fp_future_release(f);
  }
  pthread_cond_broadcast(&s->cv);
  int rc = 0;
  if (wait && !serial_is_own_thread(ex)) {
    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    if (timeout_s >= 0 && timeout_s < 1e9) {
      end.tv_sec += (time_t)timeout_s;
      end.tv_nsec += (long)((timeout_s - (double)(time_t)timeout_s) * 1e9);
      if (end.tv_nsec >= 1000000000L) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000L;
      }
    }
    while (!s->exited && rc == 0)
      rc = timeout_s >= 0 && timeout_s < 1e9 ? pthread_cond_timedwait(&s->cv, &s->mu, &end)
                                             : pthread_cond_wait(&s->cv, &s->mu);
    rc = s->exited ? 0 : fp_executor_fail(FP_ETIMEDOUT, "shutdown: the serial thread is still busy");
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

static void serial_destroy_state(serial *s) {
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  free(s->queue);
  free(s);
}

static void serial_destroy(fp_executor *ex) {
  serial *s = of(ex);
  if (s->started) pthread_join(s->thread, NULL);
  serial_destroy_state(s);
}

static void serial_stats(const fp_executor *ex, fp_executor_stats *out) {
  serial *s = of(ex);
  pthread_mutex_lock(&s->mu);
  out->threads = s->exited ? 0 : 1;
  out->queued = s->count;
  out->submitted = s->submitted;
  out->completed = s->completed;
  pthread_mutex_unlock(&s->mu);
}

/* The serial thread waits on a future of its own executor: run what is
 * queued meanwhile (the future may be behind it), or it would wait for
 * ever. */
static bool serial_run_queued(fp_executor *ex) {
  serial *s = of(ex);
  if (!serial_is_own_thread(ex)) return false;
  pthread_mutex_lock(&s->mu);
  fp_future *f = pop(s);
  pthread_mutex_unlock(&s->mu);
  if (f) run(s, f);
  return f != NULL;
}

static const fp_executor_vtable serial_vtable = {
    .version = FP_EXECUTOR_INTERFACE_VERSION,
    .kind = "serial",
    .submit = serial_submit,
    .shutdown = serial_shutdown,
    .is_own_thread = serial_is_own_thread,
    .destroy = serial_destroy,
    .stats = serial_stats,
    .run_queued = serial_run_queued,
    .shares_memory = true,
};

int serial_executor_new(fp_executor **out) {
  serial *s = calloc(1, sizeof *s);
  if (!s) return fp_executor_fail(FP_ENOMEM, "serial executor: out of memory");
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  int rc = fp_executor_new(&serial_vtable, s, 1, out);
  if (rc) {
    serial_destroy_state(s);
    return rc;
  }
  if (pthread_create(&s->thread, NULL, serial_main, s) != 0) {
    s->exited = true; /* nothing to wait for or join: free it the usual way */
    fp_executor_free(*out);
    *out = NULL;
    return fp_executor_fail(FP_ENOMEM, "serial executor: cannot start its thread");
  }
  s->started = true;
  return 0;
}
