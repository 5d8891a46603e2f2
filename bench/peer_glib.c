/* peer_glib.c - GLib's GThreadPool on bench_dispatch's workloads (no
 * futures: a counter; the round trip waits on a GCond). No fan-out:
 * a GThreadPool task that waits for its children can deadlock the pool. */
#include "peer_common.h"

#include <glib.h>

static void count_task(gpointer data, gpointer user) {
  (void)data;
  g_atomic_int_inc((gint *)user);
}

typedef struct trip {
  GMutex mu;
  GCond cv;
  int done;
} trip;

static void trip_task(gpointer data, gpointer user) {
  (void)user;
  trip *t = data;
  g_mutex_lock(&t->mu);
  t->done = 1;
  g_cond_signal(&t->cv);
  g_mutex_unlock(&t->mu);
}

int main(int argc, char **argv) {
  peer_args a = peer_parse(argc, argv);
  for (int k = 0; k < a.nworkers; k++) {
    gint done = 0;
    GThreadPool *pool = g_thread_pool_new(count_task, &done, a.workers[k], TRUE, NULL);
    double t0 = peer_now();
    for (long i = 0; i < a.tasks; i++) g_thread_pool_push(pool, GINT_TO_POINTER(1), NULL);
    g_thread_pool_free(pool, FALSE, TRUE); /* waits for every task */
    double t = peer_now() - t0;
    if (g_atomic_int_get(&done) != a.tasks) abort();
    peer_report("throughput", a.workers[k], t / (double)a.tasks * 1e9);
  }
  trip t;
  g_mutex_init(&t.mu);
  g_cond_init(&t.cv);
  GThreadPool *pool = g_thread_pool_new(trip_task, NULL, 2, TRUE, NULL);
  double t0 = peer_now();
  for (long i = 0; i < a.trips; i++) {
    t.done = 0;
    g_thread_pool_push(pool, &t, NULL);
    g_mutex_lock(&t.mu);
    while (!t.done) g_cond_wait(&t.cv, &t.mu);
    g_mutex_unlock(&t.mu);
  }
  peer_report("round_trip", 2, (peer_now() - t0) / (double)a.trips * 1e9);
  g_thread_pool_free(pool, FALSE, TRUE);
  return 0;
}
