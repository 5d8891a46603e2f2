/* poll.h - private to futureproof-mpi: what the root's progress thread and
 * a serving worker share. MPI cannot wake a thread that waits on a
 * condition variable, so both poll MPI: hot for a moment after the last
 * message (a round trip stays fast), then sleeping longer and longer, up
 * to a millisecond (an idle executor costs well under 5% of a core), on a
 * condition variable that their own events (a submit, a finished local
 * task) signal at once. */
#ifndef FP_MPI_POLL_H
#define FP_MPI_POLL_H

#include <futureproof.h>
#include <mpi.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>

/* The polling thread's sleeps are short: without this, Linux rounds each
 * up by its default timer slack, 50 us. */
static inline void poll_thread_init(void) { prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0); }

#define POLL_HOT_S 1e-3 /* keep polling without sleeping this long after activity */
#define POLL_MAX_SLEEP_S 1e-3

/* Wait on cv (mu held) for the back-off that idle_for seconds of
 * quiet call for. */
static inline void poll_backoff(pthread_cond_t *cv, pthread_mutex_t *mu, double idle_for) {
  if (idle_for < POLL_HOT_S) {
    pthread_mutex_unlock(mu);
    sched_yield();
    pthread_mutex_lock(mu);
    return;
  }
  double sleep_s = idle_for / 10;
  if (sleep_s > POLL_MAX_SLEEP_S) sleep_s = POLL_MAX_SLEEP_S;
  if (sleep_s < 10e-6) sleep_s = 10e-6;
  struct timespec at;
  clock_gettime(CLOCK_REALTIME, &at);
  long ns = at.tv_nsec + (long)(sleep_s * 1e9);
  at.tv_sec += ns / 1000000000L;
  at.tv_nsec = ns % 1000000000L;
  pthread_cond_timedwait(cv, mu, &at);
}

/* A message being sent (MPI_Isend): its buffer lives until it is done. */
typedef struct pending_send {
  struct pending_send *next;
  MPI_Request request;
  void *buffer;
} pending_send;

/* Send buffer (taken: freed once sent) to rank with tag, without blocking
 * (two ranks sending each other large messages never deadlock). Returns
 * false on ENOMEM (the buffer is freed). */
static inline bool send_later(pending_send **list, void *buffer, size_t len, int rank, int tag,
                              MPI_Comm comm) {
  pending_send *s = malloc(sizeof *s);
  if (!s) {
    free(buffer);
    return false;
  }
  s->buffer = buffer;
  MPI_Isend(buffer, (int)len, MPI_BYTE, rank, tag, comm, &s->request);
  s->next = *list;
  *list = s;
  return true;
}

/* Free what has been sent; true if something was. */
static inline bool sends_progress(pending_send **list) {
  bool any = false;
  for (pending_send **at = list; *at;) {
    int done = 0;
    MPI_Test(&(*at)->request, &done, MPI_STATUS_IGNORE);
    if (!done) {
      at = &(*at)->next;
      continue;
    }
    pending_send *s = *at;
    *at = s->next;
    free(s->buffer);
    free(s);
    any = true;
  }
  return any;
}

/* Receive the message probe found (any size: MPI_Mprobe/MPI_Mrecv), into
 * a malloc'd buffer; NULL on ENOMEM (the message is then dropped). */
static inline void *receive_matched(MPI_Message *msg, MPI_Status *st, int *len) {
  MPI_Get_count(st, MPI_BYTE, len);
  void *buf = malloc(*len > 0 ? (size_t)*len : 1);
  MPI_Mrecv(buf ? buf : &(char){0}, buf ? *len : 0, MPI_BYTE, msg, st);
  return buf;
}

#endif
