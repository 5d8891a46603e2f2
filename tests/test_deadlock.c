/* test_deadlock.c - waits that can never end fail at once with FP_EDEADLK,
 * naming the cycle: the two seed examples (two tasks waiting on each
 * other; a task waiting on a task of its own one-worker pool, which
 * helping solves), a task waiting on its own future, cycles across two
 * pools and through fp_wait and fp_as_completed, a task run meanwhile by a
 * waiting worker; and no false answer over thousands of random wait
 * graphs, with and without cycles. */
#include "helpers.h"

#include <futureproof/executor.h>

/* ---- the first seed: wait_on_a and wait_on_b ---- */

/* Each waits on the other's future, published once both are submitted. */
static fp_future *_Atomic future_a, *_Atomic future_b;
static fp_future *start_gate; /* set once both are published */

static void *wait_on(fp_future *_Atomic *which, long value) {
  fp_future_wait(start_gate, LONG_WAIT);
  void *r;
  int rc = fp_future_result(atomic_load(which), LONG_WAIT, &r);
  return rc ? fp_raise(rc, "%s", fp_last_error_message()) : (void *)value;
}
static void *wait_on_b(void *arg) { return wait_on(&future_b, (long)(intptr_t)arg); }
static void *wait_on_a(void *arg) { return wait_on(&future_a, (long)(intptr_t)arg); }

static void submit_the_pair(fp_executor *ex_a, fp_executor *ex_b) {
  ck_assert_int_eq(fp_future_new(&start_gate), 0);
  fp_future *a, *b;
  ck_assert_int_eq(fp_submit(ex_a, wait_on_b, (void *)5, &a), 0);
  ck_assert_int_eq(fp_submit(ex_b, wait_on_a, (void *)6, &b), 0);
  atomic_store(&future_a, a);
  atomic_store(&future_b, b);
  fp_future_set_result(start_gate, NULL);
}

/* The wait that closes the cycle fails at once with FP_EDEADLK naming
 * both; its task fails with it, and so the other's wait, which got that
 * failure, fails too: neither hangs. */
static void check_the_pair(void) {
  fp_future *a = atomic_load(&future_a), *b = atomic_load(&future_b);
  double t0 = fp_now();
  ck_assert_int_eq(fp_future_wait(a, LONG_WAIT), 0);
  ck_assert_int_eq(fp_future_wait(b, LONG_WAIT), 0);
  ck_assert_double_lt(fp_now() - t0, 1.0);
  const fp_error *ea = fp_future_error(a), *eb = fp_future_error(b);
  ck_assert(ea && eb);
  ck_assert_int_eq(ea->code, FP_EDEADLK);
  ck_assert_int_eq(eb->code, FP_EDEADLK);
  char own[2][64];
  /* a runs wait_on_b, b runs wait_on_a (ids may be alike across pools) */
  snprintf(own[0], sizeof own[0], "deadlock: task %llu (wait_on_b)",
           (unsigned long long)fp_future_id(a));
  snprintf(own[1], sizeof own[1], "deadlock: task %llu (wait_on_a)",
           (unsigned long long)fp_future_id(b));
  bool a_found = strstr(ea->message, own[0]) == ea->message,
       b_found = strstr(eb->message, own[1]) == eb->message;
  ck_assert_msg(a_found != b_found, "one found it: %s / %s", ea->message, eb->message);
  fp_future *self = a_found ? a : b, *other = a_found ? b : a;
  char want[160];
  snprintf(want, sizeof want,
           "deadlock: task %llu (%s) waits for task %llu (%s), which waits for task %llu",
           (unsigned long long)fp_future_id(self), self == a ? "wait_on_b" : "wait_on_a",
           (unsigned long long)fp_future_id(other), other == a ? "wait_on_b" : "wait_on_a",
           (unsigned long long)fp_future_id(self));
  const char *message = (a_found ? ea : eb)->message;
  ck_assert_msg(strstr(message, want), "message: %s\nwanted: %s", message, want);
  ck_assert_msg(strstr((a_found ? eb : ea)->message, want), "the other passes it on");
  fp_future_release(a);
  fp_future_release(b);
  fp_future_release(start_gate);
}

