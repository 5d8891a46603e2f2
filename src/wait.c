/* wait.c - fp_wait and fp_as_completed: waiting on futures from any
 * executors at once, in O(n) for n futures. */
#include "internal.h"

#include <string.h>

/* ---- distinct futures: an open-addressing pointer set ---- */

static size_t hash_pointer(const void *p, size_t mask) {
  uint64_t x = (uint64_t)(uintptr_t)p;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return (size_t)x & mask;
}

/* Write the distinct futures of fs into uniq (room for n), in first-seen
 * order; returns their count or FP_ENOMEM. */
static long dedup_futures(fp_future *const *fs, size_t n, fp_future **uniq) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  fp_future **slots = fp__calloc(cap, sizeof *slots);
  if (!slots) return FP_ENOMEM;
  size_t count = 0;
  for (size_t i = 0; i < n; i++) {
    size_t h = hash_pointer(fs[i], cap - 1);
    while (slots[h] && slots[h] != fs[i]) h = (h + 1) & (cap - 1);
    if (slots[h]) continue;
    slots[h] = fs[i];
    uniq[count++] = fs[i];
  }
  fp__free(slots);
  return (long)count;
}

/* More futures than an address space could hold arrays for: a bad count. */
#define MAX_FUTURES (SIZE_MAX / 64)

static int check_futures(const char *fn, fp_future *const *fs, size_t n) {
  if (n > MAX_FUTURES) return fp__einval("%s: %zu futures is not a count", fn, n);
  if (!fs && n) return fp__einval("%s: futures array is NULL", fn);
  for (size_t i = 0; i < n; i++)
    if (!fs[i]) return fp__einval("%s: future %zu is NULL", fn, i);
  return 0;
}

/* ---- fp_wait ---- */

int fp_wait(fp_future *const *fs, size_t n, fp_return_when when, double timeout_s,
            fp_future **done, size_t *n_done, fp_future **not_done, size_t *n_not_done) {
  int rc = check_futures("fp_wait", fs, n);
  if (!rc) rc = fp__check_timeout(timeout_s, "fp_wait");
  if (rc) return rc;
  if (when != FP_ALL_COMPLETED && when != FP_FIRST_COMPLETED && when != FP_FIRST_EXCEPTION)
    return fp__einval("fp_wait: unknown return_when %d", (int)when);
  fp__deadline d = fp__deadline_in(timeout_s);

  fp_future **uniq = fp__malloc_array(n ? n : 1, sizeof *uniq);
  fp__wait_node *nodes = fp__malloc_array(n ? n : 1, sizeof *nodes);
  fp__waiter w;
  if (!uniq || !nodes || fp__waiter_init(&w)) {
    fp__free(uniq);
    fp__free(nodes);
    return fp__fail(FP_ENOMEM, "fp_wait: out of memory for %zu futures", n);
  }
  long m = dedup_futures(fs, n, uniq);
  if (m < 0) {
    fp__free(uniq);
    fp__free(nodes);
    fp__waiter_destroy(&w);
    return fp__fail(FP_ENOMEM, "fp_wait: out of memory for %zu futures", n);
  }

  /* Register on each unfinished future; count the ones already done. */
  size_t already = 0, already_failed = 0, linked = 0;
  for (long i = 0; i < m; i++) {
    if (fp__waiter_add(&w, &nodes[linked], uniq[i])) {
      linked++;
    } else {
      already++;
      if (fp__future_failed(uniq[i])) already_failed++;
    }
  }
  /* Sleep until the condition holds: the completers append our nodes to
   * w's ready list and count failures in w.failed. In a task, a sleep that
   * could never end fails at once (FP_EDEADLK): for all of them, one that
   * waits on this task is enough; for the first, every pending one must. */
  fp__wait_edge edge = {0};
  fp_future **targets = NULL;
  pthread_mutex_lock(&w.mu);
  for (;;) {
    size_t done_count = already + w.ready, failed_count = already_failed + w.failed;
    if (done_count == (size_t)m) break;
    if (when == FP_FIRST_COMPLETED && done_count > 0) break;
    if (when == FP_FIRST_EXCEPTION && failed_count > 0) break;
    if (timeout_s == 0) break;
    if (!targets && fp__current_future() &&
        (targets = fp__malloc_array((size_t)m, sizeof *targets))) {
      pthread_mutex_unlock(&w.mu);
      size_t pending = 0;
      for (long i = 0; i < m; i++)
        if (!fp_future_done(uniq[i])) targets[pending++] = uniq[i];
      rc = fp__record_wait(&edge, targets, pending, when != FP_ALL_COMPLETED);
      pthread_mutex_lock(&w.mu);
      if (rc) break;
      continue; /* the condition again: something may have finished meanwhile */
    }
    if (fp__cond_wait(&w.cv, &w.mu, &d) == ETIMEDOUT) break;
  }
  pthread_mutex_unlock(&w.mu);
  fp__wait_edge_remove(&edge);
  fp__free(targets);
  for (size_t i = 0; i < linked; i++) fp__waiter_remove(&nodes[i]);
  fp__waiter_destroy(&w);
  fp__free(nodes);

  size_t nd = 0, nn = 0;
  for (long i = 0; i < m; i++) {
    if (fp_future_done(uniq[i])) {
      if (done) done[nd] = uniq[i];
      nd++;
    } else {
      if (not_done) not_done[nn] = uniq[i];
      nn++;
    }
  }
  fp__free(uniq);
  if (n_done) *n_done = nd;
  if (n_not_done) *n_not_done = nn;
  return rc; /* 0, or FP_EDEADLK (done and not_done say where things stand) */
}

