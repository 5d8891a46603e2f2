/* fork_server.c - the process pool's fork server and its workers.
 *
 * fork() in a threaded program copies only the calling thread: a lock held
 * by another thread stays locked in the child for ever. So the pool forks
 * once, when it is created, into a fork server that never starts a thread;
 * every worker (and every replacement) is forked from that single-threaded
 * process. The fork server hands each worker's socket to the parent over
 * its control socket (SCM_RIGHTS) and reports each worker's exit status, so
 * that a crash can name its signal.
 *
 * Lifetimes: the fork server dies with the parent (PR_SET_PDEATHSIG, and
 * EOF on the control socket), and kills its workers when it goes; workers
 * die with the fork server (PR_SET_PDEATHSIG) and on EOF from the parent. */
#define _GNU_SOURCE
#include "fork_server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int fp__read_full(int fd, void *buf, size_t len) {
  char *p = buf;
  while (len) {
    ssize_t n = read(fd, p, len);
    if (n > 0) {
      p += n;
      len -= (size_t)n;
    } else if (n == 0) {
      return FP_EOF;
    } else if (errno != EINTR) {
      return -errno;
    }
  }
  return 0;
}

int fp__write_full(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL); /* a dead peer: EPIPE, not SIGPIPE */
    if (n > 0) {
      p += n;
      len -= (size_t)n;
    } else if (n < 0 && errno != EINTR) {
      return -errno;
    }
  }
  return 0;
}

/* ---- the worker ---- */

/* Test hook (FUTUREPROOF_TEST_FAULT, read when the pool is created, in the
 * library the test suite links only: built with FP_TESTING):
 * 1 die while reading a request, 2 die while writing a reply, 3 send a
 * reply the parent cannot read. Off (0) unless a test asks. */
enum { FAULT_NONE, FAULT_DIE_READING, FAULT_DIE_WRITING, FAULT_GARBAGE_REPLY };

/* Replies are gathered, whole records only, and sent at the end of a job
 * or when the buffer is full: one send for a chunk of small results
 * instead of one per item. (A worker process has one thread: static is
 * its own.) */
static char reply_buf[65536];
static size_t reply_len; /* always a whole number of records */
static int reply_fd = -1;

static void flush_replies(int fd) {
  if (reply_len && fp__write_full(fd, reply_buf, reply_len)) _exit(0); /* the parent is gone */
  reply_len = 0;
}

/* A task that crashes must not take the finished results of the items
 * before it (in its chunk) along: send them, then die the same way.
 * send() is async-signal-safe. Only SIGKILL cannot be caught. */
static void flush_then_die(int sig) {
  if (reply_len) fp__write_full(reply_fd, reply_buf, reply_len);
  reply_len = 0;
  raise(sig); /* SA_RESETHAND: the default action now */
}

static void flush_at_exit(void) { /* a task called exit() */
  if (reply_len) fp__write_full(reply_fd, reply_buf, reply_len);
}

static void keep_replies_on_crash(int fd) {
  reply_fd = fd;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = flush_then_die;
  sa.sa_flags = SA_RESETHAND | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  const int crashes[] = {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL};
  for (size_t i = 0; i < sizeof crashes / sizeof crashes[0]; i++) sigaction(crashes[i], &sa, NULL);
  atexit(flush_at_exit);
}

/* The socket on a descriptor number tasks are unlikely to touch (they
 * open, dup and close low numbers), near the top of the first 1024. */
static int move_high(int fd) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur < 64) return fd;
  rlim_t top = rl.rlim_cur < 1024 ? rl.rlim_cur : 1024;
  int high = fcntl(fd, F_DUPFD_CLOEXEC, (int)(top - 16));
  if (high < 0) return fd;
  close(fd);
  return high;
}

typedef struct reply_to {
  int fd;
  int fault;
  uint32_t seq; /* the job's */
} reply_to;

