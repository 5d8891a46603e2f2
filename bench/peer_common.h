/* peer_common.h - what every compiled peer of bench_dispatch shares: a
 * clock, and the one output format: "benchmark workers value" lines. */
#ifndef PEER_COMMON_H
#define PEER_COMMON_H
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double peer_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void peer_report(const char *bench, int workers, double value) {
  printf("%s %d %.3f\n", bench, workers, value);
  fflush(stdout);
}

/* fib with a cutoff: below it, plain recursion. */
static inline long fib_serial(int n) { return n < 2 ? n : fib_serial(n - 1) + fib_serial(n - 2); }

/* Arguments: THROUGHPUT_TASKS TRIPS FIB_N FIB_CUTOFF WORKERS... */
typedef struct peer_args {
  long tasks, trips;
  int fib_n, fib_cutoff;
  int workers[8];
  int nworkers;
} peer_args;

static inline peer_args peer_parse(int argc, char **argv) {
  peer_args a = {1000000, 20000, 25, 6, {2}, 1};
  if (argc > 4) {
    a.tasks = atol(argv[1]);
    a.trips = atol(argv[2]);
    a.fib_n = atoi(argv[3]);
    a.fib_cutoff = atoi(argv[4]);
    a.nworkers = 0;
    for (int i = 5; i < argc && a.nworkers < 8; i++) a.workers[a.nworkers++] = atoi(argv[i]);
  }
  return a;
}
#endif