START_TEST(two_tasks_waiting_on_each_other_fail_at_once) {
  capture_start();
  fp_task_register("wait_on_a", wait_on_a);
  fp_task_register("wait_on_b", wait_on_b);
  for (int round = 0; round < 50; round++) { /* either may close the cycle */
    fp_executor *ex = new_pool(2);
    submit_the_pair(ex, ex);
    check_the_pair();
    fp_executor_free(ex);
  }
}
END_TEST

START_TEST(a_cycle_across_two_pools_is_found) {
  capture_start();
  fp_task_register("wait_on_a", wait_on_a);
  fp_task_register("wait_on_b", wait_on_b);
  for (int round = 0; round < 20; round++) {
    fp_executor *one = new_pool(1), *other = new_pool(1);
    submit_the_pair(one, other);
    check_the_pair();
    fp_executor_free(one);
    fp_executor_free(other);
  }
}
END_TEST

/* ---- the second seed: pow(5, 2) from a task of a one-worker pool ---- */

static fp_executor *single;
static void *power_of_two(void *arg) { return (void *)((intptr_t)arg * (intptr_t)arg); }
static void *wait_on_future(void *arg) {
  (void)arg;
  fp_future *f;
  if (fp_submit(single, power_of_two, (void *)5, &f)) return fp_raise(FP_EINVAL, "submit");
  void *r = NULL;
  int rc = fp_future_result(f, LONG_WAIT, &r);
  fp_future_release(f);
  return rc ? fp_raise(rc, "%s", fp_last_error_message()) : r;
}

START_TEST(a_task_waiting_on_its_own_one_worker_pool_gets_its_result) {
  single = new_pool(1);
  fp_future *f;
  ck_assert_int_eq(fp_submit(single, wait_on_future, NULL, &f), 0);
  ck_assert_int_eq(value_of(f), 25); /* the worker runs pow itself: Python hangs here */
  fp_future_release(f);
  fp_executor_free(single);
}
END_TEST

/* ---- its own future ---- */

static fp_future *_Atomic self_future;
static void *wait_on_itself(void *arg) {
  (void)arg;
  fp_future_wait(start_gate, LONG_WAIT);
  int rc = fp_future_wait(atomic_load(&self_future), LONG_WAIT);
  return rc == FP_EDEADLK ? fp_raise(rc, "%s", fp_last_error_message()) : NULL;
}

START_TEST(a_task_waiting_on_its_own_future_fails_at_once) {
  capture_start();
  for (int workers = 1; workers <= 2; workers++) { /* helping (one worker) or not */
    fp_executor *ex = new_pool(workers);
    ck_assert_int_eq(fp_future_new(&start_gate), 0);
    fp_future *f;
    fp_task_options named = {.name = "narcissus"};
    ck_assert_int_eq(fp_submit_ex(ex, wait_on_itself, NULL, &named, -1, &f), 0);
    atomic_store(&self_future, f);
    fp_future_set_result(start_gate, NULL);
    ck_assert_int_eq(fp_future_result(f, LONG_WAIT, NULL), FP_EDEADLK);
    char want[96];
    snprintf(want, sizeof want, "deadlock: task %llu (narcissus) waits for its own future",
             (unsigned long long)fp_future_id(f));
    ck_assert_msg(strstr(fp_last_error_message(), want), "%s", fp_last_error_message());
    fp_future_release(f);
    fp_future_release(start_gate);
    fp_executor_free(ex);
  }
}
END_TEST

/* ---- through fp_wait and fp_as_completed ---- */

static fp_future *_Atomic partner[2];
enum { BY_WAIT_ALL, BY_WAIT_FIRST, BY_AS_COMPLETED };

/* arg: how it waits for its partner's future (low bits), and which of the
 * pair it is (bit 4). */
static void *wait_by(void *arg) {
  intptr_t how = (intptr_t)arg & 0xf, me = (intptr_t)arg >> 4 & 1;
  fp_future_wait(start_gate, LONG_WAIT);
  fp_future *other = atomic_load(&partner[!me]);
  int rc = 0;
  if (how == BY_AS_COMPLETED) {
    fp_as_completed *it;
    rc = fp_as_completed_new(&other, 1, LONG_WAIT, &it);
    fp_future *next;
    if (!rc) rc = fp_as_completed_next(it, &next);
    fp_as_completed_free(it);
  } else {
    rc = fp_wait(&other, 1, how == BY_WAIT_FIRST ? FP_FIRST_COMPLETED : FP_ALL_COMPLETED,
                 LONG_WAIT, NULL, NULL, NULL, NULL);
  }
  return rc ? fp_raise(rc, "%s", fp_last_error_message()) : NULL;
}

