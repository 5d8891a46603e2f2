/* serve.c - a worker rank: it receives units of work from the root, runs
 * each in a local futureproof process pool (a crash, an exit or a timeout
 * fails only that unit, and the rank goes on) or, without isolation, in
 * its own serving threads; sends the outcomes back, cancels a unit when
 * asked, and returns when the root says stop.
 *
 * Without isolation the threads take turns (leader and followers): the
 * one that polls MPI and receives a unit runs it itself, and an idle one
 * takes over the polling meanwhile, so a round trip crosses no thread. A
 * watcher polls (gently) while every thread runs a task, so that a cancel
 * still reaches a running task (fp_cancel_requested). The thread that sees
 * a unit finish sends its outcomes at once. MPI is called under one mutex
 * (mpi_mu), one thread at a time, as MPI_THREAD_SERIALIZED asks. */
#define _GNU_SOURCE
#include "futureproof_mpi.h"
#include "poll.h"
#include "serve.h"
#include "wire.h"

#include <futureproof/executor.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

typedef struct unit unit;

#define WATCH_TICKING_S 0.1 /* the watcher ticks this long after the last task */

typedef struct server {
  MPI_Comm comm;
  int root, rank;
  char host[MPI_MAX_PROCESSOR_NAME];
  int pool_rc;             /* the local pool could not be made: every unit fails */
  fp_executor *pool;       /* the process pool, or the serving threads (in_rank) */
  bool in_rank;
  pthread_mutex_t mu, mpi_mu; /* mpi_mu before mu */
  pthread_cond_t cv;       /* the poller's back-off: a unit ended, a task queued (mu) */
  pthread_cond_t idle_cv;  /* idle serving threads (mu) */
  pthread_cond_t watch_cv; /* the watcher (mu) */
  unit *running;           /* (mu) */
  pending_send *sends;     /* (mpi_mu) */
  bool sent;               /* outcomes were sent since the poller looked (mu) */
  bool polling;            /* a thread has the poller's turn (mu) */
  bool stopping, finished; /* the root said stop; everything has ended (mu) */
  bool sending;            /* sends were still in flight at the last poll (mu) */
  double quiet_since;      /* the last poll that brought something (mu) */
  fp_future **queue;       /* in_rank: tasks not started, a ring (mu) */
  size_t queue_head, queued, queue_room;
  int idle, busy;          /* in_rank: serving threads waiting for a turn, running a task (mu) */
  bool ticking;            /* in_rank: the watcher looks every millisecond (mu) */
} server;

struct unit {
  unit *next;
  server *s;
  uint64_t key;
  uint32_t count;
  fp_future *local; /* in the local pool */
};

/* The outcomes of a finished unit, to the root (mpi_mu held). */
static void send_outcomes(server *s, unit *u) {
  void *msg = NULL;
  size_t len = 0;
  fp_bytes *result = NULL;
  int code = fp_future_result(u->local, 0, (void **)&result);
  if (code == 0 && result && result->size >= sizeof(wire_header)) {
    if ((msg = malloc(result->size))) {
      memcpy(msg, result->data, result->size);
      len = result->size;
      ((wire_header *)msg)->key = u->key;
    }
  } else {
    char text[768];
    const char *why = code == FP_ECANCELED ? "cancelled" : fp_last_error_message();
    snprintf(text, sizeof text, "rank %d (%s): %s", s->rank, s->host, why);
    msg = wire_failed_outcomes(u->count, u->key, code ? code : FP_ECRASHED, text, &len);
  }
  if (msg) send_later(&s->sends, msg, len, s->root, TAG_RESULT, s->comm);
}

/* The local pool finished a unit (in its thread, or in the serving thread
 * if it was done at once): its outcomes go now. */
static void unit_done(fp_future *f, void *userdata) {
  (void)f;
  unit *u = userdata;
  server *s = u->s;
  pthread_mutex_lock(&s->mpi_mu);
  send_outcomes(s, u);
  pthread_mutex_unlock(&s->mpi_mu);
  pthread_mutex_lock(&s->mu);
  for (unit **at = &s->running; *at; at = &(*at)->next)
    if (*at == u) {
      *at = u->next;
      break;
    }
  s->sent = true;
  pthread_cond_signal(&s->cv); /* a poller backing off looks again */
  pthread_mutex_unlock(&s->mu);
  fp_future_release(u->local);
  free(u);
}

