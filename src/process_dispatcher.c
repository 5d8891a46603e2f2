/* process_dispatcher.c - the process pool's dispatcher thread: it hands
 * queued jobs to worker processes over their sockets, reads the replies
 * without ever blocking on one worker, starts workers through the fork
 * server (backing off when it cannot), and turns every way a worker can
 * fail (crash, exit, timeout, cancel, a broken reply) into a named error
 * on the futures concerned, replacing the worker. */
#define _GNU_SOURCE
#include "process_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

enum { WORKER_INBUF = 65536 };
/* Jobs sent to a worker ahead of its replies: while it runs one, the next
 * waits in its socket, so it never sleeps between two. Only where jobs are
 * short (its last one and the one running, under PIPELINE_MAX_JOB_S), so
 * that a job never waits long behind another while a worker is free; and
 * only small value jobs. */
enum { PIPELINE_DEPTH = 2, PIPELINE_MAX_ITEMS = 2048 };
#define PIPELINE_MAX_JOB_S 1e-3
#define DISPATCHER_SPIN_S 50e-6
/* When a worker cannot be started (fork fails: a process limit, no
 * memory), try again after a back-off that doubles up to a second; with no
 * worker at all for SPAWN_GIVE_UP_S, fail what is queued rather than keep
 * it for ever. */
#define SPAWN_BACKOFF_MIN_S 0.01
#define SPAWN_BACKOFF_MAX_S 1.0
#define SPAWN_GIVE_UP_S 1.0
/* How long a dead worker's exit status may take before it is buried
 * without one. */
#define LATE_STATUS_S 2.0

static _Thread_local process_pool *dispatcher_of; /* set in the dispatcher thread */

bool fp__pp_in_dispatcher(const process_pool *p) { return dispatcher_of == p; }

/* Latency statistics or a trace want each item's start (a clock read). */
static bool observed(process_pool *p) {
  return atomic_load_explicit(&p->base.lat, memory_order_relaxed) || fp__trace_on();
}

/* ---- settling futures ---- */

static void settle_future(process_pool *p, fp_future *f, int code, const char *msg) {
  if (code == FP_ECANCELED && !fp_future_running(f))
    fp_future_cancel(f); /* never started: plainly cancelled */
  else
    fp__future_fail_static(f, code, msg);
  atomic_fetch_add(&p->completed, 1);
  fp_future_release(f);
}

/* Fail the items of a job that have no outcome yet. The one that was
 * running gets (code, msg); the ones after it never ran. */
static void settle_job(process_pool *p, job *j, int code, const char *msg) {
  if (!j) return;
  for (uint32_t i = j->replied; i < j->count; i++)
    settle_future(p, j->fs[i], i == j->replied ? code : FP_ECANCELED,
                  i == j->replied ? msg : "not run: an earlier item of its chunk failed");
  fp__free(j);
}

void fp__pp_settle_list(process_pool *p, job *list, int code, const char *msg) {
  while (list) {
    job *next = list->next;
    settle_job(p, list, code, msg);
    list = next;
  }
}

/* Jobs sent to a worker that never started (it died or was killed while
 * running the one before): back to the front of the queue, in order, or
 * settled if the pool is broken or cancelling. */
static void take_back(process_pool *p, job *list, int code, const char *msg) {
  if (!list) return;
  job *last = list;
  size_t n = 1;
  for (; last->next; last = last->next) n++;
  pthread_mutex_lock(&p->mu);
  bool broken = atomic_load_explicit(&p->base.broken, memory_order_acquire);
  bool keep = !code && !broken && !atomic_load(&p->base.cancel_all);
  if (keep) {
    last->next = p->head;
    p->head = list;
    if (!p->tail) p->tail = last;
    p->queued += n;
  }
  pthread_mutex_unlock(&p->mu);
  if (keep) return;
  if (!code) {
    code = broken ? FP_EBROKEN : FP_ECANCELED;
    msg = broken ? p->base.broken_message : "cancelled by shutdown";
  }
  for (job *j = list, *next; j; j = next) {
    next = j->next;
    for (uint32_t i = 0; i < j->count; i++) settle_future(p, j->fs[i], code, msg);
    fp__free(j);
  }
}

/* Detach a worker's jobs: the running one is returned, the ones behind it
 * are taken back (or settled with code, msg if code is not 0). */
static job *detach_jobs(process_pool *p, worker *w, int code, const char *msg) {
  job *running = w->job;
  w->job = w->job_tail = NULL;
  w->sent = 0;
  if (!running) return NULL;
  job *rest = running->next;
  running->next = NULL;
  take_back(p, rest, code, msg);
  return running;
}

