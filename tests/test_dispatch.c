/* test_dispatch.c - what the thread pool's dispatch engine promises:
 * fan-out/fan-in on any pool size (a worker waiting on its own pool's
 * future runs queued tasks), outside submissions started in order, no
 * allocation per task once warm, and no task lost when outside
 * submitters, tasks' own submissions and stealing all race.
 * (ctest: also without lanes) */
#include "helpers.h"

#include <limits.h>

static fp_executor *fib_pool;

static long fib_serial(int n) { return n < 2 ? n : fib_serial(n - 1) + fib_serial(n - 2); }

/* Each call above 4 submits fib(n-1) to its own pool and waits for it. */
static void *fib_task(void *arg) {
  int n = (int)(intptr_t)arg;
  if (n <= 4) return (void *)(intptr_t)fib_serial(n);
  fp_future *child;
  ck_assert_int_eq(fp_submit(fib_pool, fib_task, (void *)(intptr_t)(n - 1), &child), 0);
  long y = (long)(intptr_t)fib_task((void *)(intptr_t)(n - 2));
  void *x;
  ck_assert_int_eq(fp_future_result(child, LONG_WAIT, &x), 0);
  fp_future_release(child);
  return (void *)(intptr_t)((long)(intptr_t)x + y);
}

START_TEST(fan_out_fan_in_completes_on_any_pool_size) {
  const int sizes[] = {1, 2, 3, 8};
  for (int k = 0; k < 4; k++)
    for (int round = 0; round < 5; round++) {
      fib_pool = new_pool(sizes[k]);
      fp_future *f;
      ck_assert_int_eq(fp_submit(fib_pool, fib_task, (void *)(intptr_t)18, &f), 0);
      void *r;
      ck_assert_int_eq(fp_future_result(f, LONG_WAIT, &r), 0);
      ck_assert_int_eq((long)(intptr_t)r, fib_serial(18));
      fp_future_release(f);
      ck_assert_int_eq(fp_executor_free(fib_pool), 0);
    }
}
END_TEST

/* A task on a pool of one waits for a future whose task an outside
 * thread queued after the task started: the waiting worker runs it (a
 * worker that blocked would wait for ever: it is the only one). */
typedef struct later {
  fp_executor *ex;
  _Atomic(fp_future *) f;
} later;

static bool later_submitted(void *arg) { return atomic_load(&((later *)arg)->f) != NULL; }

static void *wait_for_later(void *arg) {
  later *l = arg;
  ck_assert(wait_until(later_submitted, l, LONG_WAIT));
  fp_future *f = atomic_load(&l->f);
  void *r;
  ck_assert_int_eq(fp_future_result(f, LONG_WAIT, &r), 0);
  return r;
}

START_TEST(a_waiting_worker_runs_what_outside_threads_queue) {
  later l = {new_pool(1), NULL};
  fp_future *waiter, *f;
  ck_assert_int_eq(fp_submit(l.ex, wait_for_later, &l, &waiter), 0);
  ck_assert_int_eq(fp_submit(l.ex, task_identity, (void *)7, &f), 0);
  atomic_store(&l.f, f);
  void *r;
  ck_assert_int_eq(fp_future_result(waiter, LONG_WAIT, &r), 0);
  ck_assert_ptr_eq(r, (void *)7);
  fp_future_release(waiter);
  fp_future_release(f);
  fp_executor_free(l.ex);
}
END_TEST

static atomic_int order_next;
static int order_seen[2000];
static void *record_order(void *arg) {
  order_seen[atomic_fetch_add(&order_next, 1)] = (int)(intptr_t)arg;
  return NULL;
}

START_TEST(outside_submissions_start_in_order_on_one_worker) {
  for (int round = 0; round < 5; round++) {
    atomic_store(&order_next, 0);
    fp_executor *ex = new_pool(1);
    fp_future *fs[2000];
    for (int i = 0; i < 2000; i++)
      ck_assert_int_eq(fp_submit(ex, record_order, (void *)(intptr_t)i, &fs[i]), 0);
    for (int i = 0; i < 2000; i++) {
      ck_assert_int_eq(fp_future_result(fs[i], LONG_WAIT, NULL), 0);
      fp_future_release(fs[i]);
    }
    for (int i = 0; i < 2000; i++) ck_assert_int_eq(order_seen[i], i);
    fp_executor_free(ex);
  }
}
END_TEST

