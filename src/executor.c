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

/* No new work from now on (submits are refused here); then the kind's
 * own shutdown. */
static int shutdown_executor(fp_executor *ex, bool wait, bool cancel_futures, double timeout_s) {
  atomic_store(&ex->shut_down, true);
  if (cancel_futures) atomic_store(&ex->cancel_all, true);
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
  ex->vt->destroy(ex);
  if (owned) fp__free_lines(ex);
  return 0;
}

int fp_executor_max_workers(const fp_executor *ex) {
  if (!ex) return fp__einval("fp_executor_max_workers: executor is NULL");
  return ex->max_workers;
}

int fp_executor_get_stats(const fp_executor *ex, fp_executor_stats *out) {
  if (!ex || !out) return fp__einval("fp_executor_get_stats: %s is NULL", ex ? "out" : "executor");
  memset(out, 0, sizeof *out); /* what an executor kind does not count stays 0 */
  if (ex->vt->stats) ex->vt->stats(ex, out);
  return 0;
}
