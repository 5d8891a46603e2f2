/* bench_dispatch.c - the thread pool's dispatch speed beside its peers, in
 * the same run: GLib's GThreadPool, OpenMP tasks (libgomp), oneTBB's
 * task_group (peer_*.c*, built from Debian packages when present) and
 * Python's ThreadPoolExecutor (peer_threads.py; fewer items, but for
 * throughput). Each round runs every contestant once, in turn; the table
 * shows medians of ROUNDS rounds and the ratio of our figure to each
 * peer's (below 1: we are faster). Workloads:
 *   throughput    10^6 empty tasks submitted, then every result gathered
 *                 (ns/task), at 1, 2 and ncpu workers; the C and C++ peers
 *                 keep no futures
 *   throughput_stats  the same with latency statistics on
 *                 (fp_executor_stats_enable): their cost, printed below
 *                 the table as a percentage
 *   throughput_warm  the same on memory the allocator kept from a burst
 *                 before (a child process of its own), beside the peers'
 *                 throughput
 *   round_trip    submit one empty task, wait for its result (ns)
 *   map           fp_map over 10^7 items, identity function (ns/item)
 *   fib           fib(25), a task per call above a cutoff of 6 (about 10,000 tasks), each
 *                 waiting for its child (ms), at 1 and 2 workers
 *   as_completed  10^6 futures through fp_as_completed (ns/future), and
 *                 the peak memory it took (bytes/future), measured in a
 *                 child process of its own
 * Usage: bench_dispatch [ROUNDS]            (default 5)
 *        bench_dispatch --as-completed N    (the child)
 *        bench_dispatch --warm W...         (the child)
 *        bench_dispatch --steady W ROUNDS   (ours alone, for a profiler: the
 *                 throughput loop on one pool of W workers, warm memory;
 *                 each round's sleeps and preemptions beside its time) */
#define _GNU_SOURCE
#include <futureproof.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

enum { TASKS = 1000000, TRIPS = 20000, MAP_ITEMS = 10000000, AC_ITEMS = 1000000 };
enum { FIB_N = 25, FIB_CUTOFF = 6 };
/* Python is ~100x slower: it gets fewer items on the rows without a target
 * (their figures are per item). Not on throughput: a Python future is ~1.9
 * KB, and with 10^6 of them alive each costs more (measured here: 19 us a
 * task at 2*10^4, 26 us at 10^6), as ours do; both run the 10^6. */
enum { PY_TASKS = TASKS, PY_TRIPS = 2000, PY_MAP = 100000, PY_AC = 100000 };

static void *empty(void *arg) { return arg; }

static fp_executor *pool(int workers) {
  fp_thread_pool_options opt;
  fp_thread_pool_options_init(&opt);
  opt.max_workers = workers;
  fp_executor *ex;
  if (fp_thread_pool_new(&opt, &ex)) abort();
  fp_future *warm[64]; /* start the threads before the clock does */
  for (int i = 0; i < workers && i < 64; i++)
    if (fp_submit(ex, empty, NULL, &warm[i])) abort();
  for (int i = 0; i < workers && i < 64; i++) {
    fp_future_result(warm[i], -1, NULL);
    fp_future_release(warm[i]);
  }
  return ex;
}

/* Where the throughput loop keeps its futures: allocated and touched once,
 * before any clock starts. The peers keep no such array; a fresh one
 * each round would add its page faults (2,048 of them, ~30 ns a task on
 * a VM where a first touch costs ~14 us) to our figure alone. */
static fp_future **future_slots(void) {
  static fp_future **fs;
  if (!fs) {
    if (!(fs = malloc(TASKS * sizeof *fs))) abort();
    memset(fs, 0, TASKS * sizeof *fs);
  }
  return fs;
}

/* 10^6 empty tasks submitted, then every result gathered and checked:
 * seconds. */
static double submit_then_gather(fp_executor *ex) {
  fp_future **fs = future_slots();
  double t0 = fp_now();
  for (long i = 0; i < TASKS; i++)
    if (fp_submit(ex, empty, (void *)(intptr_t)i, &fs[i])) abort();
  for (long i = 0; i < TASKS; i++) {
    void *r;
    if (fp_future_result(fs[i], -1, &r) || (intptr_t)r != i) abort();
    fp_future_release(fs[i]);
  }
  return fp_now() - t0;
}

static double throughput_ns(int workers, bool stats) {
  fp_executor *ex = pool(workers);
  if (stats && fp_executor_stats_enable(ex)) abort();
  double t = submit_then_gather(ex);
  fp_executor_free(ex);
  return t / TASKS * 1e9;
}