static void worker_reply(const reply_to *to, uint32_t item, int code, const char *msg,
                         uint64_t value, const fp_bytes *bytes) {
  reply_header h = {WIRE_MAGIC, to->seq, item, code, msg ? (uint32_t)strlen(msg) : 0, 0,
                    bytes ? bytes->size : value};
  if (h.msg_len > REPLY_MESSAGE_MAX) h.msg_len = REPLY_MESSAGE_MAX;
  if (to->fault == FAULT_GARBAGE_REPLY) h.msg_len = UINT32_MAX;
  if (to->fault == FAULT_DIE_WRITING) {
    flush_replies(to->fd);
    fp__write_full(to->fd, &h, sizeof h / 2);
    _exit(0);
  }
  size_t record = sizeof h + (to->fault == FAULT_GARBAGE_REPLY ? 0 : h.msg_len);
  if (reply_len + record > sizeof reply_buf) flush_replies(to->fd);
  memcpy(reply_buf + reply_len, &h, sizeof h);
  if (record > sizeof h) memcpy(reply_buf + reply_len + sizeof h, msg, h.msg_len);
  reply_len += record;
  if (bytes) { /* a payload goes straight out, after what precedes it */
    flush_replies(to->fd);
    if (fp__write_full(to->fd, bytes->data, bytes->size)) _exit(0);
  }
}

/* One item of a job, read in full before any item runs. */
typedef struct worker_item {
  fp_fn fn;
  void *arg;        /* the value, or an fp_bytes (JOB_BYTES) */
  size_t arg_size;  /* JOB_BYTES: the argument's size */
  bool no_memory;   /* JOB_BYTES: no room for the argument; it was skipped */
} worker_item;

/* Read and drop len bytes (an argument there is no memory for). */
static void skip_bytes(int fd, uint64_t len) {
  char sink[4096];
  while (len) {
    size_t n = len < sizeof sink ? (size_t)len : sizeof sink;
    if (fp__read_full(fd, sink, n)) _exit(0);
    len -= n;
  }
}

/* Read a whole job. Reading everything first matters: the parent sends a
 * job in one go, and a worker that replied while the parent was still
 * sending would fill its socket with replies nobody reads -- each side
 * blocked on the other (the wakeup-pipe deadlock of cpython#105829). */
static worker_item *read_job(int fd, const job_header *job, int fault) {
  worker_item *items = fp__calloc(job->count ? job->count : 1, sizeof *items);
  item_header *headers =
      job->kind == JOB_VALUE ? fp__calloc(job->count ? job->count : 1, sizeof *headers) : NULL;
  if (!items || (job->kind == JOB_VALUE && !headers))
    _exit(WORKER_EXIT_NOMEM); /* the parent names it */
  if (headers && fp__read_full(fd, headers, job->count * sizeof *headers)) _exit(0);
  for (uint32_t i = 0; i < job->count; i++) {
    item_header it;
    if (headers)
      it = headers[i]; /* value jobs: all the items came in one read */
    else if (fp__read_full(fd, &it, sizeof it))
      _exit(0);
    if (fault == FAULT_DIE_READING) _exit(0);
    items[i].fn = (fp_fn)(uintptr_t)it.fn;
    items[i].arg = (void *)(uintptr_t)it.arg;
    if (job->kind == JOB_BYTES) {
      fp_bytes *in = it.arg <= SIZE_MAX ? fp_bytes_new((size_t)it.arg) : NULL;
      items[i].arg = in;
      items[i].arg_size = (size_t)it.arg;
      items[i].no_memory = !in;
      if (!in)
        skip_bytes(fd, it.arg); /* the item fails; the stream stays whole */
      else if (fp__read_full(fd, in->data, in->size))
        _exit(0);
    }
  }
  fp__free(headers);
  return items;
}

/* Run one item and reply. */
static void run_item(const reply_to *to, uint32_t index, uint32_t kind, const worker_item *item,
                     size_t memory_limit) {
  if (item->no_memory) {
    char msg[160];
    snprintf(msg, sizeof msg,
             "the worker has no memory for the task's %zu-byte argument (memory_limit %zu bytes)",
             item->arg_size, memory_limit);
    worker_reply(to, index, FP_ENOMEM, msg, 0, NULL);
    return;
  }
  int code = 0;
  char *msg = NULL;
  void *result = fp__call_task(item->fn, item->arg, &code, &msg);
  if (kind == JOB_BYTES) fp_bytes_free(item->arg);
  if (code) {
    worker_reply(to, index, code, msg ? msg : fp_strerror(code), 0, NULL);
  } else if (kind == JOB_BYTES) {
    fp_bytes empty = {0};
    worker_reply(to, index, 0, NULL, 0, result ? result : &empty);
    fp_bytes_free(result);
  } else {
    worker_reply(to, index, 0, NULL, (uint64_t)(uintptr_t)result, NULL);
  }
  fp__free(msg);
}

