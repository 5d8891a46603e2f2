/* test_mpi.c - futureproof-mpi under mpirun (3 ranks or more): results and
 * errors with their task's identity, unregistered functions, mixed waits,
 * chunked maps, 64 MiB bytes both ways, crashes, exits, timeouts and
 * cancels on a remote rank (which goes on serving), the task manager's
 * fail fast across ranks, shutdown with queued work; and spawn mode
 * (`test_mpi spawn` under `mpirun -n 1`).
 *
 * Not a Check program: Check forks each test, and a process must not fork
 * and go on using MPI. Every test makes its own executor, collectively:
 * worker ranks serve it and return when the root frees it. ctest times the
 * whole run out. */
#define _GNU_SOURCE
#include <futureproof.h>
#include <futureproof_mpi.h>

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Under ThreadSanitizer, with Open MPI's fork handlers in a rank, the
 * local fork server's exit reports arrive too late: a crash is still
 * FP_ECRASHED, but named "died" rather than by its signal or status. */
#if defined(__SANITIZE_THREAD__)
#define EXACT_EXIT_REPORTS 0
#else
#define EXACT_EXIT_REPORTS 1
#endif

static int failures;
#define CHECK(cond)                                                                   \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      fprintf(stderr, "FAIL %s:%d: %s (%s)\n", __FILE__, __LINE__, #cond,             \
              fp_last_error_message());                                               \
      failures++;                                                                     \
    }                                                                                 \
  } while (0)

/* ---- tasks, registered by name (they run on other ranks) ---- */
static void *square(void *arg) { return (void *)((intptr_t)arg * (intptr_t)arg); }
static void *fail_odd(void *arg) {
  intptr_t i = (intptr_t)arg;
  return i % 2 ? fp_raise(-EDOM, "item %ld is odd", (long)i) : (void *)i;
}
static void *segfault(void *arg) {
  (void)arg;
  raise(SIGSEGV);
  return NULL;
}
static void *exit_3(void *arg) {
  (void)arg;
  exit(3);
}
static void *sleep_ms(void *arg) {
  usleep((useconds_t)((intptr_t)arg * 1000));
  return arg;
}
/* Which rank ran it: in a rank's local worker process (arg 0), the parent
 * is that rank's fork server; in the rank itself (arg 1), its own pid. */
static void *rank_of_worker(void *arg) {
  return (void *)(intptr_t)(arg ? getpid() : getppid());
}
/* bytes: each byte + 1, same length */
static void *add_one(void *arg) {
  const fp_bytes *in = arg;
  fp_bytes *out = fp_bytes_new(in->size);
  if (!out) return fp_raise(FP_ENOMEM, "no memory");
  for (size_t i = 0; i < in->size; i++) out->data[i] = (unsigned char)(in->data[i] + 1);
  return out;
}
static void *not_registered(void *arg) { return arg; }

FP_TASK_REGISTER(square)
FP_TASK_REGISTER(fail_odd)
FP_TASK_REGISTER(segfault)
FP_TASK_REGISTER(exit_3)
FP_TASK_REGISTER(sleep_ms)
FP_TASK_REGISTER(rank_of_worker)
FP_TASK_REGISTER(add_one)

static int nranks, nworkers; /* nworkers: the executor's worker ranks */
static bool in_rank;        /* the executor runs tasks in the ranks' own threads */

/* ---- the tests, run on the root with an executor ---- */

