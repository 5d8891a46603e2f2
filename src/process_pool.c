/* process_pool.c - the process pool executor, parent side: a queue of
 * jobs and one dispatcher thread that hands them to worker processes over
 * their sockets, reads the replies, and turns every way a worker can fail
 * (crash, exit, timeout, cancel, a broken reply) into a named error on the
 * futures concerned, replacing the worker. */
#define _GNU_SOURCE
#include "process_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct job {
  struct job *next;
  uint32_t kind;
  uint32_t count;
  uint32_t replied; /* items answered so far */
  bool started;     /* its futures are running (sent once, and sent back) */
  fp_future *fs[];  /* each with the executor's reference */
} job;

typedef enum { W_STARTING, W_IDLE, W_BUSY, W_DEAD } worker_state;

typedef struct worker {
  pid_t pid;
  int fd;
  worker_state state;
  job *job;          /* BUSY, or DEAD with an unsettled job: the one running */
  job *job_tail;     /* the last sent; jobs after the first wait in its socket */
  int sent;          /* jobs sent and not yet answered */
  double job_started; /* when the running job started */
  double last_job_s;  /* how long the last finished job took; -1: none yet */
  double deadline;   /* BUSY with task_timeout */
  long jobs_done;
  bool eof, exited;  /* DEAD: seen EOF, and the fork server's report */
  int status;
  double died_at;
  char *in;          /* what was read from fd and not yet parsed */
  size_t in_len, in_pos;
} worker;

enum { WORKER_INBUF = 65536 };
/* Jobs sent to a worker ahead of its replies: while it runs one, the next
 * waits in its socket, so it never sleeps between two. Only where jobs are
 * short (its last one and the one running, under PIPELINE_MAX_JOB_S), so
 * that a job never waits long behind another while a worker is free; and
 * only small value jobs (replies to one cannot fill the socket while the
 * parent blocks sending the next). */
enum { PIPELINE_DEPTH = 2, PIPELINE_MAX_ITEMS = 2048 };
#define PIPELINE_MAX_JOB_S 1e-3
#define DISPATCHER_SPIN_S 50e-6

typedef struct process_pool {
  fp_executor base;
  fp_process_pool_options opt;
  pthread_mutex_t mu;
  pthread_cond_t done_cv; /* the dispatcher exited */
  job *head, *tail;       /* queued (mu) */
  size_t queued;
  bool shutting_down, cancel_check, broken, dispatcher_done;
  int kill_signal;        /* kill_workers asked (mu) */
  char broken_message[256];
  uint64_t submitted;
  atomic_uint_fast64_t completed;
  int wake[2];
  pthread_t dispatcher;
  /* The dispatcher's own: */
  pid_t fs_pid;
  int ctl;
  worker *workers;
  size_t nworkers, workers_room;
  int32_t next_worker_id;
  size_t spawning;
} process_pool;

static _Thread_local process_pool *dispatcher_of; /* set in the dispatcher thread */

