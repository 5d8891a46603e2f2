/* watchdog.c - a job dies with fprun, even when fprun is killed with
 * SIGKILL and cannot stop it itself: a small process, forked before fprun
 * starts its threads, is told each job's process group through a pipe
 * ("+pgid" when it starts, "-pgid" once it has been reaped and its group
 * killed). When the pipe's last write end closes -- fprun exited, however
 * it exited -- the watchdog terminates every group still listed (SIGTERM,
 * then SIGKILL after the grace period) and exits. */
#define _GNU_SOURCE
#include "fprun.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int to_watchdog = -1;
static pid_t watchdog_pid;

typedef struct groups {
  pid_t *pgid;
  size_t n, cap;
} groups;

static void groups_add(groups *g, pid_t pgid) {
  if (g->n == g->cap) {
    size_t cap = g->cap ? 2 * g->cap : 64;
    pid_t *grown = realloc(g->pgid, cap * sizeof *grown);
    if (!grown) return; /* cannot happen in practice; the group is then not watched */
    g->pgid = grown;
    g->cap = cap;
  }
  g->pgid[g->n++] = pgid;
}

static void groups_remove(groups *g, pid_t pgid) {
  for (size_t i = 0; i < g->n; i++)
    if (g->pgid[i] == pgid) {
      g->pgid[i] = g->pgid[--g->n];
      return;
    }
}

/* Signal every listed group; the number still alive. */
static size_t signal_groups(groups *g, int sig) {
  size_t alive = 0;
  for (size_t i = 0; i < g->n; i++)
    if (g->pgid[i] && kill(-g->pgid[i], sig) == 0) alive++;
    else g->pgid[i] = 0;
  return alive;
}

static _Noreturn void watch(int from_fprun, double grace) {
  groups g = {0};
  int32_t records[1024];
  size_t have = 0; /* bytes of a record split across reads */
  for (;;) {
    ssize_t n = read(from_fprun, (char *)records + have, sizeof records - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    have += (size_t)n;
    size_t whole = have / sizeof records[0];
    for (size_t i = 0; i < whole; i++) {
      if (records[i] > 0) groups_add(&g, records[i]);
      else groups_remove(&g, -records[i]);
    }
    have -= whole * sizeof records[0];
    memmove(records, (char *)records + whole * sizeof records[0], have);
  }
  /* fprun is gone: what it left running goes too. */
  if (signal_groups(&g, SIGTERM)) {
    struct timespec tick = {0, 10 * 1000000L};
    for (double waited = 0; waited < grace && signal_groups(&g, 0); waited += 0.01)
      nanosleep(&tick, NULL);
    signal_groups(&g, SIGKILL);
  }
  _exit(0);
}

int watchdog_start(double grace) {
  if (to_watchdog >= 0) return 0; /* started already (--mpi starts it first) */
  int p[2];
  if (pipe2(p, O_CLOEXEC)) return -errno;
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(p[0]);
    close(p[1]);
    return -e;
  }
  if (pid == 0) {
    /* Signals meant for fprun's terminal group (Ctrl-C, a hang-up) are
     * fprun's to handle; this one goes only when fprun does. */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGQUIT, SIG_IGN);
    prctl(PR_SET_NAME, "fprun watchdog");
    /* A session of its own: what kills fprun's process group (mpirun's
     * launcher does, a terminal's hang-up does) does not reach it. */
    setsid();
    /* It holds none of fprun's files: a pipe reader downstream sees its
     * end when fprun exits, not when this does. */
    int keep = fcntl(p[0], F_DUPFD, 100), devnull = open("/dev/null", O_RDWR);
    if (keep < 0) _exit(1); /* fprun sees the pipe closed and goes on unwatched */
    for (int fd = 0; fd < 3; fd++) dup2(devnull, fd);
    close_range(3, (unsigned)keep - 1, 0);
    close_range((unsigned)keep + 1, ~0U, 0);
    p[0] = keep;
    watch(p[0], grace);
  }
  close(p[0]);
  to_watchdog = p[1];
  watchdog_pid = pid;
  return 0;
}

static void tell(int32_t record) {
  if (to_watchdog < 0) return;
  while (write(to_watchdog, &record, sizeof record) < 0 && errno == EINTR) {
  }
}

void watchdog_watch(pid_t pgid) { tell((int32_t)pgid); }

void watchdog_forget(pid_t pgid) { tell(-(int32_t)pgid); }

void watchdog_stop(void) {
  if (to_watchdog < 0) return;
  close(to_watchdog);
  to_watchdog = -1;
  while (waitpid(watchdog_pid, NULL, 0) < 0 && errno == EINTR) {
  }
}
