/* process_pool.h - private: the process pool's parent side, shared by the
 * caller's side (process_pool.c: submit, shutdown, stats, creation) and
 * the dispatcher thread's (process_dispatcher.c: workers, jobs, replies,
 * failures). The caller's side calls the dispatcher's, never the reverse. */
#ifndef FP_PROCESS_POOL_H
#define FP_PROCESS_POOL_H

#include "fork_server.h"

#include <poll.h>
#include <sys/uio.h>

typedef struct job {
  struct job *next;
  uint32_t seq;     /* its number on its worker's stream, once given */
  uint32_t kind;
  uint32_t count;
  uint32_t replied; /* items answered so far */
  bool started;     /* its futures are running (sent once, and sent back) */
  fp_future *fs[];  /* each with the executor's reference */
} job;

typedef enum { W_STARTING, W_IDLE, W_BUSY, W_DEAD } worker_state;

typedef struct worker {
  pid_t pid;
  int fd;            /* non-blocking: the dispatcher never waits on one worker */
  worker_state state;
  job *job;          /* BUSY, or DEAD with an unsettled job: the one running */
  job *job_tail;     /* the last sent; jobs after the first wait in its socket */
  int sent;          /* jobs sent and not yet answered */
  uint32_t next_seq;
  double job_started; /* when the running job started */
  uint64_t item_started_ns; /* when its running item started (fp__now_ns) */
  double last_job_s;  /* how long the last finished job took; -1: none yet */
  double deadline;   /* BUSY with task_timeout */
  long jobs_done;
  bool eof, exited;  /* DEAD: seen EOF, and the fork server's report */
  int status;
  double died_at;
  /* What was read and not yet parsed; a bytes result being read. */
  char *in;
  size_t in_len, in_pos;
  fp_bytes *payload;
  size_t payload_got;
  /* What is still to be sent: iovecs over `out_block` (headers) and the
   * futures' byte arguments. */
  struct iovec *out;
  size_t out_count, out_next;
  void *out_block;
} worker;

typedef struct process_pool {
  fp_executor base;
  fp_process_pool_options opt;
  pthread_mutex_t mu;
  pthread_cond_t done_cv; /* the dispatcher exited */
  job *head, *tail;       /* queued (mu) */
  size_t queued;
  bool shutting_down, cancel_check, dispatcher_done;
  int kill_signal;        /* kill_workers asked (mu) */
  uint64_t submitted;
  atomic_uint_fast64_t completed;
  int wake[2];
  pthread_t dispatcher;
  /* The dispatcher's own: */
  pid_t fs_pid;
  int ctl;
  worker *workers;
  struct pollfd *fds; /* room for every worker and two more, grown with them */
  size_t nworkers, workers_room;
  int32_t next_worker_id;
  size_t spawning;
  double spawn_failing_since; /* 0: the last spawn worked */
  double spawn_backoff, spawn_retry_at;
  char spawn_error[128];
} process_pool;

/* ---- the dispatcher's side (process_dispatcher.c) ---- */

/* The dispatcher thread's body (pthread_create). */
void *fp__pp_dispatcher_main(void *pool);
/* Called from p's dispatcher thread (where its callbacks run)? */
bool fp__pp_in_dispatcher(const process_pool *p);
/* Room for one more worker (its slot, poll entry and buffer); NULL on
 * ENOMEM. */
worker *fp__pp_add_worker(process_pool *p, pid_t pid, int fd);
/* One message to or from the fork server (recvmsg's or send's result). */
ssize_t fp__pp_send_control(process_pool *p, const ctl_msg *m);
ssize_t fp__pp_recv_control(process_pool *p, ctl_msg *m, int *fd, int flags);
/* Settle every item of a list of jobs with (code, msg) and free them. */
void fp__pp_settle_list(process_pool *p, job *list, int code, const char *msg);
/* Take the whole queue (mu held). */
job *fp__pp_detach_queue(process_pool *p);

#endif