static void results_and_errors_come_back_with_their_task(fp_executor *ex) {
  enum { N = 200 };
  fp_future *f[N];
  for (intptr_t i = 0; i < N; i++) CHECK(fp_submit(ex, i % 10 == 9 ? fail_odd : square, (void *)i, &f[i]) == 0);
  for (intptr_t i = 0; i < N; i++) {
    void *r = NULL;
    int rc = fp_future_result(f[i], 30, &r);
    if (i % 10 == 9) {
      CHECK(rc == -EDOM);
      char want[64];
      snprintf(want, sizeof want, "item %ld is odd", (long)i);
      CHECK(strstr(fp_last_error_message(), want) != NULL);
    } else {
      CHECK(rc == 0 && (intptr_t)r == i * i);
    }
    fp_future_release(f[i]);
  }
  /* Every worker rank took some. */
  fp_future *g[64];
  intptr_t seen[8] = {0};
  int distinct = 0;
  for (int i = 0; i < 64; i++) CHECK(fp_submit(ex, rank_of_worker, (void *)(intptr_t)in_rank, &g[i]) == 0);
  for (int i = 0; i < 64; i++) {
    void *r = NULL;
    CHECK(fp_future_result(g[i], 30, &r) == 0);
    bool known = false;
    for (int k = 0; k < distinct; k++) known |= seen[k] == (intptr_t)r;
    if (!known && distinct < 8) seen[distinct++] = (intptr_t)r;
    fp_future_release(g[i]);
  }
  CHECK(distinct == nworkers);
}

static void an_unregistered_function_is_refused_with_its_address(fp_executor *ex) {
  fp_future *f = NULL;
  CHECK(fp_submit(ex, not_registered, NULL, &f) == FP_EINVAL);
  char addr[32];
  snprintf(addr, sizeof addr, "%p", (void *)(uintptr_t)not_registered);
  CHECK(strstr(fp_last_error_message(), addr) != NULL);
  CHECK(strstr(fp_last_error_message(), "not registered") != NULL);
}

static void waits_over_mpi_and_thread_futures_mixed(fp_executor *ex) {
  fp_executor *threads;
  CHECK(fp_thread_pool_new(NULL, &threads) == 0);
  fp_future *f[20];
  for (intptr_t i = 0; i < 20; i++)
    CHECK(fp_submit(i % 2 ? threads : ex, sleep_ms, (void *)(i % 5), &f[i]) == 0);
  size_t n_done = 0;
  CHECK(fp_wait(f, 20, FP_ALL_COMPLETED, 30, NULL, &n_done, NULL, NULL) == 0);
  CHECK(n_done == 20);
  fp_as_completed *ac;
  CHECK(fp_as_completed_new(f, 20, 30, &ac) == 0);
  int n = 0;
  fp_future *done;
  while (fp_as_completed_next(ac, &done) == 0) n++;
  CHECK(n == 20);
  fp_as_completed_free(ac);
  for (int i = 0; i < 20; i++) fp_future_release(f[i]);
  fp_executor_free(threads);
}

static int next_int(void *state, void **item) {
  intptr_t *i = state;
  if (*i >= 10000) return 0;
  *item = (void *)(*i)++;
  return 1;
}

static void a_chunked_map_keeps_order(fp_executor *ex) {
  intptr_t i = 0;
  fp_map_options mo;
  fp_map_options_init(&mo);
  mo.chunksize = 100;
  mo.timeout_s = 60;
  fp_map *m;
  CHECK(fp_map_new(ex, square, next_int, &i, &mo, &m) == 0);
  void *r;
  intptr_t k = 0;
  int rc;
  while ((rc = fp_map_next(m, &r)) == 0) {
    if ((intptr_t)r != k * k) break;
    k++;
  }
  CHECK(rc == FP_EOF);
  CHECK(k == 10000);
  fp_map_free(m);
}

static void bytes_of_64_mib_both_ways(fp_executor *ex) {
  size_t size = 64u << 20;
  unsigned char *data = malloc(size);
  for (size_t i = 0; i < size; i++) data[i] = (unsigned char)(i * 7);
  fp_future *f;
  CHECK(fp_submit_bytes(ex, add_one, data, size, &f) == 0);
  fp_bytes *out = NULL;
  CHECK(fp_future_result(f, 60, (void **)&out) == 0);
  bool same = out && out->size == size;
  for (size_t i = 0; same && i < size; i++) same = out->data[i] == (unsigned char)(i * 7 + 1);
  CHECK(same);
  fp_future_release(f);
  free(data);
}

