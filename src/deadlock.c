/* deadlock.c - wait-cycle detection. A task about to sleep in a wait
 * records what it waits for: an edge of the wait-for graph, keyed by its
 * own future, kept while it sleeps. The wait that would close a cycle of
 * such edges fails at once with FP_EDEADLK and a message naming the
 * cycle. A wait outside any task (the main thread) cannot be in a cycle
 * and records nothing; a task that never sleeps in a wait pays nothing.
 *
 * No false positives: a future is counted as blocked for good only while
 * its task sleeps in a wait that can only end through the waiter -- for
 * all of its futures, through any one still pending; for any one of them
 * (fp_wait FIRST_COMPLETED or FIRST_EXCEPTION, fp_as_completed_next),
 * through every one, and none done. A future in another process (the
 * process pool, MPI) has no edge here: it is never blocked. A worker that
 * runs queued tasks while it waits (helping) waits for the one it runs
 * too: it resumes only once that returns; its edge is recorded only when
 * a task above it on its thread sleeps (helping itself stays free). One
 * lock for the whole graph: only waits that sleep take it. It knows its
 * nodes only through fp__wait_node_ops: it calls nothing of future.c. */
#define _GNU_SOURCE
#include "internal.h"

#include <stdio.h>
#include <string.h>

enum { BUCKETS = 256, PATH_MAX_SHOWN = 8 };

static pthread_mutex_t graph_mu = PTHREAD_MUTEX_INITIALIZER;
static fp__wait_edge *buckets[BUCKETS]; /* (graph_mu) */
static size_t edges;                     /* (graph_mu) */

static size_t bucket_of(const fp_future *f) {
  uint64_t h = (uint64_t)(uintptr_t)f * 0x9e3779b97f4a7c15ull;
  return (size_t)(h >> 56) & (BUCKETS - 1);
}

static fp__wait_edge *edge_of(const fp_future *f) {
  for (fp__wait_edge *e = buckets[bucket_of(f)]; e; e = e->next)
    if (e->waiter == f) return e;
  return NULL;
}

/* One search from the waiter's targets: what it has seen, and the path
 * it followed to the waiter (for the message). */
typedef struct search {
  const fp_future *self;
  const fp__wait_node_ops *ops;
  const fp_future **seen; /* open addressing, room a power of two */
  signed char *answer;    /* per seen slot: 1 blocks on self, 0 not, -1 being looked at */
  size_t room;
  const fp_future *path[PATH_MAX_SHOWN];
  size_t path_len, path_total;
} search;

static size_t seen_slot(search *s, const fp_future *f) {
  size_t i = bucket_of(f) * 31 & (s->room - 1);
  while (s->seen[i] && s->seen[i] != f) i = (i + 1) & (s->room - 1);
  return i;
}

/* Does f stay pending until self's task returns? (graph_mu held) */
static bool blocks_on_self(search *s, const fp_future *f) {
  if (f == s->self) return true;
  if (s->ops->done(f)) return false;
  fp__wait_edge *e = edge_of(f);
  if (!e) return false; /* running, queued, or elsewhere: it may end */
  size_t slot = seen_slot(s, f);
  if (s->seen[slot]) return s->answer[slot] == 1; /* on the path (-1) counts as no */
  s->seen[slot] = f;
  s->answer[slot] = -1;
  size_t depth = s->path_total++;
  if (depth < PATH_MAX_SHOWN) s->path[depth] = f;
  bool blocked;
  if (e->any) { /* every one must block, and none may be done */
    blocked = e->n > 0;
    for (size_t i = 0; i < e->n && blocked; i++) {
      size_t before = s->path_total;
      blocked = blocks_on_self(s, e->targets[i]);
      if (blocked && i > 0) s->path_total = before; /* show the first one's way */
    }
  } else { /* one pending one that blocks is enough, the task run meanwhile included */
    blocked = false;
    for (size_t i = 0; i < e->n && !blocked; i++) blocked = blocks_on_self(s, e->targets[i]);
    if (!blocked && e->nested) blocked = blocks_on_self(s, e->nested);
  }
  s->answer[slot] = blocked ? 1 : 0;
  if (!blocked) s->path_total = depth;
  return blocked;
}

