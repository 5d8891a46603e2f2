/* executor.c - the front door: what every executor shares, written once
 * (arguments, the refusal after shutdown or breakage, making and numbering
 * futures, batches, shutdown, free, stats), in front of the vtable each
 * executor kind fills -- the library's pools and executors built outside
 * it alike (futureproof/executor.h). */
#define _GNU_SOURCE
#include "internal.h"

#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int resubmit_at(fp_executor *ex, fp_future *f, double at);

void fp__executor_init(fp_executor *ex, const fp_executor_vtable *vt, void *impl,
                       int max_workers) {
  ex->vt = vt;
  ex->impl = impl;
  ex->max_workers = max_workers;
  ex->owns_base = false;
  ex->broken_message[0] = 0;
  atomic_init(&ex->next_id, 0);
  atomic_init(&ex->shut_down, false);
  atomic_init(&ex->cancel_all, false);
  atomic_init(&ex->broken, false);
  atomic_init(&ex->breaking, false);
  pthread_mutex_init(&ex->delayed_mu, NULL);
  pthread_cond_init(&ex->delayed_cv, NULL);
  ex->delayed = NULL;
  ex->handing_over = 0;
  ex->resubmit_at = resubmit_at;
  atomic_init(&ex->lat, NULL);
  atomic_init(&ex->trace_named, 0);
  ex->outcomes = (struct fp__outcomes){0};
  ex->serial = fp__executor_serial();
}

/* Submitted now: the start of its queue wait, when anyone wants it. */
static bool stamping(const fp_executor *ex) {
  return atomic_load_explicit(&((fp_executor *)ex)->lat, memory_order_relaxed) || fp__trace_on();
}

int fp_executor_new(const fp_executor_vtable *vt, void *impl, int max_workers,
                    fp_executor **out) {
  if (!out) return fp__einval("fp_executor_new: out is NULL");
  *out = NULL;
  if (!vt || !vt->submit || !vt->shutdown || !vt->destroy)
    return fp__einval("fp_executor_new: %s", !vt ? "vtable is NULL"
                                             : "submit, shutdown and destroy are required");
  if (vt->version < 1 || vt->version > FP_EXECUTOR_INTERFACE_VERSION)
    return fp__einval("fp_executor_new: interface version %d, this library has 1 to %d",
                      vt->version, FP_EXECUTOR_INTERFACE_VERSION);
  if (max_workers < 1)
    return fp__einval("fp_executor_new: max_workers must be 1 or more (got %d)", max_workers);
  fp_executor *ex = fp__calloc_lines(sizeof *ex);
  if (!ex) return fp__fail(FP_ENOMEM, "fp_executor_new: out of memory");
  if (vt->version == 1) { /* its vtable ends before poll */
    memcpy(&ex->vt_upgraded, vt, offsetof(fp_executor_vtable, poll));
    vt = &ex->vt_upgraded;
  }
  fp__executor_init(ex, vt, impl, max_workers);
  ex->owns_base = true;
  *out = ex;
  return 0;
}

void *fp_executor_impl(const fp_executor *ex) { return ex ? ex->impl : NULL; }

bool fp_executor_cancelling(const fp_executor *ex) {
  return ex && atomic_load_explicit(&ex->cancel_all, memory_order_relaxed);
}

bool fp_executor_break(fp_executor *ex, const char *fmt, ...) {
  if (!ex || !fmt) {
    fp__einval("fp_executor_break: %s is NULL", ex ? "the message" : "executor");
    return false;
  }
  if (atomic_exchange(&ex->breaking, true)) return false; /* broken already */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ex->broken_message, sizeof ex->broken_message, fmt, ap);
  va_end(ap);
  atomic_store_explicit(&ex->broken, true, memory_order_release);
  fp_log(FP_LOG_ERROR, "%s", ex->broken_message);
  return true;
}

int fp_executor_fail(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *text = fmt ? fp__vformat(fmt, ap) : NULL;
  va_end(ap);
  fp__fail(code, "%s", text ? text : fp_strerror(code));
  fp__free(text);
  return code;
}

bool fp__executor_shares_memory(const fp_executor *ex) { return ex->vt->shares_memory; }

