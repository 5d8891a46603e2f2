/* timer.c - the library's one timer: a thread, started on first use,
 * that calls each callback at its time (fp_now's clock), in time order,
 * from a binary heap. Delayed submits, retries and the task manager's
 * monitor ticks wait on it, so their waiting occupies no worker and no
 * thread of their own. A callback must be quick: the next ones wait for
 * it. The timer lives as long as the program: its heap is plain malloc'd
 * memory, outside fp_set_allocator (whose allocator may change
 * meanwhile), never freed. */
#define _GNU_SOURCE
#include "internal.h"

#include <stdlib.h>

typedef struct timer_entry {
  double at;
  uint64_t id;
  void (*fire)(void *ctx);
  void *ctx;
} timer_entry;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv; /* the thread's wake-up: an earlier entry, a cancel */
static pthread_cond_t fired_cv; /* a callback returned */
static timer_entry *heap;     /* (mu) */
static size_t count, room;    /* (mu) */
static uint64_t next_id;      /* (mu) */
static uint64_t firing;       /* the id whose callback runs now, 0 if none (mu) */
static bool started;          /* (mu) */

static void swap(size_t a, size_t b) {
  timer_entry t = heap[a];
  heap[a] = heap[b];
  heap[b] = t;
}

static void sift_up(size_t i) {
  for (; i && heap[(i - 1) / 2].at > heap[i].at; i = (i - 1) / 2) swap(i, (i - 1) / 2);
}

static void sift_down(size_t i) {
  for (;;) {
    size_t least = i, l = 2 * i + 1, r = l + 1;
    if (l < count && heap[l].at < heap[least].at) least = l;
    if (r < count && heap[r].at < heap[least].at) least = r;
    if (least == i) return;
    swap(i, least);
    i = least;
  }
}

static void remove_at(size_t i) {
  heap[i] = heap[--count];
  if (i < count) {
    sift_down(i);
    sift_up(i);
  }
}

static void *timer_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&mu);
  for (;;) {
    if (!count) {
      pthread_cond_wait(&cv, &mu);
      continue;
    }
    double now = fp__now();
    if (heap[0].at > now) {
      fp__deadline d = fp__deadline_in(heap[0].at - now);
      fp__cond_wait(&cv, &mu, &d);
      continue;
    }
    timer_entry e = heap[0];
    remove_at(0);
    firing = e.id;
    pthread_mutex_unlock(&mu);
    e.fire(e.ctx);
    pthread_mutex_lock(&mu);
    firing = 0;
    pthread_cond_broadcast(&fired_cv);
  }
  return NULL;
}

static int start(void) { /* (mu) */
  if (fp__cond_init(&cv)) return FP_ENOMEM; /* fp__cond_wait's deadlines are monotonic */
  pthread_cond_init(&fired_cv, NULL);
  pthread_attr_t ta;
  pthread_attr_init(&ta);
  pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
  pthread_t t;
  int rc = pthread_create(&t, &ta, timer_main, NULL);
  pthread_attr_destroy(&ta);
  if (rc) {
    pthread_cond_destroy(&cv);
    pthread_cond_destroy(&fired_cv);
    return rc;
  }
#ifdef __linux__
  pthread_setname_np(t, "fp-timer");
#endif
  started = true;
  return 0;
}

uint64_t fp__timer_at(double at, void (*fire)(void *ctx), void *ctx) {
  pthread_mutex_lock(&mu);
  uint64_t id = 0;
  if (!started && start()) goto out;
  if (count == room) {
    size_t grown_room = room ? 2 * room : 16;
    timer_entry *grown = realloc(heap, grown_room * sizeof *grown);
    if (!grown) goto out;
    heap = grown;
    room = grown_room;
  }
  id = ++next_id;
  heap[count] = (timer_entry){at, id, fire, ctx};
  sift_up(count++);
  if (heap[0].id == id) pthread_cond_signal(&cv); /* the earliest now */
out:
  pthread_mutex_unlock(&mu);
  return id;
}

bool fp__timer_cancel(uint64_t id) {
  pthread_mutex_lock(&mu);
  for (size_t i = 0; i < count; i++)
    if (heap[i].id == id) {
      remove_at(i);
      pthread_mutex_unlock(&mu);
      return true;
    }
  while (firing == id && id) pthread_cond_wait(&fired_cv, &mu);
  pthread_mutex_unlock(&mu);
  return false;
}