/* Two tasks waiting on each other that way: how many got FP_EDEADLK. */
static int deadlocks_by(intptr_t how) {
  fp_executor *ex = new_pool(2);
  ck_assert_int_eq(fp_future_new(&start_gate), 0);
  fp_future *f[2];
  for (intptr_t me = 0; me < 2; me++)
    ck_assert_int_eq(fp_submit(ex, wait_by, (void *)(how | me << 4), &f[me]), 0);
  atomic_store(&partner[0], f[0]);
  atomic_store(&partner[1], f[1]);
  fp_future_set_result(start_gate, NULL);
  int deadlocks = 0;
  for (int i = 0; i < 2; i++) ck_assert_int_eq(fp_future_wait(f[i], LONG_WAIT), 0);
  for (int i = 0; i < 2; i++) { /* released once both are done: each waits on the other */
    const fp_error *e = fp_future_error(f[i]);
    if (e) ck_assert_int_eq(e->code, FP_EDEADLK);
    deadlocks += e != NULL;
    fp_future_release(f[i]);
  }
  fp_future_release(start_gate);
  fp_executor_free(ex);
  return deadlocks;
}

START_TEST(cycles_through_fp_wait_and_as_completed_are_found) {
  capture_start();
  for (int round = 0; round < 10; round++) {
    ck_assert_int_eq(deadlocks_by(BY_WAIT_ALL), 1);
    ck_assert_int_eq(deadlocks_by(BY_WAIT_FIRST), 1);
    ck_assert_int_eq(deadlocks_by(BY_AS_COMPLETED), 1);
  }
}
END_TEST

/* ---- a task that waits on a process pool's future: no cycle ---- */

static fp_executor *processes;
static void *wait_on_a_process(void *arg) {
  fp_future *f;
  if (fp_submit(processes, task_sleep_ms, arg, &f)) return fp_raise(FP_EINVAL, "submit");
  void *r = NULL;
  int rc = fp_future_result(f, LONG_WAIT, &r);
  fp_future_release(f);
  return rc ? fp_raise(rc, "%s", fp_last_error_message()) : r;
}

START_TEST(waiting_on_a_worker_process_is_no_cycle) {
  processes = new_process_pool(1, 0);
  fp_executor *threads = new_pool(2);
  fp_future *f[4];
  for (intptr_t i = 0; i < 4; i++)
    ck_assert_int_eq(fp_submit(threads, wait_on_a_process, (void *)(10 + i), &f[i]), 0);
  for (intptr_t i = 0; i < 4; i++) {
    ck_assert_int_eq(value_of(f[i]), 10 + i);
    fp_future_release(f[i]);
  }
  fp_executor_free(threads);
  fp_executor_free(processes);
}
END_TEST

/* ---- random wait graphs ---- */

/* N tasks on a pool of N workers; task i waits for each of its successors
 * (a random set), by fp_future_result one after the other or by one
 * fp_wait for all, then returns 1 + the sum of their results. Without a
 * cycle every task succeeds with the sum of the paths below it; with one,
 * at least one wait fails with FP_EDEADLK, and still every task ends. */
enum { GRAPH_MAX = 6 };
typedef struct graph {
  int n;
  unsigned succ[GRAPH_MAX]; /* bit j: i waits for j */
  bool by_wait[GRAPH_MAX];  /* one fp_wait, else one result after the other */
  fp_future *_Atomic f[GRAPH_MAX];
  fp_future *start_gate;
} graph;
static graph g;

static void *graph_task(void *arg) {
  int i = (int)(intptr_t)arg;
  fp_future_wait(g.start_gate, LONG_WAIT);
  fp_future *fs[GRAPH_MAX];
  int n = 0;
  for (int j = 0; j < g.n; j++)
    if (g.succ[i] >> j & 1) fs[n++] = atomic_load(&g.f[j]);
  if (g.by_wait[i] && n) {
    int rc = fp_wait(fs, (size_t)n, FP_ALL_COMPLETED, LONG_WAIT, NULL, NULL, NULL, NULL);
    if (rc) return fp_raise(rc, "%s", fp_last_error_message());
  }
  intptr_t sum = 1;
  for (int k = 0; k < n; k++) {
    void *r;
    int rc = fp_future_result(fs[k], LONG_WAIT, &r);
    if (rc) return fp_raise(rc == FP_EDEADLK ? rc : FP_ETASK, "%s", fp_last_error_message());
    sum += (intptr_t)r;
  }
  return (void *)sum;
}

