/* test_process_faults.c - the process pool under hostile conditions: tasks
 * that write into the pool's socket, stop mid-reply, fork and exit, leave
 * grandchildren behind; no process can be forked; the parent runs out of
 * memory; signals interrupt every call; thousands of pools come and go.
 * Each ends in a named error or a clean run, never a hang, a wrong result,
 * an orphan or a zombie. */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <dirent.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void *identity(void *arg) { return arg; }

/* ---- a pid passed from a worker (or its child) to the test: a file ---- */
static char pid_path[64];

static void pid_file_init(void) {
  snprintf(pid_path, sizeof pid_path, "/tmp/fp-faults-%d.pid", (int)getpid());
  unlink(pid_path);
}

static void record_pid(pid_t pid) {
  char tmp[80], text[32];
  snprintf(tmp, sizeof tmp, "%s.tmp", pid_path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return;
  int n = snprintf(text, sizeof text, "%d\n", (int)pid);
  ssize_t w = write(fd, text, (size_t)n);
  (void)w;
  close(fd);
  rename(tmp, pid_path); /* whole, or not there */
}

static bool pid_recorded(void *out) {
  FILE *fp = fopen(pid_path, "r");
  if (!fp) return false;
  int pid = 0;
  bool ok = fscanf(fp, "%d", &pid) == 1 && pid > 0;
  fclose(fp);
  if (ok) *(pid_t *)out = pid;
  return ok;
}

static pid_t wait_recorded_pid(void) {
  pid_t pid = 0;
  ck_assert_msg(wait_until(pid_recorded, &pid, LONG_WAIT), "no pid was recorded");
  unlink(pid_path);
  return pid;
}

static bool process_dead(void *arg) { return process_gone(*(pid_t *)arg); }

/* A grandchild that sleeps until killed, its pid recorded. */
static pid_t start_grandchild(void) {
  pid_t pid = fork();
  if (pid == 0) {
    record_pid(getpid());
    for (;;) pause();
  }
  return pid;
}

/* ---- stray bytes, a stopped worker ---- */

/* Writes a byte to every descriptor above stdio -- the pool's socket among
 * them -- then returns 1 after a while. */
static void *scribble_everywhere(void *arg) {
  for (int fd = 3; fd < 1024; fd++) {
    ssize_t n = write(fd, "x", 1);
    (void)n;
  }
  sleep_ms((int)(intptr_t)arg);
  return (void *)1;
}

START_TEST(stray_bytes_from_a_task_fail_it_named_and_never_stall_the_pool) {
  capture_start();
  for (int round = 0; round < 5; round++) {
    fp_executor *ex = new_process_pool(2, 0);
    fp_future *scribbler, *quick;
    ck_assert_int_eq(fp_submit(ex, scribble_everywhere, (void *)(intptr_t)(round ? 0 : 1500),
                               &scribbler),
                     0);
    double t0 = now_s();
    ck_assert_int_eq(fp_submit(ex, identity, (void *)7, &quick), 0);
    /* The other worker answers at once, whatever the scribbler does. */
    ck_assert_int_eq(fp_future_result(quick, 1.0, NULL), 0);
    ck_assert_double_lt(now_s() - t0, 1.0);
    void *r = NULL;
    int rc = fp_future_result(scribbler, LONG_WAIT, &r);
    /* Never a silent wrong result: a named error (the stream is corrupt). */
    ck_assert_msg(rc == FP_ECRASHED, "round %d: got %s, result %p", round, fp_err_name(rc), r);
    ck_assert_ptr_nonnull(strstr(fp_future_error(scribbler)->message, "not a reply"));
    fp_future_release(scribbler);
    fp_future_release(quick);
    fp_future *after; /* the pool goes on */
    ck_assert_int_eq(fp_submit(ex, identity, (void *)42, &after), 0);
    ck_assert_int_eq(value_of(after), 42);
    fp_future_release(after);
    fp_executor_free(ex);
  }
}
END_TEST

/* Starts a reply of its own -- a worker's magic word, no more -- on the
 * socket, then stops itself. */
static void *stop_mid_reply(void *arg) {
  (void)arg;
  const uint32_t magic = 0x66707231u;
  for (int fd = 3; fd < 1024; fd++) {
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode)) {
      ssize_t n = write(fd, &magic, sizeof magic);
      (void)n;
    }
  }
  raise(SIGSTOP);
  return (void *)1;
}

