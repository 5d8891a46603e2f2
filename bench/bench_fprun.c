/* bench_fprun.c - fprun's per-job overhead beside its peers, in one run:
 * the spawn floor (a C loop of posix_spawn + waitpid over the same number
 * of slots), xargs -P, GNU parallel (when installed), and fprun itself,
 * on jobs of `true`; then fprun with -k, and with 64 KiB of output a job.
 * Prints microseconds a job and the ratio to the floor. */
#define _GNU_SOURCE
#include <futureproof.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

enum { SLOTS = 2 };

/* The floor: SLOTS children at a time, each `true`, spawned and reaped. */
static double floor_us(int jobs) {
  char *argv[] = {"true", NULL};
  double t0 = fp_now();
  int running = 0, started = 0;
  while (started < jobs || running) {
    while (running < SLOTS && started < jobs) {
      pid_t pid;
      if (posix_spawnp(&pid, "true", NULL, NULL, argv, environ)) abort();
      running++;
      started++;
    }
    if (wait(NULL) > 0) running--;
  }
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
    printf("  %-34s %10s\n", name, "failed");
  else
    printf("  %-34s %10.1f %8.2fx\n", name, us, us / floor);
}

int main(int argc, char **argv) {
  int jobs = argc > 1 ? atoi(argv[1]) : 5000;
  const char *fprun = FP_FPRUN_PATH;
  char cmd[1024];
  printf("fprun: %d jobs of `true` on %d slots (us a job, and x the spawn floor)\n", jobs, SLOTS);
  double fl = floor_us(jobs);
  row("spawn floor (posix_spawn + wait)", fl, fl);
  snprintf(cmd, sizeof cmd, "seq %d | %s -j%d true", jobs, fprun, SLOTS);
  row("fprun", shell_us(cmd, jobs), fl);
  snprintf(cmd, sizeof cmd, "seq %d | xargs -P%d -n1 true", jobs, SLOTS);
  row("xargs -P", shell_us(cmd, jobs), fl);
  if (have("parallel")) {
    snprintf(cmd, sizeof cmd, "seq %d | parallel --will-cite -j%d true", jobs, SLOTS);
    row("GNU parallel", shell_us(cmd, jobs), fl);
  } else {
    printf("  GNU parallel: not installed (Debian package parallel), left out\n");
  }
  snprintf(cmd, sizeof cmd, "seq %d | %s -j%d -k true", jobs, fprun, SLOTS);
  row("fprun -k", shell_us(cmd, jobs), fl);
  int out_jobs = jobs / 5;
  snprintf(cmd, sizeof cmd, "seq %d | %s -j%d 'head -c 65536 /dev/zero # {}' >/dev/null",
           out_jobs, fprun, SLOTS);
  row("fprun, 64 KiB of output a job", shell_us(cmd, out_jobs), fl);
  return 0;
}
