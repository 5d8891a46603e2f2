/* executor.c - the root side of futureproof-mpi: an fp_executor (on the
 * public executor interface) whose futures run on worker ranks. A submit
 * queues a unit of work (a task, or fp_map's chunk) and sends it at once
 * from the submitting thread to the least loaded worker with room
 * (tasks_per_worker in flight on each); a thread waiting on one of our
 * futures receives outcomes itself (vt->poll), so a round trip crosses no
 * thread. The progress thread does the rest: outcomes nobody waits for
 * (matched probes: any size), units that waited for room, cancels for
 * running futures that were cancelled, and at shutdown it tells every
 * worker to stop. MPI is called under mpi_mu, one thread at a time
 * (MPI_THREAD_SERIALIZED is enough). Also: comm and spawn mode, and
 * fp_mpi_init. */
#define _GNU_SOURCE
#include "futureproof_mpi.h"
#include "poll.h"
#include "serve.h"
#include "wire.h"

#include <futureproof/executor.h>
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct unit {
  struct unit *next;
  uint64_t key; /* its slot, and a generation above: a late reply is recognised */
  int worker;   /* -1: not sent (queued, or nothing left to send) */
  bool cancel_sent;
  size_t n;     /* the futures to run, fs[0..n) */
  fp_future **dropped; /* cancelled before they left: released by the progress thread */
  size_t ndropped;
  fp_future *fs[]; /* room for twice n: the dropped ones go to the second half */
} unit;

typedef struct mpi_executor {
  fp_executor *ex;
  MPI_Comm comm;
  bool spawned;       /* comm is an intercommunicator to spawned workers */
  int nworkers;
  int *rank;          /* each worker's rank in comm */
  int *load;          /* units in flight on each worker (mu) */
  int per_worker;
  unit **slot;        /* the units in flight, by slot (mu) */
  size_t nslots, inflight;
  uint32_t generation;
  pthread_t thread;
  pthread_mutex_t mpi_mu; /* held around MPI calls, one thread at a time; before mu */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  unit *queue, *queue_tail;          /* waiting for a slot (mu) */
  uint64_t *cancels;                 /* keys of units to cancel (mu) */
  size_t ncancels, cancel_room;
  bool shutting_down, finished, joined; /* (mu) */
  bool standing_by;                  /* the progress thread lets a waiter poll (mu) */
  pending_send *sends;               /* (mpi_mu) */
  _Atomic double polled_at;          /* when a waiter last polled (mx_poll) */
  void (*on_stream)(fp_future *f, const void *data, size_t len, void *userdata);
  void *stream_userdata;
} mpi_executor;

void fp_mpi_options_init(fp_mpi_options *opt) {
  if (!opt) return;
  memset(opt, 0, sizeof *opt);
  opt->tasks_per_worker = 4;
  opt->local_workers = 1;
  opt->max_workers = 1;
  opt->isolate = true;
}

/* A bad argument: FP_EINVAL with the message, and a warning line (the
 * library's convention). */
