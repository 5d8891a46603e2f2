/* monitor.c - what watches a task manager's run: monitor lines and the
 * progress display, ticking on the library's timer (no thread of their
 * own), and turning a SIGINT into a stop, on a thread of its own (never a
 * worker of the pool) that only Ctrl-C handling starts. It sees the
 * manager only through the hooks of monitor.h. */
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
  char retried[48] = "", latency[96] = "", straggler[160] = "";
  if (c.retried) snprintf(retried, sizeof retried, ", %llu retried", (unsigned long long)c.retried);
  if (c.completed) {
    char p50[16], p99[16], q99[16];
    snprintf(latency, sizeof latency, "; run p50 %s, p99 %s, queue wait p99 %s",
             fp__seconds_text(c.run_p50, p50, sizeof p50),
             fp__seconds_text(c.run_p99, p99, sizeof p99),
             fp__seconds_text(c.queue_p99, q99, sizeof q99));
  }
  if (c.completed && c.running > 10 * c.run_p50 && c.running > 0) {
    char ran[16];
    snprintf(straggler, sizeof straggler, "; %s has run %s", c.running_name,
             fp__seconds_text(c.running, ran, sizeof ran));
  }
  fp_log(FP_LOG_INFO, "%llu tasks completed in the last %.1f s (%zu in flight, %llu failed%s%s)%s",
         (unsigned long long)(c.completed - m->completed_reported), seconds, c.in_flight,
         (unsigned long long)c.failed, retried, latency, straggler);
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

/* A tick on the timer: the monitor line and the progress that are due,
 * then the next tick. */
static void tick(void *arg) {
  fp__monitor *m = arg;
  double now = fp__now();
  if (now >= m->next_monitor) {
    clear_bar(m->tty);
    monitor_line(m, now - m->last_monitor);
    m->last_monitor = now;
    m->next_monitor = now + m->interval;
  }
  if (now >= m->next_progress) {
    m->shown = progress(m, m->started, m->tty, false);
    m->next_progress = now + m->progress_every;
  }
  double next = m->next_monitor < m->next_progress ? m->next_monitor : m->next_progress;
  pthread_mutex_lock(&m->tick_mu);
  m->timer = m->stopping ? 0 : fp__timer_at(next, tick, m);
  pthread_mutex_unlock(&m->tick_mu);
}

/* The Ctrl-C thread: what the SIGINT handler writes, until told to quit. */
static void *monitor_main(void *arg) {
  fp__monitor *m = arg;
#ifdef __linux__
  pthread_setname_np(pthread_self(), "fp-monitor");
#endif
  for (bool quit = false; !quit;) {
    struct pollfd p = {m->wake_pipe[0], POLLIN, 0};
    if (poll(&p, 1, -1) <= 0) continue;
    char c[16];
    ssize_t n = read(m->wake_pipe[0], c, sizeof c);
    for (ssize_t i = 0; i < n; i++) {
      if (c[i] == 'i') interrupted(m, m->tty);
      if (c[i] == 'q') quit = true;
    }
  }
  return NULL;
}

int fp__monitor_start(fp__monitor *m) {
  m->wake_pipe[0] = m->wake_pipe[1] = -1;
  m->running = false;
  m->interrupt_slot = NULL;
  m->completed_reported = 0;
  m->timer = 0;
  m->stopping = false;
  m->ticking = false;
  pthread_mutex_init(&m->tick_mu, NULL);
  m->show_progress = m->progress && m->total > 0;
  m->tty = m->show_progress && isatty(STDERR_FILENO);
  m->progress_every = m->tty ? 0.2 : (m->interval > 0 ? m->interval : 2);
  m->started = m->last_monitor = fp__now();
  m->next_monitor = m->interval > 0 ? m->started + m->interval : 1e300;
  m->next_progress = m->show_progress ? m->started + m->progress_every : 1e300;
  m->shown = UINT64_MAX;
  if (m->interval > 0) fp_log(FP_LOG_INFO, "starting executor monitor");
  if (m->tty) progress(m, m->started, true, false); /* the bar from the start */
  double next = m->next_monitor < m->next_progress ? m->next_monitor : m->next_progress;
  m->ticking = next < 1e300;
  if (m->ticking) {
    pthread_mutex_lock(&m->tick_mu);
    bool armed = (m->timer = fp__timer_at(next, tick, m)) != 0; /* a tick may re-arm at once */
    pthread_mutex_unlock(&m->tick_mu);
    if (!armed) {
      fp__monitor_stop(m);
      return fp__fail(FP_ENOMEM, "task manager: no memory for its monitor's timer");
    }
  }
  if (!m->handle_interrupt) return 0;
  if (pipe(m->wake_pipe)) {
    fp__monitor_stop(m);
    return fp__fail(FP_ENOMEM, "task manager: cannot create a pipe: %s", strerror(errno));
  }
  for (int i = 0; i < 2; i++) {
    fcntl(m->wake_pipe[i], F_SETFD, FD_CLOEXEC);
    fcntl(m->wake_pipe[i], F_SETFL, O_NONBLOCK); /* the handler never blocks */
  }
  if (interrupt_register(m)) {
    fp__monitor_stop(m);
    return FP_ENOMEM;
  }
  int rc = pthread_create(&m->thread, NULL, monitor_main, m);
  if (rc) {
    fp__monitor_stop(m);
    return fp__fail(FP_ENOMEM, "task manager: cannot start its Ctrl-C thread: %s", strerror(rc));
  }
  m->running = true;
  return 0;
}

void fp__monitor_stop(fp__monitor *m) {
  pthread_mutex_lock(&m->tick_mu);
  bool ticked = m->ticking && !m->stopping;
  m->stopping = true;
  uint64_t timer = m->timer;
  m->timer = 0;
  pthread_mutex_unlock(&m->tick_mu);
  if (timer) fp__timer_cancel(timer); /* waits for a tick running now: it starts no other */
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
  if (ticked) {
    /* The last state, unless that line was just logged. */
    if (m->show_progress && (m->tty || done_so_far(m) != m->shown))
      progress(m, m->started, m->tty, true);
    if (m->interval > 0) fp_log(FP_LOG_INFO, "shutting down monitor");
  }
}