START_TEST(a_worker_stopped_mid_reply_holds_up_only_its_own_task) {
  capture_start();
  fp_executor *ex = new_process_pool(2, 0.5);
  fp_future *stopped, *quick;
  ck_assert_int_eq(fp_submit(ex, stop_mid_reply, NULL, &stopped), 0);
  ck_assert(wait_until(future_running, stopped, LONG_WAIT));
  for (int i = 0; i < 20; i++) {
    double t0 = now_s();
    ck_assert_int_eq(fp_submit(ex, identity, (void *)(intptr_t)i, &quick), 0);
    ck_assert_int_eq(fp_future_result(quick, 2.0, NULL), 0);
    ck_assert_double_lt(now_s() - t0, 2.0);
    fp_future_release(quick);
  }
  /* Its own task times out, the stopped worker is killed. */
  ck_assert_int_eq(fp_future_result(stopped, LONG_WAIT, NULL), FP_ETIMEDOUT);
  fp_future_release(stopped);
  double t0 = now_s();
  fp_executor_free(ex);
  ck_assert_double_lt(now_s() - t0, 5.0);
}
END_TEST

/* ---- exits, and what a task leaves behind ---- */

static void *fork_then_exit(void *arg) {
  (void)arg;
  start_grandchild();
  sleep_ms(20);
  _exit(3);
}

START_TEST(a_task_that_forks_and_exits_settles_at_once) {
  capture_start();
  pid_file_init();
  fp_executor *ex = new_process_pool(1, 0);
  fp_future *f;
  double t0 = now_s();
  ck_assert_int_eq(fp_submit(ex, fork_then_exit, NULL, &f), 0);
  ck_assert_int_eq(fp_future_result(f, 3.0, NULL), FP_ECRASHED);
  ck_assert_double_lt(now_s() - t0, 3.0);
  ck_assert_ptr_nonnull(strstr(fp_future_error(f)->message, "exited with status 3"));
  fp_future_release(f);
  pid_t grandchild = wait_recorded_pid();
  ck_assert_msg(wait_until(process_dead, &grandchild, 5.0), "the grandchild %d lives on",
                (int)grandchild);
  fp_future *after;
  ck_assert_int_eq(fp_submit(ex, identity, (void *)5, &after), 0);
  ck_assert_int_eq(value_of(after), 5);
  fp_future_release(after);
  t0 = now_s();
  fp_executor_free(ex);
  ck_assert_double_lt(now_s() - t0, 3.0);
}
END_TEST

static void *leave_a_grandchild_then(void *arg) {
  start_grandchild();
  long ms = (long)(intptr_t)arg;
  if (ms) sleep_ms((int)ms);
  return (void *)1;
}

/* How the task ends: 0 it times out, 1 it is cancelled while running, 2
 * it returns and the pool is freed. */
static void grandchild_dies_with(int how) {
  capture_start();
  pid_file_init();
  fp_executor *ex = new_process_pool(1, how == 0 ? 0.3 : 0);
  fp_future *f;
  ck_assert_int_eq(
      fp_submit(ex, leave_a_grandchild_then, (void *)(intptr_t)(how == 2 ? 0 : 60000), &f), 0);
  pid_t grandchild = wait_recorded_pid();
  if (how == 0) ck_assert_int_eq(fp_future_result(f, LONG_WAIT, NULL), FP_ETIMEDOUT);
  if (how == 1) {
    ck_assert(wait_until(future_running, f, LONG_WAIT));
    fp_future_cancel(f);
    ck_assert_int_eq(fp_future_result(f, LONG_WAIT, NULL), FP_ECANCELED);
  }
  if (how == 2) {
    ck_assert_int_eq(value_of(f), 1);
    fp_executor_free(ex);
    ex = NULL;
  }
  fp_future_release(f);
  ck_assert_msg(wait_until(process_dead, &grandchild, 5.0), "how %d: the grandchild %d lives on",
                how, (int)grandchild);
  fp_executor_free(ex);
}

