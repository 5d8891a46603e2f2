/* combine.c - combinators: futures made of futures, completed by done
 * callbacks (no thread blocks while they wait), of any executor kind.
 * fp_future_then runs a function on an executor with a future's result;
 * fp_when_all and fp_when_any complete when all, or the first, of their
 * futures do. Errors and cancels pass through; cancelling the combined
 * future cancels what it waits on. Each keeps a reference on the futures
 * it combines until they are done. */
#include "internal.h"

#include <stdio.h>

/* Hand f's failure or cancel on to out. true if f had one. */
static bool pass_on_failure(fp_future *f, fp_future *out) {
  if (fp_future_cancelled(f)) {
    fp_future_cancel(out);
    return true;
  }
  const fp_error *e = fp_future_error(f); /* looked at: its report goes with out */
  if (!e) return false;
  fp_future_set_error(out, e->code, "%s", e->message);
  return true;
}

/* ---- then ---- */

typedef struct then_state {
  pthread_mutex_t mu;
  atomic_int refs; /* the input's callback, out's, and the task's once submitted */
  fp_future *in, *out, *task;
  fp_executor *ex;
  fp_fn fn;
} then_state;

static void then_release(then_state *st) {
  if (atomic_fetch_sub(&st->refs, 1) != 1) return;
  fp_future_release(st->in);
  fp_future_release(st->out);
  fp_future_release(st->task);
  pthread_mutex_destroy(&st->mu);
  fp__free(st);
}

static void then_task_done(fp_future *task, void *userdata) {
  then_state *st = userdata;
  if (!pass_on_failure(task, st->out)) {
    void *r = NULL;
    fp_future_result(task, 0, &r);
    fp_future_set_result(st->out, r);
  }
  then_release(st);
}

static void then_in_done(fp_future *in, void *userdata) {
  then_state *st = userdata;
  if (!pass_on_failure(in, st->out) && !fp_future_done(st->out)) {
    void *r = NULL;
    fp_future_result(in, 0, &r);
    fp_future *task = NULL;
    int rc = fp_submit(st->ex, st->fn, r, &task);
    if (rc) {
      fp_future_set_error(st->out, rc, "fp_future_then: %s", fp_last_error_message());
    } else {
      pthread_mutex_lock(&st->mu);
      st->task = task;
      bool cancelled = fp_future_cancelled(st->out); /* meanwhile */
      pthread_mutex_unlock(&st->mu);
      if (cancelled) fp_future_cancel(task);
      atomic_fetch_add(&st->refs, 1);
      if (fp_future_on_done(task, then_task_done, st)) { /* no memory for the callback */
        fp_future_wait(task, -1);
        then_task_done(task, st);
      }
    }
  }
  then_release(st);
}

static void then_out_done(fp_future *out, void *userdata) {
  then_state *st = userdata;
  if (fp_future_cancelled(out)) {
    fp_future_cancel(st->in);
    pthread_mutex_lock(&st->mu);
    fp_future *task = st->task ? fp_future_retain(st->task) : NULL;
    pthread_mutex_unlock(&st->mu);
    if (task) {
      fp_future_cancel(task);
      fp_future_release(task);
    }
  }
  then_release(st);
}

int fp_future_then(fp_future *f, fp_executor *ex, fp_fn fn, fp_future **out) {
  if (out) *out = NULL;
  if (!f || !ex || !fn || !out)
    return fp__einval("fp_future_then: %s is NULL",
                      !f ? "future" : !ex ? "executor" : !fn ? "function" : "out");
  then_state *st = fp__calloc(1, sizeof *st);
  fp_future *o = NULL;
  if (!st || fp_future_new(&o)) {
    fp__free(st);
    return fp__fail(FP_ENOMEM, "fp_future_then: out of memory");
  }
  pthread_mutex_init(&st->mu, NULL);
  atomic_init(&st->refs, 2);
  st->in = fp_future_retain(f);
  st->out = fp_future_retain(o);
  st->ex = ex;
  st->fn = fn;
  if (fp_future_on_done(o, then_out_done, st) || fp_future_on_done(f, then_in_done, st)) {
    /* no memory for a callback: nothing can complete o */
    fp_future_set_error(o, FP_ENOMEM, "fp_future_then: out of memory");
    return fp__fail(FP_ENOMEM, "fp_future_then: out of memory"); /* leaks st: no memory anyway */
  }
  *out = o;
  return 0;
}