int fp_cpu_count(void) {
  long ncpu = 0;
#ifdef CPU_COUNT
  cpu_set_t set; /* the CPUs this process may run on, as Python's process_cpu_count */
  if (sched_getaffinity(0, sizeof set, &set) == 0) ncpu = CPU_COUNT(&set);
#endif
  if (ncpu <= 0) ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  return ncpu > 0 ? (int)ncpu : 1;
}

int fp__default_workers(void) {
  int ncpu = fp_cpu_count();
  return ncpu + 4 < 32 ? ncpu + 4 : 32;
}

int fp_submit_ex(fp_executor *ex, fp_fn fn, void *arg, const fp_task_options *topt,
                 double timeout_s, fp_future **out) {
  return fp__submit(ex, fn, arg, topt, timeout_s, false, out);
}

int fp__submit(fp_executor *ex, fp_fn fn, void *arg, const fp_task_options *topt,
               double timeout_s, bool bytes, fp_future **out) {
  if (out) *out = NULL;
  if (!ex || !fn || !out)
    return fp__einval("fp_submit: %s is NULL", !ex ? "executor" : !fn ? "function" : "out");
  if (fp__check_timeout(timeout_s, "fp_submit")) return FP_EINVAL;
  int rc = fp__executor_refusal(ex);
  if (rc) return rc;
  fp_future *f = fp__future_new_task(ex, fn, arg, topt, bytes);
  if (!f) return fp__fail(FP_ENOMEM, "fp_submit: out of memory for a future");
  if (stamping(ex)) fp__future_stamp(f, fp__now_ns());
  rc = ex->vt->submit(ex, f, timeout_s);
  if (rc) {
    fp__future_discard(f);
    return rc;
  }
  *out = f;
  return 0;
}

bool fp__executor_batches(const fp_executor *ex, bool chunk) {
  return (chunk && ex->vt->submit_chunk) || ex->vt->submit_many;
}

int fp__submit_batch(fp_executor *ex, fp_fn fn, void *const *items, size_t n,
                     const fp_task_options *topt, bool chunk, fp_future **fs) {
  int rc = fp__executor_refusal(ex);
  if (rc) return rc;
  size_t made = 0;
  for (; made < n; made++)
    if (!(fs[made] = fp__future_new_task(ex, fn, items[made], topt, false))) break;
  if (made == n && stamping(ex)) {
    uint64_t now = fp__now_ns(); /* one batch, one time */
    for (size_t i = 0; i < n; i++) fp__future_stamp(fs[i], now);
  }
  if (made == n)
    rc = chunk && ex->vt->submit_chunk ? ex->vt->submit_chunk(ex, fs, n)
                                       : ex->vt->submit_many(ex, fs, n);
  else
    rc = fp__fail(FP_ENOMEM, "out of memory for %zu futures", n);
  if (rc)
    for (size_t i = 0; i < made; i++) fp__future_discard(fs[i]);
  return rc;
}

fp_bytes *fp_bytes_new(size_t size) {
  fp_bytes *b = size <= SIZE_MAX - sizeof *b ? fp__malloc(sizeof *b + size) : NULL;
  if (b) b->size = size;
  return b;
}

fp_bytes *fp_bytes_copy(const void *data, size_t size) {
  if (!data && size) {
    fp__einval("fp_bytes_copy: data is NULL");
    return NULL;
  }
  fp_bytes *b = fp_bytes_new(size);
  if (b && size) memcpy(b->data, data, size);
  return b;
}

void fp_bytes_free(void *bytes) { fp__free(bytes); }

int fp_submit_bytes(fp_executor *ex, fp_fn fn, const void *data, size_t size, fp_future **out) {
  if (out) *out = NULL;
  if (!data && size) return fp__einval("fp_submit_bytes: data is NULL");
  fp_bytes *arg = fp_bytes_copy(data, size);
  if (!arg) return fp__fail(FP_ENOMEM, "fp_submit_bytes: no memory for %zu bytes", size);
  fp_task_options topt = {.arg_free = fp_bytes_free, .result_free = fp_bytes_free};
  int rc = fp__submit(ex, fn, arg, &topt, -1, true, out);
  if (rc) fp_bytes_free(arg);
  return rc;
}