START_TEST(a_timed_out_task_takes_its_grandchild_with_it) { grandchild_dies_with(0); }
END_TEST
START_TEST(a_cancelled_task_takes_its_grandchild_with_it) { grandchild_dies_with(1); }
END_TEST
START_TEST(a_freed_pool_takes_its_tasks_grandchildren_with_it) { grandchild_dies_with(2); }
END_TEST

static void *ignore_sigterm_and_wait(void *arg) {
  (void)arg;
  signal(SIGTERM, SIG_IGN);
  record_pid(getpid());
  for (;;) pause();
  return NULL;
}

START_TEST(terminate_workers_returns_once_a_worker_that_ignores_sigterm_is_gone) {
  capture_start();
  pid_file_init();
  /* As a subreaper, an orphaned worker would become this test's zombie:
   * kill(pid, 0) then still finds it. */
  ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  fp_executor *ex = new_process_pool(1, 0);
  fp_future *f;
  ck_assert_int_eq(fp_submit(ex, ignore_sigterm_and_wait, NULL, &f), 0);
  pid_t worker = wait_recorded_pid();
  double t0 = now_s();
  ck_assert_int_eq(fp_process_pool_terminate_workers(ex), 0);
  ck_assert_double_lt(now_s() - t0, 5.0);
  ck_assert_msg(kill(worker, 0) != 0 && errno == ESRCH, "worker %d is still there",
                (int)worker);
  ck_assert_int_eq(fp_future_result(f, 0, NULL), FP_ECANCELED);
  fp_future_release(f);
  fp_executor_free(ex);
}
END_TEST

/* ---- zombies and orphans ---- */

/* Reap what is left of this process's children: zombies, and orphans
 * handed to it as a subreaper. */
static int reap_leftovers(void) {
  int n = 0;
  while (waitpid(-1, NULL, WNOHANG) > 0) n++;
  return n;
}

static void create_and_free_pools(int pools) {
  for (int i = 0; i < pools; i++) {
    fp_executor *ex = new_process_pool(1, 0);
    fp_future *f;
    ck_assert_int_eq(fp_submit(ex, identity, (void *)(intptr_t)i, &f), 0);
    ck_assert_int_eq(value_of(f), i);
    fp_future_release(f);
    fp_executor_free(ex);
  }
}

START_TEST(a_subreaper_inherits_no_worker_from_a_thousand_pools) {
  ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
#ifdef UNDER_SANITIZER
  create_and_free_pools(200);
#else
  create_and_free_pools(1000);
#endif
  /* The fork servers were waited for, and each reaped its workers first:
   * nothing can be handed over any more. */
  ck_assert_int_eq(reap_leftovers(), 0);
}
END_TEST

static atomic_bool storming;
static atomic_long signals_sent;
static void on_usr1(int sig) { (void)sig; }

/* SIGUSR1 to every thread of this process but the sender, again and
 * again: the pools' own threads are interrupted too, wherever they are. */