static void worker_main(int fd, const fork_server_config *cfg, pid_t fork_server) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != fork_server) _exit(0); /* it died before the line above */
  setpgid(0, 0); /* a group of its own: what a task starts dies with it */
  fd = move_high(fd);
  if (cfg->memory_limit) {
    struct rlimit rl = {cfg->memory_limit, cfg->memory_limit};
    setrlimit(RLIMIT_AS, &rl);
  }
  keep_replies_on_crash(fd);
  hello h = {WIRE_MAGIC, 0, (int32_t)getpid(), 0};
  if (cfg->initializer) h.code = cfg->initializer(cfg->initializer_arg);
  if (fp__write_full(fd, &h, sizeof h) || h.code) _exit(0);
  for (long done = 0;;) {
    job_header job;
    if (fp__read_full(fd, &job, sizeof job) || job.magic != WIRE_MAGIC)
      _exit(0); /* the parent closed: done */
    worker_item *items = read_job(fd, &job, cfg->fault);
    reply_to to = {fd, cfg->fault, job.seq};
    for (uint32_t i = 0; i < job.count; i++) {
      run_item(&to, i, job.kind, &items[i], cfg->memory_limit);
      if (cfg->reply_each) flush_replies(fd);
    }
    flush_replies(fd);
    fp__free(items);
    if (cfg->max_tasks_per_child && ++done >= cfg->max_tasks_per_child) _exit(0);
  }
}

/* ---- the fork server ---- */

static int sigchld_pipe[2] = {-1, -1}; /* in the fork server only */

/* The fork server's workers, to reap them all before it exits. */
static pid_t *live;
static size_t live_count, live_room;

static void on_sigchld(int sig) {
  (void)sig;
  int saved = errno;
  char c = 'c';
  ssize_t n = write(sigchld_pipe[1], &c, 1);
  (void)n;
  errno = saved;
}

pid_t fp__waitpid(pid_t pid, int *status, int options) {
  pid_t got;
  while ((got = waitpid(pid, status, options)) < 0 && errno == EINTR) {
  }
  return got;
}