/* ---- when_all, when_any ---- */

typedef struct when_state {
  atomic_int refs;      /* one per input's callback, one for out's */
  atomic_size_t left;   /* inputs not done */
  atomic_bool decided;  /* out has its outcome */
  bool any;
  size_t n;
  fp_future *out;
  fp_future *fs[];
} when_state;

static void when_release(when_state *st) {
  if (atomic_fetch_sub(&st->refs, 1) != 1) return;
  for (size_t i = 0; i < st->n; i++) fp_future_release(st->fs[i]);
  fp_future_release(st->out);
  fp__free(st);
}

static void when_input_done(fp_future *f, void *userdata) {
  when_state *st = userdata;
  bool last = atomic_fetch_sub(&st->left, 1) == 1;
  bool failed = fp_future_cancelled(f) || fp__future_failed(f);
  if ((failed || st->any || last) && !atomic_exchange(&st->decided, true)) {
    if (!pass_on_failure(f, st->out)) {
      size_t i = 0;
      while (i < st->n && st->fs[i] != f) i++;
      fp_future_set_result(st->out, st->any ? (void *)(uintptr_t)i : NULL);
    }
  }
  when_release(st);
}

static void when_out_done(fp_future *out, void *userdata) {
  when_state *st = userdata;
  if (fp_future_cancelled(out))
    for (size_t i = 0; i < st->n; i++) fp_future_cancel(st->fs[i]);
  when_release(st);
}

static int when(fp_future *const *fs, size_t n, bool any, fp_future **out, const char *who) {
  if (out) *out = NULL;
  if (!out || (!fs && n)) return fp__einval("%s: %s is NULL", who, out ? "futures" : "out");
  for (size_t i = 0; i < n; i++)
    if (!fs[i]) return fp__einval("%s: future %zu is NULL", who, i);
  if (any && !n) return fp__einval("%s: no futures (the first of none never comes)", who);
  when_state *st = fp__calloc(1, sizeof *st + n * sizeof *st->fs);
  fp_future *o = NULL;
  if (!st || fp_future_new(&o)) {
    fp__free(st);
    return fp__fail(FP_ENOMEM, "%s: out of memory for %zu futures", who, n);
  }
  atomic_init(&st->refs, (int)n + 1);
  atomic_init(&st->left, n);
  atomic_init(&st->decided, false);
  st->any = any;
  st->n = n;
  st->out = fp_future_retain(o);
  for (size_t i = 0; i < n; i++) st->fs[i] = fp_future_retain(fs[i]);
  *out = o;
  if (!n) fp_future_set_result(o, NULL); /* all of none: done */
  int rc = fp_future_on_done(o, when_out_done, st);
  for (size_t i = 0; i < n; i++) {
    if (fp_future_on_done(fs[i], when_input_done, st) == 0) continue;
    rc = FP_ENOMEM; /* its callback never comes: out fails, and st stays */
  }
  if (rc) {
    fp_future_set_error(o, FP_ENOMEM, "%s: out of memory", who);
    return fp__fail(FP_ENOMEM, "%s: out of memory", who);
  }
  return 0;
}

int fp_when_all(fp_future *const *fs, size_t n, fp_future **out) {
  return when(fs, n, false, out, "fp_when_all");
}

int fp_when_any(fp_future *const *fs, size_t n, fp_future **out) {
  return when(fs, n, true, out, "fp_when_any");
}