/* "deadlock: task 3 (wait_on_b) waits for task 2 (wait_on_a), which waits
 * for task 3" */
static int report(const search *s, const fp_future *self) {
  char text[1024], name[96];
  size_t at = (size_t)snprintf(text, sizeof text, "deadlock: task %llu (%s)",
                               (unsigned long long)s->ops->id(self),
                               s->ops->name(self, name, sizeof name));
  size_t shown = s->path_total < PATH_MAX_SHOWN ? s->path_total : PATH_MAX_SHOWN;
  if (!s->path_total) {
    snprintf(text + at, sizeof text - at, " waits for its own future");
  } else {
    for (size_t i = 0; i < shown && at < sizeof text; i++)
      at += (size_t)snprintf(text + at, sizeof text - at, "%s task %llu (%s)",
                             i ? ", which waits for" : " waits for",
                             (unsigned long long)s->ops->id(s->path[i]),
                             s->ops->name(s->path[i], name, sizeof name));
    if (at < sizeof text)
      snprintf(text + at, sizeof text - at, "%s, which waits for task %llu",
               s->path_total > shown ? ", ..." : "", (unsigned long long)s->ops->id(self));
  }
  return fp__fail(FP_EDEADLK, "%s", text);
}

static void link_edge(fp__wait_edge *e) {
  size_t b = bucket_of(e->waiter);
  e->next = buckets[b];
  buckets[b] = e;
  e->linked = true;
  edges++;
}

/* Would self's wait for targets close a cycle? (graph_mu held) */
static int check(fp__wait_edge *e, const fp__wait_node_ops *ops) {
  search s = {.self = e->waiter, .ops = ops, .room = 64};
  while (s.room < 4 * (edges + 1)) s.room *= 2;
  s.seen = fp__calloc(s.room, sizeof *s.seen);
  s.answer = fp__calloc(s.room, sizeof *s.answer);
  int rc = 0;
  if (!s.seen || !s.answer) {
    rc = 0; /* no memory to look: wait as before (a deadlock then hangs, as without this) */
  } else {
    bool blocked = e->any ? e->n > 0 : false;
    for (size_t i = 0; i < e->n; i++) {
      bool b = blocks_on_self(&s, e->targets[i]);
      if (e->any && !b) {
        blocked = false;
        break;
      }
      if (!e->any && b) {
        blocked = true;
        break;
      }
      if (e->any && i + 1 < e->n) s.path_total = 0; /* show the last one's way */
    }
    if (blocked) rc = report(&s, e->waiter);
  }
  fp__free(s.seen);
  fp__free(s.answer);
  return rc;
}

int fp__wait_edge_add(fp__wait_edge *e, fp_future *waiter, fp_future *const *targets, size_t n,
                      bool any, const fp__wait_node_ops *ops) {
  *e = (fp__wait_edge){.waiter = waiter, .targets = targets, .n = n, .any = any};
  if (!e->waiter) return 0; /* not in a task (or in a worker process): no cycle through us */
  pthread_mutex_lock(&graph_mu);
  int rc = check(e, ops);
  if (!rc) link_edge(e);
  pthread_mutex_unlock(&graph_mu);
  return rc;
}

void fp__wait_edge_hold(fp__wait_edge *e, fp_future *waiter, fp_future *const *targets,
                        fp_future *nested) {
  pthread_mutex_lock(&graph_mu);
  if (!e->linked) {
    *e = (fp__wait_edge){.waiter = waiter, .targets = targets, .n = 1};
    link_edge(e);
  }
  e->nested = nested;
  pthread_mutex_unlock(&graph_mu);
}

void fp__wait_edge_nest(fp__wait_edge *e, fp_future *nested) {
  if (!e->linked) return;
  pthread_mutex_lock(&graph_mu);
  e->nested = nested;
  pthread_mutex_unlock(&graph_mu);
}

void fp__wait_edge_remove(fp__wait_edge *e) {
  if (!e->linked) return;
  pthread_mutex_lock(&graph_mu);
  for (fp__wait_edge **at = &buckets[bucket_of(e->waiter)]; *at; at = &(*at)->next)
    if (*at == e) {
      *at = e->next;
      break;
    }
  edges--;
  e->linked = false;
  pthread_mutex_unlock(&graph_mu);
}
