// peer_tbb.cpp - oneTBB's task_group on bench_dispatch's workloads.
#include "peer_common.h"

#include <atomic>
#include <tbb/global_control.h>
#include <tbb/task_arena.h>
#include <tbb/task_group.h>

static long fib_tg(int n, int cutoff) {
  if (n <= cutoff) return fib_serial(n);
  long x = 0, y = 0;
  tbb::task_group g;
  g.run([&] { x = fib_tg(n - 1, cutoff); });
  y = fib_tg(n - 2, cutoff);
  g.wait();
  return x + y;
}

int main(int argc, char **argv) {
  peer_args a = peer_parse(argc, argv);
  for (int k = 0; k < a.nworkers; k++) {
    int w = a.workers[k];
    tbb::task_arena arena(w);
    std::atomic<long> done{0};
    double t0 = peer_now();
    arena.execute([&] {
      tbb::task_group g;
      for (long i = 0; i < a.tasks; i++) g.run([&] { done.fetch_add(1, std::memory_order_relaxed); });
      g.wait();
    });
    double t = peer_now() - t0;
    if (done.load() != a.tasks) abort();
    peer_report("throughput", w, t / (double)a.tasks * 1e9);

    long r = 0;
    t0 = peer_now();
    arena.execute([&] { r = fib_tg(a.fib_n, a.fib_cutoff); });
    t = peer_now() - t0;
    if (r != fib_serial(a.fib_n)) abort();
    peer_report("fib", w, t * 1e3);
  }
  tbb::task_arena arena(2);
  double t0 = peer_now();
  arena.execute([&] {
    for (long i = 0; i < a.trips; i++) {
      volatile long x = 0;
      tbb::task_group g;
      g.run([&] { x = 1; });
      g.wait();
      if (x != 1) abort();
    }
  });
  peer_report("round_trip", 2, (peer_now() - t0) / (double)a.trips * 1e9);
  return 0;
}