job *fp__pp_detach_queue(process_pool *p) { /* mu held */
  job *list = p->head;
  p->head = p->tail = NULL;
  p->queued = 0;
  return list;
}

/* ---- workers ---- */

static const char *signal_name(int sig) {
  switch (sig) {
  case SIGSEGV: return "SIGSEGV";
  case SIGABRT: return "SIGABRT";
  case SIGKILL: return "SIGKILL";
  case SIGTERM: return "SIGTERM";
  case SIGBUS: return "SIGBUS";
  case SIGFPE: return "SIGFPE";
  case SIGILL: return "SIGILL";
  case SIGINT: return "SIGINT";
  case SIGPIPE: return "SIGPIPE";
  default: return "a signal";
  }
}

static void describe_death(const process_pool *p, const worker *w, char *buf, size_t len) {
  if (!w->exited)
    snprintf(buf, len, "worker %d died (its exit status did not arrive)", (int)w->pid);
  else if (WIFSIGNALED(w->status))
    snprintf(buf, len, "worker %d was killed by %s (signal %d)", (int)w->pid,
             signal_name(WTERMSIG(w->status)), WTERMSIG(w->status));
  else if (WEXITSTATUS(w->status) == WORKER_EXIT_NOMEM)
    snprintf(buf, len, "worker %d ran out of memory reading its task (memory_limit %zu bytes)",
             (int)w->pid, p->opt.memory_limit);
  else
    snprintf(buf, len, "worker %d exited with status %d", (int)w->pid, WEXITSTATUS(w->status));
}

static void break_pool(process_pool *p, const char *why);

/* Forget what was to be sent to a worker (it died, or was killed). */
static void drop_output(worker *w) {
  fp__free(w->out_block); /* the iovecs live in it too */
  w->out = NULL;
  w->out_block = NULL;
  w->out_count = w->out_next = 0;
}

/* A worker is gone (EOF seen, and its status known or late): settle its job
 * with a crash error naming how it died. */
static void bury(process_pool *p, worker *w) {
  if (w->fd >= 0) close(w->fd);
  w->fd = -1;
  if (w->job) {
    char msg[160];
    describe_death(p, w, msg, sizeof msg);
    job *j = detach_jobs(p, w, 0, NULL);
    fp__run_context_set(w->pid, w->item_started_ns);
    settle_job(p, j, FP_ECRASHED, msg);
    fp__run_context_set(0, 0);
    fp_log(FP_LOG_WARNING, "process pool: %s while running a task", msg);
    if (p->opt.break_on_crash) break_pool(p, msg);
  }
  /* remove the slot */
  drop_output(w);
  fp_bytes_free(w->payload);
  fp__free(w->in);
  *w = p->workers[--p->nworkers];
}

static void mark_dead(worker *w) {
  if (w->state != W_DEAD) w->died_at = fp__now();
  w->state = W_DEAD;
  w->eof = true;
  if (w->fd >= 0) close(w->fd);
  w->fd = -1;
  drop_output(w);
}

/* A signal to a worker's process group: the worker and what its task
 * started (a worker that has not made its group yet: itself). */
static void signal_worker(const worker *w, int sig) {
  if (kill(-w->pid, sig)) kill(w->pid, sig);
}

/* Kill a worker now and settle its running job with (code, msg); the jobs
 * sent behind it go to another worker, or get (code, msg) too if `all`. */
static void kill_worker(process_pool *p, worker *w, int sig, int code, const char *msg,
                        bool all) {
  signal_worker(w, sig);
  job *j = detach_jobs(p, w, all ? code : 0, msg);
  fp__run_context_set(w->pid, w->item_started_ns);
  settle_job(p, j, code, msg);
  fp__run_context_set(0, 0);
  mark_dead(w);
}

/* Broken: submits are refused from now on (the common refusal); what is
 * queued or running fails with FP_EBROKEN. */
static void break_pool(process_pool *p, const char *why) {
  fp_executor_break(&p->base, "the process pool is broken: %s", why);
  const char *msg = p->base.broken_message;
  pthread_mutex_lock(&p->mu);
  job *queued = fp__pp_detach_queue(p);
  pthread_mutex_unlock(&p->mu);
  fp__pp_settle_list(p, queued, FP_EBROKEN, msg);
  for (size_t i = 0; i < p->nworkers; i++)
    if (p->workers[i].state != W_DEAD)
      kill_worker(p, &p->workers[i], SIGKILL, FP_EBROKEN, msg, true);
}

/* Room for one more worker: its slot, its poll entry (the dispatcher's loop
 * then never allocates) and its input buffer. NULL on ENOMEM. */
