/* monitor.c - the task manager's own thread (never a worker of the pool):
 * monitor lines, the progress display, and turning a SIGINT into a stop.
 * It sees the manager only through the hooks of monitor.h. */
#define _GNU_SOURCE
#include "monitor.h"

#include <fcntl.h>
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- Ctrl-C: one process-wide registry ----
 * A signal handler can only reach process-wide state. Every live manager
 * that asked for SIGINT has a slot holding its wake pipe; the handler
 * writes to each. The library's handler is installed by the first
 * registration and the program's own restored by the last, whatever the
 * order managers are freed in. Slots are never freed (a handler may be
 * walking them), only reused; a slot is emptied, then the pipe is closed
 * only once no handler is still inside, so a late handler never writes to
 * a descriptor that has been reused meanwhile. */
typedef struct interrupt_slot {
  atomic_int fd; /* -1: free */
  struct interrupt_slot *next;
} interrupt_slot;

static _Atomic(interrupt_slot *) interrupt_slots;
static atomic_int handlers_inside;
static atomic_int interrupts_seen;
static pthread_mutex_t interrupt_mu = PTHREAD_MUTEX_INITIALIZER; /* registering */
static int interrupt_users;
static struct sigaction program_sigint;

static void on_sigint(int sig) {
  if (atomic_fetch_add(&interrupts_seen, 1) > 0) { /* the second one: exit now */
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  int saved = errno;
  atomic_fetch_add(&handlers_inside, 1);
  for (interrupt_slot *s = atomic_load(&interrupt_slots); s; s = s->next) {
    int fd = atomic_load(&s->fd);
    if (fd >= 0) {
      char c = 'i';
      ssize_t written = write(fd, &c, 1); /* async-signal-safe */
      (void)written;
    }
  }
  atomic_fetch_sub(&handlers_inside, 1);
  errno = saved;
}

static int interrupt_register(fp__monitor *m) {
  pthread_mutex_lock(&interrupt_mu);
  interrupt_slot *slot = NULL;
  for (interrupt_slot *s = atomic_load(&interrupt_slots); s && !slot; s = s->next)
    if (atomic_load(&s->fd) < 0) slot = s;
  if (!slot && (slot = fp__calloc(1, sizeof *slot)) != NULL) {
    atomic_init(&slot->fd, -1);
    slot->next = atomic_load(&interrupt_slots);
    atomic_store(&interrupt_slots, slot);
  }
  if (slot) {
    atomic_store(&slot->fd, m->wake_pipe[1]);
    if (interrupt_users++ == 0) {
      struct sigaction sa;
      memset(&sa, 0, sizeof sa);
      sa.sa_handler = on_sigint;
      sa.sa_flags = SA_RESTART;
      sigemptyset(&sa.sa_mask);
      atomic_store(&interrupts_seen, 0);
      sigaction(SIGINT, &sa, &program_sigint);
    }
  }
  pthread_mutex_unlock(&interrupt_mu);
  m->interrupt_slot = slot;
  return slot ? 0 : fp__fail(FP_ENOMEM, "task manager: no memory to handle Ctrl-C");
}

static void interrupt_unregister(fp__monitor *m) {
  interrupt_slot *slot = m->interrupt_slot;
  if (!slot) return;
  pthread_mutex_lock(&interrupt_mu);
  atomic_store(&slot->fd, -1);
  if (--interrupt_users == 0) sigaction(SIGINT, &program_sigint, NULL);
  pthread_mutex_unlock(&interrupt_mu);
  m->interrupt_slot = NULL;
  while (atomic_load(&handlers_inside)) /* a handler that read the fd is still writing */
    sched_yield();
}

/* A log line from this thread must not land on the progress bar. */
static void clear_bar(bool tty) {
  if (tty) fputs("\r\033[K", stderr);
}

static void monitor_line(fp__monitor *m, double seconds) {
  fp__monitor_counts c;
  m->counts(m->ctx, &c);
  char retried[48] = "";
  if (c.retried) snprintf(retried, sizeof retried, ", %llu retried", (unsigned long long)c.retried);
  fp_log(FP_LOG_INFO, "%llu tasks completed in the last %.1f s (%zu in flight, %llu failed%s)",
         (unsigned long long)(c.completed - m->completed_reported), seconds, c.in_flight,
         (unsigned long long)c.failed, retried);
  m->completed_reported = c.completed;
}

/* Tasks done so far: completed or cancelled. */
static uint64_t done_so_far(fp__monitor *m) {
  fp__monitor_counts c;
  m->counts(m->ctx, &c);
  return c.completed + c.cancelled;
}

/* Draw (tty) or log the progress; returns the count it showed. */
static uint64_t progress(fp__monitor *m, double started, bool tty, bool final) {
  uint64_t done = done_so_far(m);
  uint64_t total = m->total;
  if (done > total) done = total;
  double elapsed = fp__now() - started;
  double rate = elapsed > 0 ? (double)done / elapsed : 0;
  double eta = rate > 0 ? (double)(total - done) / rate : 0;
  int percent = (int)(100.0 * (double)done / (double)total);
  if (tty) {
    char bar[31];
    int filled = percent * 30 / 100;
    for (int i = 0; i < 30; i++) bar[i] = i < filled ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\r[%s] %llu/%llu %3d%% %8.1f tasks/s ETA %5.0f s\033[K%s", bar,
            (unsigned long long)done, (unsigned long long)total, percent, rate, eta,
            final ? "\n" : "");
    fflush(stderr);
  } else {
    fp_log(FP_LOG_INFO, "progress: %llu/%llu (%d%%), %.1f tasks/s, ETA %.0f s",
           (unsigned long long)done, (unsigned long long)total, percent, rate, eta);
  }
  return done;
}

static void interrupted(fp__monitor *m, bool tty) {
  if (!m->interrupt(m->ctx)) return;
  clear_bar(tty);
  fp_log(FP_LOG_WARNING, "interrupted: stopping the run (Ctrl-C again exits at once)");
}

static int ms_until(double when) {
  double left = when - fp__now();
  return left <= 0 ? 0 : (int)(left * 1000) + 1;
}

static void *monitor_main(void *arg) {
  fp__monitor *m = arg;
#ifdef __linux__
  pthread_setname_np(pthread_self(), "fp-monitor");
#endif
  double interval = m->interval;
  bool show_progress = m->progress && m->total > 0;
  bool tty = show_progress && isatty(STDERR_FILENO);
  double progress_every = tty ? 0.2 : (interval > 0 ? interval : 2);
  double started = fp__now(), last_monitor = started;
  double next_monitor = interval > 0 ? started + interval : 1e300;
  double next_progress = show_progress ? started + progress_every : 1e300;
  uint64_t shown = UINT64_MAX;
  if (interval > 0) fp_log(FP_LOG_INFO, "starting executor monitor");
  if (tty) progress(m, started, tty, false); /* the bar from the start */
  for (bool quit = false; !quit;) {
    double next = next_monitor < next_progress ? next_monitor : next_progress;
    struct pollfd p = {m->wake_pipe[0], POLLIN, 0};
    int timeout = next >= 1e300 ? -1 : ms_until(next);
    if (poll(&p, 1, timeout) > 0) {
      char c[16];
      ssize_t n = read(m->wake_pipe[0], c, sizeof c);
      for (ssize_t i = 0; i < n; i++) {
        if (c[i] == 'i') interrupted(m, tty);
        if (c[i] == 'q') quit = true;
      }
    }
    double now = fp__now();
    if (now >= next_monitor) {
      clear_bar(tty);
      monitor_line(m, now - last_monitor);
      last_monitor = now;
      next_monitor = now + interval;
    }
    if (now >= next_progress) {
      shown = progress(m, started, tty, false);
      next_progress = now + progress_every;
    }
  }
  /* The last state, unless that line was just logged. */
  if (show_progress && (tty || done_so_far(m) != shown)) progress(m, started, tty, true);
  if (interval > 0) fp_log(FP_LOG_INFO, "shutting down monitor");
  return NULL;
}

int fp__monitor_start(fp__monitor *m) {
  m->wake_pipe[0] = m->wake_pipe[1] = -1;
  m->running = false;
  m->interrupt_slot = NULL;
  m->completed_reported = 0;
  if (!(m->interval > 0) && !m->handle_interrupt && !(m->progress && m->total)) return 0;
  if (pipe(m->wake_pipe))
    return fp__fail(FP_ENOMEM, "task manager: cannot create a pipe: %s", strerror(errno));
  for (int i = 0; i < 2; i++) {
    fcntl(m->wake_pipe[i], F_SETFD, FD_CLOEXEC);
    fcntl(m->wake_pipe[i], F_SETFL, O_NONBLOCK); /* the handler never blocks */
  }
  if (m->handle_interrupt && interrupt_register(m)) {
    fp__monitor_stop(m);
    return FP_ENOMEM;
  }
  int rc = pthread_create(&m->thread, NULL, monitor_main, m);
  if (rc) {
    fp__monitor_stop(m);
    return fp__fail(FP_ENOMEM, "task manager: cannot start its monitor thread: %s", strerror(rc));
  }
  m->running = true;
  return 0;
}

void fp__monitor_stop(fp__monitor *m) {
  if (m->running) {
    char c = 'q';
    while (write(m->wake_pipe[1], &c, 1) < 0 && errno == EINTR) {
    }
    pthread_join(m->thread, NULL);
    m->running = false;
  }
  interrupt_unregister(m); /* before the pipe closes */
  for (int i = 0; i < 2; i++)
    if (m->wake_pipe[i] >= 0) close(m->wake_pipe[i]);
  m->wake_pipe[0] = m->wake_pipe[1] = -1;
}
