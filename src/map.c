/* map.c - fp_map: apply a function to a lazily read input, results in
 * input order, never more than `buffersize` items read ahead. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* The default window holds at least this many items: tiny tasks then go
 * to the executor many at a time, and a window is a few hundred bytes.
 * An automatic chunksize grows up to AUTO_CHUNK_MAX items. */
enum { MIN_DEFAULT_BUFFER = 64, AUTO_CHUNK_MAX = 1024 };

struct fp_map {
  fp_executor *ex;
  fp_fn fn;
  fp_iter_fn next;
  void *state;
  fp_map_options opt;
  fp__deadline deadline;
  fp_future **window; /* ring of submitted futures, oldest at head */
  size_t head, count;
  int end_code; /* 0 while the input goes on; FP_EOF or its error after */
  char end_message[200];
  fp_future *last; /* holds the result handed out last (result_free) */
  bool timed_out;
  /* Items read, to submit at once: a chunk (one unit of work, for a
   * process pool), or many independent ones (a thread pool); NULL where
   * the executor takes one at a time. */
  void **batch;
  fp_future **batch_futures;
  bool chunked;
  /* The chunk size in force, and the items read ahead at most (the ring
   * holds opt.buffersize). With an automatic chunksize both follow the
   * measured time an item takes: */
  size_t chunk, limit;
  bool auto_chunk, auto_limit;
  double measured_since; /* when the items counted below began */
  size_t measured;       /* items returned since */
};

void fp_map_options_init(fp_map_options *opt) {
  if (!opt) {
    fp__einval("fp_map_options_init: options are NULL");
    return;
  }
  memset(opt, 0, sizeof *opt);
  opt->timeout_s = -1;
  opt->chunksize = FP_CHUNKSIZE_AUTO;
}

static void end_input(fp_map *m, int rc) {
  m->end_code = rc ? rc : FP_EOF;
  snprintf(m->end_message, sizeof m->end_message, rc ? "the map's input failed: %s (%d)"
                                                     : "the map's input is exhausted (%s, %d)",
           fp_err_name(m->end_code), m->end_code);
}

/* Read up to `want` items and hand them over at once (as one chunk). */
static void fill_batch(fp_map *m, size_t want) {
  size_t n = 0;
  while (n < want) {
    int rc = m->next(m->state, &m->batch[n]);
    if (rc <= 0) {
      end_input(m, rc);
      break;
    }
    n++;
  }
  if (!n) return;
  fp_task_options topt = {.arg_free = m->opt.item_free, .result_free = m->opt.result_free};
  int rc = fp__submit_batch(m->ex, m->fn, m->batch, n, &topt, m->chunked, m->batch_futures);
  if (rc) {
    if (m->opt.item_free) /* read by the map, so the map's */
      for (size_t i = 0; i < n; i++) m->opt.item_free(m->batch[i]);
    m->end_code = rc;
    snprintf(m->end_message, sizeof m->end_message, "map stopped: %s", fp_last_error_message());
    return;
  }
  for (size_t i = 0; i < n; i++)
    m->window[(m->head + m->count + i) % m->opt.buffersize] = m->batch_futures[i];
  m->count += n;
}

/* Read and submit items until the window is full or the input ends. */
static void fill(fp_map *m) {
  fp_task_options topt = {.arg_free = m->opt.item_free, .result_free = m->opt.result_free};
  while (!m->end_code && m->count < m->limit) {
    size_t room = m->limit - m->count;
    if (m->batch && m->chunked) { /* whole chunks only: a trickle of 1-item chunks
                                   * defeats them */
      if (room < m->chunk && m->count) return;
      fill_batch(m, room < m->chunk ? room : m->chunk);
      continue;
    }
    if (m->batch) { /* many at once: refill when half the window is free */
      if (room < m->limit / 2 && m->count) return;
      fill_batch(m, room);
      continue;
    }
    void *item = NULL;
    int rc = m->next(m->state, &item);
    if (rc <= 0) {
      end_input(m, rc);
      return;
    }
    fp_future *f;
    rc = fp_submit_ex(m->ex, m->fn, item, &topt, fp__deadline_remaining(&m->deadline), &f);
    if (rc) {
      if (m->opt.item_free) m->opt.item_free(item); /* read by the map, so the map's */
      m->end_code = rc;
      snprintf(m->end_message, sizeof m->end_message, "map stopped: %s", fp_last_error_message());
      return;
    }
    m->window[(m->head + m->count) % m->opt.buffersize] = f;
    m->count++;
  }
}