worker *fp__pp_add_worker(process_pool *p, pid_t pid, int fd) {
  if (p->nworkers == p->workers_room) {
    size_t room = p->workers_room ? 2 * p->workers_room : 8;
    struct pollfd *fds = fp__realloc(p->fds, (room + 2) * sizeof *fds);
    if (!fds) return NULL;
    p->fds = fds;
    worker *grown = fp__realloc(p->workers, room * sizeof *grown);
    if (!grown) return NULL;
    p->workers = grown;
    p->workers_room = room;
  }
  char *in = fp__malloc(WORKER_INBUF);
  if (!in) return NULL;
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  worker *w = &p->workers[p->nworkers++];
  memset(w, 0, sizeof *w);
  w->in = in;
  w->pid = pid;
  w->fd = fd;
  w->state = W_STARTING;
  w->last_job_s = -1;
  return w;
}

static worker *find_pid(process_pool *p, pid_t pid) {
  for (size_t i = 0; i < p->nworkers; i++)
    if (p->workers[i].pid == pid) return &p->workers[i];
  return NULL;
}

/* A worker could not be started: try again after a back-off, not at once
 * (a fork that fails now fails the next microsecond too). */
static void spawn_failed(process_pool *p, const char *why) {
  double now = fp__now();
  if (!p->spawn_failing_since) {
    p->spawn_failing_since = now;
    p->spawn_backoff = SPAWN_BACKOFF_MIN_S;
    snprintf(p->spawn_error, sizeof p->spawn_error, "%s", why);
    fp_log(FP_LOG_WARNING, "process pool: cannot start a worker: %s (trying again, backing off)",
           why);
  } else if (p->spawn_backoff < SPAWN_BACKOFF_MAX_S) {
    p->spawn_backoff *= 2;
    if (p->spawn_backoff > SPAWN_BACKOFF_MAX_S) p->spawn_backoff = SPAWN_BACKOFF_MAX_S;
  }
  p->spawn_retry_at = now + p->spawn_backoff;
}

static void spawn_worked(process_pool *p) {
  if (p->spawn_failing_since)
    fp_log(FP_LOG_INFO, "process pool: workers start again after %.1f s",
           fp__now() - p->spawn_failing_since);
  p->spawn_failing_since = 0;
  p->spawn_retry_at = 0;
}

/* A worker from the fork server (CTL_WORKER): take it, or kill it when
 * there is no memory to keep it. */
static void worker_arrived(process_pool *p, pid_t pid, int fd) {
  if (fd >= 0 && fp__pp_add_worker(p, pid, fd)) {
    spawn_worked(p);
    return;
  }
  if (fd >= 0) close(fd);
  kill(pid, SIGKILL);
  spawn_failed(p, "no memory in the parent to keep a new worker");
}

/* ---- worker sockets ---- */

/* The outcome of parsing what a worker sent: all of it taken (or not
 * whole yet), or a stream that is not replies, or no memory for one. */
enum { PARSED_MORE = 0, PARSED_CORRUPT = -EPROTO, PARSED_NOMEM = FP_ENOMEM };

static size_t buffered(const worker *w) { return w->in_len - w->in_pos; }

/* A reply settled: the next item, the next job, or an idle worker. */
static void item_settled(process_pool *p, worker *w) {
  w->job->replied++;
  if (p->opt.task_timeout > 0) w->deadline = fp__now() + p->opt.task_timeout;
  if (w->job->replied < w->job->count) return;
  job *done = w->job;
  FP__QUEUE_SHIFT(w->job, w->job_tail, next);
  w->sent--;
  fp__free(done);
  w->jobs_done++;
  double now = fp__now();
  w->last_job_s = now - w->job_started;
  w->job_started = now;
  if (w->job) { /* the next one, sent ahead, runs already */
    if (fp__future_cancel_requested(w->job->fs[0])) /* cancelled while it waited */
      kill_worker(p, w, SIGKILL, FP_ECANCELED, "cancelled while running: its worker was killed",
                  false);
    return;
  }
  bool retiring = p->opt.max_tasks_per_child && w->jobs_done >= p->opt.max_tasks_per_child;
  if (retiring) /* it exits by itself: nothing to settle */
    mark_dead(w);
  else
    w->state = W_IDLE;
}

static void settle_current(process_pool *p, worker *w, int code, const char *msg, void *value) {
  fp_future *f = w->job->fs[w->job->replied];
  fp__run_context_set(w->pid, w->item_started_ns); /* its row and start in statistics, traces */
  if (code)
    fp__future_fail_static(f, code, msg);
  else
    fp_future_set_result(f, value); /* a bytes result: the future owns it */
  fp__run_context_set(0, 0);
  if (observed(p)) w->item_started_ns = fp__now_ns(); /* the next item of the job starts */
  atomic_fetch_add(&p->completed, 1);
  fp_future_release(f);
  item_settled(p, w);
}

