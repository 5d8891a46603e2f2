/* test_race.c - submit, cancel, wait and shut down from several threads at
 * once, for thousands of rounds: every future ends done, with the right
 * result or cancelled; every submit succeeds or is told the pool shut down;
 * nothing hangs. Run under ThreadSanitizer in CI.
 * (ctest: also without lanes) */
#include "helpers.h"

enum { SUBMITTERS = 3, PER_SUBMITTER = 16, SLOTS = SUBMITTERS * PER_SUBMITTER };

typedef struct round_state {
  fp_executor *ex;
  _Atomic(fp_future *) slots[SLOTS];
  atomic_int submitted, refused;
  unsigned seed;
} round_state;

typedef struct submitter {
  round_state *r;
  int index;
} submitter;

static void *submit_many(void *p) {
  submitter *s = p;
  for (int i = 0; i < PER_SUBMITTER; i++) {
    int slot = s->index * PER_SUBMITTER + i;
    fp_future *f;
    int rc = fp_submit(s->r->ex, task_double, (void *)(intptr_t)slot, &f);
    if (rc == 0) {
      atomic_store(&s->r->slots[slot], f);
      atomic_fetch_add(&s->r->submitted, 1);
    } else {
      ck_assert_int_eq(rc, FP_ESHUTDOWN);
      atomic_fetch_add(&s->r->refused, 1);
    }
  }
  return NULL;
}

static void *cancel_some(void *p) {
  round_state *r = p;
  for (int pass = 0; pass < 3; pass++)
    for (int i = pass; i < SLOTS; i += 3) {
      fp_future *f = atomic_load(&r->slots[i]);
      if (f) fp_future_cancel(f);
    }
  return NULL;
}

static void *wait_some(void *p) {
  round_state *r = p;
  for (int i = 0; i < SLOTS; i += 5) {
    fp_future *f = atomic_load(&r->slots[i]);
    if (f) fp_future_wait(f, 0.001);
  }
  return NULL;
}

static void *shut_down(void *p) {
  round_state *r = p;
  unsigned x = r->seed;
  for (unsigned spin = x % 2000; spin > 0; spin--) atomic_signal_fence(memory_order_seq_cst);
  ck_assert_int_eq(fp_shutdown(r->ex, x & 1, (x >> 1) & 1), 0);
  return NULL;
}

static void one_round(unsigned seed) {
  round_state r;
  memset(&r, 0, sizeof r);
  r.ex = new_pool(1 + (int)(seed % 3));
  r.seed = seed * 2654435761u;
  for (int i = 0; i < SLOTS; i++) atomic_init(&r.slots[i], NULL);
  pthread_t th[SUBMITTERS + 3];
  submitter subs[SUBMITTERS];
  for (int i = 0; i < SUBMITTERS; i++) {
    subs[i] = (submitter){&r, i};
    pthread_create(&th[i], NULL, submit_many, &subs[i]);
  }
  pthread_create(&th[SUBMITTERS], NULL, cancel_some, &r);
  pthread_create(&th[SUBMITTERS + 1], NULL, wait_some, &r);
  pthread_create(&th[SUBMITTERS + 2], NULL, shut_down, &r);
  for (int i = 0; i < SUBMITTERS + 3; i++) pthread_join(th[i], NULL);
  ck_assert_int_eq(fp_executor_free(r.ex), 0);
  ck_assert_int_eq(atomic_load(&r.submitted) + atomic_load(&r.refused), SLOTS);
  for (int i = 0; i < SLOTS; i++) {
    fp_future *f = atomic_load(&r.slots[i]);
    if (!f) continue;
    ck_assert(fp_future_done(f));
    void *v;
    int rc = fp_future_result(f, 0, &v);
    if (rc == 0)
      ck_assert_ptr_eq(v, (void *)(intptr_t)(2 * i));
    else
      ck_assert_int_eq(rc, FP_ECANCELED);
    fp_future_release(f);
  }
}

START_TEST(submit_cancel_shutdown_from_many_threads) {
  const char *env = getenv("FP_RACE_ROUNDS");
  int rounds = env ? atoi(env) : 2000;
  /* At most 25 s of the test's 60 (ThreadSanitizer on a loaded 2-core CI
   * machine runs a round 10x slower), and at least 200 rounds. */
  double end = fp_now() + 25;
  int i = 0;
  for (; i < rounds && (i < 200 || fp_now() < end); i++) one_round((unsigned)i);
  if (i < rounds) printf("race: %d of %d rounds in 25 s\n", i, rounds);
}
END_TEST

/* Many threads wait on the same futures while others complete them. */
typedef struct shared_futures {
  fp_future *fs[64];
} shared_futures;

static void *wait_all(void *p) {
  shared_futures *s = p;
  size_t nd;
  ck_assert_int_eq(fp_wait(s->fs, 64, FP_ALL_COMPLETED, LONG_WAIT, NULL, &nd, NULL, NULL), 0);
  ck_assert_uint_eq(nd, 64);
  fp_as_completed *it;
  ck_assert_int_eq(fp_as_completed_new(s->fs, 64, LONG_WAIT, &it), 0);
  fp_future *f;
  int n = 0;
  while (fp_as_completed_next(it, &f) == 0) n++;
  ck_assert_int_eq(n, 64);
  fp_as_completed_free(it);
  return NULL;
}

START_TEST(waiters_and_completers_race) {
  for (int round = 0; round < 300; round++) {
    fp_executor *ex = new_pool(2);
    shared_futures s;
    for (intptr_t i = 0; i < 64; i++) fp_submit(ex, task_double, (void *)i, &s.fs[i]);
    pthread_t th[3];
    for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, wait_all, &s);
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    fp_executor_free(ex);
    for (int i = 0; i < 64; i++) fp_future_release(s.fs[i]);
  }
}
END_TEST

TEST_MAIN("race", submit_cancel_shutdown_from_many_threads, waiters_and_completers_race)
