/* deque.c - the work-stealing deque (see deque.h). */
#include "deque.h"

static fp__ring *ring_new(int64_t capacity) {
  fp__ring *r = fp__calloc(1, sizeof *r + (size_t)capacity * sizeof r->slot[0]);
  if (r) r->mask = capacity - 1;
  return r;
}

int fp__deque_init(fp__deque *d, int64_t capacity) {
  fp__ring *r = ring_new(capacity);
  if (!r) return FP_ENOMEM;
  atomic_init(&d->top, 0);
  atomic_init(&d->bottom, 0);
  atomic_init(&d->ring, r);
  d->top_seen = 0;
  return 0;
}

void fp__deque_destroy(fp__deque *d) {
  fp__ring *r = atomic_load(&d->ring);
  while (r) {
    fp__ring *older = r->older;
    fp__free(r);
    r = older;
  }
  atomic_store(&d->ring, NULL);
}

static inline fp_future *slot_get(fp__ring *r, int64_t i) {
  return atomic_load_explicit(&r->slot[i & r->mask], memory_order_relaxed);
}
static inline void slot_set(fp__ring *r, int64_t i, fp_future *f) {
  atomic_store_explicit(&r->slot[i & r->mask], f, memory_order_relaxed);
}

/* Room for n more items at bottom b (the owner's); the ring, or NULL when
 * it cannot grow. */
static fp__ring *room_for(fp__deque *d, int64_t b, int64_t n) {
  fp__ring *r = atomic_load_explicit(&d->ring, memory_order_relaxed);
  /* top only grows: while the ring has room by an old look at it, the
   * owner leaves the thieves' line alone. */
  int64_t t = d->top_seen;
  if (b - t + n > r->mask + 1) d->top_seen = t = atomic_load_explicit(&d->top, memory_order_acquire);
  if (b - t + n <= r->mask + 1) return r;
  int64_t capacity = 2 * (r->mask + 1);
  while (capacity < b - t + n) capacity *= 2;
  fp__ring *grown = ring_new(capacity); /* the items copied over */
  if (!grown) return NULL;
  for (int64_t i = t; i < b; i++) slot_set(grown, i, slot_get(r, i));
  grown->older = r;
  atomic_store_explicit(&d->ring, grown, memory_order_release);
  return grown;
}

int fp__deque_push(fp__deque *d, fp_future *f) {
  int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
  fp__ring *r = room_for(d, b, 1);
  if (!r) return FP_ENOMEM;
  slot_set(r, b, f);
  /* release, no fence: the thieves see the slot with the new bottom. A
   * pusher that must then look for sleepers orders it (thread_pool.c). */
  atomic_store_explicit(&d->bottom, b + 1, memory_order_release);
  return 0;
}

int fp__deque_push_many(fp__deque *d, fp_future *const *fs, size_t n) {
  int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
  if (n > (size_t)INT64_MAX / 4) return FP_ENOMEM;
  fp__ring *r = room_for(d, b, (int64_t)n);
  if (!r) return FP_ENOMEM;
  for (size_t i = 0; i < n; i++) slot_set(r, b + (int64_t)i, fs[i]);
  atomic_store_explicit(&d->bottom, b + (int64_t)n, memory_order_release);
  return 0;
}

fp_future *fp__deque_pop(fp__deque *d) {
  int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed) - 1;
  fp__ring *r = atomic_load_explicit(&d->ring, memory_order_relaxed);
  atomic_store_explicit(&d->bottom, b, memory_order_seq_cst);
  int64_t t = atomic_load_explicit(&d->top, memory_order_seq_cst);
  if (t > b) { /* empty */
    atomic_store_explicit(&d->bottom, b + 1, memory_order_relaxed);
    return NULL;
  }
  fp_future *f = slot_get(r, b);
  if (t == b) { /* the last one: race the thieves for it */
    if (!atomic_compare_exchange_strong_explicit(&d->top, &t, t + 1, memory_order_seq_cst,
                                                 memory_order_relaxed))
      f = NULL;
    atomic_store_explicit(&d->bottom, b + 1, memory_order_relaxed);
  }
  return f;
}

fp_future *fp__deque_steal(fp__deque *d) {
  int64_t t = atomic_load_explicit(&d->top, memory_order_seq_cst);
  int64_t b = atomic_load_explicit(&d->bottom, memory_order_seq_cst);
  if (t >= b) return NULL;
  fp__ring *r = atomic_load_explicit(&d->ring, memory_order_acquire);
  fp_future *f = slot_get(r, t);
  if (!atomic_compare_exchange_strong_explicit(&d->top, &t, t + 1, memory_order_seq_cst,
                                               memory_order_relaxed))
    return NULL;
  return f;
}

size_t fp__deque_steal_batch(fp__deque *d, fp_future **out, size_t max) {
  int64_t t = atomic_load_explicit(&d->top, memory_order_seq_cst);
  int64_t b = atomic_load_explicit(&d->bottom, memory_order_seq_cst);
  if (t >= b) return 0;
  size_t n = (size_t)(b - t) < max ? (size_t)(b - t) : max;
  fp__ring *r = atomic_load_explicit(&d->ring, memory_order_acquire);
  for (size_t i = 0; i < n; i++) out[i] = slot_get(r, t + (int64_t)i);
  /* If the owner wrapped around over these slots, top moved on and this
   * fails: what was read is dropped. */
  if (!atomic_compare_exchange_strong_explicit(&d->top, &t, t + (int64_t)n, memory_order_seq_cst,
                                               memory_order_relaxed))
    return 0;
  return n;
}