/* The child: the throughput loop on memory the allocator kept from a
 * burst before. glibc gives a burst's memory back to the kernel once it is
 * freed (it trims the heap's top), and the next burst's first touch of
 * each page is a page fault: ~12 us a page on the VMs measured here, up to
 * 200 ns a task, which are the kernel's and not dispatch. A program that
 * keeps its heap (here M_TRIM_THRESHOLD) or runs bursts often sees this. */
static int warm_child(int argc, char **argv) {
#ifdef __GLIBC__
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  for (int i = 0; i < argc; i++) {
    int workers = atoi(argv[i]);
    if (workers < 1) return 2;
    fp_executor *ex = pool(workers);
    submit_then_gather(ex); /* the memory, touched once */
    printf("throughput_warm %d %.3f\n", workers, submit_then_gather(ex) / TASKS * 1e9);
    fp_executor_free(ex);
  }
  return 0;
}

/* The throughput loop again and again on one pool: what perf should see. */
static int steady(int workers, int rounds) {
  if (workers < 1 || rounds < 1) {
    fprintf(stderr, "usage: bench_dispatch --steady WORKERS ROUNDS\n");
    return 2;
  }
  fp_executor *ex = pool(workers);
  for (int r = 0; r < rounds; r++) {
    struct rusage a, b;
    getrusage(RUSAGE_SELF, &a);
    double ns = submit_then_gather(ex) / TASKS * 1e9;
    getrusage(RUSAGE_SELF, &b);
    /* Sleeps (voluntary switches) and preemptions, all threads: a spinner
     * on the submitter's core shows as both (docs/performance.md). */
    printf("round %d: %.1f ns/task, %ld sleeps, %ld preemptions\n", r + 1, ns,
           b.ru_nvcsw - a.ru_nvcsw, b.ru_nivcsw - a.ru_nivcsw);
  }
  fp_executor_free(ex);
  return 0;
}

static double round_trip_ns(void) {
  fp_executor *ex = pool(2);
  double t0 = fp_now();
  for (long i = 0; i < TRIPS; i++) {
    fp_future *f;
    if (fp_submit(ex, empty, NULL, &f) || fp_future_result(f, -1, NULL)) abort();
    fp_future_release(f);
  }
  double t = fp_now() - t0;
  fp_executor_free(ex);
  return t / TRIPS * 1e9;
}

static int count(void *state, void **item) {
  long *n = state;
  if (*n >= MAP_ITEMS) return 0;
  *item = (void *)(intptr_t)(*n)++;
  return 1;
}

static double map_ns(void) {
  fp_executor *ex = pool(2);
  long next = 0, i = 0;
  fp_map *m;
  double t0 = fp_now();
  if (fp_map_new(ex, empty, count, &next, NULL, &m)) abort();
  void *r;
  int rc;
  while ((rc = fp_map_next(m, &r)) == 0)
    if ((intptr_t)r != i++) abort();
  double t = fp_now() - t0;
  if (rc != FP_EOF || i != MAP_ITEMS) abort();
  fp_map_free(m);
  fp_executor_free(ex);
  return t / MAP_ITEMS * 1e9;
}

/* fan-out/fan-in: each call above the cutoff submits fib(n-1) to the pool,
 * computes fib(n-2) itself, and waits for its child. */
static fp_executor *fib_pool;
static long fib_serial(int n) { return n < 2 ? n : fib_serial(n - 1) + fib_serial(n - 2); }
static void *fib_task(void *arg) {
  int n = (int)(intptr_t)arg;
  if (n <= FIB_CUTOFF) return (void *)(intptr_t)fib_serial(n);
  fp_future *child;
  if (fp_submit(fib_pool, fib_task, (void *)(intptr_t)(n - 1), &child)) abort();
  long y = (long)(intptr_t)fib_task((void *)(intptr_t)(n - 2));
  void *x;
  if (fp_future_result(child, -1, &x)) abort();
  fp_future_release(child);
  return (void *)(intptr_t)((long)(intptr_t)x + y);
}

static double fib_ms(int workers) {
  fib_pool = pool(workers);
  double t0 = fp_now();
  fp_future *f;
  void *r;
  if (fp_submit(fib_pool, fib_task, (void *)(intptr_t)FIB_N, &f) || fp_future_result(f, -1, &r))
    abort();
  double t = fp_now() - t0;
  if ((long)(intptr_t)r != fib_serial(FIB_N)) abort();
  fp_future_release(f);
  fp_executor_free(fib_pool);
  return t * 1e3;
}