/* One record from the buffer, if it is all there; PARSED_MORE when it is
 * not (nothing consumed), 1 when one was taken. */
static int parse_record(process_pool *p, worker *w) {
  const char *at = w->in + w->in_pos;
  if (w->state == W_STARTING) {
    hello h;
    if (buffered(w) < sizeof h) return PARSED_MORE;
    memcpy(&h, at, sizeof h);
    if (h.magic != WIRE_MAGIC) return PARSED_CORRUPT;
    w->in_pos += sizeof h;
    if (h.code) {
      char why[96];
      snprintf(why, sizeof why, "a worker's initializer failed with %d (%s)", h.code,
               fp_err_name(h.code));
      mark_dead(w);
      break_pool(p, why);
      return 1;
    }
    w->state = W_IDLE;
    return 1;
  }
  if (w->state != W_BUSY) return PARSED_CORRUPT; /* an idle worker only speaks by dying */
  reply_header h;
  if (buffered(w) < sizeof h) return PARSED_MORE;
  memcpy(&h, at, sizeof h);
  const job *j = w->job;
  if (h.magic != WIRE_MAGIC || h.seq != j->seq || h.item != j->replied ||
      h.msg_len > REPLY_MESSAGE_MAX || (!h.code && h.msg_len))
    return PARSED_CORRUPT; /* not what a worker sends */
  if (h.code) {
    if (buffered(w) < sizeof h + h.msg_len) return PARSED_MORE;
    char msg[REPLY_MESSAGE_MAX + 1];
    memcpy(msg, at + sizeof h, h.msg_len);
    msg[h.msg_len] = 0;
    w->in_pos += sizeof h + h.msg_len;
    settle_current(p, w, h.code, msg, NULL);
  } else if (j->kind == JOB_BYTES) {
    fp_bytes *b = h.value <= SIZE_MAX ? fp_bytes_new((size_t)h.value) : NULL;
    if (!b) return PARSED_NOMEM;
    w->in_pos += sizeof h;
    w->payload = b; /* read by take_payload */
    w->payload_got = 0;
  } else {
    w->in_pos += sizeof h;
    settle_current(p, w, 0, NULL, (void *)(uintptr_t)h.value);
  }
  return 1;
}

/* Move buffered bytes into the bytes result being read; settle it once
 * whole. */
static void take_payload(process_pool *p, worker *w) {
  size_t want = w->payload->size - w->payload_got;
  size_t n = buffered(w) < want ? buffered(w) : want;
  memcpy(w->payload->data + w->payload_got, w->in + w->in_pos, n);
  w->in_pos += n;
  w->payload_got += n;
  if (w->payload_got < w->payload->size) return;
  fp_bytes *b = w->payload;
  w->payload = NULL;
  settle_current(p, w, 0, NULL, b);
}

/* Settle every whole record in the buffer. */
static int parse_buffer(process_pool *p, worker *w) {
  while (w->state != W_DEAD && (buffered(w) || (w->payload && !w->payload->size))) {
    if (w->payload) {
      take_payload(p, w);
      continue;
    }
    int rc = parse_record(p, w);
    if (rc <= 0) return rc;
  }
  return PARSED_MORE;
}

/* Read what the socket holds now: into the bytes result being read (a
 * large payload goes straight there), or into the buffer. The bytes read,
 * 0 at EOF, FP_EAGAIN when there is nothing now, -errno on an error. */
static ssize_t read_some(worker *w) {
  ssize_t n;
  if (w->payload && !buffered(w)) {
    do
      n = read(w->fd, w->payload->data + w->payload_got, w->payload->size - w->payload_got);
    while (n < 0 && errno == EINTR);
    if (n > 0) w->payload_got += (size_t)n;
  } else {
    if (w->in_pos) { /* keep the unparsed part at the front */
      memmove(w->in, w->in + w->in_pos, buffered(w));
      w->in_len -= w->in_pos;
      w->in_pos = 0;
    }
    do
      n = read(w->fd, w->in + w->in_len, WORKER_INBUF - w->in_len);
    while (n < 0 && errno == EINTR);
    if (n > 0) w->in_len += (size_t)n;
  }
  if (n < 0) return errno == EWOULDBLOCK ? FP_EAGAIN : -errno;
  return n;
}

/* Read and settle what a worker sent, without ever waiting for more: a
 * worker that stops mid-reply holds up only its own task. Bounded, so that
 * a worker flooding its socket cannot starve the others. */
