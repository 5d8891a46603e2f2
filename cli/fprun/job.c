/* job.c - one fprun job: spawned with posix_spawn (no shell unless the
 * template asks for one) in a process group of its own, stdin from
 * /dev/null, its output collected; a timeout or a stop terminates the
 * whole group (SIGTERM, then SIGKILL after a grace period), and whatever
 * the job left running is killed when it exits. */
#define _GNU_SOURCE
#include "fprun.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void job_result_clear(job_result *res) {
  free(res->out);
  free(res->err);
  memset(res, 0, sizeof *res);
}

static int append(char **buf, size_t *len, const char *data, size_t n) {
  char *grown = realloc(*buf, *len + n + 1);
  if (!grown) return FP_ENOMEM;
  memcpy(grown + *len, data, n);
  *len += n;
  grown[*len] = 0;
  *buf = grown;
  return 0;
}

/* Read what fd has now into (buf, len), counting it in *total (if not
 * NULL); -1 at EOF (fd closed), else 0. */
static int drain(int *fd, char **buf, size_t *len, size_t *total) {
  char chunk[65536];
  for (;;) {
    ssize_t n = read(*fd, chunk, sizeof chunk);
    if (n > 0) {
      if (append(buf, len, chunk, (size_t)n)) return FP_ENOMEM;
      if (total) *total += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return 0;
    close(*fd);
    *fd = -1;
    return -1;
  }
}

/* /dev/null, opened once: each job's stdin is a dup of it. */
static int dev_null = -1;
static void open_dev_null(void) { dev_null = open("/dev/null", O_RDONLY | O_CLOEXEC); }

static int spawn(char *const *argv, int out_fd, int err_fd, pid_t *pid) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, open_dev_null);
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  if (dev_null >= 0)
    posix_spawn_file_actions_adddup2(&fa, dev_null, 0);
  else
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (out_fd >= 0) posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
  if (err_fd >= 0) posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  const int reset[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD};
  for (size_t i = 0; i < sizeof reset / sizeof reset[0]; i++) sigaddset(&defaults, reset[i]);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0); /* a group of its own: stopped whole */
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
  int rc = posix_spawnp(pid, argv[0], &fa, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  return rc;
}

static pthread_mutex_t output_mu = PTHREAD_MUTEX_INITIALIZER;

static int write_tagged(FILE *to, const char *data, size_t len, const char *tag) {
  if (!tag) return fwrite(data, 1, len, to) == len ? 0 : -1;
  size_t start = 0;
  for (size_t i = 0; i < len; i++)
    if (data[i] == '\n' || i + 1 == len) {
      if (fprintf(to, "%s\t", tag) < 0 || fwrite(data + start, 1, i + 1 - start, to) != i + 1 - start)
        return -1;
      start = i + 1;
    }
  return 0;
}

int job_write_lines(int fd, const char *data, size_t len, const char *tag) {
  FILE *to = fd == 2 ? stderr : stdout;
  pthread_mutex_lock(&output_mu);
  int rc = write_tagged(to, data, len, tag) || fflush(to) ? (errno ? -errno : -EIO) : 0;
  pthread_mutex_unlock(&output_mu);
  return rc;
}

/* --line-buffer: hand the whole lines collected so far (all: and what is
 * left) to opt->write_lines (job_write_lines: to stdout and stderr, under
 * the output lock), and keep the rest. */
static void write_lines(job_result *res, const job_options *opt, bool all) {
  struct stream {
    char **buf;
    size_t *len;
    int fd;
  } streams[2] = {{&res->out, &res->out_len, 1}, {&res->err, &res->err_len, 2}};
  for (int k = 0; k < 2; k++) {
    struct stream *st = &streams[k];
    size_t whole = *st->len;
    if (!all)
      while (whole && (*st->buf)[whole - 1] != '\n') whole--;
    if (!whole) continue;
    int rc = (opt->write_lines ? opt->write_lines : job_write_lines)(st->fd, *st->buf, whole,
                                                                     opt->tag);
    if (rc && st->fd == 1 && !res->write_error) res->write_error = rc;
    memmove(*st->buf, *st->buf + whole, *st->len - whole);
    *st->len -= whole;
  }
}

