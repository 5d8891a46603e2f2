/* task_manager.h - private: the task manager's state, shared by
 * task_manager.c (window, policies, fail fast) and monitor.c (the monitor
 * thread: monitor lines, progress, SIGINT). */
#ifndef FP_TASK_MANAGER_H
#define FP_TASK_MANAGER_H

#include "internal.h"

#include <signal.h>

struct fp_task {
  atomic_int refs;
  fp_fn fn;
  void *arg;
  fp_free_fn arg_free;
  _Atomic(fp_future *) future; /* NULL until handed to the executor */
  atomic_bool dropped;          /* never handed over: the run stopped first */
  uint64_t index;
  double queued_at;
  double started_at, finished_at; /* written by the worker before the
                                   * outcome is published */
  struct fp_task_manager *tm;     /* only while in the executor */
  struct fp_task *prev, *next;    /* in one of the manager's lists */
};

/* What is waiting to be handed to the executor, in submission order: a
 * submitted task, or a map's input. */
typedef struct tm_source {
  struct tm_source *next;
  fp_task *task; /* a single task, or NULL for a map: */
  fp_fn fn;
  fp_iter_fn iter;
  void *state;
  fp_free_fn item_free;
} tm_source;

typedef struct tm_list {
  fp_task *head, *tail;
} tm_list;

struct fp_task_manager {
  fp_executor *ex;
  fp_tm_options opt;
  atomic_int refs; /* the user's, plus one per task in the executor */
  pthread_mutex_t mu;
  pthread_cond_t cv; /* a task completed, the window has room, or a stop */

  tm_source *sources, *sources_tail;
  size_t in_flight;  /* counted from submit to consumption */
  size_t backlog;    /* of which submitted tasks not yet handed over */
  size_t peak_in_flight;
  bool feeding;      /* a thread is handing tasks over, outside the lock */
  tm_list running;   /* in the executor */
  tm_list done;      /* completed, not consumed */
  fp_task **kept;    /* keep_completed */
  size_t kept_count, kept_room;
  uint64_t next_index;
  uint64_t submitted, completed, failed, cancelled;
  uint64_t completed_total_reported;

  atomic_bool stopping; /* read by tasks about to start */
  int stop_code;
  char stop_message[256];
  fp_task *failed_task;
  double stop_began, stop_latency;

  /* monitor.c */
  bool reporter_running;
  pthread_t reporter;
  int wake_pipe[2]; /* [1]: 'q' to quit, 'i' from the SIGINT handler */
  struct interrupt_slot *interrupt_slot; /* handle_interrupt: its registration */
};

/* Begin a stop (mu held): returns true if this call began it. */
bool fp__tm_begin_stop(fp_task_manager *tm, int code, fp_task *failed, const char *fmt, ...)
    FP_PRINTF(4, 5);
/* Cancel what the executor has not started; ask running tasks to stop.
 * Called without mu. */
void fp__tm_cancel_running(fp_task_manager *tm);

/* monitor.c */
/* The shortest monitor interval: a shorter one would keep a core busy
 * logging. */
#define FP__MONITOR_INTERVAL_MIN 1e-3
int fp__tm_reporter_start(fp_task_manager *tm);
void fp__tm_reporter_stop(fp_task_manager *tm);

#endif