static void *signal_storm(void *arg) {
  pid_t self = *(pid_t *)arg, sender = (pid_t)syscall(SYS_gettid);
  while (atomic_load(&storming)) {
    DIR *tasks = opendir("/proc/self/task");
    for (struct dirent *e; tasks && (e = readdir(tasks));) {
      pid_t tid = (pid_t)atol(e->d_name);
      if (tid > 0 && tid != sender && syscall(SYS_tgkill, self, tid, SIGUSR1) == 0)
        atomic_fetch_add(&signals_sent, 1);
    }
    if (tasks) closedir(tasks);
    struct timespec ts = {0, 20000};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

START_TEST(pools_freed_in_a_signal_storm_leave_no_zombie) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1; /* no SA_RESTART: every slow call sees EINTR */
  sigemptyset(&sa.sa_mask);
  ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
  pid_t self = getpid();
  atomic_store(&storming, true);
  pthread_t storm;
  ck_assert_int_eq(pthread_create(&storm, NULL, signal_storm, &self), 0);
#ifdef UNDER_SANITIZER
  create_and_free_pools(20); /* a sanitizer delivers signals slowly */
#else
  create_and_free_pools(150);
#endif
  atomic_store(&storming, false);
  pthread_join(storm, NULL);
  ck_assert_int_gt(atomic_load(&signals_sent), 20);
  ck_assert_int_eq(reap_leftovers(), 0); /* a fork server not waited for is a zombie here */
}
END_TEST

/* ---- no process can be started ---- */

/* This process's threads (a sanitizer may run one of its own). */
static rlim_t threads_now(void) {
  FILE *fp = fopen("/proc/self/status", "r");
  char line[256];
  long threads = 1;
  while (fp && fgets(line, sizeof line, fp))
    if (sscanf(line, "Threads: %ld", &threads) == 1) break;
  if (fp) fclose(fp);
  return (rlim_t)threads;
}

/* Become an unprivileged user whose processes and threads are limited to
 * this process's threads and `more` (root is exempt from RLIMIT_NPROC).
 * false where that is not possible (not root): the caller skips. */
static bool limit_processes(uid_t uid, rlim_t more) {
  rlim_t soft = threads_now() + more;
  if (geteuid() != 0) {
    fprintf(stderr, "process_faults: not root, the RLIMIT_NPROC tests are skipped\n");
    return false;
  }
  struct rlimit rl = {soft, soft > 4096 ? soft : 4096};
  ck_assert_int_eq(setrlimit(RLIMIT_NPROC, &rl), 0);
  ck_assert_int_eq(setresgid(uid, uid, uid), 0);
  ck_assert_int_eq(setresuid(uid, uid, uid), 0);
  return true;
}

START_TEST(a_pool_that_cannot_start_a_worker_fails_at_creation) {
  capture_start();
  /* This process and the fork server: no room for a worker. */
  if (!limit_processes(61001, 1)) return;
  fp_executor *ex = (fp_executor *)1;
  double t0 = now_s();
  int rc = fp_process_pool_new(NULL, &ex);
  ck_assert_msg(rc == FP_ENOMEM, "got %s", fp_err_name(rc));
  ck_assert_ptr_null(ex);
  ck_assert_ptr_nonnull(strstr(fp_last_error_message(), "fork"));
  ck_assert_double_lt(now_s() - t0, 5.0);
  /* Not even a fork server. */
  struct rlimit rl = {threads_now(), 4096};
  ck_assert_int_eq(setrlimit(RLIMIT_NPROC, &rl), 0);
  ck_assert_int_eq(fp_process_pool_new(NULL, &ex), FP_ENOMEM);
  ck_assert_int_eq(reap_leftovers(), 0);
  rl.rlim_cur = 4096; /* LeakSanitizer starts a thread at exit */
  ck_assert_int_eq(setrlimit(RLIMIT_NPROC, &rl), 0);
}
END_TEST

static void *crash_abort(void *arg) {
  (void)arg;
  abort();
}

/* The fork server: this process's only child here. */
static pid_t fork_server_pid(void) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%ld/children", (long)syscall(SYS_gettid));
  FILE *fp = fopen(path, "r");
  int pid = 0;
  if (fp && fscanf(fp, "%d", &pid) != 1) pid = 0;
  if (fp) fclose(fp);
  return pid;
}