int fp_map_new(fp_executor *ex, fp_fn fn, fp_iter_fn next, void *state,
               const fp_map_options *opt, fp_map **out) {
  if (!out) return fp__einval("fp_map_new: out is NULL");
  *out = NULL;
  if (!ex || !fn || !next)
    return fp__einval("fp_map_new: %s is NULL", !ex ? "executor" : !fn ? "function" : "input");
  fp_map *m = fp__calloc(1, sizeof *m);
  if (!m) return fp__fail(FP_ENOMEM, "fp_map_new: out of memory");
  if (opt)
    m->opt = *opt;
  else
    fp_map_options_init(&m->opt);
  fp_map_options o = m->opt;
  if (o.chunksize < 0 || o.buffersize > SIZE_MAX / sizeof *m->window || isnan(o.timeout_s)) {
    fp__free(m);
    if (o.chunksize < 0)
      return fp__einval("fp_map_new: chunksize must be 1 or more, or 0 for automatic (got %d)",
                        o.chunksize);
    if (isnan(o.timeout_s)) return fp__einval("fp_map_new: the timeout is NaN");
    return fp__einval("fp_map_new: buffersize %zu is larger than any window could be",
                      o.buffersize);
  }
  /* Automatic: where the executor takes chunks (worker processes, ranks),
   * start at 1 and let fp_map_next size them; elsewhere, one by one. */
  m->auto_chunk = m->opt.chunksize == FP_CHUNKSIZE_AUTO && ex->vt->submit_chunk;
  size_t chunk = m->opt.chunksize > 1 ? (size_t)m->opt.chunksize : 1;
  size_t most = m->auto_chunk ? AUTO_CHUNK_MAX : chunk; /* the largest chunk */
  m->auto_limit = !m->opt.buffersize;
  if (!m->opt.buffersize) {
    m->opt.buffersize = 2 * (size_t)ex->max_workers * most;
    if (m->opt.buffersize < MIN_DEFAULT_BUFFER) m->opt.buffersize = MIN_DEFAULT_BUFFER;
  }
  if (m->auto_chunk && most > m->opt.buffersize / 2) /* a given window bounds chunks */
    most = m->opt.buffersize > 1 ? m->opt.buffersize / 2 : 1;
  m->chunk = chunk;
  m->limit = m->opt.buffersize;
  if (m->auto_chunk && m->auto_limit) /* 2 chunks a worker (64 chunks of 1 would be
                                        * 64 round trips before the first estimate) */
    m->limit = 2 * (size_t)ex->max_workers * chunk;
  m->window = fp__malloc_array(m->opt.buffersize, sizeof *m->window);
  bool batches = fp__executor_batches(ex, chunk > 1 || m->auto_chunk);
  m->chunked = chunk > 1 || m->auto_chunk;
  size_t batch = m->chunked ? most : m->opt.buffersize;
  if (batches) {
    m->batch = fp__malloc_array(batch, sizeof *m->batch);
    m->batch_futures = fp__malloc_array(batch, sizeof *m->batch_futures);
  }
  if (!m->window || (batches && (!m->batch || !m->batch_futures))) {
    fp__free(m->window);
    fp__free(m->batch);
    fp__free(m->batch_futures);
    fp__free(m);
    return fp__fail(FP_ENOMEM, "fp_map_new: out of memory for a window of %zu",
                    opt ? opt->buffersize : 0);
  }
  m->ex = ex;
  m->fn = fn;
  m->next = next;
  m->state = state;
  m->deadline = fp__deadline_in(m->opt.timeout_s);
  m->measured_since = fp__now();
  fill(m);
  *out = m;
  return 0;
}

static void cancel_window(fp_map *m) {
  for (; m->count; m->count--, m->head = (m->head + 1) % m->opt.buffersize) {
    fp_future *f = m->window[m->head];
    fp_future_cancel(f);
    fp_future_release(f);
  }
}

size_t fp__chunk_size(size_t chunk, size_t measured, double elapsed, int workers, size_t most) {
  double per_item = elapsed * (double)workers / (double)(measured ? measured : 1);
  double want = per_item > 0 ? FP__CHUNK_S / per_item : (double)most;
  double lo = (double)chunk / 2, hi = (double)chunk * 8;
  want = want < lo ? lo : want > hi ? hi : want;
  if (most < 1) most = 1;
  return want < 1 ? 1 : want > (double)most ? most : (size_t)want;
}

/* An automatic chunksize (as joblib's auto batching): once a round of
 * chunks has come back, size them from the rate results arrive at
 * (fp__chunk_size). The window follows: 2 chunks a worker. */
static void resize_chunks(fp_map *m) {
  size_t workers = (size_t)m->ex->max_workers;
  if (++m->measured < m->chunk * workers) return;
  double now = fp__now();
  size_t most = m->opt.buffersize / 2 < AUTO_CHUNK_MAX ? m->opt.buffersize / 2 : AUTO_CHUNK_MAX;
  m->chunk = fp__chunk_size(m->chunk, m->measured, now - m->measured_since, (int)workers, most);
  if (m->auto_limit) {
    size_t limit = 2 * workers * m->chunk;
    m->limit = limit > m->opt.buffersize ? m->opt.buffersize : limit;
  }
  m->measured_since = now;
  m->measured = 0;
}

int fp_map_next(fp_map *m, void **result) {
  if (!m || !result) return fp__einval("fp_map_next: %s is NULL", m ? "result" : "map");
  *result = NULL;
  fp_future_release(m->last);
  m->last = NULL;
  if (m->timed_out)
    return fp__fail(FP_ETIMEDOUT, "map timed out after %g s", m->opt.timeout_s);
  if (!m->count) return fp__fail(m->end_code, "%s", m->end_message);

  fp_future *f = m->window[m->head];
  int rc = fp_future_result(f, fp__deadline_remaining(&m->deadline), result);
  if (rc == FP_ETIMEDOUT && !fp_future_done(f)) {
    m->timed_out = true;
    cancel_window(m);
    return fp__fail(FP_ETIMEDOUT, "map timed out after %g s", m->opt.timeout_s);
  }
  m->head = (m->head + 1) % m->opt.buffersize;
  m->count--;
  m->last = f;
  if (m->auto_chunk) resize_chunks(m);
  fill(m);
  if (rc) /* fill may have overwritten the thread's last error: restore it */
    fp_future_result(f, 0, NULL);
  return rc;
}

void fp_map_free(fp_map *m) {
  if (!m) return;
  cancel_window(m);
  fp_future_release(m->last);
  fp__free(m->window);
  fp__free(m->batch);
  fp__free(m->batch_futures);
  fp__free(m);
}