int fp_submit(fp_executor *ex, fp_fn fn, void *arg, fp_future **out) {
  return fp_submit_ex(ex, fn, arg, NULL, -1, out);
}

int fp_submit_timeout(fp_executor *ex, fp_fn fn, void *arg, double timeout_s, fp_future **out) {
  return fp_submit_ex(ex, fn, arg, NULL, timeout_s, out);
}

int fp_try_submit(fp_executor *ex, fp_fn fn, void *arg, fp_future **out) {
  return fp_submit_ex(ex, fn, arg, NULL, 0, out);
}

/* ---- delayed submits (on the timer) ---- */

typedef struct fp__delayed {
  struct fp__delayed *next, **prev; /* in ex->delayed (delayed_mu) */
  fp_executor *ex;
  fp_future *f; /* with the executor's reference */
  uint64_t timer;
} fp__delayed;

static void unlist(fp__delayed *d) { /* (delayed_mu) */
  *d->prev = d->next;
  if (d->next) d->next->prev = d->prev;
  d->prev = NULL;
}

static void list_delayed(fp_executor *ex, fp__delayed *d) { /* (delayed_mu) */
  d->next = ex->delayed;
  d->prev = &ex->delayed;
  if (ex->delayed) ex->delayed->prev = &d->next;
  ex->delayed = d;
}

/* It never goes to the executor: cancelled (what a shutdown does to work
 * not started), or failed with code. */
static void drop_delayed(fp__delayed *d, int code, const char *why) {
  if (code) fp_future_set_error(d->f, code, "%s", why);
  else fp_future_cancel(d->f);
  fp_future_release(d->f);
  fp__free(d);
}

static void delayed_due(void *ctx);

/* Due (the timer's thread): hand it to the executor; a full bounded queue
 * is tried again a millisecond later. */
static void delayed_due(void *ctx) {
  fp__delayed *d = ctx;
  fp_executor *ex = d->ex;
  pthread_mutex_lock(&ex->delayed_mu);
  bool mine = d->prev != NULL; /* else a shutdown took it: it drops it */
  if (mine) {
    unlist(d);
    ex->handing_over++;
  }
  pthread_mutex_unlock(&ex->delayed_mu);
  if (!mine) {
    drop_delayed(d, 0, NULL);
    return;
  }
  bool cancelled = fp_future_cancelled(d->f), submitted = false;
  int rc = cancelled ? 0 : fp__executor_refusal(ex);
  if (!cancelled && !rc && stamping(ex)) fp__future_stamp(d->f, fp__now_ns());
  if (!cancelled && !rc) submitted = (rc = ex->vt->submit(ex, d->f, 0)) == 0;
  pthread_mutex_lock(&ex->delayed_mu);
  bool again = rc == FP_EAGAIN && !atomic_load(&ex->shut_down) &&
               (d->timer = fp__timer_at(fp__now() + 1e-3, delayed_due, d));
  if (again) list_delayed(ex, d);
  pthread_mutex_unlock(&ex->delayed_mu);
  /* Settled before a shutdown waiting for the hand-over returns. */
  if (submitted)
    fp__free(d); /* the executor has the future and its reference */
  else if (!again)
    drop_delayed(d, rc, rc ? fp_last_error_message() : NULL); /* refused, or cancelled */
  pthread_mutex_lock(&ex->delayed_mu);
  ex->handing_over--;
  pthread_cond_broadcast(&ex->delayed_cv);
  pthread_mutex_unlock(&ex->delayed_mu);
}

/* List f (with the executor's reference) to be handed to ex at `at`. 0,
 * or the refusal (shut down meanwhile) / FP_ENOMEM; f untouched then. */
static int delay(fp_executor *ex, fp_future *f, double at) {
  fp__delayed *d = fp__calloc(1, sizeof *d);
  if (!d) return fp__fail(FP_ENOMEM, "out of memory for a delayed task");
  d->ex = ex;
  d->f = f;
  pthread_mutex_lock(&ex->delayed_mu);
  int rc = atomic_load(&ex->shut_down) ? fp__executor_refusal(ex) : 0;
  if (!rc && !(d->timer = fp__timer_at(at, delayed_due, d)))
    rc = fp__fail(FP_ENOMEM, "out of memory for the timer");
  if (!rc) list_delayed(ex, d);
  pthread_mutex_unlock(&ex->delayed_mu);
  if (rc) fp__free(d);
  return rc;
}