static bool has_cycle_from(int i, unsigned on_path, unsigned *done) {
  if (on_path >> i & 1) return true;
  if (*done >> i & 1) return false;
  for (int j = 0; j < g.n; j++)
    if (g.succ[i] >> j & 1 && has_cycle_from(j, on_path | 1u << i, done)) return true;
  *done |= 1u << i;
  return false;
}

static intptr_t expected(int i) {
  intptr_t sum = 1;
  for (int j = 0; j < g.n; j++)
    if (g.succ[i] >> j & 1) sum += expected(j);
  return sum;
}

START_TEST(random_wait_graphs_get_no_false_answer) {
  capture_start();
  unsigned seed = 12345;
  fp_executor *ex = new_pool(GRAPH_MAX);
  int graphs = 2000, cyclic = 0;
  for (int round = 0; round < graphs; round++) {
    g.n = 2 + (int)(rand_r(&seed) % (GRAPH_MAX - 1));
    bool want_cycle = rand_r(&seed) % 2;
    for (int i = 0; i < g.n; i++) {
      g.succ[i] = 0;
      g.by_wait[i] = rand_r(&seed) % 3 == 0;
      for (int j = 0; j < g.n; j++) /* acyclic: only to higher ones */
        if (j > i && rand_r(&seed) % 3 == 0) g.succ[i] |= 1u << j;
    }
    if (want_cycle) { /* one edge back closes a cycle somewhere */
      int from = 1 + (int)(rand_r(&seed) % (unsigned)(g.n - 1));
      int to = (int)(rand_r(&seed) % (unsigned)(from + 1));
      g.succ[from] |= 1u << to;
      if (to < from) g.succ[to] |= 1u << from; /* make sure: to waits for from too */
    }
    unsigned done = 0;
    bool cycle = false;
    for (int i = 0; i < g.n && !cycle; i++) cycle = has_cycle_from(i, 0, &done);
    cyclic += cycle;
    ck_assert_int_eq(fp_future_new(&g.start_gate), 0);
    fp_future *f[GRAPH_MAX];
    for (intptr_t i = 0; i < g.n; i++) {
      ck_assert_int_eq(fp_submit(ex, graph_task, (void *)i, &f[i]), 0);
      atomic_store(&g.f[i], f[i]);
    }
    fp_future_set_result(g.start_gate, NULL);
    int deadlocks = 0;
    for (int i = 0; i < g.n; i++) {
      ck_assert_msg(fp_future_wait(f[i], LONG_WAIT) == 0, "graph %d: task %d hangs", round, i);
      const fp_error *e = fp_future_error(f[i]);
      if (e && e->code == FP_EDEADLK) deadlocks++;
      if (!cycle) {
        ck_assert_msg(!e, "graph %d (no cycle): task %d failed: %s", round, i, e->message);
        void *r;
        fp_future_result(f[i], 0, &r);
        ck_assert_int_eq((intptr_t)r, expected(i));
      }
    }
    if (cycle) ck_assert_msg(deadlocks >= 1, "graph %d: a cycle, and no FP_EDEADLK", round);
    for (int i = 0; i < g.n; i++) fp_future_release(f[i]);
    fp_future_release(g.start_gate);
  }
  ck_assert_int_gt(cyclic, graphs / 4);
  ck_assert_int_lt(cyclic, graphs);
  fp_executor_free(ex);
}
END_TEST

TEST_MAIN("deadlock", two_tasks_waiting_on_each_other_fail_at_once,
          a_cycle_across_two_pools_is_found,
          a_task_waiting_on_its_own_one_worker_pool_gets_its_result,
          a_task_waiting_on_its_own_future_fails_at_once,
          cycles_through_fp_wait_and_as_completed_are_found,
          waiting_on_a_worker_process_is_no_cycle, random_wait_graphs_get_no_false_answer)
