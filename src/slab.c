/* slab.c - where futures live: 64-byte blocks carved from slabs.
 *
 * Futures are carved in order from 4 KiB slabs of SLAB_FUTURES, each on a
 * cache line of its own. A slab counts the futures
 * it has handed out and not had back; when the last comes back the slab
 * is empty, and an empty slab is kept for the next carving (up to
 * SPARE_MAX of them, shared by all threads) or given back to the
 * allocator. So a steady stream of tasks allocates nothing, a burst's
 * memory goes back once the burst is over, and a future that lives long
 * holds one slab, never a cache of others. */
#include "internal.h"

#include <string.h>

enum { SLAB_FUTURES = FP__SLAB_BLOCKS, SPARE_MAX = 64, FUTURE_STRIDE = FP__SLAB_BLOCK };

typedef struct slab {
  /* Futures not yet back: SLAB_FUTURES from the start, until the thread
   * carving it gives up the ones it did not carve. */
  atomic_uint live;
  unsigned generation; /* of the allocator it came from */
  fp_free_fn free_fn;  /* that allocator's free */
  void *raw;           /* what it returned */
  struct slab *next;   /* among the spares */
} slab;
_Static_assert(sizeof(slab) <= FUTURE_STRIDE, "a slab's header fits before its futures");
#define SLAB_BYTES ((size_t)FUTURE_STRIDE * (SLAB_FUTURES + 1))

static void *slab_future(slab *s, unsigned i) { return (char *)s + FUTURE_STRIDE * (i + 1); }
static slab *home_of(void *f, unsigned slot) {
  return (slab *)((char *)f - FUTURE_STRIDE * (slot + 1));
}

/* AddressSanitizer still sees a freed future as freed. */
#if defined(__SANITIZE_ADDRESS__)
#define FP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FP_ASAN 1
#endif
#endif
#ifdef FP_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

static pthread_mutex_t spare_mu = PTHREAD_MUTEX_INITIALIZER;
static slab *spares; /* empty slabs of the current allocator */
static size_t spare_n;
static atomic_uint alloc_generation; /* bumped when the allocator changes */

static void slab_release(slab *s) {
  UNPOISON(s, SLAB_BYTES);
  s->free_fn(s->raw);
}

/* The last future of s came back. */
static void slab_empty(slab *s) {
  bool kept = false;
  pthread_mutex_lock(&spare_mu);
  if (s->generation == atomic_load_explicit(&alloc_generation, memory_order_relaxed) &&
      spare_n < SPARE_MAX) {
    s->next = spares;
    spares = s;
    spare_n++;
    kept = true;
  }
  pthread_mutex_unlock(&spare_mu);
  if (!kept) slab_release(s);
}

static void slabs_flush(void);
static pthread_once_t flush_hook_once = PTHREAD_ONCE_INIT;
static void register_flush_hook(void) { fp__alloc_before_change(slabs_flush); }

static slab *slab_get(unsigned generation) {
  pthread_once(&flush_hook_once, register_flush_hook);
  pthread_mutex_lock(&spare_mu);
  slab *s = spares;
  if (s) {
    spares = s->next;
    spare_n--;
  }
  pthread_mutex_unlock(&spare_mu);
  if (!s) {
    void *raw = fp__malloc(SLAB_BYTES + FUTURE_STRIDE - 1);
    if (!raw) return NULL;
    s = (slab *)(((uintptr_t)raw + FUTURE_STRIDE - 1) & ~(uintptr_t)(FUTURE_STRIDE - 1));
    s->raw = raw;
    s->free_fn = fp__current_free();
    s->generation = generation;
    POISON(slab_future(s, 0), FUTURE_STRIDE * SLAB_FUTURES);
  }
  atomic_store_explicit(&s->live, SLAB_FUTURES, memory_order_relaxed);
  return s;
}

/* n futures of s given back. acq_rel: every use of them happens before
 * the slab's reuse, whichever thread gives back last. */