static void a_crash_or_an_exit_fails_only_its_task(fp_executor *ex) {
  fp_future *f;
  CHECK(fp_submit(ex, segfault, NULL, &f) == 0);
  CHECK(fp_future_result(f, 30, NULL) == FP_ECRASHED);
  const char *msg = fp_last_error_message();
  CHECK(strstr(msg, "rank ") != NULL);
  CHECK(!EXACT_EXIT_REPORTS || strstr(msg, "SIGSEGV") != NULL || strstr(msg, "signal 11") != NULL ||
        strstr(msg, "Segmentation") != NULL);
  fp_future_release(f);
  CHECK(fp_submit(ex, exit_3, NULL, &f) == 0);
  CHECK(fp_future_result(f, 30, NULL) == FP_ECRASHED);
  CHECK(!EXACT_EXIT_REPORTS || strstr(fp_last_error_message(), "status 3") != NULL);
  fp_future_release(f);
  for (intptr_t i = 0; i < 10; i++) { /* every rank goes on */
    void *r;
    CHECK(fp_submit(ex, square, (void *)i, &f) == 0);
    CHECK(fp_future_result(f, 30, &r) == 0 && (intptr_t)r == i * i);
    fp_future_release(f);
  }
}

static void a_task_past_its_timeout_fails(fp_executor *ex) {
  fp_future *f;
  double t0 = fp_now();
  CHECK(fp_submit(ex, sleep_ms, (void *)(intptr_t)30000, &f) == 0);
  CHECK(fp_future_result(f, 30, NULL) == FP_ETIMEDOUT);
  CHECK(strstr(fp_last_error_message(), "rank ") != NULL);
  CHECK(fp_now() - t0 < 10);
  fp_future_release(f);
}

/* Create the file named by the bytes (the test runs on one machine: the
 * root sees it), then sleep 30 s: the root knows the task has started on
 * its rank. */
static void *mark_then_sleep(void *arg) {
  const fp_bytes *path = arg;
  char name[256];
  snprintf(name, sizeof name, "%.*s", (int)path->size, (const char *)path->data);
  FILE *fp = fopen(name, "w");
  if (fp) fclose(fp);
  sleep(30);
  return NULL;
}
FP_TASK_REGISTER(mark_then_sleep)

static void cancelling_a_running_task_stops_it_on_its_rank(fp_executor *ex) {
  char marker[64];
  snprintf(marker, sizeof marker, "/tmp/fp-mpi-running.%d", (int)getpid());
  unlink(marker);
  fp_future *f;
  CHECK(fp_submit_bytes(ex, mark_then_sleep, marker, strlen(marker), &f) == 0);
  double t0 = fp_now();
  while (access(marker, F_OK) != 0 && fp_now() - t0 < 10) usleep(1000); /* it runs remotely */
  CHECK(access(marker, F_OK) == 0);
  unlink(marker);
  t0 = fp_now();
  fp_future_cancel(f);
  int rc = fp_future_result(f, 30, NULL);
  CHECK(rc == FP_ECANCELED);
  CHECK(fp_now() - t0 < 5);
  fp_future_release(f);
  void *r;
  CHECK(fp_submit(ex, square, (void *)7, &f) == 0);
  CHECK(fp_future_result(f, 30, &r) == 0 && (intptr_t)r == 49);
  fp_future_release(f);
}

/* In a rank's own threads: run until cancelled (30 s at most); 1 if the
 * cancel reached it. */
static void *until_cancelled(void *arg) {
  (void)arg;
  double t0 = fp_now();
  while (!fp_cancel_requested() && fp_now() - t0 < 30) usleep(1000);
  return (void *)(intptr_t)fp_cancel_requested();
}
FP_TASK_REGISTER(until_cancelled)

/* In threads of each rank, a task that runs (and so polls no MPI) still
 * hears its cancel: a rank's other thread receives it. Both ranks' tasks
 * are stopped, and the ranks take new work at once. */