/* Every task of the unit h failed with code, for why (this rank says so). */
static void reply_failed(server *s, const wire_header *h, int code, const char *why) {
  char text[512];
  snprintf(text, sizeof text, "rank %d (%s): %s", s->rank, s->host, why);
  size_t n;
  void *msg = wire_failed_outcomes(h->count, h->key, code, text, &n);
  pthread_mutex_lock(&s->mpi_mu);
  if (msg) send_later(&s->sends, msg, n, s->root, TAG_RESULT, s->comm);
  pthread_mutex_unlock(&s->mpi_mu);
}

static void start_unit(server *s, void *buf, int len) {
  wire_header h;
  if (len < (int)sizeof h) return;
  memcpy(&h, buf, sizeof h);
  if (s->pool_rc) {
    char why[256];
    snprintf(why, sizeof why, "no local pool: %s", fp_strerror(s->pool_rc));
    reply_failed(s, &h, s->pool_rc, why);
    return;
  }
  unit *u = malloc(sizeof *u);
  int rc = u ? fp_submit_bytes(s->pool, wire_run_unit, buf, (size_t)len, &u->local) : FP_ENOMEM;
  if (rc) {
    reply_failed(s, &h, rc, u ? fp_last_error_message() : "out of memory");
    free(u);
    return;
  }
  u->s = s;
  u->key = h.key;
  u->count = h.count;
  pthread_mutex_lock(&s->mu);
  u->next = s->running;
  s->running = u;
  pthread_mutex_unlock(&s->mu);
  fp_future_on_done(u->local, unit_done, u); /* at once if it is done already */
}

static void cancel_unit(server *s, uint64_t key) {
  pthread_mutex_lock(&s->mu);
  fp_future *f = NULL;
  for (unit *u = s->running; u; u = u->next)
    if (u->key == key) {
      f = u->local;
      fp_future_retain(f);
      break;
    }
  pthread_mutex_unlock(&s->mu);
  if (f) {
    /* Running: a process pool kills its worker; in-rank, the task sees
     * fp_cancel_requested(). */
    fp_future_cancel(f);
    fp_future_release(f);
  }
}

/* ---- streams (fp_mpi_stream) ---- */

/* The server whose serving thread this is (in_rank): tasks running here
 * may stream. */
static _Thread_local server *serving_here;

int fp_mpi_stream(const void *data, size_t len) {
  server *s = serving_here;
  if (!s || !wire_current.running || (len && !data)) {
    const char *why = len && !data
                          ? "data is NULL"
                          : "not in a task on a worker rank's own thread (isolate = false)";
    fp_log(FP_LOG_WARNING, "invalid argument: fp_mpi_stream: %s", why);
    return fp_executor_fail(FP_EINVAL, "fp_mpi_stream: %s", why);
  }
  wire_stream h = {.key = wire_current.key, .index = wire_current.index};
  unsigned char *msg = len <= INT_MAX - sizeof h ? malloc(sizeof h + len) : NULL;
  if (!msg) return fp_executor_fail(FP_ENOMEM, "fp_mpi_stream: no memory for %zu bytes", len);
  memcpy(msg, &h, sizeof h);
  if (len) memcpy(msg + sizeof h, data, len);
  pthread_mutex_lock(&s->mpi_mu);
  bool queued = send_later(&s->sends, msg, sizeof h + len, s->root, TAG_STREAM, s->comm);
  pthread_mutex_unlock(&s->mpi_mu);
  return queued ? 0 : fp_executor_fail(FP_ENOMEM, "fp_mpi_stream: no memory");
}

/* ---- the serving threads as the local executor (in_rank) ---- */

static int ir_submit(fp_executor *ex, fp_future *f, double timeout_s) {
  (void)timeout_s;
  server *s = fp_executor_impl(ex);
  pthread_mutex_lock(&s->mu);
  if (s->queued == s->queue_room) {
    size_t room = s->queue_room ? 2 * s->queue_room : 16;
    fp_future **grown = malloc(room * sizeof *grown);
    if (!grown) {
      pthread_mutex_unlock(&s->mu);
      return fp_executor_fail(FP_ENOMEM, "futureproof-mpi: no memory to queue a task");
    }
    for (size_t i = 0; i < s->queued; i++)
      grown[i] = s->queue[(s->queue_head + i) % s->queue_room];
    free(s->queue);
    s->queue = grown;
    s->queue_head = 0;
    s->queue_room = room;
  }
  s->queue[(s->queue_head + s->queued++) % s->queue_room] = f;
  /* The poller runs it itself when it is done polling; an idle thread
   * takes the next one. */
  if (s->queued > 1 && s->idle) pthread_cond_signal(&s->idle_cv);
  pthread_mutex_unlock(&s->mu);
  return 0;
}

