/* serve.c - a worker rank: it receives units of work from the root, runs
 * each in a local futureproof process pool (a crash, an exit or a timeout
 * fails only that unit, and the rank goes on) or, without isolation, in a
 * thread pool; sends the outcomes back, cancels a unit when asked, and
 * returns when the root says stop. MPI is called from this thread only. */
#define _GNU_SOURCE
#include "futureproof_mpi.h"
#include "poll.h"
#include "serve.h"
#include "wire.h"

#include <stdio.h>
#include <string.h>

typedef struct unit unit;

typedef struct server {
  MPI_Comm comm;
  int root, rank;
  char host[MPI_MAX_PROCESSOR_NAME];
  fp_executor *pool;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  unit *running;           /* (mu) */
  unit *done, *done_tail;  /* finished locally, outcomes not sent yet (mu) */
  pending_send *sends;
} server;

struct unit {
  unit *next;
  server *s;
  uint64_t key;
  uint32_t count;
  fp_future *local; /* in the local pool */
};

/* The local process pool finished a unit (its dispatcher thread). */
static void unit_done(fp_future *f, void *userdata) {
  (void)f;
  unit *u = userdata;
  server *s = u->s;
  pthread_mutex_lock(&s->mu);
  for (unit **at = &s->running; *at; at = &(*at)->next)
    if (*at == u) {
      *at = u->next;
      break;
    }
  u->next = NULL;
  if (s->done_tail) s->done_tail->next = u;
  else s->done = u;
  s->done_tail = u;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

/* The outcomes of a finished unit, to the root. */
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
  fp_future_release(u->local);
  free(u);
}

static void start_unit(server *s, void *buf, int len) {
  wire_header h;
  if (len < (int)sizeof h) return;
  memcpy(&h, buf, sizeof h);
  unit *u = malloc(sizeof *u);
  int rc = u ? fp_submit_bytes(s->pool, wire_run_unit, buf, (size_t)len, &u->local) : FP_ENOMEM;
  if (rc) {
    char text[512];
    snprintf(text, sizeof text, "rank %d (%s): %s", s->rank, s->host,
             u ? fp_last_error_message() : "out of memory");
    size_t n;
    void *msg = wire_failed_outcomes(h.count, h.key, rc, text, &n);
    if (msg) send_later(&s->sends, msg, n, s->root, TAG_RESULT, s->comm);
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
    fp_future_cancel(f); /* running: the pool kills its worker process */
    fp_future_release(f);
  }
}

int fp__mpi_serve(MPI_Comm comm, int root, const fp_mpi_options *opt) {
  server s = {.comm = comm, .root = root};
  poll_thread_init();
  MPI_Comm_rank(comm, &s.rank);
  int host_len = 0;
  MPI_Get_processor_name(s.host, &host_len);
  int rc;
  if (opt->isolate) {
    fp_process_pool_options popt;
    fp_process_pool_options_init(&popt);
    popt.max_workers = opt->local_workers;
    popt.task_timeout = opt->task_timeout;
    rc = fp_process_pool_new(&popt, &s.pool);
  } else {
    fp_thread_pool_options topt;
    fp_thread_pool_options_init(&topt);
    topt.max_workers = opt->local_workers;
    topt.thread_name_prefix = "fp-mpi";
    rc = fp_thread_pool_new(&topt, &s.pool);
  }
  pthread_mutex_init(&s.mu, NULL);
  pthread_cond_init(&s.cv, NULL);
  bool stopping = false;
  double quiet_since = fp_now();
  pthread_mutex_lock(&s.mu);
  for (;;) {
    bool progressed = false;
    pthread_mutex_unlock(&s.mu);
    int flag = 0;
    MPI_Message msg;
    MPI_Status st;
    MPI_Improbe(root, MPI_ANY_TAG, comm, &flag, &msg, &st);
    if (flag) {
      progressed = true;
      int len;
      void *buf = receive_matched(&msg, &st, &len);
      if (buf && st.MPI_TAG == TAG_UNIT && rc == 0) {
        start_unit(&s, buf, len);
      } else if (buf && st.MPI_TAG == TAG_UNIT) { /* no local pool: every unit fails */
        wire_header h;
        memcpy(&h, buf, sizeof h);
        char text[512];
        snprintf(text, sizeof text, "rank %d (%s): no process pool: %s", s.rank, s.host,
                 fp_strerror(rc));
        size_t n;
        void *reply = wire_failed_outcomes(h.count, h.key, rc, text, &n);
        if (reply) send_later(&s.sends, reply, n, root, TAG_RESULT, comm);
      } else if (buf && st.MPI_TAG == TAG_CANCEL && len >= (int)sizeof(uint64_t)) {
        uint64_t key;
        memcpy(&key, buf, sizeof key);
        cancel_unit(&s, key);
      } else if (st.MPI_TAG == TAG_SHUTDOWN) {
        stopping = true;
      }
      free(buf);
    }
    if (sends_progress(&s.sends)) progressed = true;
    pthread_mutex_lock(&s.mu);
    while (s.done) {
      unit *u = s.done;
      s.done = u->next;
      if (!s.done) s.done_tail = NULL;
      pthread_mutex_unlock(&s.mu);
      send_outcomes(&s, u);
      progressed = true;
      pthread_mutex_lock(&s.mu);
    }
    if (stopping && !s.running && !s.done && !s.sends) break;
    double now = fp_now();
    if (progressed) quiet_since = now;
    else poll_backoff(&s.cv, &s.mu, now - quiet_since);
  }
  pthread_mutex_unlock(&s.mu);
  if (s.pool) fp_executor_free(s.pool);
  pthread_cond_destroy(&s.cv);
  pthread_mutex_destroy(&s.mu);
  return 0;
}