static void a_cancel_reaches_a_task_running_in_a_rank(fp_executor *ex) {
  fp_future *f[2];
  for (int i = 0; i < 2; i++) CHECK(fp_submit(ex, until_cancelled, NULL, &f[i]) == 0);
  double t0 = fp_now();
  for (int i = 0; i < 2; i++) {
    while (fp_future_running(f[i]) == false && fp_now() - t0 < 10) usleep(1000);
    fp_future_cancel(f[i]);
  }
  for (int i = 0; i < 2; i++) {
    CHECK(fp_future_wait(f[i], 30) == 0);
    fp_future_release(f[i]);
  }
  /* Each rank ran one of them; had one not stopped, its rank (one thread)
   * would run nothing else for 30 s. */
  fp_future *g[4];
  for (int i = 0; i < 4; i++) CHECK(fp_submit(ex, square, (void *)(intptr_t)i, &g[i]) == 0);
  for (int i = 0; i < 4; i++) {
    void *r;
    CHECK(fp_future_result(g[i], 30, &r) == 0 && (intptr_t)r == i * i);
    fp_future_release(g[i]);
  }
  CHECK(fp_now() - t0 < 10);
}

/* Two tasks on one rank meet (each waits, at most 10 s, until both have
 * started in that process): 1 if they ran at the same time. */
static atomic_int arrived;
static void *meet(void *arg) {
  (void)arg;
  atomic_fetch_add(&arrived, 1);
  double t0 = fp_now();
  while (atomic_load(&arrived) < 2 && fp_now() - t0 < 10) usleep(1000);
  return (void *)(intptr_t)(atomic_load(&arrived) >= 2);
}
FP_TASK_REGISTER(meet)

static void local_workers_run_at_once_in_a_rank(fp_executor *ex) {
  int N = 2 * nworkers; /* two on each worker rank, each with local_workers 2 */
  fp_future *f[2 * 8];
  if (N > 2 * 8) N = 2 * 8;
  for (int i = 0; i < N; i++) CHECK(fp_submit(ex, meet, NULL, &f[i]) == 0);
  for (int i = 0; i < N; i++) {
    void *r = NULL;
    CHECK(fp_future_result(f[i], 30, &r) == 0 && (intptr_t)r == 1);
    fp_future_release(f[i]);
  }
}

/* Streams: each task sends three values, then returns; the root keeps
 * what arrives, with whether its future was done by then. */
static void *stream_three(void *arg) {
  intptr_t v = (intptr_t)arg;
  for (intptr_t i = 0; i < 3; i++) {
    intptr_t x = v * 10 + i;
    int rc = fp_mpi_stream(&x, sizeof x);
    if (rc) return fp_raise(rc, "fp_mpi_stream: %s", fp_last_error_message());
  }
  return arg;
}
FP_TASK_REGISTER(stream_three)

enum { STREAMED_MAX = 256 };
static struct {
  uint64_t id;
  intptr_t value;
  bool done_already;
} streamed[STREAMED_MAX];
static atomic_int nstreamed;

static void collect_stream(fp_future *f, const void *data, size_t len, void *userdata) {
  CHECK(userdata == (void *)streamed && len == sizeof(intptr_t));
  int at = atomic_fetch_add(&nstreamed, 1);
  if (at >= STREAMED_MAX || len != sizeof(intptr_t)) return;
  streamed[at].id = fp_future_id(f);
  memcpy(&streamed[at].value, data, sizeof(intptr_t));
  streamed[at].done_already = fp_future_done(f);
}

static void streams_come_in_order_before_the_result(fp_executor *ex) {
  enum { N = 20 };
  atomic_store(&nstreamed, 0);
  fp_future *f[N];
  for (intptr_t i = 0; i < N; i++) CHECK(fp_submit(ex, stream_three, (void *)i, &f[i]) == 0);
  for (intptr_t i = 0; i < N; i++) {
    void *r = NULL;
    CHECK(fp_future_result(f[i], 30, &r) == 0 && (intptr_t)r == i);
  }
  CHECK(atomic_load(&nstreamed) == 3 * N);
  for (intptr_t i = 0; i < N; i++) {
    int seen = 0;
    for (int k = 0; k < atomic_load(&nstreamed) && k < STREAMED_MAX; k++) {
      if (streamed[k].id != fp_future_id(f[i])) continue;
      CHECK(streamed[k].value == i * 10 + seen); /* in the order sent */
      CHECK(!streamed[k].done_already);         /* before the result */
      seen++;
    }
    CHECK(seen == 3);
    fp_future_release(f[i]);
  }
  intptr_t x = 0;
  CHECK(fp_mpi_stream(&x, sizeof x) == FP_EINVAL); /* not in a task on a worker rank */
}