/* The next queued task, or NULL (mu held). */
static fp_future *dequeue(server *s) {
  if (!s->queued) return NULL;
  fp_future *f = s->queue[s->queue_head];
  s->queue_head = (s->queue_head + 1) % s->queue_room;
  s->queued--;
  return f;
}

static int ir_shutdown(fp_executor *ex, bool wait, bool cancel_futures, double timeout_s) {
  (void)wait, (void)timeout_s; /* the serving threads have ended before it is freed */
  server *s = fp_executor_impl(ex);
  pthread_mutex_lock(&s->mu);
  for (fp_future *f; cancel_futures && (f = dequeue(s));) {
    pthread_mutex_unlock(&s->mu);
    fp_future_cancel(f);
    fp_future_release(f);
    pthread_mutex_lock(&s->mu);
  }
  pthread_mutex_unlock(&s->mu);
  return 0;
}

static void ir_destroy(fp_executor *ex) {
  server *s = fp_executor_impl(ex);
  free(s->queue);
  s->queue = NULL;
}

static const fp_executor_vtable in_rank_vtable = {
    .version = FP_EXECUTOR_INTERFACE_VERSION,
    .kind = "MPI rank",
    .submit = ir_submit,
    .shutdown = ir_shutdown,
    .destroy = ir_destroy,
    .shares_memory = true,
};

/* ---- polling ---- */

/* One look at MPI, and what it brought handled. True if it brought
 * something. */
static bool poll_once(server *s) {
  int flag = 0, len = 0;
  MPI_Message msg;
  MPI_Status st;
  void *buf = NULL;
  pthread_mutex_lock(&s->mpi_mu);
  MPI_Improbe(s->root, MPI_ANY_TAG, s->comm, &flag, &msg, &st);
  if (flag) buf = receive_matched(&msg, &st, &len);
  bool progressed = sends_progress(&s->sends) || flag;
  bool sending = s->sends != NULL;
  pthread_mutex_unlock(&s->mpi_mu);
  if (buf && st.MPI_TAG == TAG_UNIT) {
    start_unit(s, buf, len);
  } else if (buf && st.MPI_TAG == TAG_CANCEL && len >= (int)sizeof(uint64_t)) {
    uint64_t key;
    memcpy(&key, buf, sizeof key);
    cancel_unit(s, key);
  }
  free(buf);
  pthread_mutex_lock(&s->mu);
  if (flag && st.MPI_TAG == TAG_SHUTDOWN) s->stopping = true;
  s->sending = sending;
  pthread_mutex_unlock(&s->mu);
  return progressed;
}

/* After a poll (mu held, the turn given back): stop when the root said so,
 * nothing runs and every outcome has left (a unit that finished since the
 * poll read sending has set s->sent, so it looks again). */
static bool may_finish(server *s, bool progressed) {
  if (s->stopping && !s->running && !s->queued && !s->sending && !progressed && !s->finished) {
    s->finished = true;
    pthread_cond_broadcast(&s->idle_cv);
    pthread_cond_broadcast(&s->watch_cv);
  }
  return s->finished;
}

/* Take the poller's turn once (mu held; it is free): poll, and back off
 * when nothing came for a while. */
static void take_turn(server *s) {
  s->polling = true;
  pthread_mutex_unlock(&s->mu);
  bool progressed = poll_once(s);
  pthread_mutex_lock(&s->mu);
  s->polling = false;
  progressed = progressed || s->sent;
  s->sent = false;
  if (may_finish(s, progressed) || s->queued) return;
  double now = fp_now();
  if (progressed || s->sending) s->quiet_since = now; /* a large send moves only while polled */
  if (!progressed) poll_backoff(&s->cv, &s->mu, now - s->quiet_since);
}

/* A serving thread: run queued tasks (in_rank), else poll when it is
 * nobody's turn, else wait for a turn or a task. The calling thread of
 * fp__mpi_serve is one. */