static int send_fd(int ctl, const ctl_msg *msg, int fd) {
  struct iovec iov = {(void *)msg, sizeof *msg};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (fd >= 0) {
    mh.msg_control = u.buf;
    mh.msg_controllen = sizeof u.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  ssize_t n;
  while ((n = sendmsg(ctl, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  return n < 0 ? -1 : 0;
}

/* Kill a worker's whole process group: the worker and whatever its tasks
 * started and left behind. */
static void kill_group(pid_t pid) {
  if (kill(-pid, SIGKILL)) kill(pid, SIGKILL);
}

static void spawn_worker(int ctl, int32_t id, const fork_server_config *cfg) {
  int sv[2];
  ctl_msg reply = {CTL_SPAWN_FAILED, id, 0, 0};
  if (live_count == live_room) { /* room to remember it, first */
    size_t room = live_room ? 2 * live_room : 16;
    pid_t *grown = fp__realloc(live, room * sizeof *grown);
    if (!grown) {
      reply.status = ENOMEM;
      send_fd(ctl, &reply, -1);
      return;
    }
    live = grown;
    live_room = room;
  }
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
    reply.status = errno;
    send_fd(ctl, &reply, -1);
    return;
  }
  pid_t fork_server = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    close(ctl);
    close(sv[0]);
    close(sigchld_pipe[0]);
    close(sigchld_pipe[1]);
    signal(SIGCHLD, SIG_DFL);
    worker_main(sv[1], cfg, fork_server);
    _exit(0);
  }
  close(sv[1]);
  if (pid < 0) {
    reply.status = errno;
    send_fd(ctl, &reply, -1);
  } else {
    setpgid(pid, pid); /* as the worker does: whichever runs first */
    live[live_count++] = pid;
    reply = (ctl_msg){CTL_WORKER, id, pid, 0};
    send_fd(ctl, &reply, sv[0]);
  }
  close(sv[0]);
}

static void forget(pid_t pid) {
  for (size_t i = 0; i < live_count; i++)
    if (live[i] == pid) {
      live[i] = live[--live_count];
      return;
    }
}

/* Reap every worker that exited, kill what it left behind, and tell the
 * parent (ctl < 0: nobody to tell). */
static void reap(int ctl) {
  int status;
  pid_t pid;
  while ((pid = fp__waitpid(-1, &status, WNOHANG)) > 0) {
    kill(-pid, SIGKILL); /* the group only: the pid itself may be reused now */
    forget(pid);
    ctl_msg m = {CTL_EXITED, 0, pid, status};
    if (ctl >= 0) send_fd(ctl, &m, -1);
  }
}

/* The parent is done with the pool: its workers had EOF on their sockets
 * and exit by themselves; those that do not within the grace period (a
 * task that ignores SIGTERM, a stopped worker) are killed. Every one is
 * reaped before the fork server exits: orphans would be left to init, or
 * pile up as zombies where the program is PID 1 or a subreaper. */
#define SHUTDOWN_GRACE_S 1.0
static void end_workers(void) {
  double deadline = fp__now() + SHUTDOWN_GRACE_S;
  while (live_count) {
    double left = deadline - fp__now();
    if (left <= 0) break;
    struct pollfd p = {sigchld_pipe[0], POLLIN, 0};
    if (poll(&p, 1, (int)(left * 1000) + 1) > 0) {
      char buf[64];
      while (read(sigchld_pipe[0], buf, sizeof buf) > 0) {
      }
    }
    reap(-1);
  }
  while (live_count) {
    pid_t pid = live[--live_count];
    kill_group(pid);
    fp__waitpid(pid, NULL, 0);
  }
}

static void fork_server_main(int ctl, pid_t parent, const fork_server_config *cfg) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(0); /* the parent died before the line above */
  /* The parent program's signal handlers have no business in a worker (a
   * test framework's SIGTERM handler would kill its whole process group):
   * every signal to its default, but Ctrl-C, which is the parent's to
   * handle -- it stops the workers itself. */
  for (int sig = 1; sig < NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
  signal(SIGINT, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  /* Keep nothing of the parent's but stdio and the control socket. */
  if (ctl != 3) {
    dup2(ctl, 3);
    close(ctl);
    ctl = 3;
  }
  close_range(4, ~0U, 0);
  if (pipe2(sigchld_pipe, O_CLOEXEC | O_NONBLOCK)) _exit(1);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigchld;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  for (;;) {
    struct pollfd p[2] = {{ctl, POLLIN, 0}, {sigchld_pipe[0], POLLIN, 0}};
    if (poll(p, 2, -1) < 0) continue;
    if (p[1].revents) {
      char buf[64];
      while (read(sigchld_pipe[0], buf, sizeof buf) > 0) {
      }
      reap(ctl);
    }
    if (p[0].revents) {
      ctl_msg m;
      ssize_t n = recv(ctl, &m, sizeof m, 0);
      if (n == 0 || (n < 0 && errno != EINTR)) break; /* the parent is gone or done */
      if (n == (ssize_t)sizeof m && m.type == CTL_SPAWN) spawn_worker(ctl, m.worker_id, cfg);
    }
  }
  close(ctl);
  end_workers();
  _exit(0);
}

int fp__fork_server_start(const fork_server_config *cfg, pid_t *pid_out, int *ctl_out) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
    return fp__fail(FP_ENOMEM, "process pool: socketpair: %s", strerror(errno));
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(sv[0]);
    close(sv[1]);
    return fp__fail(FP_ENOMEM, "process pool: cannot fork its fork server: %s", strerror(e));
  }
  if (pid == 0) {
    close(sv[0]);
    fork_server_main(sv[1], parent, cfg);
  }
  close(sv[1]);
  *pid_out = pid;
  *ctl_out = sv[0];
  return 0;
}