/* In a worker process (isolated), there is no MPI to stream with. */
static void a_worker_process_cannot_stream(fp_executor *ex) {
  fp_future *f;
  CHECK(fp_submit(ex, stream_three, (void *)1, &f) == 0);
  CHECK(fp_future_result(f, 30, NULL) == FP_EINVAL);
  CHECK(strstr(fp_last_error_message(), "isolate = false") != NULL);
  fp_future_release(f);
}

static int next_tm_item(void *state, void **item) {
  intptr_t *i = state;
  if (*i >= 40) return 0;
  (*i)++;
  /* The second fails at once, while the first runs 20 s on the other rank */
  *item = (void *)(*i == 2 ? (intptr_t)1 : (intptr_t)20000);
  return 1;
}

static void *fail_or_sleep(void *arg) {
  intptr_t v = (intptr_t)arg;
  return v == 1 ? fp_raise(-EIO, "the second item fails") : sleep_ms(arg);
}
FP_TASK_REGISTER(fail_or_sleep)

static void the_task_manager_fails_fast_across_ranks(fp_executor *ex) {
  fp_tm_options o;
  fp_tm_options_init(&o);
  o.error_policy = FP_POLICY_RAISE;
  o.max_in_flight = 8;
  fp_task_manager *tm;
  CHECK(fp_tm_new(ex, &o, &tm) == 0);
  intptr_t i = 0;
  double t0 = fp_now();
  CHECK(fp_tm_map(tm, fail_or_sleep, next_tm_item, &i, NULL) == 0);
  fp_task *t;
  int rc;
  while ((rc = fp_tm_next(tm, 60, &t)) == 0) fp_task_release(t);
  CHECK(rc == -EIO);
  fp_tm_free(tm); /* cancels what runs on every rank */
  CHECK(fp_now() - t0 < 5); /* the running 20 s task was stopped on its rank */
}

static void shutdown_with_queued_work_returns(fp_executor *ex) {
  fp_future *f[100];
  for (int i = 0; i < 100; i++) CHECK(fp_submit(ex, sleep_ms, (void *)(intptr_t)200, &f[i]) == 0);
  double t0 = fp_now();
  CHECK(fp_shutdown(ex, true, true) == 0);
  CHECK(fp_now() - t0 < 5);
  int cancelled = 0;
  for (int i = 0; i < 100; i++) {
    cancelled += fp_future_cancelled(f[i]);
    fp_future_release(f[i]);
  }
  CHECK(cancelled > 50);
}

typedef void (*test_fn)(fp_executor *ex);
static const struct {
  const char *name;
  test_fn fn;
  double task_timeout;
  bool in_rank; /* isolate = false: tasks in threads of each rank */
  int local_workers;
} tests[] = {
    {"results and errors come back with their task", results_and_errors_come_back_with_their_task, 0, false, 1},
    {"an unregistered function is refused with its address",
     an_unregistered_function_is_refused_with_its_address, 0, false, 1},
    {"waits over MPI and thread futures mixed", waits_over_mpi_and_thread_futures_mixed, 0, false, 1},
    {"a chunked map keeps order", a_chunked_map_keeps_order, 0, false, 1},
    {"bytes of 64 MiB both ways", bytes_of_64_mib_both_ways, 0, false, 1},
    {"a crash or an exit fails only its task", a_crash_or_an_exit_fails_only_its_task, 0, false, 1},
    {"a task past its timeout fails", a_task_past_its_timeout_fails, 0.5, false, 1},
    {"cancelling a running task stops it on its rank",
     cancelling_a_running_task_stops_it_on_its_rank, 0, false, 1},
    {"the task manager fails fast across ranks", the_task_manager_fails_fast_across_ranks, 0, false, 1},
    {"shutdown with queued work returns", shutdown_with_queued_work_returns, 0, false, 1},
    {"in threads of each rank: results and errors", results_and_errors_come_back_with_their_task,
     0, true, 1},
    {"in threads of each rank: a chunked map", a_chunked_map_keeps_order, 0, true, 1},
    {"in threads of each rank: bytes", bytes_of_64_mib_both_ways, 0, true, 1},
    {"in threads of each rank: a cancel reaches a running task",
     a_cancel_reaches_a_task_running_in_a_rank, 0, true, 1},
    {"in threads of each rank: local workers run at once", local_workers_run_at_once_in_a_rank,
     0, true, 2},
    {"a worker process cannot stream", a_worker_process_cannot_stream, 0, false, 1},
    {"in threads of each rank: streams come in order, before the result",
     streams_come_in_order_before_the_result, 0, true, 1},
    {"in threads of each rank, two each: results and errors",
     results_and_errors_come_back_with_their_task, 0, true, 2},
};