static void slab_give(slab *s, unsigned n) {
  if (n && atomic_fetch_sub_explicit(&s->live, n, memory_order_acq_rel) == n) slab_empty(s);
}

/* What a thread holds of slabs: the one it carves from, and a run of
 * futures it freed one after another from one slab (a loop gathering
 * results frees them so), given back to the slab at once: one locked
 * instruction for the run rather than one a future. Futures held in a
 * run keep their slab from reuse, so holding them is safe; a run ends at
 * a future of another slab, at thread exit and in
 * slabs_flush. */
typedef struct carver {
  slab *s;
  unsigned carved;     /* futures taken from it */
  bool registered;     /* the thread-exit destructor knows it */
  slab *run;           /* the slab of the run */
  unsigned run_n;      /* futures in it */
} carver;
static _Thread_local carver carving;
static pthread_key_t carver_key;
static pthread_once_t carver_key_once = PTHREAD_ONCE_INIT;

/* Give back what was not carved: the slab is empty once those carved are. */
static void carver_drop(carver *c) {
  slab *s = c->s;
  if (!s) return;
  c->s = NULL;
  slab_give(s, SLAB_FUTURES - c->carved);
}

static void run_end(carver *c) {
  slab *s = c->run;
  c->run = NULL;
  if (s) slab_give(s, c->run_n);
}

static void carver_exit(void *arg) {
  carver *c = arg;
  carver_drop(c);
  run_end(c);
  c->registered = false; /* a later destructor that releases one registers again */
}

static void make_carver_key(void) { pthread_key_create(&carver_key, carver_exit); }

/* Whether the thread-exit destructor knows c: else a thread's last slab,
 * or its last run, would never be given back. */
static bool carver_registered(carver *c) {
  if (!c->registered) {
    pthread_once(&carver_key_once, make_carver_key);
    c->registered = pthread_setspecific(carver_key, c) == 0;
  }
  return c->registered;
}

/* A future comes back to its slab. */
static void slab_put(void *f, slab *s) {
  POISON(f, FUTURE_STRIDE);
  carver *c = &carving;
  if (c->run == s) {
    c->run_n++;
  } else if (carver_registered(c)) {
    run_end(c);
    c->run = s;
    c->run_n = 1;
  } else {
    slab_give(s, 1);
  }
}

/* Before the allocator changes (alloc.c calls it, registered above):
 * every cached slab goes back to the allocator it came from. */
static void slabs_flush(void) {
  carver_drop(&carving);
  run_end(&carving);
  pthread_mutex_lock(&spare_mu);
  atomic_fetch_add(&alloc_generation, 1); /* slabs emptied from now on are not kept */
  slab *s = spares;
  spares = NULL;
  spare_n = 0;
  pthread_mutex_unlock(&spare_mu);
  while (s) {
    slab *next = s->next;
    slab_release(s);
    s = next;
  }
}

void *fp__slab_alloc(unsigned *slot_out) {
  carver *c = &carving;
  unsigned gen = atomic_load_explicit(&alloc_generation, memory_order_relaxed);
  if (c->s && (c->carved == SLAB_FUTURES || c->s->generation != gen)) carver_drop(c);
  if (!c->s) {
    carver_registered(c);
    if (!(c->s = slab_get(gen))) return NULL;
    c->carved = 0;
  }
  slab *s = c->s;
  unsigned slot = c->carved++;
  void *f = slab_future(s, slot);
  if (c->carved < SLAB_FUTURES) /* the next one, for writing: it is likely cold */
    __builtin_prefetch(slab_future(s, c->carved), 1);
  if (!c->registered) carver_drop(c); /* one future from it, the rest given back */
  UNPOISON(f, FUTURE_STRIDE);
  *slot_out = slot;
  return f;
}

void fp__slab_free(void *block, unsigned slot) { slab_put(block, home_of(block, slot)); }

