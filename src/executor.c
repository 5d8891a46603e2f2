/* executor.c - what every executor shares: submit, shutdown, free, stats,
 * behind a small vtable that each executor kind fills. */
#define _GNU_SOURCE
#include "internal.h"

#include <sched.h>
#include <string.h>
#include <unistd.h>

void fp__executor_init(fp_executor *ex, const fp__executor_vtable *vt, int max_workers) {
  ex->vt = vt;
  ex->max_workers = max_workers;
  atomic_init(&ex->next_id, 0);
  atomic_init(&ex->shut_down, false);
  atomic_init(&ex->cancel_all, false);
}

int fp__cpu_count(void) {
  long ncpu = 0;
#ifdef CPU_COUNT
  cpu_set_t set; /* the CPUs this process may run on, as Python's process_cpu_count */
  if (sched_getaffinity(0, sizeof set, &set) == 0) ncpu = CPU_COUNT(&set);
#endif
  if (ncpu <= 0) ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  return ncpu > 0 ? (int)ncpu : 1;
}

int fp__default_workers(void) {
  int ncpu = fp__cpu_count();
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
  if (atomic_load_explicit(&ex->shut_down, memory_order_relaxed))
    return fp__fail(FP_ESHUTDOWN, "cannot schedule new futures after shutdown");
  fp_future *f = fp__future_new_task(ex, fn, arg, topt, bytes);
  if (!f) return fp__fail(FP_ENOMEM, "fp_submit: out of memory for a future");
  int rc = ex->vt->submit(ex, f, timeout_s);
  if (rc) {
    fp__future_discard(f);
    return rc;
  }
  *out = f;
  return 0;
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
  fp_task_options topt = {fp_bytes_free, fp_bytes_free};
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

int fp_shutdown(fp_executor *ex, bool wait, bool cancel_futures) {
  if (!ex) return fp__einval("fp_shutdown: executor is NULL");
  fp__deadline forever = fp__deadline_in(-1);
  return ex->vt->shutdown(ex, wait, cancel_futures, &forever);
}

int fp_shutdown_timeout(fp_executor *ex, bool cancel_futures, double timeout_s) {
  if (!ex) return fp__einval("fp_shutdown_timeout: executor is NULL");
  if (fp__check_timeout(timeout_s, "fp_shutdown_timeout")) return FP_EINVAL;
  fp__deadline d = fp__deadline_in(timeout_s);
  return ex->vt->shutdown(ex, true, cancel_futures, &d);
}

int fp_executor_free(fp_executor *ex) {
  if (!ex) return 0;
  if (ex->vt->is_own_thread(ex))
    return fp__fail(FP_EBUSY, "fp_executor_free: called from a task of the executor it frees");
  fp_shutdown(ex, true, false);
  ex->vt->destroy(ex);
  return 0;
}

int fp_executor_max_workers(const fp_executor *ex) {
  if (!ex) return fp__einval("fp_executor_max_workers: executor is NULL");
  return ex->max_workers;
}

int fp_executor_get_stats(const fp_executor *ex, fp_executor_stats *out) {
  if (!ex || !out) return fp__einval("fp_executor_get_stats: %s is NULL", ex ? "out" : "executor");
  memset(out, 0, sizeof *out); /* what an executor kind does not count stays 0 */
  ex->vt->stats(ex, out);
  return 0;
}