static long maxrss_bytes(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss * 1024L;
}

/* The child: as_completed over n futures; prints two figures. */
static int as_completed_child(long n) {
  long rss0 = maxrss_bytes();
  fp_executor *ex = pool(2);
  fp_future **fs = malloc((size_t)n * sizeof *fs);
  double t0 = fp_now();
  for (long i = 0; i < n; i++)
    if (fp_submit(ex, empty, NULL, &fs[i])) abort();
  fp_as_completed *it;
  if (fp_as_completed_new(fs, (size_t)n, -1, &it)) abort();
  fp_future *f;
  long seen = 0;
  while (fp_as_completed_next(it, &f) == 0) seen++;
  double t = fp_now() - t0;
  if (seen != n) abort();
  fp_as_completed_free(it);
  for (long i = 0; i < n; i++) fp_future_release(fs[i]);
  free(fs);
  fp_executor_free(ex);
  printf("as_completed 2 %.3f\nas_completed_bytes 2 %.3f\n", t / (double)n * 1e9,
         (double)(maxrss_bytes() - rss0) / (double)n);
  return 0;
}

/* ---- the table ---- */

enum { FP, GLIB, OMP, TBB, PY, NPEERS, MAX_ROWS = 16, MAX_ROUNDS = 15 };
static const char *peer_name[NPEERS] = {"futureproof", "GLib", "OpenMP", "oneTBB", "Python"};

typedef struct row {
  char bench[24];
  int workers;
  double v[NPEERS][MAX_ROUNDS];
  int n[NPEERS];
} row;
static row rows[MAX_ROWS];
static int nrows;

static row *find_row(const char *bench, int workers) {
  for (int i = 0; i < nrows; i++)
    if (!strcmp(rows[i].bench, bench) && rows[i].workers == workers) return &rows[i];
  return NULL;
}

static void record(int peer, const char *bench, int workers, double value) {
  row *r = find_row(bench, workers);
  if (!r) {
    if (nrows == MAX_ROWS) return;
    r = &rows[nrows++];
    snprintf(r->bench, sizeof r->bench, "%s", bench);
    r->workers = workers;
  }
  if (r->n[peer] < MAX_ROUNDS) r->v[peer][r->n[peer]++] = value;
  /* Every round's figure, for the spread behind a median. */
  fprintf(stderr, "  %-18s %d %-11s %.2f\n", bench, workers, peer_name[peer], value);
}