static void worker_readable(process_pool *p, worker *w) {
  for (int reads = 0; reads < 64 && w->state != W_DEAD; reads++) {
    if (w->payload && w->payload_got == w->payload->size) take_payload(p, w);
    int rc = parse_buffer(p, w);
    if (rc == PARSED_CORRUPT || rc == PARSED_NOMEM || buffered(w) == WORKER_INBUF) {
      char msg[200];
      snprintf(msg, sizeof msg,
               rc == PARSED_NOMEM
                   ? "no memory in the parent for worker %d's reply: worker killed"
                   : "worker %d sent something that is not a reply (a task wrote to the pool's "
                     "socket?): worker killed",
               (int)w->pid);
      if (rc != PARSED_NOMEM) fp_log(FP_LOG_WARNING, "process pool: %s", msg);
      kill_worker(p, w, SIGKILL, rc == PARSED_NOMEM ? FP_ENOMEM : FP_ECRASHED, msg, false);
      return;
    }
    if (w->state == W_DEAD) return;
    ssize_t n = read_some(w);
    if (n == FP_EAGAIN) return; /* all read for now */
    if (n <= 0) {        /* EOF or error: it died; settled once its status is in */
      mark_dead(w);
      return;
    }
  }
}

/* ---- the control socket ---- */