int job_run(char *const *argv, const job_options *opt, job_result *res) {
  memset(res, 0, sizeof *res);
  res->started = wall_now();
  double t0 = fp_now();
  int out[2] = {-1, -1}, err[2] = {-1, -1};
  if (opt->group && (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))) {
    int e = errno;
    for (int i = 0; i < 2; i++) {
      if (out[i] >= 0) close(out[i]);
      if (err[i] >= 0) close(err[i]);
    }
    return -e;
  }
  if (opt->group) { /* our ends only: the job writes as to any pipe */
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(err[0], F_SETFL, O_NONBLOCK);
  }
  pid_t pid;
  int rc = spawn(argv, out[1], err[1], &pid);
  if (out[1] >= 0) close(out[1]);
  if (err[1] >= 0) close(err[1]);
  if (rc) {
    if (out[0] >= 0) close(out[0]);
    if (err[0] >= 0) close(err[0]);
    res->not_found = rc == ENOENT;
    res->status = rc == ENOENT ? 127 : 126; /* as a shell says */
    if (append(&res->err, &res->err_len, "fprun: ", 7) == 0) {
      const char *what = strerror(rc);
      append(&res->err, &res->err_len, argv[0], strlen(argv[0]));
      append(&res->err, &res->err_len, ": ", 2);
      append(&res->err, &res->err_len, what, strlen(what));
      append(&res->err, &res->err_len, "\n", 1);
    }
    res->runtime = fp_now() - t0;
    return 0;
  }
  watchdog_watch(pid);
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  double deadline = opt->timeout > 0 ? t0 + opt->timeout : 0, kill_at = 0, drained_by = 0;
  bool exited = false;
  int status = 0;
  while (!exited || out[0] >= 0 || err[0] >= 0) {
    struct pollfd p[3] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}, {exited ? -1 : pidfd, POLLIN, 0}};
    poll(p, 3, 20); /* a look at the clock and at a stop request, 50 times a second */
    if (out[0] >= 0 && drain(&out[0], &res->out, &res->out_len, &res->received) == FP_ENOMEM) break;
    if (err[0] >= 0 && drain(&err[0], &res->err, &res->err_len, NULL) == FP_ENOMEM) break;
    if (opt->line_buffer) write_lines(res, opt, false);
    double now = fp_now();
    if (!exited && waitpid(pid, &status, WNOHANG) == pid) {
      exited = true;
      kill(-pid, SIGKILL); /* what it left running in its group goes with it */
      /* Something that left the group (setsid) may hold the pipes open for
       * ever: what it writes within the grace period is kept, then no more. */
      drained_by = now + opt->kill_grace;
      continue;
    }
    if (exited && now >= drained_by) break;
    if (exited) continue; /* draining what is left in the pipes */
    if (opt->timeout_now) { /* a timeout that moves with the jobs' median */
      double timeout = opt->timeout_now();
      deadline = timeout > 0 ? t0 + timeout : 0;
    }
    bool stop = (deadline && now >= deadline) || fp_cancel_requested();
    if (stop && !kill_at) {
      res->timed_out = deadline && now >= deadline;
      res->stopped = !res->timed_out;
      kill(-pid, SIGTERM);
      kill_at = now + opt->kill_grace;
    } else if (kill_at && now >= kill_at) {
      kill(-pid, SIGKILL);
    }
  }
  if (!exited) { /* out of memory collecting its output: stop it */
    kill(-pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  watchdog_forget(pid);
  if (out[0] >= 0) close(out[0]);
  if (err[0] >= 0) close(err[0]);
  if (pidfd >= 0) close(pidfd);
  if (opt->line_buffer) write_lines(res, opt, true); /* a last line without its newline */
  res->runtime = fp_now() - t0;
  if (WIFSIGNALED(status)) {
    res->signal = WTERMSIG(status);
    res->status = 128 + res->signal;
  } else {
    res->status = WEXITSTATUS(status);
  }
  return exited ? 0 : FP_ENOMEM;
}

int job_write_output(const job_result *res, const char *tag) {
  pthread_mutex_lock(&output_mu);
  int rc = 0;
  if (res->out_len && (write_tagged(stdout, res->out, res->out_len, tag) || fflush(stdout)))
    rc = -errno;
  if (res->err_len) {
    write_tagged(stderr, res->err, res->err_len, tag);
    fflush(stderr);
  }
  pthread_mutex_unlock(&output_mu);
  return rc;
}
