/* bench_fprun.c - fprun beside its peers, in one run. Per-job overhead:
 * the spawn floor (a C loop of posix_spawn + waitpid over the same slots,
 * running the same command with the same argument), xargs -P, GNU
 * parallel (when installed) and fprun, on jobs of `true N`; the same with
 * -k; then jobs that write 64 KiB each. Then fprun's peak RSS as its
 * stdin grows from 10^6 to 10^8 lines. Prints microseconds a job and the
 * ratio to the floor of the same work.
 * Usage: bench_fprun [jobs] [max lines for the RSS rows] */
#define _GNU_SOURCE
#include <fcntl.h>
#include <futureproof.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

enum { SLOTS = 2 };

/* The floor: SLOTS children at a time running argv with the job's
 * number put in argv[numbered] (as the runners put the item), output to
 * /dev/null; microseconds a job. */
static double floor_us(char **argv, int numbered, int jobs) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  double t0 = fp_now();
  int running = 0, started = 0;
  char number[32], *job_argv[8];
  while (started < jobs || running) {
    while (running < SLOTS && started < jobs) {
      started++;
      for (int i = 0; i < 8 && (job_argv[i] = argv[i]) != NULL; i++) {
      }
      snprintf(number, sizeof number, "%d", started);
      if (numbered >= 0) job_argv[numbered] = number;
      pid_t pid;
      if (posix_spawnp(&pid, job_argv[0], &fa, NULL, job_argv, environ)) abort();
      running++;
    }
    if (wait(NULL) > 0) running--;
  }
  posix_spawn_file_actions_destroy(&fa);
  return (fp_now() - t0) * 1e6 / jobs;
}

/* A shell pipeline's wall time, in microseconds a job; -1 if it failed. */
static double shell_us(const char *cmd, int jobs) {
  double t0 = fp_now();
  int rc = system(cmd);
  double us = (fp_now() - t0) * 1e6 / jobs;
  return rc == 0 ? us : -1;
}

static bool have(const char *program) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", program);
  return system(cmd) == 0;
}

static void row(const char *name, double us, double floor) {
  if (us < 0)
    printf("  %-36s %10s\n", name, "failed");
  else
    printf("  %-36s %10.1f %8.2fx\n", name, us, us / floor);
}

/* fprun's peak RSS (KiB) reading `lines` lines of stdin, -N per_job of
 * them a job of `true`: fprun is spawned with seq's output as its stdin
 * and waited for with wait4, which reports its own peak (and that of
 * what it waited for: small `true`s). -1 if it failed. */
