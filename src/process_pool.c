/* process_pool.c - the process pool executor, the caller's side: options,
 * creation (the fork server and the first worker), submit, shutdown, stats
 * and kill; the dispatcher thread (process_dispatcher.c) does the rest. */
#define _GNU_SOURCE
#include "process_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* How long fp_process_pool_new waits for its fork server's first worker. */
#define FIRST_WORKER_TIMEOUT_S 10.0

static void wake(process_pool *p) {
  char c = 'w';
  ssize_t n = write(p->wake[1], &c, 1); /* full pipe: it is awake already */
  (void)n;
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
  /* The refusal under mu: shut_down is raised before pp_shutdown takes
   * it, so a job is either queued before the shutdown or refused. */
  pthread_mutex_lock(&p->mu);
  int rc = fp__executor_refusal(ex);
  if (!rc) {
    FP__QUEUE_PUSH(p->head, p->tail, j, next);
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
  return fp__pp_in_dispatcher((const process_pool *)ex);
}

/* The common code raised shut_down (and cancel_all) before. */
static int pp_shutdown(fp_executor *ex, bool wait, bool cancel_futures, double timeout_s) {
  process_pool *p = (process_pool *)ex;
  fp__deadline deadline = fp__deadline_in(timeout_s), *d = &deadline;
  pthread_mutex_lock(&p->mu);
  p->shutting_down = true;
  job *cancelled = cancel_futures ? fp__pp_detach_queue(p) : NULL;
  pthread_mutex_unlock(&p->mu);
  fp__pp_settle_list(p, cancelled, FP_ECANCELED, "cancelled by shutdown");
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
  fp__free(p->fds);
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

static const fp_executor_vtable process_pool_vtable = {
    .version = FP_EXECUTOR_INTERFACE_VERSION,
    .kind = "process pool",
    .submit = pp_submit,
    .submit_chunk = pp_submit_chunk,
    .shutdown = pp_shutdown,
    .is_own_thread = pp_is_own_thread,
    .destroy = pp_destroy,
    .stats = pp_stats,
    .cancel_running = pp_cancel_running,
    .shares_memory = false,
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
  opt->max_workers = fp_cpu_count();
}

/* Start the first worker before the pool is handed out: a program that
 * cannot start any process learns it here, with the reason, rather than
 * from futures that never run. */
static int first_worker(process_pool *p) {
  ctl_msg m = {CTL_SPAWN, ++p->next_worker_id, 0, 0};
  if (fp__pp_send_control(p, &m) < 0)
    return fp__fail(FP_ENOMEM, "fp_process_pool_new: its fork server is gone");
  struct pollfd pf = {p->ctl, POLLIN, 0};
  fp__deadline d = fp__deadline_in(FIRST_WORKER_TIMEOUT_S);
  while (!fp__deadline_passed(&d)) {
    double left = fp__deadline_remaining(&d);
    if (poll(&pf, 1, (int)(left * 1000) + 1) <= 0) continue; /* EINTR, or time to look */
    int fd;
    ssize_t n = fp__pp_recv_control(p, &m, &fd, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (m.type == CTL_SPAWN_FAILED)
      return fp__fail(FP_ENOMEM, "fp_process_pool_new: cannot start a worker process: fork: %s",
                      strerror(m.status));
    if (m.type != CTL_WORKER) continue;
    if (fd >= 0 && fp__pp_add_worker(p, m.pid, fd)) return 0;
    if (fd >= 0) close(fd);
    return fp__fail(FP_ENOMEM, "fp_process_pool_new: out of memory for its first worker");
  }
  return fp__fail(FP_ENOMEM, "fp_process_pool_new: its fork server did not start a worker");
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
  /* With a task timeout the parent restarts an item's clock at each reply,
   * so replies must not wait for the end of a chunk. */
  fork_server_config cfg = {.initializer = opt->initializer,
                            .initializer_arg = opt->initializer_arg,
                            .max_tasks_per_child = opt->max_tasks_per_child,
                            .memory_limit = opt->memory_limit,
                            .reply_each = opt->task_timeout > 0};
#ifdef FP_TESTING /* the test suite's library only: workers fail on purpose */
  const char *fault = getenv("FUTUREPROOF_TEST_FAULT");
  cfg.fault = fault ? atoi(fault) : 0;
#endif
  int rc = fp__fork_server_start(&cfg, &p->fs_pid, &p->ctl);
  if (!rc && (pthread_mutex_init(&p->mu, NULL) || fp__cond_init(&p->done_cv)))
    rc = fp__fail(FP_ENOMEM, "fp_process_pool_new: out of resources");
  fp__executor_init(&p->base, &process_pool_vtable, p, opt->max_workers);
  atomic_init(&p->completed, 0);
  if (!rc) rc = first_worker(p);
  if (!rc && (rc = pthread_create(&p->dispatcher, NULL, fp__pp_dispatcher_main, p)) != 0)
    rc = fp__fail(FP_ENOMEM, "fp_process_pool_new: cannot start its thread: %s", strerror(rc));
  if (rc) {
    for (size_t i = 0; i < p->nworkers; i++) {
      close(p->workers[i].fd);
      fp__free(p->workers[i].in);
    }
    if (p->ctl >= 0) {
      close(p->ctl); /* the fork server reaps the worker and exits */
      fp__waitpid(p->fs_pid, NULL, 0);
    }
    close(p->wake[0]);
    close(p->wake[1]);
    fp__free(p->workers);
    fp__free(p->fds);
    fp__free(p);
    return rc;
  }
  *out = &p->base;
  return 0;
}