/* Run a peer's command; false if it could not run. */
static bool run_peer(int peer, const char *cmd) {
  FILE *in = popen(cmd, "r");
  if (!in) return false;
  char bench[64];
  int workers;
  double value;
  int got = 0;
  while (fscanf(in, "%63s %d %lf", bench, &workers, &value) == 3) {
    record(peer, bench, workers, value);
    got++;
  }
  return pclose(in) == 0 && got > 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(row *r, int peer) {
  if (!r->n[peer]) return 0;
  double s[MAX_ROUNDS];
  memcpy(s, r->v[peer], sizeof s);
  qsort(s, (size_t)r->n[peer], sizeof s[0], cmp_double);
  return s[r->n[peer] / 2];
}

static const char *unit(const char *bench) {
  if (!strcmp(bench, "fib")) return "ms";
  if (!strcmp(bench, "as_completed_bytes")) return "B/fut";
  return "ns";
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "--as-completed")) return as_completed_child(atol(argv[2]));
  if (argc == 4 && !strcmp(argv[1], "--steady")) return steady(atoi(argv[2]), atoi(argv[3]));
  if (argc >= 3 && !strcmp(argv[1], "--warm")) return warm_child(argc - 2, argv + 2);
  int rounds = argc > 1 ? atoi(argv[1]) : 5;
  if (rounds < 1 || rounds > MAX_ROUNDS) rounds = 5;
  int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
  int workers[3] = {1, 2, ncpu}, nw = ncpu > 2 ? 3 : 2;
  char wlist[32];
  snprintf(wlist, sizeof wlist, nw == 3 ? "1 2 %d" : "1 2", ncpu);
  char self[4096];
  ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  self[len > 0 ? len : 0] = 0;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", self);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = 0;
  const char *src = getenv("FP_BENCH_DIR") ? getenv("FP_BENCH_DIR") : FP_BENCH_SOURCE_DIR;

  char cmd[NPEERS][8192];
  bool present[NPEERS] = {true};
  const char *exe[NPEERS] = {NULL, "peer_glib", "peer_omp", "peer_tbb", NULL};
  for (int p = GLIB; p <= TBB; p++) {
    snprintf(cmd[p], sizeof cmd[p], "%s/%s", dir, exe[p]);
    present[p] = access(cmd[p], X_OK) == 0;
    snprintf(cmd[p], sizeof cmd[p], "%s/%s %d %d %d %d %s", dir, exe[p], TASKS, TRIPS, FIB_N,
             FIB_CUTOFF, wlist);
  }
  snprintf(cmd[PY], sizeof cmd[PY], "python3 %s/peer_threads.py %d %d %d %d %s", src, PY_TASKS,
           PY_TRIPS, PY_MAP, PY_AC, wlist);
  present[PY] = system("python3 -c 'import concurrent.futures' >/dev/null 2>&1") == 0;
  char ac_cmd[4200], warm_cmd[4200];
  snprintf(ac_cmd, sizeof ac_cmd, "%s --as-completed %d", self, AC_ITEMS);
  snprintf(warm_cmd, sizeof warm_cmd, "%s --warm %s", self, wlist);

  printf("dispatch benchmarks: %d rounds, ncpu %d; peers:", rounds, ncpu);
  for (int p = GLIB; p < NPEERS; p++)
    printf(" %s%s", peer_name[p], present[p] ? "" : " (not available: skipped)");
  printf("\n");
  fflush(stdout);
  for (int r = 0; r < rounds; r++) {
    for (int k = 0; k < nw; k++) { /* statistics off (the default), then on */
      record(FP, "throughput", workers[k], throughput_ns(workers[k], false));
      record(FP, "throughput_stats", workers[k], throughput_ns(workers[k], true));
    }
    if (!run_peer(FP, warm_cmd)) fprintf(stderr, "throughput_warm child failed\n");
    record(FP, "round_trip", 2, round_trip_ns());
    record(FP, "map", 2, map_ns());
    record(FP, "fib", 1, fib_ms(1));
    record(FP, "fib", 2, fib_ms(2));
    if (!run_peer(FP, ac_cmd)) fprintf(stderr, "as_completed child failed\n");
    for (int p = GLIB; p < NPEERS; p++)
      if (present[p] && !run_peer(p, cmd[p])) {
        fprintf(stderr, "%s failed: skipped from now on\n", peer_name[p]);
        present[p] = false;
      }
    fprintf(stderr, "round %d/%d done\n", r + 1, rounds);
  }

  printf("\n%-20s %3s %6s", "benchmark", "w", "unit");
  for (int p = 0; p < NPEERS; p++) printf(" %11s", peer_name[p]);
  printf("   ours/peer\n");
  for (int i = 0; i < nrows; i++) {
    row *r = &rows[i];
    double ours = median(r, FP);
    /* throughput_warm: ours beside the peers' throughput */
    row *peers = strcmp(r->bench, "throughput_warm") ? r : find_row("throughput", r->workers);
    if (!peers) peers = r;
    printf("%-20s %3d %6s %11.2f", r->bench, r->workers, unit(r->bench), ours);
    for (int p = GLIB; p < NPEERS; p++)
      if (peers->n[p])
        printf(" %11.2f", median(peers, p));
      else
        printf(" %11s", "-");
    printf("  ");
    for (int p = GLIB; p < NPEERS; p++)
      if (peers->n[p] && ours > 0) printf(" %s %.3fx", peer_name[p], ours / median(peers, p));
    printf("\n");
  }
  for (int k = 0; k < nw; k++) {
    row *off = find_row("throughput", workers[k]), *on = find_row("throughput_stats", workers[k]);
    if (off && on)
      printf("%s%d worker%s %+.0f%%",
             k ? ", " : "\nlatency statistics on (fp_executor_stats_enable): throughput ",
             workers[k], workers[k] > 1 ? "s" : "", 100 * (median(on, FP) / median(off, FP) - 1));
  }
  printf("\n(target: at most +5%%, else an option off by default for raw pools: it is an option, "
         "off by default;\n the task manager keeps its own, always)\n");
  printf("\n(Python runs %d tasks for throughput, as every contestant does, and fewer\n"
         " items elsewhere: %d trips, a map of %d, as_completed of %d; those figures are\n"
         " per item. Medians of %d rounds.)\n",
         PY_TASKS, PY_TRIPS, PY_MAP, PY_AC, rounds);
  return 0;
}