/* ---- fp_as_completed ---- */

struct fp_as_completed {
  fp__waiter waiter;
  fp__deadline deadline;
  fp_future **futures;  /* distinct, with a reference each */
  fp__wait_node *nodes; /* one per future in futures (same index) */
  size_t count;
  size_t *done_now;     /* indexes of futures done at creation, in order */
  size_t done_now_count, done_now_next;
  size_t yielded;
  bool *taken;          /* by index: yielded already */
};

int fp_as_completed_new(fp_future *const *fs, size_t n, double timeout_s,
                        fp_as_completed **out) {
  if (!out) return fp__einval("fp_as_completed_new: out is NULL");
  *out = NULL;
  int rc = check_futures("fp_as_completed_new", fs, n);
  if (!rc) rc = fp__check_timeout(timeout_s, "fp_as_completed_new");
  if (rc) return rc;
  fp_as_completed *it = fp__calloc(1, sizeof *it);
  size_t room = n ? n : 1;
  if (it) {
    it->futures = fp__malloc_array(room, sizeof *it->futures);
    it->nodes = fp__malloc_array(room, sizeof *it->nodes);
    it->done_now = fp__malloc_array(room, sizeof *it->done_now);
    it->taken = fp__calloc(room, sizeof *it->taken);
  }
  if (!it || !it->futures || !it->nodes || !it->done_now || !it->taken ||
      fp__waiter_init(&it->waiter)) {
    if (it) {
      fp__free(it->futures);
      fp__free(it->nodes);
      fp__free(it->done_now);
      fp__free(it->taken);
      fp__free(it);
    }
    return fp__fail(FP_ENOMEM, "fp_as_completed_new: out of memory for %zu futures", n);
  }
  long m = dedup_futures(fs, n, it->futures);
  if (m < 0) {
    it->count = 0;
    fp_as_completed_free(it);
    return fp__fail(FP_ENOMEM, "fp_as_completed_new: out of memory for %zu futures", n);
  }
  it->count = (size_t)m;
  it->deadline = fp__deadline_in(timeout_s);
  for (size_t i = 0; i < it->count; i++) {
    fp_future_retain(it->futures[i]);
    if (!fp__waiter_add(&it->waiter, &it->nodes[i], it->futures[i]))
      it->done_now[it->done_now_count++] = i;
  }
  *out = it;
  return 0;
}

int fp_as_completed_next(fp_as_completed *it, fp_future **out) {
  if (!it || !out) return fp__einval("fp_as_completed_next: %s is NULL", it ? "out" : "iterator");
  *out = NULL;
  if (it->yielded == it->count) return fp__fail(FP_EOF, "every future was yielded");
  if (it->done_now_next < it->done_now_count) {
    size_t i = it->done_now[it->done_now_next++];
    it->taken[i] = true;
    *out = it->futures[i];
    it->yielded++;
    return 0;
  }
  /* In a task, a sleep that could never end (each future not yielded yet
   * waits on this task) fails at once. */
  fp__wait_edge edge = {0};
  fp_future **targets = NULL;
  pthread_mutex_lock(&it->waiter.mu);
  bool ready = it->waiter.ready > 0;
  pthread_mutex_unlock(&it->waiter.mu);
  if (!ready && fp__current_future() &&
      (targets = fp__malloc_array(it->count - it->yielded, sizeof *targets))) {
    size_t n = 0;
    for (size_t i = 0; i < it->count; i++)
      if (!it->taken[i]) targets[n++] = it->futures[i];
    int rc = fp__record_wait(&edge, targets, n, true);
    if (rc) {
      fp__free(targets);
      return rc;
    }
  }
  fp__wait_node *node = fp__waiter_pop(&it->waiter, &it->deadline);
  fp__wait_edge_remove(&edge);
  fp__free(targets);
  if (!node)
    return fp__fail(FP_ETIMEDOUT, "%zu (of %zu) futures unfinished", it->count - it->yielded,
                    it->count);
  it->taken[node - it->nodes] = true;
  *out = node->future;
  it->yielded++;
  return 0;
}

void fp_as_completed_free(fp_as_completed *it) {
  if (!it) return;
  for (size_t i = 0; i < it->count; i++) {
    fp__waiter_remove(&it->nodes[i]);
    fp_future_release(it->futures[i]);
  }
  fp__waiter_destroy(&it->waiter);
  fp__free(it->futures);
  fp__free(it->nodes);
  fp__free(it->done_now);
  fp__free(it->taken);
  fp__free(it);
}