/* With two workers, the first two tasks submitted are the first two to
 * start, however many follow them. */
START_TEST(the_oldest_tasks_start_first) {
  for (int round = 0; round < 20; round++) {
    gate g;
    gate_init(&g);
    fp_executor *ex = new_pool(2);
    fp_future *held[2], *rest[200];
    for (int i = 0; i < 2; i++) fp_submit(ex, task_wait_gate, &g, &held[i]);
    for (int i = 0; i < 200; i++) fp_submit(ex, task_identity, NULL, &rest[i]);
    ck_assert(gate_wait_arrived(&g, 2));
    for (int i = 0; i < 200; i++) ck_assert(!fp_future_done(rest[i]));
    gate_open(&g);
    for (int i = 0; i < 2; i++) fp_future_release(held[i]);
    for (int i = 0; i < 200; i++) {
      ck_assert_int_eq(fp_future_result(rest[i], LONG_WAIT, NULL), 0);
      fp_future_release(rest[i]);
    }
    fp_executor_free(ex);
  }
}
END_TEST

START_TEST(no_allocation_per_task_once_warm) {
  ck_assert_int_eq(fp_set_allocator(counting_malloc, counting_calloc, counting_realloc, counting_free), 0);
  fp_executor *ex = new_pool(2);
  for (int phase = 0; phase < 2; phase++) {
    atomic_store(&allocations, 0);
    for (int i = 0; i < 5000; i++) { /* one at a time, and bursts of 32 */
      fp_future *fs[32];
      int n = i % 2 ? 32 : 1;
      for (int k = 0; k < n; k++) ck_assert_int_eq(fp_submit(ex, task_identity, NULL, &fs[k]), 0);
      for (int k = 0; k < n; k++) {
        ck_assert_int_eq(fp_future_result(fs[k], LONG_WAIT, NULL), 0);
        fp_future_release(fs[k]);
      }
    }
  }
  /* the second phase runs on what the first one left in the caches */
  ck_assert_int_le(atomic_load(&allocations), 8);
  fp_executor_free(ex);
  fp_reset_allocator();
}
END_TEST

/* Outside threads submit tasks that fan out; every result arrives. */
enum { STRESS_THREADS = 4, STRESS_TASKS = 300 };
static fp_executor *stress_pool;

static void *sum_children(void *arg) {
  intptr_t n = (intptr_t)arg;
  fp_future *kids[4];
  for (int k = 0; k < 4; k++)
    ck_assert_int_eq(fp_submit(stress_pool, task_identity, (void *)(n + k), &kids[k]), 0);
  intptr_t sum = 0;
  for (int k = 0; k < 4; k++) {
    void *r;
    ck_assert_int_eq(fp_future_result(kids[k], LONG_WAIT, &r), 0);
    sum += (intptr_t)r;
    fp_future_release(kids[k]);
  }
  return (void *)sum;
}

static void *stress_submitter(void *arg) {
  intptr_t base = (intptr_t)arg * 100000;
  fp_future *fs[STRESS_TASKS];
  for (int i = 0; i < STRESS_TASKS; i++)
    ck_assert_int_eq(fp_submit(stress_pool, sum_children, (void *)(base + i), &fs[i]), 0);
  for (int i = 0; i < STRESS_TASKS; i++) {
    void *r;
    ck_assert_int_eq(fp_future_result(fs[i], LONG_WAIT, &r), 0);
    ck_assert_int_eq((intptr_t)r, 4 * (base + i) + 6);
    fp_future_release(fs[i]);
  }
  return NULL;
}

START_TEST(racing_submitters_and_stealing_lose_nothing) {
  for (int round = 0; round < 10; round++) {
    stress_pool = new_pool(1 + round % 3);
    pthread_t th[STRESS_THREADS];
    for (intptr_t i = 0; i < STRESS_THREADS; i++)
      pthread_create(&th[i], NULL, stress_submitter, (void *)i);
    for (int i = 0; i < STRESS_THREADS; i++) pthread_join(th[i], NULL);
    fp_executor_stats st;
    fp_executor_get_stats(stress_pool, &st);
    ck_assert_uint_eq(st.submitted, STRESS_THREADS * STRESS_TASKS * 5);
    ck_assert_int_eq(fp_executor_free(stress_pool), 0);
  }
}
END_TEST