static void *serving(void *arg) {
  server *s = arg;
  poll_thread_init();
  if (s->in_rank) serving_here = s;
  pthread_mutex_lock(&s->mu);
  while (!s->finished) {
    fp_future *f = dequeue(s);
    if (f) {
      s->busy++;
      if (!s->polling) { /* somebody polls while this runs */
        if (s->idle) {
          pthread_cond_signal(&s->idle_cv);
        } else if (!s->ticking) {
          s->ticking = true;
          pthread_cond_signal(&s->watch_cv);
        }
      }
      pthread_mutex_unlock(&s->mu);
      fp_executor_run(f);
      fp_future_release(f);
      pthread_mutex_lock(&s->mu);
      s->busy--;
    } else if (!s->polling) {
      take_turn(s);
    } else {
      s->idle++;
      pthread_cond_wait(&s->idle_cv, &s->mu);
      s->idle--;
    }
  }
  pthread_mutex_unlock(&s->mu);
  serving_here = NULL;
  return NULL;
}

/* The watcher (in_rank): while every serving thread runs a task, it
 * polls about every millisecond (a cancel reaches a running task, units
 * queue up). It ticks so while tasks come, and sleeps once none has run
 * for a while: a round trip never waits for it, nor wakes it. */
static void *watching(void *arg) {
  server *s = arg;
  poll_thread_init();
  double last_busy = fp_now();
  pthread_mutex_lock(&s->mu);
  while (!s->finished) {
    if (!s->ticking) {
      pthread_cond_wait(&s->watch_cv, &s->mu);
      last_busy = fp_now();
      continue;
    }
    if (s->busy) last_busy = fp_now();
    if (s->busy && !s->idle && !s->polling) take_turn(s);
    if (s->finished) break;
    if (s->idle && !s->polling) pthread_cond_signal(&s->idle_cv); /* a thread is free: its turn */
    if (fp_now() - last_busy > WATCH_TICKING_S) {
      s->ticking = false;
      continue;
    }
    struct timespec at;
    clock_gettime(CLOCK_REALTIME, &at);
    at.tv_nsec += (long)(POLL_MAX_SLEEP_S * 1e9);
    if (at.tv_nsec >= 1000000000L) {
      at.tv_sec++;
      at.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&s->watch_cv, &s->mu, &at);
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

int fp__mpi_serve(MPI_Comm comm, int root, const fp_mpi_options *opt) {
  server s = {.comm = comm, .root = root, .in_rank = !opt->isolate};
  poll_thread_init();
  MPI_Comm_rank(comm, &s.rank);
  int host_len = 0;
  MPI_Get_processor_name(s.host, &host_len);
  pthread_mutex_init(&s.mu, NULL);
  pthread_mutex_init(&s.mpi_mu, NULL);
  pthread_cond_init(&s.cv, NULL);
  pthread_cond_init(&s.idle_cv, NULL);
  pthread_cond_init(&s.watch_cv, NULL);
  s.quiet_since = fp_now();
  if (opt->isolate) {
    fp_process_pool_options popt;
    fp_process_pool_options_init(&popt);
    popt.max_workers = opt->local_workers;
    popt.task_timeout = opt->task_timeout;
    s.pool_rc = fp_process_pool_new(&popt, &s.pool);
  } else {
    s.pool_rc = fp_executor_new(&in_rank_vtable, &s, opt->local_workers, &s.pool);
  }
  /* in_rank: local_workers serving threads (this one too) and a watcher */
  int extra = s.in_rank && !s.pool_rc ? opt->local_workers : 0, started = 0;
  pthread_t *threads = extra ? calloc((size_t)extra, sizeof *threads) : NULL;
  for (int i = 0; threads && i < extra; i++) {
    if (pthread_create(&threads[i], NULL, i ? serving : watching, &s)) break;
    started++;
  }
  serving(&s);
  for (int i = 0; i < started; i++) pthread_join(threads[i], NULL);
  free(threads);
  if (s.pool) fp_executor_free(s.pool);
  pthread_cond_destroy(&s.watch_cv);
  pthread_cond_destroy(&s.idle_cv);
  pthread_cond_destroy(&s.cv);
  pthread_mutex_destroy(&s.mpi_mu);
  pthread_mutex_destroy(&s.mu);
  return 0;
}
