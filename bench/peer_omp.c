/* peer_omp.c - OpenMP tasks (gcc's libgomp) on bench_dispatch's
 * workloads: a task per item created by one thread, then taskwait. */
#include "peer_common.h"

#include <omp.h>

static long fib_task(int n, int cutoff) {
  if (n <= cutoff) return fib_serial(n);
  long x, y;
#pragma omp task shared(x)
  x = fib_task(n - 1, cutoff);
  y = fib_task(n - 2, cutoff);
#pragma omp taskwait
  return x + y;
}

int main(int argc, char **argv) {
  peer_args a = peer_parse(argc, argv);
  for (int k = 0; k < a.nworkers; k++) {
    int w = a.workers[k];
    long done = 0;
    double t0 = peer_now();
#pragma omp parallel num_threads(w)
#pragma omp single
    {
      for (long i = 0; i < a.tasks; i++) {
#pragma omp task shared(done)
        {
#pragma omp atomic
          done++;
        }
      }
#pragma omp taskwait
    }
    double t = peer_now() - t0;
    if (done != a.tasks) abort();
    peer_report("throughput", w, t / (double)a.tasks * 1e9);

    long r = 0;
    t0 = peer_now();
#pragma omp parallel num_threads(w)
#pragma omp single
    r = fib_task(a.fib_n, a.fib_cutoff);
    t = peer_now() - t0;
    if (r != fib_serial(a.fib_n)) abort();
    peer_report("fib", w, t * 1e3);
  }
  /* Round trip: the creating thread waits for each task in turn. */
  double t0 = peer_now();
#pragma omp parallel num_threads(2)
#pragma omp single
  for (long i = 0; i < a.trips; i++) {
    volatile long x = 0;
#pragma omp task shared(x)
    x = 1;
#pragma omp taskwait
    if (x != 1) abort();
  }
  peer_report("round_trip", 2, (peer_now() - t0) / (double)a.trips * 1e9);
  return 0;
}