static int spawn_mode(void) {
  fp_mpi_options o;
  fp_mpi_options_init(&o);
  o.max_workers = nworkers = 2;
  fp_executor *ex;
  int rc = fp_mpi_spawn_executor_new(&o, &ex);
  CHECK(rc == 0);
  if (rc) return 1;
  results_and_errors_come_back_with_their_task(ex);
  a_crash_or_an_exit_fails_only_its_task(ex);
  fp_executor_free(ex);
  printf("spawn mode: %s\n", failures ? "FAILED" : "ok");
  return failures != 0;
}

/* `test_mpi hold`: long tasks on every worker rank, and a wait; the shell
 * test stops it from outside (Ctrl-C, a killed rank) and checks that
 * nothing is left. */
static int hold(void) {
  fp_executor *ex;
  if (fp_mpi_comm_executor_new(MPI_COMM_WORLD, 0, NULL, &ex) == 0 && ex) {
    fp_future *f[8];
    for (int i = 0; i < 8; i++) fp_submit(ex, sleep_ms, (void *)(intptr_t)60000, &f[i]);
    printf("holding\n");
    fflush(stdout);
    fp_future_result(f[0], 60, NULL);
    fp_executor_free(ex);
  }
  MPI_Finalize();
  return 0;
}

int main(int argc, char **argv) {
  CHECK(fp_mpi_init(&argc, &argv) == 0);
  if (argc > 1 && !strcmp(argv[1], "hold")) return hold();
  int me;
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  MPI_Comm_size(MPI_COMM_WORLD, &nranks);
  fp_set_logger(NULL, NULL, FP_LOG_ERROR); /* the refusals tested here log warnings */
  if (argc > 1 && !strcmp(argv[1], "spawn")) {
    int rc = spawn_mode();
    MPI_Finalize();
    return rc;
  }
  if (nranks < 3) {
    if (me == 0) fprintf(stderr, "test_mpi: run it with 3 ranks or more (mpirun -n 3)\n");
    MPI_Finalize();
    return 1;
  }
  nworkers = nranks - 1;
  for (size_t t = 0; t < sizeof tests / sizeof tests[0]; t++) {
    fp_mpi_options o;
    fp_mpi_options_init(&o);
    o.task_timeout = tests[t].task_timeout;
    o.isolate = !tests[t].in_rank;
    o.local_workers = tests[t].local_workers;
    o.on_stream = collect_stream;
    o.stream_userdata = streamed;
    in_rank = tests[t].in_rank;
    fp_executor *ex = NULL;
    int before = failures;
    int rc = fp_mpi_comm_executor_new(MPI_COMM_WORLD, 0, &o, &ex);
    CHECK(rc == 0);
    if (ex) {
      double t0 = fp_now();
      tests[t].fn(ex);
      fp_executor_free(ex);
      printf("%s %s (%.2f s)\n", failures == before ? "ok  " : "FAIL", tests[t].name, fp_now() - t0);
      fflush(stdout);
    }
  }
  int all = 0;
  MPI_Reduce(&failures, &all, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
  if (me == 0) printf("mpi: %d failures on %d ranks\n", all, nranks);
  MPI_Finalize();
  return me == 0 && all ? 1 : 0;
}