/* ---- lanes: outside threads submitting into lanes of their own ---- */

/* Whether this thread submits to ex through a lane (after a submit):
 * what ordering to expect between submitting threads. */
static bool submits_through_a_lane(fp_executor *ex) {
  fp_executor_stats st;
  ck_assert_int_eq(fp_executor_get_stats(ex, &st), 0);
  return st.lanes > 0;
}

enum { MANY_THREADS = 12, MANY_TASKS = 300 }; /* more threads than a pool has lanes */
static void *submit_and_check(void *arg) {
  fp_executor *ex = arg;
  fp_future *fs[MANY_TASKS];
  for (intptr_t i = 0; i < MANY_TASKS; i++)
    ck_assert_int_eq(fp_submit(ex, task_double, (void *)i, &fs[i]), 0);
  for (intptr_t i = 0; i < MANY_TASKS; i++) {
    void *r;
    ck_assert_int_eq(fp_future_result(fs[i], LONG_WAIT, &r), 0);
    ck_assert_int_eq((intptr_t)r, 2 * i);
    fp_future_release(fs[i]);
  }
  return NULL;
}

START_TEST(more_submitting_threads_than_lanes_lose_nothing) {
  for (int round = 0; round < 10; round++) {
    fp_executor *ex = new_pool(1 + round % 3);
    pthread_t th[MANY_THREADS];
    for (int i = 0; i < MANY_THREADS; i++) pthread_create(&th[i], NULL, submit_and_check, ex);
    for (int i = 0; i < MANY_THREADS; i++) pthread_join(th[i], NULL);
    fp_executor_stats st;
    fp_executor_get_stats(ex, &st);
    ck_assert_uint_eq(st.submitted, MANY_THREADS * MANY_TASKS);
    ck_assert_uint_eq(st.completed, MANY_THREADS * MANY_TASKS);
    ck_assert_uint_eq(st.queued, 0);
    ck_assert_int_eq(fp_executor_free(ex), 0);
  }
}
END_TEST

/* One thread, pools made and freed in turn, two at a time: each submit
 * reaches its own pool (a new pool may reuse a freed one's address). */
START_TEST(one_thread_submits_to_many_pools_in_turn) {
  fp_executor *old = new_pool(1);
  for (int round = 0; round < 30; round++) {
    fp_executor *young = new_pool(1 + round % 2);
    for (intptr_t i = 0; i < 50; i++) {
      fp_future *a, *b;
      void *ra, *rb;
      ck_assert_int_eq(fp_submit(old, task_double, (void *)i, &a), 0);
      ck_assert_int_eq(fp_submit(young, task_identity, (void *)i, &b), 0);
      ck_assert_int_eq(fp_future_result(a, LONG_WAIT, &ra), 0);
      ck_assert_int_eq(fp_future_result(b, LONG_WAIT, &rb), 0);
      ck_assert_int_eq((intptr_t)ra, 2 * i);
      ck_assert_int_eq((intptr_t)rb, i);
      fp_future_release(a);
      fp_future_release(b);
    }
    fp_executor_stats st;
    fp_executor_get_stats(young, &st);
    ck_assert_uint_eq(st.submitted, 50);
    ck_assert_int_eq(fp_executor_free(young), 0);
  }
  ck_assert_int_eq(fp_executor_free(old), 0);
}
END_TEST

enum { BACKLOG = 1500 };
static atomic_int backlog_done;
static void *count_done(void *arg) {
  atomic_fetch_add(&backlog_done, 1);
  return arg;
}
static void *done_so_far(void *arg) {
  (void)arg;
  return (void *)(intptr_t)atomic_load(&backlog_done);
}
typedef struct lone_submit {
  fp_executor *ex;
  fp_future *f;
} lone_submit;
static void *submit_lone_task(void *arg) {
  lone_submit *l = arg;
  ck_assert_int_eq(fp_submit(l->ex, done_so_far, NULL, &l->f), 0);
  return NULL;
}

/* Submit to each pool in turn, passes times, and wait. */
static void submit_round_robin(fp_executor **pools, int n, int passes) {
  for (int pass = 0; pass < passes; pass++)
    for (int i = 0; i < n; i++) {
      fp_future *f;
      ck_assert_int_eq(fp_submit(pools[i], task_identity, NULL, &f), 0);
      ck_assert_int_eq(fp_future_wait(f, LONG_WAIT), 0);
      fp_future_release(f);
    }
}

