/* deque.h - private: a work-stealing deque of futures (Chase and Lev,
 * "Dynamic circular work-stealing deque", SPAA 2005; the C11 orderings of
 * Le, Pop, Cohen and Zappa Nardelli, PPoPP 2013, with sequentially
 * consistent accesses in place of fences, which ThreadSanitizer follows).
 *
 * One owner pushes at the bottom and pops there (newest first); any
 * thread steals at the top (oldest first). The ring grows when full; the
 * rings it outgrew stay allocated until fp__deque_destroy, because a thief
 * may still be reading one. A deque whose owner never pops (the thread
 * pool's queue for outside submissions, owned by whoever holds its lock)
 * may also be stolen from in batches. */
#ifndef FP_DEQUE_H
#define FP_DEQUE_H

#include "internal.h"

typedef struct fp__ring {
  int64_t mask;
  struct fp__ring *older; /* outgrown rings, freed with the deque */
  _Atomic(fp_future *) slot[];
} fp__ring;

typedef struct fp__deque {
  _Alignas(FP__APART) atomic_int_fast64_t top; /* thieves */
  _Alignas(FP__APART) atomic_int_fast64_t bottom; /* the owner */
  _Atomic(fp__ring *) ring;
  int64_t top_seen; /* the owner's last look at top: a lower bound */
} fp__deque;

int fp__deque_init(fp__deque *d, int64_t capacity); /* capacity: a power of 2 */
void fp__deque_destroy(fp__deque *d);
/* Owner: push (FP_ENOMEM if the ring cannot grow), pop (NULL if empty). */
int fp__deque_push(fp__deque *d, fp_future *f);
fp_future *fp__deque_pop(fp__deque *d);
/* Owner: push n at once, all or none (FP_ENOMEM, nothing pushed): thieves
 * see them only once every one is in. */
int fp__deque_push_many(fp__deque *d, fp_future *const *fs, size_t n);
/* Anyone: the oldest item, NULL if empty or lost to another thread. */
fp_future *fp__deque_steal(fp__deque *d);
/* Anyone, only if the owner never pops: up to max oldest items at once. */
size_t fp__deque_steal_batch(fp__deque *d, fp_future **out, size_t max);
/* Items in it (a snapshot). */
static inline int64_t fp__deque_size(fp__deque *d) {
  int64_t b = atomic_load(&d->bottom), t = atomic_load(&d->top);
  return b > t ? b - t : 0;
}

#endif