START_TEST(queued_tasks_fail_named_when_no_worker_can_start_and_run_once_one_can) {
  capture_start();
  if (!limit_processes(61002, 1000)) return; /* room enough: the fork server's is lowered below */
  fp_executor *ex = new_process_pool(1, 0);
  pid_t fork_server = fork_server_pid();
  ck_assert_int_gt(fork_server, 0);
  fp_future *f;
  ck_assert_int_eq(fp_submit(ex, identity, (void *)1, &f), 0);
  ck_assert_int_eq(value_of(f), 1);
  fp_future_release(f);
  /* From now on the fork server cannot fork: its limit is below what this
   * user already runs. */
  struct rlimit none = {1, 4096}, room = {4096, 4096};
  ck_assert_int_eq(prlimit(fork_server, RLIMIT_NPROC, &none, NULL), 0);
  ck_assert_int_eq(fp_submit(ex, crash_abort, NULL, &f), 0);
  ck_assert_int_eq(fp_future_result(f, LONG_WAIT, NULL), FP_ECRASHED);
  fp_future_release(f);
  int lines_before = captured_lines();
  double t0 = now_s();
  ck_assert_int_eq(fp_submit(ex, identity, (void *)2, &f), 0);
  int rc = fp_future_result(f, LONG_WAIT, NULL);
  ck_assert_msg(rc == FP_ENOMEM, "got %s", fp_err_name(rc));
  ck_assert_ptr_nonnull(strstr(fp_future_error(f)->message, "no worker process could be started"));
  ck_assert_double_lt(now_s() - t0, 5.0);
  fp_future_release(f);
  /* Backing off, not spinning: a handful of lines, not thousands. */
  ck_assert_int_lt(captured_lines() - lines_before, 10);
  /* Room again: the pool recovers. */
  ck_assert_int_eq(prlimit(fork_server, RLIMIT_NPROC, &room, NULL), 0);
  ck_assert_int_eq(fp_submit(ex, identity, (void *)3, &f), 0);
  ck_assert_int_eq(value_of(f), 3);
  fp_future_release(f);
  t0 = now_s();
  fp_executor_free(ex);
  ck_assert_double_lt(now_s() - t0, 3.0);
}
END_TEST

/* ---- the parent out of memory ---- */

static atomic_bool fail_malloc, fail_realloc;
static void *switch_malloc(size_t n) { return atomic_load(&fail_malloc) ? NULL : malloc(n); }
static void *switch_calloc(size_t c, size_t n) {
  return atomic_load(&fail_malloc) ? NULL : calloc(c, n);
}
static void *switch_realloc(void *p, size_t n) {
  return atomic_load(&fail_malloc) || atomic_load(&fail_realloc) ? NULL : realloc(p, n);
}

static void *record_then_crash(void *arg) {
  record_pid(getpid());
  sleep_ms((int)(intptr_t)arg);
  abort();
}

START_TEST(out_of_memory_for_good_fails_queued_tasks_instead_of_looping) {
  capture_start();
  pid_file_init();
  fp_set_allocator(switch_malloc, switch_calloc, switch_realloc, free);
  fp_executor *ex = new_process_pool(1, 0);
  fp_future *crash, *queued;
  ck_assert_int_eq(fp_submit(ex, record_then_crash, (void *)100, &crash), 0);
  ck_assert_int_eq(fp_submit(ex, identity, (void *)9, &queued), 0);
  wait_recorded_pid(); /* the crash is under way; the second task waits in the queue */
  atomic_store(&fail_malloc, true); /* from now on, every allocation fails */
  int rc = fp_future_result(crash, LONG_WAIT, NULL);
  /* (no memory for the error's own record: FP_ENOMEM stands for it) */
  ck_assert_msg(rc == FP_ECRASHED || rc == FP_ENOMEM, "got %s", fp_err_name(rc));
  rc = fp_future_result(queued, LONG_WAIT, NULL);
  ck_assert_msg(rc == FP_ENOMEM, "got %s", fp_err_name(rc));
  double t0 = now_s();
  fp_executor_free(ex);
  ck_assert_double_lt(now_s() - t0, 3.0);
  atomic_store(&fail_malloc, false);
  fp_future_release(crash);
  fp_future_release(queued);
  fp_reset_allocator();
}
END_TEST

/* Two tasks that must run at once: the first waits (at most 5 s) for a
 * file the second creates. */
static char marker_path[64];
static bool marker_there(void *arg) {
  (void)arg;
  return access(marker_path, F_OK) == 0;
}
static void *wait_for_marker(void *arg) {
  (void)arg;
  if (wait_until(marker_there, NULL, 5.0)) return (void *)1;
  return fp_raise(-ETIMEDOUT, "the other task never ran");
}
static void *create_marker(void *arg) {
  (void)arg;
  int fd = open(marker_path, O_WRONLY | O_CREAT, 0600);
  if (fd < 0) return fp_raise(-errno, "create %s", marker_path);
  close(fd);
  return (void *)1;
}