static void wake(process_pool *p) {
  char c = 'w';
  ssize_t n = write(p->wake[1], &c, 1); /* full pipe: it is awake already */
  (void)n;
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

static void settle_list(process_pool *p, job *list, int code, const char *msg) {
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
  bool keep = !code && !p->broken && !atomic_load(&p->base.cancel_all);
  if (keep) {
    last->next = p->head;
    p->head = list;
    if (!p->tail) p->tail = last;
    p->queued += n;
  }
  pthread_mutex_unlock(&p->mu);
  if (keep) return;
  if (!code) {
    code = p->broken ? FP_EBROKEN : FP_ECANCELED;
    msg = p->broken ? p->broken_message : "cancelled by shutdown";
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

static job *detach_queue(process_pool *p) { /* mu held */
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

static void describe_death(const worker *w, char *buf, size_t len) {
  if (!w->exited)
    snprintf(buf, len, "worker %d died (its exit status did not arrive)", (int)w->pid);
  else if (WIFSIGNALED(w->status))
    snprintf(buf, len, "worker %d was killed by %s (signal %d)", (int)w->pid,
             signal_name(WTERMSIG(w->status)), WTERMSIG(w->status));
  else
    snprintf(buf, len, "worker %d exited with status %d", (int)w->pid, WEXITSTATUS(w->status));
}

static void break_pool(process_pool *p, const char *why);

/* A worker is gone (EOF seen, and its status known or late): settle its job
 * with a crash error naming how it died. */
static void bury(process_pool *p, worker *w) {
  if (w->fd >= 0) close(w->fd);
  w->fd = -1;
  if (w->job) {
    char msg[160];
    describe_death(w, msg, sizeof msg);
    job *j = detach_jobs(p, w, 0, NULL);
    settle_job(p, j, FP_ECRASHED, msg);
    fp_log(FP_LOG_WARNING, "process pool: %s while running a task", msg);
    if (p->opt.break_on_crash) break_pool(p, msg);
  }
  /* remove the slot */
  fp__free(w->in);
  *w = p->workers[--p->nworkers];
}

static void mark_dead(worker *w) {
  if (w->state != W_DEAD) w->died_at = fp__now();
  w->state = W_DEAD;
  w->eof = true;
  if (w->fd >= 0) close(w->fd);
  w->fd = -1;
}

/* Kill a worker now and settle its running job with (code, msg); the jobs
 * sent behind it go to another worker, or get (code, msg) too if `all`. */
static void kill_worker(process_pool *p, worker *w, int sig, int code, const char *msg,
                        bool all) {
  kill(w->pid, sig);
  job *j = detach_jobs(p, w, all ? code : 0, msg);
  settle_job(p, j, code, msg);
  mark_dead(w);
}

static void break_pool(process_pool *p, const char *why) {
  pthread_mutex_lock(&p->mu);
  bool first = !p->broken;
  if (first) {
    p->broken = true;
    snprintf(p->broken_message, sizeof p->broken_message,
             "the process pool is broken: %s", why);
  }
  job *queued = detach_queue(p);
  pthread_mutex_unlock(&p->mu);
  if (first) fp_log(FP_LOG_ERROR, "%s", p->broken_message);
  settle_list(p, queued, FP_EBROKEN, p->broken_message);
  for (size_t i = 0; i < p->nworkers; i++)
    if (p->workers[i].state != W_DEAD)
      kill_worker(p, &p->workers[i], SIGKILL, FP_EBROKEN, p->broken_message, true);
}

static worker *add_worker(process_pool *p, pid_t pid, int fd) {
  if (p->nworkers == p->workers_room) {
    size_t room = p->workers_room ? 2 * p->workers_room : 8;
    worker *grown = fp__realloc(p->workers, room * sizeof *grown);
    if (!grown) return NULL;
    p->workers = grown;
    p->workers_room = room;
  }
  char *in = fp__malloc(WORKER_INBUF);
  if (!in) return NULL;
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

/* ---- the control socket ---- */

static void control_readable(process_pool *p) {
  ctl_msg m;
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  struct iovec iov = {&m, sizeof m};
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = u.buf;
  mh.msg_controllen = sizeof u.buf;
  ssize_t n = recvmsg(p->ctl, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  if (n <= 0) {
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) break_pool(p, "its fork server died");
    return;
  }
  int fd = -1;
  struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
  if (c && c->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(c), sizeof fd);
  if (m.type == CTL_WORKER) {
    p->spawning--;
    if (fd < 0 || !add_worker(p, m.pid, fd)) {
      if (fd >= 0) close(fd);
      kill(m.pid, SIGKILL);
    }
  } else if (m.type == CTL_SPAWN_FAILED) {
    p->spawning--;
    fp_log(FP_LOG_WARNING, "process pool: cannot start a worker: %s", strerror(m.status));
  } else if (m.type == CTL_EXITED) {
    worker *w = find_pid(p, m.pid);
    if (w) {
      w->exited = true;
      w->status = m.status;
      if (w->state == W_DEAD && w->eof) bury(p, w);
    }
  }
}

/* ---- worker sockets ---- */

/* fp__read_full through the worker's buffer: replies arrive many to a
 * send, and are parsed without a syscall each. */
static int worker_read(worker *w, void *buf, size_t len) {
  char *p = buf;
  while (len) {
    if (w->in_pos < w->in_len) {
      size_t n = w->in_len - w->in_pos < len ? w->in_len - w->in_pos : len;
      memcpy(p, w->in + w->in_pos, n);
      w->in_pos += n;
      p += n;
      len -= n;
    } else if (len >= WORKER_INBUF) {
      return fp__read_full(w->fd, p, len); /* a big payload: straight in */
    } else {
      ssize_t n = read(w->fd, w->in, WORKER_INBUF);
      if (n == 0 || (n < 0 && errno != EINTR)) return -1;
      w->in_len = n > 0 ? (size_t)n : 0;
      w->in_pos = 0;
    }
  }
  return 0;
}

static bool worker_has_input(const worker *w) { return w->in_pos < w->in_len; }

static int read_reply(process_pool *p, worker *w) {
  job *j = w->job;
  fp_future *f = j->fs[j->replied];
  reply_header h;
  if (worker_read(w, &h, sizeof h)) return -1;
  if (h.msg_len > 65536 || (!h.code && h.msg_len)) return -2; /* not what a worker sends */
  if (h.code) {
    char *msg = fp__malloc(h.msg_len + 1);
    if (!msg) return -3;
    if (worker_read(w, msg, h.msg_len)) {
      fp__free(msg);
      return -1;
    }
    msg[h.msg_len] = 0;
    fp__future_fail_static(f, h.code, msg);
    fp__free(msg);
  } else if (j->kind == JOB_BYTES) {
    fp_bytes *b = fp_bytes_new(h.value);
    if (!b) return -3;
    if (worker_read(w, b->data, b->size)) {
      fp_bytes_free(b);
      return -1;
    }
    fp_future_set_result(f, b); /* the future owns it (result_free) */
  } else {
    fp_future_set_result(f, (void *)(uintptr_t)h.value);
  }
  atomic_fetch_add(&p->completed, 1);
  fp_future_release(f);
  j->replied++;
  return 0;
}

static bool read_one_reply(process_pool *p, worker *w);

static void worker_readable(process_pool *p, worker *w) {
  if (w->state == W_STARTING) {
    hello h;
    if (worker_read(w, &h, sizeof h)) {
      mark_dead(w);
      return;
    }
    if (h.code) {
      char why[96];
      snprintf(why, sizeof why, "a worker's initializer failed with %d (%s)", h.code,
               fp_err_name(h.code));
      mark_dead(w);
      break_pool(p, why);
      return;
    }
    w->state = W_IDLE;
    return;
  }
  if (w->state != W_BUSY) { /* an idle worker only speaks by dying */
    mark_dead(w);
    return;
  }
  do
    if (!read_one_reply(p, w)) return;
  while (w->state == W_BUSY && worker_has_input(w));
}

/* Read and settle one reply; false when the worker is no longer busy. */
static bool read_one_reply(process_pool *p, worker *w) {
  int rc = read_reply(p, w);
  if (rc == -1) { /* died while running or replying: settled once its status is in */
    mark_dead(w);
    return false;
  }
  if (rc < 0) {
    kill_worker(p, w, SIGKILL, FP_ECRASHED,
                rc == -2 ? "the worker's reply could not be read (corrupt), worker killed"
                         : "no memory to read the worker's reply, worker killed",
                false);
    return false;
  }
  if (p->opt.task_timeout > 0) w->deadline = fp__now() + p->opt.task_timeout;
  if (w->job->replied < w->job->count) return true;
  job *done = w->job;
  w->job = done->next;
  if (!w->job) w->job_tail = NULL;
  w->sent--;
  fp__free(done);
  w->jobs_done++;
  double now = fp__now();
  w->last_job_s = now - w->job_started;
  w->job_started = now;
  if (w->job) { /* the next one, sent ahead, runs already */
    if (fp__future_cancel_requested(w->job->fs[0])) { /* cancelled while it waited */
      kill_worker(p, w, SIGKILL, FP_ECANCELED, "cancelled while running: its worker was killed",
                  false);
      return false;
    }
    return true;
  }
  bool retiring = p->opt.max_tasks_per_child && w->jobs_done >= p->opt.max_tasks_per_child;
  if (retiring) /* it exits by itself: nothing to settle */
    mark_dead(w);
  else
    w->state = W_IDLE;
  return false;
}

/* ---- handing out jobs ---- */

static int send_job(int fd, job *j) {
  job_header h = {j->kind, j->count};
  if (j->kind == JOB_VALUE) { /* header and items in one send */
    size_t len = sizeof h + j->count * sizeof(item_header);
    char *buf = fp__malloc(len);
    if (buf) {
      memcpy(buf, &h, sizeof h);
      item_header *items = (item_header *)(buf + sizeof h);
      for (uint32_t i = 0; i < j->count; i++)
        items[i] = (item_header){(uint64_t)(uintptr_t)fp_future_fn(j->fs[i]),
                                 (uint64_t)(uintptr_t)fp_future_arg(j->fs[i])};
      int rc = fp__write_full(fd, buf, len);
      fp__free(buf);
      return rc;
    }
  }
  if (fp__write_full(fd, &h, sizeof h)) return -1;
  for (uint32_t i = 0; i < j->count; i++) {
    fp_future *f = j->fs[i];
    void *arg = fp_future_arg(f);
    item_header it = {(uint64_t)(uintptr_t)fp_future_fn(f), (uint64_t)(uintptr_t)arg};
    if (j->kind == JOB_BYTES) it.arg = ((fp_bytes *)arg)->size;
    if (fp__write_full(fd, &it, sizeof it)) return -1;
    if (j->kind == JOB_BYTES && fp__write_full(fd, ((fp_bytes *)arg)->data, it.arg)) return -1;
  }
  return 0;
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
  if (w->state != W_BUSY || w->sent >= PIPELINE_DEPTH) return false;
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
      p->head = j->next;
      if (!p->head) p->tail = NULL;
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

static void give(process_pool *p, worker *w, job *j) {
  if (w->job_tail)
    w->job_tail->next = j;
  else
    w->job = j;
  w->job_tail = j;
  w->sent++;
  if (w->state == W_IDLE) {
    w->state = W_BUSY;
    w->job_started = fp__now();
    w->deadline = p->opt.task_timeout > 0 ? w->job_started + p->opt.task_timeout : 0;
  }
  /* A worker that died cannot be sent to. It is not marked dead here: its
   * socket may still hold replies to the jobs before this one, and its
   * EOF, read after them, says it died. */
  (void)send_job(w->fd, j);
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
      give(p, w, j);
    }
}

static void spawn_more(process_pool *p) {
  size_t idle = 0, live = 0;
  for (size_t i = 0; i < p->nworkers; i++) {
    worker_state s = p->workers[i].state;
    if (s != W_DEAD) live++;
    if (s == W_IDLE || s == W_STARTING) idle++;
  }
  pthread_mutex_lock(&p->mu);
  size_t queued = p->broken ? 0 : p->queued;
  pthread_mutex_unlock(&p->mu);
  while (queued > idle + p->spawning && live + p->spawning < (size_t)p->base.max_workers) {
    ctl_msg m = {CTL_SPAWN, ++p->next_worker_id, 0, 0};
    if (send(p->ctl, &m, sizeof m, MSG_NOSIGNAL) < 0) {
      break_pool(p, "its fork server is gone");
      return;
    }
    p->spawning++;
  }
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
      kill(w->pid, kill_signal);
      mark_dead(w);
    }
    if (w->state == W_DEAD && w->eof && (w->exited || now - w->died_at > 2.0)) {
      bury(p, w);
      i--; /* the slot now holds another worker */
    }
  }
}

/* When the dispatcher must look again without being woken: the nearest task
 * deadline, or the wait for a dead worker's late exit status. */
static double next_deadline(process_pool *p) {
  double next = 1e300;
  for (size_t i = 0; i < p->nworkers; i++) {
    worker *w = &p->workers[i];
    if (w->state == W_BUSY && w->deadline && w->deadline < next) next = w->deadline;
    if (w->state == W_DEAD && w->died_at + 2.0 < next) next = w->died_at + 2.0;
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

static void *dispatcher_main(void *arg) {
  process_pool *p = arg;
  dispatcher_of = p;
#ifdef __linux__
  pthread_setname_np(pthread_self(), "fp-processes");
#endif
  struct pollfd *fds = NULL;
  size_t fds_room = 0;
  for (;;) {
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
    }
    double next = next_deadline(p);
    pthread_mutex_lock(&p->mu);
    bool done = p->shutting_down && !p->head && !anything_running(p);
    pthread_mutex_unlock(&p->mu);
    if (done) break;

    size_t want = p->nworkers + 2;
    if (want > fds_room) {
      struct pollfd *grown = fp__realloc(fds, want * sizeof *fds);
      if (grown) {
        fds = grown;
        fds_room = want;
      }
    }
    if (!fds) { /* no memory for the poll set: try again shortly */
      poll(NULL, 0, 10);
      continue;
    }
    size_t n = 0;
    fds[n++] = (struct pollfd){p->wake[0], POLLIN, 0};
    fds[n++] = (struct pollfd){p->ctl, POLLIN, 0};
    size_t first_worker = n;
    for (size_t i = 0; i < p->nworkers && n < fds_room; i++)
      fds[n++] = (struct pollfd){p->workers[i].fd, POLLIN, 0}; /* -1: ignored */
    int timeout = -1;
    if (next < 1e300) {
      double left = next - fp__now();
      timeout = left <= 0 ? 0 : (int)(left * 1000) + 1;
    }
    /* Spin a little before sleeping: a reply or a submit due within
     * microseconds is then taken without a wake-up. */
    int nready_fds = 0;
    if (timeout != 0) {
      double until = fp__now() + DISPATCHER_SPIN_S;
      while ((nready_fds = poll(fds, n, 0)) == 0 && fp__now() < until)
        sched_yield(); /* a thread with work on this core goes first */
    }
    if (nready_fds == 0 && poll(fds, n, timeout) < 0) continue;
    if (fds[0].revents) {
      char buf[256];
      while (read(p->wake[0], buf, sizeof buf) > 0) {
      }
    }
    /* Workers first, by pid (the control socket may reorder the slots). */
    pid_t ready[256];
    size_t nready = 0;
    for (size_t i = first_worker; i < n && nready < 256; i++)
      if (fds[i].revents && fds[i].fd >= 0) ready[nready++] = p->workers[i - first_worker].pid;
    for (size_t i = 0; i < nready; i++) {
      worker *w = find_pid(p, ready[i]);
      if (w && w->fd >= 0) worker_readable(p, w);
    }
    if (fds[1].revents) control_readable(p);
  }
  fp__free(fds);
  /* Shut down: close every worker socket (they exit on EOF) and the
   * control socket (the fork server exits, taking what is left with it). */
  for (size_t i = 0; i < p->nworkers; i++) {
    if (p->workers[i].fd >= 0) close(p->workers[i].fd);
    for (job *j = p->workers[i].job, *next; j; j = next) {
      next = j->next;
      settle_job(p, j, FP_ECANCELED, "the process pool shut down");
    }
    fp__free(p->workers[i].in);
  }
  p->nworkers = 0;
  close(p->ctl);
  p->ctl = -1;
  waitpid(p->fs_pid, NULL, 0);
  pthread_mutex_lock(&p->mu);
  p->dispatcher_done = true;
  pthread_cond_broadcast(&p->done_cv);
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

/* ---- the executor interface ---- */

static int pp_submit_chunk(fp_executor *ex, fp_future **fs, size_t n) {
  process_pool *p = (process_pool *)ex;
  job *j = n <= UINT32_MAX ? fp__malloc(sizeof *j + n * sizeof(fp_future *)) : NULL;
  if (!j) return fp__fail(FP_ENOMEM, "process pool: no memory for a job of %zu", n);
  j->next = NULL;
  j->kind = fp__future_is_bytes(fs[0]) ? JOB_BYTES : JOB_VALUE;
  j->count = (uint32_t)n;
  j->replied = 0;
  j->started = false;
  memcpy(j->fs, fs, n * sizeof *fs);
  pthread_mutex_lock(&p->mu);
  int rc = 0;
  if (p->broken)
    rc = fp__fail(FP_EBROKEN, "%s", p->broken_message);
  else if (p->shutting_down)
    rc = fp__fail(FP_ESHUTDOWN, "cannot schedule new futures after shutdown");
  if (!rc) {
    if (p->tail)
      p->tail->next = j;
    else
      p->head = j;
    p->tail = j;
    p->queued++;
    p->submitted += n;
  }
  pthread_mutex_unlock(&p->mu);
  if (rc) {
    fp__free(j);
    return rc;
  }
  wake(p);
  return 0;
}

static int pp_submit(fp_executor *ex, fp_future *f, double timeout_s) {
  (void)timeout_s; /* the queue is unbounded */
  return pp_submit_chunk(ex, &f, 1);
}

static bool pp_is_own_thread(const fp_executor *ex) {
  return dispatcher_of == (const process_pool *)ex;
}

static int pp_shutdown(fp_executor *ex, bool wait, bool cancel_futures, const fp__deadline *d) {
  process_pool *p = (process_pool *)ex;
  pthread_mutex_lock(&p->mu);
  p->shutting_down = true;
  atomic_store(&p->base.shut_down, true);
  job *cancelled = NULL;
  if (cancel_futures) {
    atomic_store(&p->base.cancel_all, true);
    cancelled = detach_queue(p);
  }
  pthread_mutex_unlock(&p->mu);
  settle_list(p, cancelled, FP_ECANCELED, "cancelled by shutdown");
  wake(p);
  if (!wait || pp_is_own_thread(ex)) return 0; /* callbacks run on the dispatcher */
  int rc = 0;
  pthread_mutex_lock(&p->mu);
  while (!p->dispatcher_done)
    if (fp__cond_wait(&p->done_cv, &p->mu, d) == ETIMEDOUT && !p->dispatcher_done) {
      rc = fp__fail(FP_ETIMEDOUT, "shutdown: worker processes still busy");
      break;
    }
  pthread_mutex_unlock(&p->mu);
  return rc;
}

static void pp_destroy(fp_executor *ex) {
  process_pool *p = (process_pool *)ex;
  pthread_join(p->dispatcher, NULL);
  close(p->wake[0]);
  close(p->wake[1]);
  fp__free(p->workers);
  pthread_cond_destroy(&p->done_cv);
  pthread_mutex_destroy(&p->mu);
  fp__free(p);
}

static void pp_stats(const fp_executor *ex, fp_executor_stats *out) {
  process_pool *p = (process_pool *)ex;
  pthread_mutex_lock(&p->mu);
  out->threads = 0;
  out->idle = 0;
  out->queued = p->queued;
  out->submitted = p->submitted;
  pthread_mutex_unlock(&p->mu);
  out->completed = atomic_load(&p->completed);
}

static void pp_cancel_running(fp_executor *ex, fp_future *f) {
  (void)f;
  process_pool *p = (process_pool *)ex;
  pthread_mutex_lock(&p->mu);
  p->cancel_check = true;
  pthread_mutex_unlock(&p->mu);
  wake(p);
}

static const fp__executor_vtable process_pool_vtable = {
    "process pool", pp_submit, pp_shutdown,      pp_is_own_thread,
    pp_destroy,     pp_stats,  pp_cancel_running, false,
    pp_submit_chunk, NULL,
};

static int kill_workers(fp_executor *ex, int sig, const char *fn) {
  if (!ex) return fp__einval("%s: executor is NULL", fn);
  if (ex->vt != &process_pool_vtable) return fp__einval("%s: not a process pool", fn);
  process_pool *p = (process_pool *)ex;
  pthread_mutex_lock(&p->mu);
  p->kill_signal = sig;
  pthread_mutex_unlock(&p->mu);
  return fp_shutdown(ex, true, true);
}

int fp_process_pool_kill_workers(fp_executor *ex) {
  return kill_workers(ex, SIGKILL, __func__);
}
int fp_process_pool_terminate_workers(fp_executor *ex) {
  return kill_workers(ex, SIGTERM, __func__);
}

void fp_process_pool_options_init(fp_process_pool_options *opt) {
  if (!opt) {
    fp__einval("fp_process_pool_options_init: options are NULL");
    return;
  }
  memset(opt, 0, sizeof *opt);
  opt->max_workers = fp__cpu_count();
}

int fp_process_pool_new(const fp_process_pool_options *opt, fp_executor **out) {
  if (!out) return fp__einval("fp_process_pool_new: out is NULL");
  *out = NULL;
  fp_process_pool_options defaults;
  if (!opt) {
    fp_process_pool_options_init(&defaults);
    opt = &defaults;
  }
  if (opt->max_workers <= 0)
    return fp__einval("fp_process_pool_new: max_workers must be greater than 0 (got %d)",
                      opt->max_workers);
  if (opt->max_tasks_per_child < 0 || !(opt->task_timeout >= 0))
    return fp__einval("fp_process_pool_new: max_tasks_per_child and task_timeout must be 0 or "
                      "more");
  process_pool *p = fp__calloc(1, sizeof *p);
  if (!p) return fp__fail(FP_ENOMEM, "fp_process_pool_new: out of memory");
  p->opt = *opt;
  p->ctl = -1;
  if (pipe2(p->wake, O_CLOEXEC | O_NONBLOCK)) {
    fp__free(p);
    return fp__fail(FP_ENOMEM, "fp_process_pool_new: pipe: %s", strerror(errno));
  }
  const char *fault = getenv("FUTUREPROOF_TEST_FAULT");
  /* With a task timeout the parent restarts an item's clock at each reply,
   * so replies must not wait for the end of a chunk. */
  fork_server_config cfg = {opt->initializer,  opt->initializer_arg,   opt->max_tasks_per_child,
                            opt->memory_limit, fault ? atoi(fault) : 0, opt->task_timeout > 0};
  int rc = fp__fork_server_start(&cfg, &p->fs_pid, &p->ctl);
  if (!rc && (pthread_mutex_init(&p->mu, NULL) || fp__cond_init(&p->done_cv)))
    rc = fp__fail(FP_ENOMEM, "fp_process_pool_new: out of resources");
  fp__executor_init(&p->base, &process_pool_vtable, opt->max_workers);
  atomic_init(&p->completed, 0);
  if (!rc && (rc = pthread_create(&p->dispatcher, NULL, dispatcher_main, p)) != 0)
    rc = fp__fail(FP_ENOMEM, "fp_process_pool_new: cannot start its thread: %s", strerror(rc));
  if (rc) {
    if (p->ctl >= 0) {
      close(p->ctl);
      waitpid(p->fs_pid, NULL, 0);
    }
    close(p->wake[0]);
    close(p->wake[1]);
    fp__free(p);
    return rc;
  }
  *out = &p->base;
  return 0;
}