static long fprun_peak_rss_kib(const char *fprun, long long lines, int per_job) {
  int p[2];
  if (pipe(p)) return -1;
  char count[32], n[32];
  snprintf(count, sizeof count, "%lld", lines);
  snprintf(n, sizeof n, "%d", per_job);
  char *seq_argv[] = {"seq", count, NULL};
  char *fprun_argv[] = {(char *)fprun, "-j2", "-N", n, "true", NULL};
  posix_spawn_file_actions_t to_pipe, from_pipe;
  posix_spawn_file_actions_init(&to_pipe);
  posix_spawn_file_actions_adddup2(&to_pipe, p[1], 1);
  posix_spawn_file_actions_addclose(&to_pipe, p[0]);
  posix_spawn_file_actions_init(&from_pipe);
  posix_spawn_file_actions_adddup2(&from_pipe, p[0], 0);
  posix_spawn_file_actions_addclose(&from_pipe, p[1]);
  pid_t seq_pid, fprun_pid;
  int rc = posix_spawnp(&seq_pid, "seq", &to_pipe, NULL, seq_argv, environ);
  if (!rc) rc = posix_spawn(&fprun_pid, fprun, &from_pipe, NULL, fprun_argv, environ);
  close(p[0]);
  close(p[1]);
  posix_spawn_file_actions_destroy(&to_pipe);
  posix_spawn_file_actions_destroy(&from_pipe);
  if (rc) return -1;
  int status;
  struct rusage ru;
  if (wait4(fprun_pid, &status, 0, &ru) < 0) return -1;
  waitpid(seq_pid, NULL, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? ru.ru_maxrss : -1;
}

/* A table's rows, measured in ROUNDS interleaved rounds (the machine is
 * shared: a slow minute hits every row alike) and reported as medians. */
enum { ROUNDS = 3, MAX_ROWS = 8 };

typedef struct table {
  const char *name[MAX_ROWS];
  char cmd[MAX_ROWS][512]; /* a shell pipeline; "" for the floor */
  int jobs[MAX_ROWS];
  size_t n;
  char **floor_argv;
  int floor_numbered;
} table;

static void add_row(table *t, const char *name, int jobs, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add_row(table *t, const char *name, int jobs, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t->cmd[t->n], sizeof t->cmd[t->n], fmt, ap);
  va_end(ap);
  t->name[t->n] = name;
  t->jobs[t->n++] = jobs;
}

static int compare_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void run_table(table *t) {
  double us[MAX_ROWS][ROUNDS];
  for (int round = 0; round < ROUNDS; round++)
    for (size_t i = 0; i < t->n; i++) {
      int jobs = t->jobs[i] / ROUNDS > 0 ? t->jobs[i] / ROUNDS : 1;
      us[i][round] = t->cmd[i][0] ? shell_us(t->cmd[i], jobs)
                                  : floor_us(t->floor_argv, t->floor_numbered, jobs);
    }
  double floor = 0;
  for (size_t i = 0; i < t->n; i++) {
    qsort(us[i], ROUNDS, sizeof us[i][0], compare_double);
    double median = us[i][0] < 0 ? -1 : us[i][ROUNDS / 2];
    if (i == 0) floor = median;
    row(t->name[i], median, floor);
  }
}

int main(int argc, char **argv) {
  int jobs = argc > 1 ? atoi(argv[1]) : 6000;
  long long max_lines = argc > 2 ? atoll(argv[2]) : 100000000LL;
  const char *fprun = FP_FPRUN_PATH;
  bool gnu = have("parallel");
  int gnu_jobs = jobs / 5 > 0 ? jobs / 5 : 1; /* it is slow: fewer jobs, the same figure */
  int r = ROUNDS;

  printf("fprun: %d jobs of `true N` on %d slots, medians of %d rounds (us a job, x the floor)\n",
         jobs, SLOTS, ROUNDS);
  char *true_argv[] = {"true", "N", NULL};
  table t = {.floor_argv = true_argv, .floor_numbered = 1};
  add_row(&t, "spawn floor (posix_spawn + wait)", jobs, "%s", "");
  add_row(&t, "fprun", jobs, "seq %d | %s -j%d true", jobs / r, fprun, SLOTS);
  add_row(&t, "fprun -k", jobs, "seq %d | %s -j%d -k true", jobs / r, fprun, SLOTS);
  add_row(&t, "xargs -P", jobs, "seq %d | xargs -P%d -n1 true", jobs / r, SLOTS);
  if (gnu)
    add_row(&t, "GNU parallel", gnu_jobs, "seq %d | parallel --will-cite -j%d true", gnu_jobs / r,
            SLOTS);
  else
    printf("  (GNU parallel: not installed, Debian package parallel: left out)\n");
  run_table(&t);

  int out_jobs = jobs / 5;
  printf("\n%d jobs writing 64 KiB each (sh -c 'head -c 65536 /dev/zero # N'), to /dev/null\n",
         out_jobs);
  char *head_argv[] = {"sh", "-c", "head -c 65536 /dev/zero # N", NULL};
  table o = {.floor_argv = head_argv, .floor_numbered = -1};
  add_row(&o, "spawn floor (output not collected)", out_jobs, "%s", "");
  add_row(&o, "fprun (each output collected whole)", out_jobs,
          "seq %d | %s -j%d 'head -c 65536 /dev/zero # {}' >/dev/null", out_jobs / r, fprun, SLOTS);
  add_row(&o, "fprun -k", out_jobs, "seq %d | %s -j%d -k 'head -c 65536 /dev/zero # {}' >/dev/null",
          out_jobs / r, fprun, SLOTS);
  add_row(&o, "xargs -P (outputs may mix)", out_jobs,
          "seq %d | xargs -P%d -I{} sh -c 'head -c 65536 /dev/zero # {}' >/dev/null", out_jobs / r,
          SLOTS);
  if (gnu)
    add_row(&o, "GNU parallel", gnu_jobs,
            "seq %d | parallel --will-cite -j%d 'head -c 65536 /dev/zero # {}' >/dev/null",
            gnu_jobs / r, SLOTS);
  run_table(&o);

  printf("\nfprun's peak RSS as stdin grows (seq N | fprun -j2 -N 10000 true)\n");
  long first = -1;
  for (long long lines = 1000000; lines <= max_lines; lines *= 10) {
    double t0 = fp_now();
    long kib = fprun_peak_rss_kib(fprun, lines, 10000);
    if (kib < 0) {
      printf("  %11lld lines: failed\n", lines);
      return 1;
    }
    if (first < 0) first = kib;
    printf("  %11lld lines: %6.1f MiB peak (%+.1f MiB from 10^6), %.1f s\n", lines, kib / 1024.0,
           (kib - first) / 1024.0, fp_now() - t0);
  }
  return 0;
}