START_TEST(a_new_worker_is_heard_even_when_nothing_can_grow) {
  capture_start();
  snprintf(marker_path, sizeof marker_path, "/tmp/fp-faults-%d.marker", (int)getpid());
  unlink(marker_path);
  fp_set_allocator(switch_malloc, switch_calloc, switch_realloc, free);
  fp_executor *ex = new_process_pool(2, 0);
  fp_future *f;
  /* 5 ms: a worker whose last task was that long is never sent a second
   * one ahead, so the two below cannot queue on the same worker. */
  ck_assert_int_eq(fp_submit(ex, task_sleep_ms, (void *)5, &f), 0);
  ck_assert_int_eq(value_of(f), 5);
  fp_future_release(f);
  atomic_store(&fail_realloc, true); /* no array grows any more */
  fp_future *waiter, *creator;
  ck_assert_int_eq(fp_submit(ex, wait_for_marker, NULL, &waiter), 0);
  ck_assert_int_eq(fp_submit(ex, create_marker, NULL, &creator), 0);
  ck_assert_int_eq(value_of(creator), 1);
  ck_assert_int_eq(value_of(waiter), 1); /* the second worker ran beside the first */
  atomic_store(&fail_realloc, false);
  fp_future_release(waiter);
  fp_future_release(creator);
  fp_executor_free(ex);
  unlink(marker_path);
  fp_reset_allocator();
}
END_TEST

/* ---- memory_limit ---- */

static void *byte_count(void *arg) {
  const fp_bytes *in = arg;
  return fp_bytes_copy(&in->size, sizeof in->size);
}

START_TEST(an_argument_larger_than_memory_limit_fails_with_enomem_and_says_so) {
#ifdef UNDER_SANITIZER
  return; /* RLIMIT_AS: see helpers.h */
#endif
  capture_start();
  fp_process_pool_options opt;
  fp_process_pool_options_init(&opt);
  opt.max_workers = 1;
  opt.memory_limit = (size_t)256 << 20;
  fp_executor *ex;
  ck_assert_int_eq(fp_process_pool_new(&opt, &ex), 0);
  size_t big = (size_t)300 << 20;
  char *data = calloc(1, big);
  ck_assert_ptr_nonnull(data);
  fp_future *f, *small;
  ck_assert_int_eq(fp_submit_bytes(ex, byte_count, data, big, &f), 0);
  ck_assert_int_eq(fp_submit_bytes(ex, byte_count, data, 10, &small), 0);
  free(data);
  ck_assert_int_eq(fp_future_result(f, LONG_WAIT, NULL), FP_ENOMEM);
  ck_assert_ptr_nonnull(strstr(fp_future_error(f)->message, "memory_limit"));
  void *r;
  ck_assert_int_eq(fp_future_result(small, LONG_WAIT, &r), 0); /* the same worker goes on */
  size_t got;
  memcpy(&got, ((fp_bytes *)r)->data, sizeof got);
  ck_assert_uint_eq(got, 10);
  fp_future_release(f);
  fp_future_release(small);
  fp_executor_free(ex);
}
END_TEST

TEST_MAIN("process_faults", stray_bytes_from_a_task_fail_it_named_and_never_stall_the_pool,
          a_worker_stopped_mid_reply_holds_up_only_its_own_task,
          a_task_that_forks_and_exits_settles_at_once,
          a_timed_out_task_takes_its_grandchild_with_it,
          a_cancelled_task_takes_its_grandchild_with_it,
          a_freed_pool_takes_its_tasks_grandchildren_with_it,
          terminate_workers_returns_once_a_worker_that_ignores_sigterm_is_gone,
          a_subreaper_inherits_no_worker_from_a_thousand_pools,
          pools_freed_in_a_signal_storm_leave_no_zombie,
          a_pool_that_cannot_start_a_worker_fails_at_creation,
          queued_tasks_fail_named_when_no_worker_can_start_and_run_once_one_can,
          out_of_memory_for_good_fails_queued_tasks_instead_of_looping,
          a_new_worker_is_heard_even_when_nothing_can_grow,
          an_argument_larger_than_memory_limit_fails_with_enomem_and_says_so)