/* One worker, held; one thread queues a backlog, then another thread one
 * task. With lanes, the workers take the threads' lanes in turn: the lone
 * task starts within the first batches. Without, there is one queue: it
 * starts after the whole backlog, as in Python. First this thread submits
 * to more pools in turn than it keeps lanes of in its cache: it must find
 * its lane again each time, not use up the pool's. */
START_TEST(a_submitter_backlog_does_not_hold_up_another_thread) {
  for (int round = 0; round < 5; round++) {
    atomic_store(&backlog_done, 0);
    fp_executor *ex = new_pool(1), *pools[6] = {ex};
    for (int i = 1; i < 6; i++) pools[i] = new_pool(1);
    submit_round_robin(pools, 6, 10);
    for (int i = 1; i < 6; i++) fp_executor_free(pools[i]);
    gate g;
    gate_init(&g);
    fp_future *held, *backlog[BACKLOG];
    ck_assert_int_eq(fp_submit(ex, task_wait_gate, &g, &held), 0);
    ck_assert(gate_wait_arrived(&g, 1));
    bool lanes = submits_through_a_lane(ex);
    if (getenv("FP_MEMBARRIER") && !strcmp(getenv("FP_MEMBARRIER"), "0")) ck_assert(!lanes);
    for (int i = 0; i < BACKLOG; i++) ck_assert_int_eq(fp_submit(ex, count_done, NULL, &backlog[i]), 0);
    lone_submit lone = {ex, NULL};
    pthread_t th;
    pthread_create(&th, NULL, submit_lone_task, &lone);
    pthread_join(th, NULL);
    gate_open(&g);
    void *before;
    ck_assert_int_eq(fp_future_result(lone.f, LONG_WAIT, &before), 0);
    if (lanes)
      ck_assert_int_lt((intptr_t)before, 100);
    else
      ck_assert_int_eq((intptr_t)before, BACKLOG);
    fp_future_release(lone.f);
    fp_future_release(held);
    for (int i = 0; i < BACKLOG; i++) fp_future_release(backlog[i]);
    fp_executor_free(ex);
  }
}
END_TEST

/* Submits between idle gaps longer than the workers' spin: workers fall
 * asleep (and retire idle lanes) between them, and each submit must wake
 * one. A lost wake-up leaves a result unfinished until its deadline. */
enum { GAP_THREADS = 3, GAP_SUBMITS = 150 };
static void *submit_with_gaps(void *arg) {
  fp_executor *ex = arg;
  for (intptr_t i = 0; i < GAP_SUBMITS; i++) {
    fp_future *f;
    void *r;
    ck_assert_int_eq(fp_submit(ex, task_identity, (void *)i, &f), 0);
    ck_assert_int_eq(fp_future_result(f, 5.0, &r), 0);
    ck_assert_ptr_eq(r, (void *)i);
    fp_future_release(f);
    struct timespec gap = {0, (i % 4) * 60000}; /* 0 to 180 us: a deliberate idle spell */
    nanosleep(&gap, NULL);
  }
  return NULL;
}

START_TEST(submits_after_idle_gaps_wake_a_worker) {
  for (int workers = 1; workers <= 3; workers++) {
    fp_executor *ex = new_pool(workers);
    pthread_t th[GAP_THREADS];
    for (int i = 0; i < GAP_THREADS; i++) pthread_create(&th[i], NULL, submit_with_gaps, ex);
    for (int i = 0; i < GAP_THREADS; i++) pthread_join(th[i], NULL);
    ck_assert_int_eq(fp_executor_free(ex), 0);
  }
}
END_TEST

TEST_MAIN("dispatch", fan_out_fan_in_completes_on_any_pool_size,
          a_waiting_worker_runs_what_outside_threads_queue,
          outside_submissions_start_in_order_on_one_worker, the_oldest_tasks_start_first,
          no_allocation_per_task_once_warm, racing_submitters_and_stealing_lose_nothing,
          more_submitting_threads_than_lanes_lose_nothing, one_thread_submits_to_many_pools_in_turn,
          a_submitter_backlog_does_not_hold_up_another_thread, submits_after_idle_gaps_wake_a_worker)
