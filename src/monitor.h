/* monitor.h - private: a task manager's monitor lines and progress (on
 * the library's timer) and its Ctrl-C handling (a thread of its own, only
 * when asked). It knows the manager only through the hooks it is given:
 * the counts to show, and what to do on Ctrl-C. */
#ifndef FP_MONITOR_H
#define FP_MONITOR_H

#include "internal.h"

/* The shortest monitor interval: a shorter one would keep a core busy
 * logging. */
#define FP__MONITOR_INTERVAL_MIN 1e-3

typedef struct fp__monitor_counts {
  uint64_t completed, failed, cancelled, retried;
  size_t in_flight;
  /* Latency (seconds; 0 before the first task): */
  double run_p50, run_p99, queue_p99;
  /* The task that has run longest and still runs (running > 0), for the
   * line to name when it runs past 10x run_p50. */
  double running;
  char running_name[96];
} fp__monitor_counts;

typedef struct fp__monitor {
  /* Set by the owner before fp__monitor_start: */
  double interval;       /* seconds between monitor lines; 0: none */
  bool progress;         /* show progress toward total (when total > 0) */
  uint64_t total;
  bool handle_interrupt; /* Ctrl-C calls interrupt(ctx) */
  void *ctx;
  void (*counts)(void *ctx, fp__monitor_counts *out);
  /* Stop the run for Ctrl-C; true if this call stopped it. */
  bool (*interrupt)(void *ctx);
  /* The monitor's own: */
  bool running;     /* the Ctrl-C thread */
  pthread_t thread;
  int wake_pipe[2]; /* [1]: 'q' to quit, 'i' from the SIGINT handler */
  struct interrupt_slot *interrupt_slot; /* handle_interrupt: its registration */
  uint64_t completed_reported;
  /* The ticks on the timer (monitor lines, progress): */
  pthread_mutex_t tick_mu;
  uint64_t timer;     /* the next tick, 0 if none (tick_mu) */
  bool stopping;      /* no tick after this (tick_mu) */
  bool ticking;       /* ticks were started (set before the first) */
  bool tty, show_progress;
  double started, last_monitor, next_monitor, next_progress, progress_every;
  uint64_t shown;     /* what progress showed last */
} fp__monitor;

/* Start the ticks (interval, progress) and the Ctrl-C thread
 * (handle_interrupt), as asked; 0 or FP_ENOMEM. */
int fp__monitor_start(fp__monitor *m);
/* Stop it (the last progress line, the SIGINT registration dropped). Safe
 * on a monitor that never started, and twice. */
void fp__monitor_stop(fp__monitor *m);

#endif