ssize_t fp__pp_send_control(process_pool *p, const ctl_msg *m) {
  ssize_t n;
  while ((n = send(p->ctl, m, sizeof *m, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  return n;
}

/* The fork server reaped a worker. What the worker wrote before it exited
 * is in its socket already: read it, then settle the rest as its death.
 * Its socket is not waited on: a process the task started may hold it
 * open for ever. */
static void worker_exited(process_pool *p, worker *w, int status) {
  w->exited = true;
  w->status = status;
  if (w->state != W_DEAD) worker_readable(p, w);
  mark_dead(w);
  bury(p, w);
}

/* One message from the fork server, and the descriptor it carries (-1 if
 * none). recvmsg's result. */
ssize_t fp__pp_recv_control(process_pool *p, ctl_msg *m, int *fd, int flags) {
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  struct iovec iov = {m, sizeof *m};
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = u.buf;
  mh.msg_controllen = sizeof u.buf;
  *fd = -1;
  ssize_t n = recvmsg(p->ctl, &mh, MSG_CMSG_CLOEXEC | flags);
  struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL;
  if (c && c->cmsg_type == SCM_RIGHTS) memcpy(fd, CMSG_DATA(c), sizeof *fd);
  return n;
}

static void control_readable(process_pool *p) {
  ctl_msg m;
  int fd;
  ssize_t n = fp__pp_recv_control(p, &m, &fd, MSG_DONTWAIT);
  if (n <= 0) {
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) break_pool(p, "its fork server died");
    return;
  }
  if (m.type == CTL_WORKER) {
    p->spawning--;
    worker_arrived(p, m.pid, fd);
  } else if (m.type == CTL_SPAWN_FAILED) {
    p->spawning--;
    char why[128];
    snprintf(why, sizeof why, "fork: %s", strerror(m.status));
    spawn_failed(p, why);
  } else if (m.type == CTL_EXITED) {
    worker *w = find_pid(p, m.pid);
    if (w) worker_exited(p, w, m.status);
  }
}

/* ---- handing out jobs ---- */

/* Lay out a job for sending: its header and item headers in one block,
 * with the iovecs (and each byte argument, in place) after them. */
static int prepare_output(worker *w, job *j) {
  size_t niov = j->kind == JOB_BYTES ? 1 + 2 * (size_t)j->count : 1;
  size_t headers = sizeof(job_header) + j->count * sizeof(item_header);
  size_t iov_at = (headers + _Alignof(struct iovec) - 1) & ~(_Alignof(struct iovec) - 1);
  char *block = fp__malloc(iov_at + niov * sizeof(struct iovec));
  if (!block) return FP_ENOMEM;
  job_header h = {WIRE_MAGIC, j->seq, j->kind, j->count};
  memcpy(block, &h, sizeof h);
  item_header *items = (item_header *)(block + sizeof h);
  struct iovec *iov = (struct iovec *)(block + iov_at);
  for (uint32_t i = 0; i < j->count; i++) {
    void *arg = fp_future_arg(j->fs[i]);
    items[i] = (item_header){(uint64_t)(uintptr_t)fp_future_fn(j->fs[i]), (uint64_t)(uintptr_t)arg};
    if (j->kind != JOB_BYTES) continue;
    items[i].arg = ((fp_bytes *)arg)->size;
    iov[1 + 2 * i] = (struct iovec){&items[i], sizeof items[i]};
    iov[2 + 2 * i] = (struct iovec){((fp_bytes *)arg)->data, ((fp_bytes *)arg)->size};
  }
  iov[0] = (struct iovec){block, j->kind == JOB_BYTES ? sizeof h : headers};
  w->out_block = block;
  w->out = iov;
  w->out_count = niov;
  w->out_next = 0;
  return 0;
}

/* Send what the socket takes now; the rest when it has room (POLLOUT). A
 * worker that died cannot be sent to: it is not marked dead here, since
 * its socket may still hold replies to the jobs before, and its EOF, read
 * after them, says it died. */
static void flush_output(worker *w) {
  while (w->out_next < w->out_count) {
    size_t left = w->out_count - w->out_next;
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &w->out[w->out_next];
    mh.msg_iovlen = left < IOV_MAX ? left : IOV_MAX;
    ssize_t n = sendmsg(w->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) drop_output(w);
      return;
    }
    for (size_t k = (size_t)n; k;) { /* past what went out */
      struct iovec *v = &w->out[w->out_next];
      size_t step = k < v->iov_len ? k : v->iov_len;
      v->iov_base = (char *)v->iov_base + step;
      v->iov_len -= step;
      k -= step;
      if (!v->iov_len) w->out_next++;
    }
    while (w->out_next < w->out_count && !w->out[w->out_next].iov_len) w->out_next++;
  }
  drop_output(w);
}

/* Start the job's futures; drop the cancelled ones. Returns false if none
 * is left to run. */
static bool start_job(job *j) {
  if (j->started) return true; /* sent before, to a worker that died first */
  j->started = true;
  uint32_t kept = 0;
  for (uint32_t i = 0; i < j->count; i++) {
    if (fp_future_set_running(j->fs[i]) == 0) {
      j->fs[kept++] = j->fs[i];
    } else {
      fp_future_release(j->fs[i]); /* cancelled while queued */
    }
  }
  j->count = kept;
  return kept > 0;
}

/* Can w take j now: idle, or busy and j may wait in its socket. */
static bool can_take(process_pool *p, const worker *w, const job *head) {
  if (w->state == W_IDLE) return true;
  if (w->state != W_BUSY || w->sent >= PIPELINE_DEPTH || w->out_block) return false;
  if (p->opt.max_tasks_per_child && w->jobs_done + w->sent >= p->opt.max_tasks_per_child)
    return false; /* it exits after the ones it has */
  if (w->last_job_s < 0 || w->last_job_s > PIPELINE_MAX_JOB_S ||
      fp__now() - w->job_started > PIPELINE_MAX_JOB_S)
    return false; /* long jobs: the next waits for a free worker */
  return head->kind == JOB_VALUE && head->count <= PIPELINE_MAX_ITEMS &&
         w->job_tail->kind == JOB_VALUE && w->job_tail->count <= PIPELINE_MAX_ITEMS;
}

/* The next job to run, its futures started; NULL if none. */
static job *next_job(process_pool *p, const worker *w) {
  for (;;) {
    pthread_mutex_lock(&p->mu);
    job *j = p->head;
    if (j && can_take(p, w, j)) {
      FP__QUEUE_SHIFT(p->head, p->tail, next);
      p->queued--;
      j->next = NULL;
    } else {
      j = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    if (!j || start_job(j)) return j;
    fp__free(j); /* every item was cancelled while queued */
  }
}

/* Send j to w; false (j failed with FP_ENOMEM) when there is no memory
 * to send it. */
static bool give(process_pool *p, worker *w, job *j) {
  j->seq = w->next_seq++;
  if (prepare_output(w, j)) {
    settle_job(p, j, FP_ENOMEM, "no memory to send the task to a worker");
    return false;
  }
  FP__QUEUE_PUSH(w->job, w->job_tail, j, next);
  w->sent++;
  if (w->state == W_IDLE) {
    w->state = W_BUSY;
    w->job_started = fp__now();
    w->item_started_ns = observed(p) ? fp__now_ns() : 0;
    w->deadline = p->opt.task_timeout > 0 ? w->job_started + p->opt.task_timeout : 0;
  }
  flush_output(w);
  return true;
}

/* Idle workers first, one job each; then a second job behind each busy
 * one, so that none sleeps between two. */
static void assign_jobs(process_pool *p) {
  for (int pass = 0; pass < 2; pass++)
    for (size_t i = 0; i < p->nworkers; i++) {
      worker *w = &p->workers[i];
      if (w->state != (pass ? W_BUSY : W_IDLE)) continue;
      job *j = next_job(p, w);
      if (!j) {
        if (pass) return;
        break;
      }
      if (!give(p, w, j)) i--; /* w is as it was: the next job for it */
    }
}

static bool is_live(const worker *w) { return w->state != W_DEAD; }

static void spawn_more(process_pool *p) {
  if (p->spawn_failing_since && fp__now() < p->spawn_retry_at) return; /* backing off */
  size_t idle = 0, live = 0;
  for (size_t i = 0; i < p->nworkers; i++) {
    worker_state s = p->workers[i].state;
    if (s != W_DEAD) live++;
    if (s == W_IDLE || s == W_STARTING) idle++;
  }
  pthread_mutex_lock(&p->mu);
  size_t queued = atomic_load(&p->base.broken) ? 0 : p->queued;
  pthread_mutex_unlock(&p->mu);
  /* While spawns fail, one at a time: the next waits for its answer. */
  size_t at_once = p->spawn_failing_since ? 1 : (size_t)p->base.max_workers;
  while (queued > idle + p->spawning && live + p->spawning < (size_t)p->base.max_workers &&
         p->spawning < at_once) {
    ctl_msg m = {CTL_SPAWN, ++p->next_worker_id, 0, 0};
    if (fp__pp_send_control(p, &m) < 0) {
      break_pool(p, "its fork server is gone");
      return;
    }
    p->spawning++;
  }
}

/* No worker has been started for a while and none is left: fail what is
 * queued with the reason rather than keep it for ever. The pool stays: a
 * later submit tries again at once, and fails only after its own while. */
static void give_up_queue(process_pool *p) {
  if (!p->spawn_failing_since || fp__now() - p->spawn_failing_since < SPAWN_GIVE_UP_S) return;
  for (size_t i = 0; i < p->nworkers; i++)
    if (is_live(&p->workers[i])) return;
  pthread_mutex_lock(&p->mu);
  job *queued = fp__pp_detach_queue(p);
  pthread_mutex_unlock(&p->mu);
  if (!queued) return;
  char msg[200];
  snprintf(msg, sizeof msg, "no worker process could be started for %.1f s: %s",
           fp__now() - p->spawn_failing_since, p->spawn_error);
  fp_log(FP_LOG_ERROR, "process pool: %s; failing the queued tasks", msg);
  fp__pp_settle_list(p, queued, FP_ENOMEM, msg);
  p->spawn_failing_since = 0;
}

/* Timeouts, cancels, kill_workers, and the dead whose status is late. */
static void check_workers(process_pool *p, int kill_signal, bool cancel_check) {
  double now = fp__now();
  for (size_t i = 0; i < p->nworkers; i++) {
    worker *w = &p->workers[i];
    if (w->state == W_BUSY && kill_signal) {
      kill_worker(p, w, kill_signal, FP_ECANCELED, "killed by fp_process_pool_kill_workers", true);
    } else if (w->state == W_BUSY && w->deadline && now >= w->deadline) {
      char msg[128];
      snprintf(msg, sizeof msg, "task exceeded its timeout of %g s: worker %d was killed",
               p->opt.task_timeout, (int)w->pid);
      kill_worker(p, w, SIGKILL, FP_ETIMEDOUT, msg, false);
    } else if (w->state == W_BUSY && cancel_check &&
               fp__future_cancel_requested(w->job->fs[w->job->replied])) {
      kill_worker(p, w, SIGKILL, FP_ECANCELED, "cancelled while running: its worker was killed",
                  false);
    } else if (kill_signal && w->state != W_DEAD) {
      signal_worker(w, kill_signal);
      mark_dead(w);
    }
    if (w->state == W_DEAD && w->eof && (w->exited || now - w->died_at > LATE_STATUS_S)) {
      bury(p, w);
      i--; /* the slot now holds another worker */
    }
  }
}

/* When the dispatcher must look again without being woken: the nearest task
 * deadline, a spawn retry, or the wait for a dead worker's late status. */
static double next_deadline(process_pool *p) {
  double next = 1e300;
  for (size_t i = 0; i < p->nworkers; i++) {
    worker *w = &p->workers[i];
    if (w->state == W_BUSY && w->deadline && w->deadline < next) next = w->deadline;
    if (w->state == W_DEAD && w->died_at + LATE_STATUS_S < next) next = w->died_at + LATE_STATUS_S;
  }
  if (p->spawn_failing_since) {
    if (p->spawn_retry_at < next) next = p->spawn_retry_at;
    double give_up = p->spawn_failing_since + SPAWN_GIVE_UP_S;
    if (give_up > fp__now() && give_up < next) next = give_up;
  }
  return next;
}

/* A worker died with a job and its exit status is not in yet. */
static bool crash_pending(process_pool *p) {
  for (size_t i = 0; i < p->nworkers; i++)
    if (p->workers[i].state == W_DEAD && p->workers[i].job) return true;
  return false;
}

static bool anything_running(process_pool *p) {
  for (size_t i = 0; i < p->nworkers; i++)
    if (p->workers[i].state == W_BUSY || (p->workers[i].state == W_DEAD && p->workers[i].job))
      return true;
  return false;
}

/* ---- the dispatcher thread ---- */

/* Everything that needs doing without waiting; true once shut down and
 * nothing is left to run. */
static bool dispatch(process_pool *p) {
  pthread_mutex_lock(&p->mu);
  int kill_signal = p->kill_signal;
  bool cancel_check = p->cancel_check;
  p->cancel_check = false;
  pthread_mutex_unlock(&p->mu);
  check_workers(p, kill_signal, cancel_check);
  /* With break_on_crash a crash breaks the pool once its status is in:
   * until then nothing new may start (a replacement would run it). */
  if (!(p->opt.break_on_crash && crash_pending(p))) {
    assign_jobs(p);
    spawn_more(p);
    give_up_queue(p);
  }
  pthread_mutex_lock(&p->mu);
  bool done = p->shutting_down && !p->head && !anything_running(p);
  pthread_mutex_unlock(&p->mu);
  return done;
}

/* The poll set: the wake pipe, the control socket, then every worker in
 * slot order (a dead one's -1 is ignored). Returns its size. */
static size_t poll_set(process_pool *p) {
  size_t n = 0;
  p->fds[n++] = (struct pollfd){p->wake[0], POLLIN, 0};
  p->fds[n++] = (struct pollfd){p->ctl, POLLIN, 0};
  for (size_t i = 0; i < p->nworkers; i++) {
    const worker *w = &p->workers[i];
    p->fds[n++] = (struct pollfd){w->fd, (short)(POLLIN | (w->out_block ? POLLOUT : 0)), 0};
  }
  return n;
}

/* Wait for an event or the next deadline. Spin a little before sleeping:
 * a reply or a submit due within microseconds is then taken without a
 * wake-up. */
static int wait_events(process_pool *p, size_t n, double next) {
  int timeout = -1;
  if (next < 1e300) {
    double left = next - fp__now();
    timeout = left <= 0 ? 0 : (int)(left * 1000) + 1;
  }
  int ready = 0;
  if (timeout != 0) {
    double until = fp__now() + DISPATCHER_SPIN_S;
    while ((ready = poll(p->fds, n, 0)) == 0 && fp__now() < until)
      sched_yield(); /* a thread with work on this core goes first */
  }
  if (ready == 0) ready = poll(p->fds, n, timeout);
  return ready;
}

static void handle_events(process_pool *p, size_t n) {
  if (p->fds[0].revents) {
    char buf[256];
    while (read(p->wake[0], buf, sizeof buf) > 0) {
    }
  }
  /* Workers first, by pid (handling one may move the others' slots). */
  enum { READY_MAX = 256 };
  pid_t ready[READY_MAX];
  short events[READY_MAX];
  size_t nready = 0;
  for (size_t i = 2; i < n && nready < READY_MAX; i++)
    if (p->fds[i].revents && p->fds[i].fd >= 0) {
      ready[nready] = p->workers[i - 2].pid;
      events[nready++] = p->fds[i].revents;
    }
  for (size_t i = 0; i < nready; i++) {
    worker *w = find_pid(p, ready[i]);
    if (w && w->fd >= 0 && (events[i] & POLLOUT)) flush_output(w);
    if (w && w->fd >= 0 && (events[i] & ~POLLOUT)) worker_readable(p, w);
  }
  if (p->fds[1].revents) control_readable(p);
}

/* Shut down: close every worker socket (idle workers exit on EOF) and the
 * control socket (the fork server reaps every worker, killing those that
 * linger, then exits). */
static void dispatcher_end(process_pool *p) {
  for (size_t i = 0; i < p->nworkers; i++) {
    worker *w = &p->workers[i];
    if (w->fd >= 0) close(w->fd);
    for (job *j = w->job, *next; j; j = next) {
      next = j->next;
      settle_job(p, j, FP_ECANCELED, "the process pool shut down");
    }
    drop_output(w);
    fp_bytes_free(w->payload);
    fp__free(w->in);
  }
  p->nworkers = 0;
  close(p->ctl);
  p->ctl = -1;
  fp__waitpid(p->fs_pid, NULL, 0);
}

void *fp__pp_dispatcher_main(void *arg) {
  process_pool *p = arg;
  dispatcher_of = p;
#ifdef __linux__
  pthread_setname_np(pthread_self(), "fp-processes");
#endif
  while (!dispatch(p)) {
    size_t n = poll_set(p);
    if (wait_events(p, n, next_deadline(p)) > 0) handle_events(p, n);
  }
  dispatcher_end(p);
  pthread_mutex_lock(&p->mu);
  p->dispatcher_done = true;
  pthread_cond_broadcast(&p->done_cv);
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