static int invalid(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int invalid(const char *fmt, ...) {
  char message[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  fp_log(FP_LOG_WARNING, "invalid argument: %s", message);
  return fp_executor_fail(FP_EINVAL, "%s", message);
}

/* What both constructors check first: out, then the options (NULL: the
 * defaults, put in *defaults). 0, or FP_EINVAL. */
static int check_arguments(const char *who, const fp_mpi_options **opt,
                           fp_mpi_options *defaults, fp_executor **out) {
  fp_mpi_options_init(defaults);
  if (!*opt) *opt = defaults;
  if (!out) return invalid("%s: out is NULL", who);
  *out = NULL;
  const fp_mpi_options *o = *opt;
  if (o->tasks_per_worker < 1 || o->local_workers < 1 || o->max_workers < 1 ||
      !(o->task_timeout >= 0))
    return invalid("%s: tasks_per_worker, local_workers and max_workers must be at least 1, "
                   "task_timeout not negative",
                   who);
  return 0;
}

/* ---- the executor interface (any thread) ---- */

static unit *assign(mpi_executor *m);
static void send_units(mpi_executor *m, unit *list);

static int queue_unit(fp_executor *ex, fp_future **fs, size_t n) {
  mpi_executor *m = fp_executor_impl(ex);
  fp_fn fn = fp_future_fn(fs[0]);
  if (!fp_task_id(fn))
    return invalid("futureproof-mpi: function %p is not registered (fp_task_register, "
                   "FP_TASK_REGISTER): it cannot cross to another process",
                   (void *)(uintptr_t)fn);
  unit *u = malloc(sizeof *u + 2 * n * sizeof *fs);
  if (!u) return fp_executor_fail(FP_ENOMEM, "futureproof-mpi: no memory for a unit of %zu", n);
  *u = (unit){.worker = -1, .n = n};
  memcpy(u->fs, fs, n * sizeof *fs);
  u->dropped = u->fs + n;
  pthread_mutex_lock(&m->mu);
  if (m->queue_tail) m->queue_tail->next = u;
  else m->queue = u;
  m->queue_tail = u;
  pthread_mutex_unlock(&m->mu);
  /* Send it from this thread if MPI is free (no hand-off to the progress
   * thread on a round trip's path); else the progress thread, busy with
   * MPI right now, sends it next. */
  if (pthread_mutex_trylock(&m->mpi_mu) == 0) {
    pthread_mutex_lock(&m->mu);
    unit *to_send = m->finished ? NULL : assign(m);
    pthread_mutex_unlock(&m->mu);
    send_units(m, to_send);
    pthread_mutex_unlock(&m->mpi_mu);
  }
  pthread_mutex_lock(&m->mu);
  if (!m->standing_by) pthread_cond_signal(&m->cv); /* it polls for the outcomes */
  pthread_mutex_unlock(&m->mu);
  return 0;
}

static int mx_submit(fp_executor *ex, fp_future *f, double timeout_s) {
  (void)timeout_s; /* the queue is unbounded; the task manager bounds what it submits */
  return queue_unit(ex, &f, 1);
}

static int mx_submit_chunk(fp_executor *ex, fp_future **fs, size_t n) {
  return queue_unit(ex, fs, n);
}

static void mx_cancel_running(fp_executor *ex, fp_future *f) {
  mpi_executor *m = fp_executor_impl(ex);
  pthread_mutex_lock(&m->mu);
  for (size_t s = 0; s < m->nslots; s++) {
    unit *u = m->slot[s];
    bool here = false;
    for (size_t i = 0; u && i < u->n && !here; i++) here = u->fs[i] == f;
    if (!here || u->cancel_sent) continue;
    if (m->ncancels == m->cancel_room) {
      size_t room = m->cancel_room ? 2 * m->cancel_room : 16;
      uint64_t *grown = realloc(m->cancels, room * sizeof *grown);
      if (!grown) break; /* the task then runs to its end */
      m->cancels = grown;
      m->cancel_room = room;
    }
    u->cancel_sent = true;
    m->cancels[m->ncancels++] = u->key;
    pthread_cond_signal(&m->cv);
    break;
  }
  pthread_mutex_unlock(&m->mu);
}

static void cancel_unit_futures(unit *u) {
  for (size_t i = 0; i < u->n; i++) {
    fp_future_cancel(u->fs[i]);
    fp_future_release(u->fs[i]);
  }
  free(u);
}

static bool mx_is_own_thread(const fp_executor *ex) {
  const mpi_executor *m = fp_executor_impl(ex);
  return pthread_equal(pthread_self(), m->thread);
}

static int mx_shutdown(fp_executor *ex, bool wait, bool cancel_futures, double timeout_s) {
  mpi_executor *m = fp_executor_impl(ex);
  pthread_mutex_lock(&m->mu);
  m->shutting_down = true;
  unit *cancelled = NULL;
  if (cancel_futures) { /* what no worker has yet */
    cancelled = m->queue;
    m->queue = m->queue_tail = NULL;
  }
  pthread_cond_broadcast(&m->cv);
  pthread_mutex_unlock(&m->mu);
  while (cancelled) {
    unit *next = cancelled->next;
    cancel_unit_futures(cancelled);
    cancelled = next;
  }
  if (!wait || mx_is_own_thread(ex)) return 0; /* a done callback cannot wait for itself */
  double deadline = timeout_s >= 0 ? fp_now() + timeout_s : 0;
  pthread_mutex_lock(&m->mu);
  while (!m->finished) {
    if (deadline && fp_now() >= deadline) {
      pthread_mutex_unlock(&m->mu);
      return fp_executor_fail(FP_ETIMEDOUT, "futureproof-mpi: units still running on workers");
    }
    struct timespec at;
    clock_gettime(CLOCK_REALTIME, &at);
    at.tv_nsec += 10 * 1000000L;
    if (at.tv_nsec >= 1000000000L) {
      at.tv_sec++;
      at.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&m->cv, &m->mu, &at);
  }
  bool join = !m->joined;
  m->joined = true;
  pthread_mutex_unlock(&m->mu);
  if (join) pthread_join(m->thread, NULL);
  return 0;
}

static void mx_destroy(fp_executor *ex) {
  mpi_executor *m = fp_executor_impl(ex);
  pthread_cond_destroy(&m->cv);
  pthread_mutex_destroy(&m->mu);
  pthread_mutex_destroy(&m->mpi_mu);
  free(m->slot);
  free(m->cancels);
  free(m->load);
  free(m->rank);
  free(m);
}

static void complete(mpi_executor *m, const unsigned char *msg, size_t len);

/* A task's stream, to on_stream (mpi_mu held: streams are delivered in
 * the order received, before the outcomes that follow them). */
static void deliver_stream(mpi_executor *m, const unsigned char *msg, size_t len) {
  wire_stream h;
  if (len < sizeof h || !m->on_stream) return;
  memcpy(&h, msg, sizeof h);
  size_t s = (size_t)(h.key & 0xffffffffu);
  fp_future *f = NULL;
  pthread_mutex_lock(&m->mu);
  if (s < m->nslots && m->slot[s] && m->slot[s]->key == h.key && h.index < m->slot[s]->n) {
    f = m->slot[s]->fs[h.index];
    fp_future_retain(f);
  }
  pthread_mutex_unlock(&m->mu);
  if (!f) return; /* its unit is gone (cancelled) */
  m->on_stream(f, msg + sizeof h, len - sizeof h, m->stream_userdata);
  fp_future_release(f);
}

/* One look for a message from the workers (mpi_mu held): a stream is
 * delivered here; outcomes are returned, to complete once MPI is let go
 * (done callbacks may submit). */
static bool receive_one(mpi_executor *m, unsigned char **outcomes, int *len) {
  int flag = 0;
  MPI_Message msg;
  MPI_Status st;
  *outcomes = NULL;
  MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, m->comm, &flag, &msg, &st);
  if (!flag) return false;
  unsigned char *buf = receive_matched(&msg, &st, len);
  if (buf && st.MPI_TAG == TAG_RESULT) {
    *outcomes = buf;
    return true;
  }
  if (buf && st.MPI_TAG == TAG_STREAM) deliver_stream(m, buf, (size_t)*len);
  free(buf);
  return true;
}

/* A thread waiting on one of our futures looks for outcomes itself: a
 * round trip then has no hand-off from the progress thread to the waiter.
 * Meanwhile the progress thread stands by (progress). */
static bool mx_poll(fp_executor *ex) {
  mpi_executor *m = fp_executor_impl(ex);
  atomic_store_explicit(&m->polled_at, fp_now(), memory_order_relaxed);
  if (pthread_mutex_trylock(&m->mpi_mu)) return false;
  int len = 0;
  unsigned char *buf = NULL;
  pthread_mutex_lock(&m->mu);
  bool open = !m->finished;
  unit *to_send = open ? assign(m) : NULL;
  pthread_mutex_unlock(&m->mu);
  send_units(m, to_send);
  bool flag = open && receive_one(m, &buf, &len);
  bool sent = sends_progress(&m->sends) || m->sends; /* one in flight wants progress */
  pthread_mutex_unlock(&m->mpi_mu);
  if (buf) complete(m, buf, (size_t)len);
  free(buf);
  return flag || to_send || sent;
}

static const fp_executor_vtable mpi_vtable = {
    .version = FP_EXECUTOR_INTERFACE_VERSION,
    .kind = "MPI",
    .submit = mx_submit,
    .submit_chunk = mx_submit_chunk,
    .shutdown = mx_shutdown,
    .is_own_thread = mx_is_own_thread,
    .destroy = mx_destroy,
    .cancel_running = mx_cancel_running,
    .shares_memory = false,
    .poll = mx_poll,
};

/* ---- the progress thread ---- */

/* A unit as a message (it only reads the unit: a cancel may be looking
 * at it meanwhile). NULL on ENOMEM. */
static void *encode_unit(const unit *u, size_t *len) {
  size_t size = sizeof(wire_header);
  for (size_t i = 0; i < u->n; i++) {
    size += sizeof(wire_task);
    if (fp_future_carries_bytes(u->fs[i]))
      size += wire_padded(((const fp_bytes *)fp_future_arg(u->fs[i]))->size);
  }
  unsigned char *msg = size <= INT_MAX ? calloc(1, size) : NULL;
  if (!msg) return NULL;
  wire_header h = {WIRE_MAGIC, (uint32_t)u->n, u->key};
  memcpy(msg, &h, sizeof h);
  size_t at = sizeof h;
  for (size_t i = 0; i < u->n; i++) {
    fp_future *f = u->fs[i];
    wire_task t = {.fn_id = fp_task_id(fp_future_fn(f)), .kind = KIND_VALUE};
    const fp_bytes *b = NULL;
    if (fp_future_carries_bytes(f)) {
      b = fp_future_arg(f);
      t.kind = KIND_BYTES;
      t.value = b->size;
    } else {
      t.value = (uint64_t)(uintptr_t)fp_future_arg(f);
    }
    memcpy(msg + at, &t, sizeof t);
    at += sizeof t;
    if (b) {
      memcpy(msg + at, b->data, b->size);
      at += wire_padded(b->size);
    }
  }
  *len = size;
  return msg;
}

/* Before a unit leaves (mu held): its futures start running; those
 * cancelled while it was queued move to the dropped half, the rest keep
 * their order. */
static void start_running(unit *u) {
  size_t kept = 0;
  for (size_t i = 0; i < u->n; i++) {
    if (fp_future_set_running(u->fs[i]) == 0)
      u->fs[kept++] = u->fs[i];
    else
      u->dropped[u->ndropped++] = u->fs[i];
  }
  u->n = kept;
}

/* Free a finished unit's slot; the unit, or NULL if the key is stale. */
static unit *take_slot(mpi_executor *m, uint64_t key) {
  size_t s = (size_t)(key & 0xffffffffu);
  pthread_mutex_lock(&m->mu);
  unit *u = s < m->nslots && m->slot[s] && m->slot[s]->key == key ? m->slot[s] : NULL;
  if (u) {
    m->slot[s] = NULL;
    m->load[u->worker]--;
    m->inflight--;
  }
  pthread_mutex_unlock(&m->mu);
  return u;
}

/* A worker's outcomes: complete the unit's futures. */
static void complete(mpi_executor *m, const unsigned char *msg, size_t len) {
  wire_header h;
  if (len < sizeof h) return;
  memcpy(&h, msg, sizeof h);
  unit *u = h.magic == WIRE_MAGIC ? take_slot(m, h.key) : NULL;
  if (!u) return; /* malformed, or for a unit that is gone */
  size_t at = sizeof h;
  for (size_t i = 0; i < u->n; i++) {
    fp_future *f = u->fs[i];
    wire_outcome oc;
    if (i >= h.count || len - at < sizeof oc) {
      fp_future_set_error(f, FP_EBROKEN, "futureproof-mpi: worker rank %d sent a short reply",
                          m->rank[u->worker]);
      fp_future_release(f);
      continue;
    }
    memcpy(&oc, msg + at, sizeof oc);
    at += sizeof oc;
    bool has_data = oc.code != 0 || oc.kind == KIND_BYTES;
    size_t n = has_data ? (size_t)oc.value : 0;
    if (len - at < wire_padded(n)) n = len - at; /* a short reply: what there is */
    const unsigned char *data = msg + at;
    at += wire_padded(n) <= len - at ? wire_padded(n) : len - at;
    if (oc.code) {
      fp_future_set_error(f, oc.code, "%.*s", (int)n, (const char *)data);
    } else if (oc.kind == KIND_BYTES) {
      fp_bytes *b = fp_bytes_copy(data, n);
      if (b) fp_future_set_result(f, b);
      else fp_future_set_error(f, FP_ENOMEM, "futureproof-mpi: no memory for %zu bytes", n);
    } else {
      fp_future_set_result(f, (void *)(uintptr_t)oc.value);
    }
    fp_future_release(f);
  }
  free(u);
}

/* Units from the queue into free slots, on the least loaded worker with
 * room; returns the list to send (mu held). */
static unit *assign(mpi_executor *m) {
  unit *out = NULL, **tail = &out;
  while (m->queue && m->inflight < m->nslots) {
    int best = -1;
    for (int w = 0; w < m->nworkers; w++)
      if (m->load[w] < m->per_worker && (best < 0 || m->load[w] < m->load[best])) best = w;
    if (best < 0) break;
    size_t s = 0;
    while (m->slot[s]) s++;
    unit *u = m->queue;
    m->queue = u->next;
    if (!m->queue) m->queue_tail = NULL;
    u->next = NULL;
    start_running(u);
    *tail = u; /* sent, or only its dropped futures released */
    tail = &u->next;
    if (!u->n) continue;
    u->worker = best;
    u->key = (uint64_t)s | (uint64_t)++m->generation << 32;
    m->slot[s] = u;
    m->load[best]++;
    m->inflight++;
  }
  return out;
}

static void send_units(mpi_executor *m, unit *list) {
  while (list) {
    unit *u = list;
    list = u->next;
    for (size_t i = 0; i < u->ndropped; i++) fp_future_release(u->dropped[i]);
    if (u->worker < 0) { /* every future of it was cancelled */
      free(u);
      continue;
    }
    size_t len = 0;
    void *msg = encode_unit(u, &len);
    if (msg) {
      send_later(&m->sends, msg, len, m->rank[u->worker], TAG_UNIT, m->comm);
      continue;
    }
    take_slot(m, u->key); /* no memory for the message: its futures fail */
    for (size_t i = 0; i < u->n; i++) {
      fp_future_set_error(u->fs[i], FP_ENOMEM, "futureproof-mpi: no memory to send a unit");
      fp_future_release(u->fs[i]);
    }
    free(u);
  }
}

static void send_cancels(mpi_executor *m, const uint64_t *keys, size_t n) {
  for (size_t i = 0; i < n; i++) {
    pthread_mutex_lock(&m->mu);
    size_t s = (size_t)(keys[i] & 0xffffffffu);
    int worker = s < m->nslots && m->slot[s] && m->slot[s]->key == keys[i] ? m->slot[s]->worker : -1;
    pthread_mutex_unlock(&m->mu);
    uint64_t *msg = worker >= 0 ? malloc(sizeof *msg) : NULL;
    if (!msg) continue; /* it finished meanwhile */
    *msg = keys[i];
    send_later(&m->sends, msg, sizeof *msg, m->rank[worker], TAG_CANCEL, m->comm);
  }
}

static void finish(mpi_executor *m) {
  for (int w = 0; w < m->nworkers; w++) {
    char *none = malloc(1);
    if (none) send_later(&m->sends, none, 0, m->rank[w], TAG_SHUTDOWN, m->comm);
  }
  while (m->sends) sends_progress(&m->sends);
  if (m->spawned) MPI_Comm_disconnect(&m->comm);
  else MPI_Comm_free(&m->comm);
}

static void *progress(void *arg) {
  mpi_executor *m = arg;
  poll_thread_init();
  double quiet_since = fp_now();
  uint64_t *keys = NULL;
  size_t keys_room = 0;
  for (;;) {
    pthread_mutex_lock(&m->mpi_mu);
    pthread_mutex_lock(&m->mu);
    unit *to_send = assign(m);
    size_t ncancels = m->ncancels;
    if (ncancels > keys_room) {
      uint64_t *grown = realloc(keys, ncancels * sizeof *grown);
      if (grown) {
        keys = grown;
        keys_room = ncancels;
      } else {
        ncancels = keys_room;
      }
    }
    if (ncancels) memcpy(keys, m->cancels, ncancels * sizeof *keys);
    if (m->ncancels > ncancels)
      memmove(m->cancels, m->cancels + ncancels, (m->ncancels - ncancels) * sizeof *keys);
    m->ncancels -= ncancels;
    bool done = m->shutting_down && !m->queue && !m->inflight;
    pthread_mutex_unlock(&m->mu);
    bool progressed = to_send || ncancels;
    send_units(m, to_send);
    send_cancels(m, keys, ncancels);
    int len = 0;
    unsigned char *buf = NULL;
    bool flag = receive_one(m, &buf, &len);
    if (sends_progress(&m->sends)) progressed = true;
    bool sending = m->sends != NULL;
    if (done && !flag) { /* MPI stays ours: a submit racing with shutdown sends nothing */
      free(keys);
      finish(m);
      pthread_mutex_lock(&m->mu);
      m->finished = true;
      pthread_cond_broadcast(&m->cv);
      pthread_mutex_unlock(&m->mu);
      pthread_mutex_unlock(&m->mpi_mu);
      return NULL;
    }
    pthread_mutex_unlock(&m->mpi_mu);
    if (buf) complete(m, buf, (size_t)len); /* done callbacks may submit: MPI is free */
    free(buf);
    progressed = progressed || flag;
    pthread_mutex_lock(&m->mu);
    double now = fp_now();
    if (progressed) {
      quiet_since = now;
    } else if (sending) { /* a large message moves only while someone calls MPI */
      quiet_since = now;
      poll_backoff(&m->cv, &m->mu, 0);
    } else if (now - atomic_load_explicit(&m->polled_at, memory_order_relaxed) < 100e-6 &&
               !m->shutting_down) {
      /* A waiter polls: stand by, and look again within a millisecond
       * (a submit does not wake us; a cancel or a shutdown does). */
      m->standing_by = true;
      poll_backoff(&m->cv, &m->mu, POLL_MAX_SLEEP_S * 10);
      m->standing_by = false;
      quiet_since = fp_now();
    } else if (!m->inflight && !m->queue && !m->ncancels && !sending && !m->shutting_down) {
      pthread_cond_wait(&m->cv, &m->mu); /* nothing out there: nothing to poll */
      quiet_since = fp_now();
    } else {
      poll_backoff(&m->cv, &m->mu, now - quiet_since);
    }
    pthread_mutex_unlock(&m->mu);
  }
}

/* ---- making one ---- */

/* The root could not make its executor: the workers, serving already,
 * are told to stop (from this thread: there is no progress thread). */
static void abandon(MPI_Comm comm, bool spawned, const int *ranks, int nworkers) {
  for (int w = 0; w < nworkers; w++) MPI_Send(NULL, 0, MPI_BYTE, ranks[w], TAG_SHUTDOWN, comm);
  if (spawned) MPI_Comm_disconnect(&comm);
  else MPI_Comm_free(&comm);
}

static int start(MPI_Comm comm, bool spawned, int *ranks, int nworkers, const fp_mpi_options *o,
                 fp_executor **out) {
  mpi_executor *m = calloc(1, sizeof *m);
  size_t nslots = (size_t)nworkers * (size_t)o->tasks_per_worker;
  int rc = 0;
  if (m) {
    m->load = calloc((size_t)nworkers, sizeof *m->load);
    m->slot = calloc(nslots, sizeof *m->slot);
    m->rank = ranks;
  }
  if (!m || !m->load || !m->slot) {
    rc = fp_executor_fail(FP_ENOMEM, "futureproof-mpi: no memory for an executor");
  } else {
    m->comm = comm;
    m->spawned = spawned;
    m->nworkers = nworkers;
    m->per_worker = o->tasks_per_worker;
    m->on_stream = o->on_stream;
    m->stream_userdata = o->stream_userdata;
    m->nslots = nslots;
    pthread_mutex_init(&m->mpi_mu, NULL);
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    rc = fp_executor_new(&mpi_vtable, m, nworkers * o->local_workers, &m->ex);
    if (!rc && pthread_create(&m->thread, NULL, progress, m)) {
      abandon(comm, spawned, ranks, nworkers);
      m->finished = m->joined = true; /* shutdown finds no thread to wait for */
      fp_executor_free(m->ex);        /* destroys m, and ranks with it */
      return fp_executor_fail(FP_ENOMEM, "futureproof-mpi: cannot start the progress thread");
    }
    if (rc) {
      pthread_cond_destroy(&m->cv);
      pthread_mutex_destroy(&m->mu);
      pthread_mutex_destroy(&m->mpi_mu);
    }
  }
  if (rc) {
    abandon(comm, spawned, ranks, nworkers);
    if (m) {
      free(m->load);
      free(m->slot);
    }
    free(m);
    free(ranks);
    return rc;
  }
  *out = m->ex;
  return 0;
}

int fp_mpi_comm_executor_new(MPI_Comm comm, int root, const fp_mpi_options *opt,
                             fp_executor **out) {
  fp_mpi_options defaults;
  const fp_mpi_options *o = opt;
  int rc = check_arguments("fp_mpi_comm_executor_new", &o, &defaults, out);
  if (rc) return rc;
  int size, me;
  MPI_Comm_size(comm, &size);
  MPI_Comm_rank(comm, &me);
  if (root < 0 || root >= size || size < 2)
    return invalid("fp_mpi_comm_executor_new: root %d of %d ranks (a comm mode executor needs "
                   "at least two)",
                   root, size);
  MPI_Comm own;
  MPI_Comm_dup(comm, &own); /* our messages never meet the program's */
  if (me != root) {
    rc = fp__mpi_serve(own, root, o);
    MPI_Comm_free(&own);
    return rc;
  }
  int *ranks = malloc((size_t)(size - 1) * sizeof *ranks);
  if (!ranks) return fp_executor_fail(FP_ENOMEM, "futureproof-mpi: no memory");
  for (int r = 0, k = 0; r < size; r++)
    if (r != root) ranks[k++] = r;
  return start(own, false, ranks, size - 1, o, out);
}

#define WORKER_FLAG "--futureproof-mpi-worker"

int fp_mpi_spawn_executor_new(const fp_mpi_options *opt, fp_executor **out) {
  fp_mpi_options defaults;
  const fp_mpi_options *o = opt;
  int rc = check_arguments("fp_mpi_spawn_executor_new", &o, &defaults, out);
  if (rc) return rc;
  char self[PATH_MAX];
  const char *program = o->worker_program;
  if (!program) {
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return fp_executor_fail(-errno, "futureproof-mpi: cannot find this program");
    self[n] = 0;
    program = self;
  }
  char local[32], timeout[64];
  snprintf(local, sizeof local, "%d", o->local_workers);
  snprintf(timeout, sizeof timeout, "%.17g", o->task_timeout);
  char *args[] = {WORKER_FLAG, local, timeout, o->isolate ? "1" : "0", NULL};
  MPI_Comm inter;
  int *errs = calloc((size_t)o->max_workers, sizeof *errs);
  int *ranks = malloc((size_t)o->max_workers * sizeof *ranks);
  if (!errs || !ranks) {
    free(errs);
    free(ranks);
    return fp_executor_fail(FP_ENOMEM, "futureproof-mpi: no memory");
  }
  MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
  rc = MPI_Comm_spawn(program, args, o->max_workers, MPI_INFO_NULL, 0, MPI_COMM_SELF, &inter,
                          errs);
  int bad = 0;
  for (int i = 0; i < o->max_workers; i++) bad += errs[i] != MPI_SUCCESS;
  free(errs);
  if (rc != MPI_SUCCESS || bad) {
    char text[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, text, &len);
    free(ranks);
    return fp_executor_fail(FP_ENOMEM, "futureproof-mpi: MPI_Comm_spawn of %d %s failed: %s",
                            o->max_workers, program, rc != MPI_SUCCESS ? text : "some did not start");
  }
  for (int i = 0; i < o->max_workers; i++) ranks[i] = i;
  return start(inter, true, ranks, o->max_workers, o, out);
}

int fp_mpi_init(int *argc, char ***argv) {
  int ready = 0, provided = 0;
  MPI_Initialized(&ready);
  if (!ready)
    MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
  else
    MPI_Query_thread(&provided);
  if (provided < MPI_THREAD_SERIALIZED)
    return invalid("futureproof-mpi needs MPI_THREAD_SERIALIZED (this MPI gives level %d)",
                   provided);
  MPI_Comm parent;
  MPI_Comm_get_parent(&parent);
  if (parent == MPI_COMM_NULL) return 0;
  /* Started by spawn mode: serve, and go. */
  fp_mpi_options o;
  fp_mpi_options_init(&o);
  for (int i = 1; argc && argv && i + 3 < *argc; i++)
    if (!strcmp((*argv)[i], WORKER_FLAG)) {
      o.local_workers = atoi((*argv)[i + 1]) > 0 ? atoi((*argv)[i + 1]) : 1;
      o.task_timeout = strtod((*argv)[i + 2], NULL);
      o.isolate = strcmp((*argv)[i + 3], "0") != 0;
    }
  fp__mpi_serve(parent, 0, &o);
  MPI_Comm_disconnect(&parent);
  MPI_Finalize();
  exit(0);
}