static int resubmit_at(fp_executor *ex, fp_future *f, double at) { return delay(ex, f, at); }

int fp_submit_at(fp_executor *ex, double at, fp_fn fn, void *arg, fp_future **out) {
  if (out) *out = NULL;
  if (!ex || !fn || !out)
    return fp__einval("fp_submit_at: %s is NULL", !ex ? "executor" : !fn ? "function" : "out");
  if (!(at == at)) return fp__einval("fp_submit_at: the time is NaN");
  int rc = fp__executor_refusal(ex);
  if (rc) return rc;
  fp_future *f = fp__future_new_task(ex, fn, arg, NULL, false);
  if (!f) return fp__fail(FP_ENOMEM, "fp_submit_at: out of memory");
  if ((rc = delay(ex, f, at))) {
    fp__future_discard(f);
    return rc;
  }
  *out = f;
  return 0;
}

int fp_submit_after(fp_executor *ex, double delay_s, fp_fn fn, void *arg, fp_future **out) {
  if (!(delay_s >= 0)) {
    if (out) *out = NULL;
    return fp__einval("fp_submit_after: delay %g is negative or NaN", delay_s);
  }
  return fp_submit_at(ex, fp__now() + delay_s, fn, arg, out);
}

/* At shutdown: what is not due yet is cancelled; what is being handed
 * over now is waited for (the executor must outlive it). */
static void cancel_delayed(fp_executor *ex) {
  pthread_mutex_lock(&ex->delayed_mu);
  while (ex->delayed) {
    fp__delayed *d = ex->delayed;
    unlist(d);
    uint64_t timer = d->timer;
    pthread_mutex_unlock(&ex->delayed_mu);
    if (fp__timer_cancel(timer)) drop_delayed(d, 0, NULL); /* else it fired, saw, dropped it */
    pthread_mutex_lock(&ex->delayed_mu);
  }
  while (ex->handing_over) pthread_cond_wait(&ex->delayed_cv, &ex->delayed_mu);
  pthread_mutex_unlock(&ex->delayed_mu);
}

/* No new work from now on (submits are refused here; delayed ones not due
 * yet are cancelled); then the kind's own shutdown. */
static int shutdown_executor(fp_executor *ex, bool wait, bool cancel_futures, double timeout_s) {
  atomic_store(&ex->shut_down, true);
  if (cancel_futures) atomic_store(&ex->cancel_all, true);
  cancel_delayed(ex);
  return ex->vt->shutdown(ex, wait, cancel_futures, timeout_s);
}

int fp_shutdown(fp_executor *ex, bool wait, bool cancel_futures) {
  if (!ex) return fp__einval("fp_shutdown: executor is NULL");
  return shutdown_executor(ex, wait, cancel_futures, -1);
}

int fp_shutdown_timeout(fp_executor *ex, bool cancel_futures, double timeout_s) {
  if (!ex) return fp__einval("fp_shutdown_timeout: executor is NULL");
  if (fp__check_timeout(timeout_s, "fp_shutdown_timeout")) return FP_EINVAL;
  return shutdown_executor(ex, true, cancel_futures, timeout_s);
}

int fp_executor_free(fp_executor *ex) {
  if (!ex) return 0;
  if (ex->vt->is_own_thread && ex->vt->is_own_thread(ex))
    return fp__fail(FP_EBUSY, "fp_executor_free: called from a task of the executor it frees");
  shutdown_executor(ex, true, false, -1);
  bool owned = ex->owns_base;
  pthread_cond_destroy(&ex->delayed_cv);
  pthread_mutex_destroy(&ex->delayed_mu);
  fp__stats_free(ex);
  ex->vt->destroy(ex);
  if (owned) fp__free_lines(ex);
  return 0;
}

int fp_executor_max_workers(const fp_executor *ex) {
  if (!ex) return fp__einval("fp_executor_max_workers: executor is NULL");
  return ex->max_workers;
}
