/* stats.c - latency statistics: log-bucketed histograms (fixed memory, a
 * few percent resolution), an executor's per-thread shards of them merged
 * on read, its outcome counters, and the text and Prometheus formats. */
#define _GNU_SOURCE
#include "internal.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

uint64_t fp__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the histogram ----
 * Values in nanoseconds. Below 16 one bucket per value; above, each power
 * of two is cut into 16 buckets, so a bucket is at most 1/16 of its values
 * wide and its middle is within 3.2% of any of them. */

static unsigned bucket_of(uint64_t v) {
  if (v < FP__HIST_SUB) return (unsigned)v;
  unsigned e = 63u - (unsigned)__builtin_clzll(v); /* 2^e <= v, e >= 4 */
  if (e >= FP__HIST_EXP_MAX) return FP__HIST_BUCKETS - 1;
  return (e - 3) * FP__HIST_SUB + (unsigned)((v >> (e - 4)) & (FP__HIST_SUB - 1));
}

/* The lowest value of bucket i, and its width. */
static uint64_t bucket_low(unsigned i, uint64_t *width) {
  if (i < FP__HIST_SUB) {
    *width = 1;
    return i;
  }
  unsigned e = i / FP__HIST_SUB + 3, m = i % FP__HIST_SUB;
  *width = (uint64_t)1 << (e - 4);
  return (uint64_t)(FP__HIST_SUB + m) << (e - 4);
}

void fp__hist_add(fp__hist *h, uint64_t ns) {
  atomic_fetch_add_explicit(&h->bucket[bucket_of(ns)], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->sum, ns, memory_order_relaxed);
  uint64_t max = atomic_load_explicit(&h->max, memory_order_relaxed);
  while (ns > max &&
         !atomic_compare_exchange_weak_explicit(&h->max, &max, ns, memory_order_relaxed,
                                                memory_order_relaxed)) {
  }
}

/* The same for a histogram only one thread at a time writes (under its
 * owner's lock): plain loads and stores, no locked instructions. */
static void bump(atomic_uint_fast64_t *c, uint64_t by) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + by,
                        memory_order_relaxed);
}
void fp__hist_add_owned(fp__hist *h, uint64_t ns) {
  bump(&h->bucket[bucket_of(ns)], 1);
  bump(&h->count, 1);
  bump(&h->sum, ns);
  if (ns > atomic_load_explicit(&h->max, memory_order_relaxed))
    atomic_store_explicit(&h->max, ns, memory_order_relaxed);
}

void fp__hist_merge(fp__hist *into, const fp__hist *from) {
  for (unsigned i = 0; i < FP__HIST_BUCKETS; i++) {
    uint64_t n = atomic_load_explicit(&from->bucket[i], memory_order_relaxed);
    if (n) atomic_fetch_add_explicit(&into->bucket[i], n, memory_order_relaxed);
  }
  atomic_fetch_add_explicit(&into->count, atomic_load_explicit(&from->count, memory_order_relaxed),
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&into->sum, atomic_load_explicit(&from->sum, memory_order_relaxed),
                            memory_order_relaxed);
  uint64_t max = atomic_load_explicit(&from->max, memory_order_relaxed);
  if (max > atomic_load_explicit(&into->max, memory_order_relaxed))
    atomic_store_explicit(&into->max, max, memory_order_relaxed);
}

/* The q-quantile (0 < q <= 1) in seconds: the middle of the bucket that
 * holds it, never above the largest value seen. */
double fp__hist_quantile(const fp__hist *h, double q) {
  uint64_t count = 0; /* summed from the buckets: a snapshot taken while
                       * tasks finish may differ from h->count */
  for (unsigned i = 0; i < FP__HIST_BUCKETS; i++)
    count += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
  if (!count) return 0;
  uint64_t rank = (uint64_t)(q * (double)count + 0.5), seen = 0;
  if (rank < 1) rank = 1;
  if (rank > count) rank = count;
  uint64_t max = atomic_load_explicit(&h->max, memory_order_relaxed);
  for (unsigned i = 0; i < FP__HIST_BUCKETS; i++) {
    seen += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
    if (seen < rank) continue;
    uint64_t width, low = bucket_low(i, &width);
    double mid = (double)low + (width > 1 ? (double)width / 2 : 0);
    return (max && mid > (double)max ? (double)max : mid) * 1e-9;
  }
  return (double)max * 1e-9;
}

void fp__hist_summary(const fp__hist *h, fp_latency *out) {
  uint64_t count = atomic_load_explicit(&h->count, memory_order_relaxed);
  *out = (fp_latency){.count = count};
  if (!count) return;
  out->mean = (double)atomic_load_explicit(&h->sum, memory_order_relaxed) / (double)count * 1e-9;
  out->p50 = fp__hist_quantile(h, 0.50);
  out->p90 = fp__hist_quantile(h, 0.90);
  out->p99 = fp__hist_quantile(h, 0.99);
  out->max = (double)atomic_load_explicit(&h->max, memory_order_relaxed) * 1e-9;
}

const char *fp__seconds_text(double s, char *buf, size_t len) {
  if (s < 1e-6) snprintf(buf, len, "%.0f ns", s * 1e9);
  else if (s < 1e-3) snprintf(buf, len, "%.3g us", s * 1e6);
  else if (s < 1) snprintf(buf, len, "%.3g ms", s * 1e3);
  else snprintf(buf, len, "%.3g s", s);
  return buf;
}

/* How many values are at most `le` seconds: the buckets that lie wholly
 * at or below it (so within a bucket's width of the truth). */
static uint64_t hist_at_most(const fp__hist *h, double le) {
  uint64_t n = 0;
  for (unsigned i = 0; i < FP__HIST_BUCKETS; i++) {
    uint64_t width, low = bucket_low(i, &width);
    if ((double)(low + width - 1) * 1e-9 > le) break;
    n += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
  }
  return n;
}

/* ---- an executor's statistics ----
 * Latency is recorded in shards, one per thread as far as there are
 * shards: a worker adds to its own shard's cache lines (a relaxed atomic
 * add, no lock, no line shared with other workers); a read merges them. */

enum { SHARDS = 8 };

typedef struct shard {
  _Alignas(FP__APART) fp__hist queue, run;
} shard;

struct fp__lat {
  shard shards[SHARDS];
};

static shard *my_shard(fp__lat *lat) {
  static atomic_uint next_shard;
  static _Thread_local unsigned mine; /* 1 + the shard's index; 0 unassigned */
  if (!mine) mine = 1 + atomic_fetch_add_explicit(&next_shard, 1, memory_order_relaxed) % SHARDS;
  return &lat->shards[mine - 1];
}

int fp_executor_stats_enable(fp_executor *ex) {
  if (!ex) return fp__einval("fp_executor_stats_enable: executor is NULL");
  if (atomic_load_explicit(&ex->lat, memory_order_acquire)) return 0;
  fp__lat *lat = fp__calloc_lines(sizeof *lat);
  if (!lat) return fp__fail(FP_ENOMEM, "fp_executor_stats_enable: out of memory");
  fp__lat *none = NULL;
  if (!atomic_compare_exchange_strong(&ex->lat, &none, lat)) fp__free_lines(lat); /* raced */
  return 0;
}

void fp__stats_free(fp_executor *ex) {
  fp__free_lines(atomic_load(&ex->lat));
  atomic_store(&ex->lat, NULL);
}

void fp__stats_queue_wait(fp__lat *lat, uint64_t ns) { fp__hist_add(&my_shard(lat)->queue, ns); }
void fp__stats_run(fp__lat *lat, uint64_t ns) { fp__hist_add(&my_shard(lat)->run, ns); }

void fp__stats_outcome(fp_executor *ex, int code) {
  atomic_uint_fast64_t *c = code == FP_ECANCELED   ? &ex->outcomes.cancelled
                            : code == FP_ETIMEDOUT ? &ex->outcomes.timed_out
                            : code == FP_ECRASHED  ? &ex->outcomes.crashed
                            : code == FP__RETRIED  ? &ex->outcomes.retried
                                                   : &ex->outcomes.failed;
  atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* The merged histograms, in *queue and *run (zeroed by the caller);
 * false if statistics are off. */
static bool merged(const fp_executor *ex, fp__hist *queue, fp__hist *run) {
  fp__lat *lat = atomic_load_explicit(&((fp_executor *)ex)->lat, memory_order_acquire);
  if (!lat) return false;
  for (int i = 0; i < SHARDS; i++) {
    fp__hist_merge(queue, &lat->shards[i].queue);
    fp__hist_merge(run, &lat->shards[i].run);
  }
  return true;
}

/* Everything in one snapshot: the counters in *st, the merged histograms
 * in h[0] (queue wait) and h[1] (run), zeroed by the caller. */
static void snapshot(const fp_executor *ex, fp_executor_stats *st, fp__hist *h) {
  memset(st, 0, sizeof *st); /* what an executor kind does not count stays 0 */
  if (ex->vt->stats) ex->vt->stats(ex, st);
  const struct fp__outcomes *o = &ex->outcomes;
  st->failed = atomic_load_explicit(&o->failed, memory_order_relaxed);
  st->cancelled = atomic_load_explicit(&o->cancelled, memory_order_relaxed);
  st->timed_out = atomic_load_explicit(&o->timed_out, memory_order_relaxed);
  st->crashed = atomic_load_explicit(&o->crashed, memory_order_relaxed);
  st->retried = atomic_load_explicit(&o->retried, memory_order_relaxed);
  if ((st->latency = merged(ex, &h[0], &h[1]))) {
    fp__hist_summary(&h[0], &st->queue_wait);
    fp__hist_summary(&h[1], &st->run);
  }
}

int fp_executor_stats_get(const fp_executor *ex, fp_executor_stats *out, size_t size) {
  if (!ex || !out)
    return fp__einval("fp_executor_get_stats: %s is NULL", ex ? "out" : "executor");
  if (size < offsetof(fp_executor_stats, lanes) + sizeof out->lanes)
    return fp__einval("fp_executor_get_stats: a stats struct of %zu bytes is too small", size);
  fp__hist *h = fp__calloc(2, sizeof *h);
  if (!h) return fp__fail(FP_ENOMEM, "fp_executor_get_stats: out of memory");
  fp_executor_stats st;
  snapshot(ex, &st, h);
  fp__free(h);
  if (size > sizeof st) size = sizeof st; /* a newer header than this library */
  st.size = size;
  memcpy(out, &st, size);
  return 0;
}

/* ---- formats ---- */

/* snprintf that keeps a running length past the end of buf. */
typedef struct out {
  char *buf;
  size_t len, at;
} out;

static void put(out *o, const char *fmt, ...) FP_PRINTF(2, 3);
static void put(out *o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(o->at < o->len ? o->buf + o->at : NULL, o->at < o->len ? o->len - o->at : 0,
                    fmt, ap);
  va_end(ap);
  if (n > 0) o->at += (size_t)n;
}

static void prometheus_counter(out *o, const char *name, const char *help, const char *type,
                               const char *labels, double value) {
  put(o, "# HELP fp_%s %s\n# TYPE fp_%s %s\nfp_%s{%s} %.17g\n", name, help, name, type, name,
      labels, value);
}

/* Bucket bounds of the Prometheus histograms, in seconds. */
static const double prometheus_le[] = {1e-6, 1e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2,
                                       2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600};

static void prometheus_hist(out *o, const char *name, const char *help, const char *labels,
                            const fp__hist *h) {
  put(o, "# HELP fp_%s %s\n# TYPE fp_%s histogram\n", name, help, name);
  for (size_t i = 0; i < sizeof prometheus_le / sizeof *prometheus_le; i++)
    put(o, "fp_%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, prometheus_le[i],
        (unsigned long long)hist_at_most(h, prometheus_le[i]));
  uint64_t count = atomic_load_explicit(&h->count, memory_order_relaxed);
  put(o, "fp_%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, (unsigned long long)count);
  put(o, "fp_%s_sum{%s} %.9f\n", name, labels,
      (double)atomic_load_explicit(&h->sum, memory_order_relaxed) * 1e-9);
  put(o, "fp_%s_count{%s} %llu\n", name, labels, (unsigned long long)count);
}

static void format_prometheus(out *o, const fp_executor *ex, const fp_executor_stats *st,
                              const fp__hist *queue, const fp__hist *run) {
  char labels[96], kind[48];
  size_t k = 0;
  for (const char *c = ex->vt->kind ? ex->vt->kind : "executor"; *c && k + 1 < sizeof kind; c++)
    kind[k++] = (*c == '"' || *c == '\\' || *c == '\n') ? '_' : *c;
  kind[k] = 0;
  snprintf(labels, sizeof labels, "executor=\"%s\",id=\"%llu\"", kind,
           (unsigned long long)ex->serial);
  struct {
    const char *name, *help, *type;
    double value;
  } rows[] = {
      {"tasks_submitted_total", "Tasks accepted.", "counter", (double)st->submitted},
      {"tasks_completed_total", "Tasks finished (result or error).", "counter",
       (double)st->completed},
      {"tasks_failed_total", "Tasks that failed (not counting the kinds below).", "counter",
       (double)st->failed},
      {"tasks_cancelled_total", "Tasks cancelled.", "counter", (double)st->cancelled},
      {"tasks_timed_out_total", "Tasks that ran out of time.", "counter", (double)st->timed_out},
      {"tasks_crashed_total", "Tasks whose worker process crashed.", "counter",
       (double)st->crashed},
      {"tasks_retried_total", "Attempts made again (fp_retry).", "counter", (double)st->retried},
      {"tasks_queued", "Tasks waiting in the queue.", "gauge", (double)st->queued},
      {"threads", "Threads started and not exited.", "gauge", (double)st->threads},
      {"threads_idle", "Threads waiting for work.", "gauge", (double)st->idle},
  };
  for (size_t i = 0; i < sizeof rows / sizeof *rows; i++)
    prometheus_counter(o, rows[i].name, rows[i].help, rows[i].type, labels, rows[i].value);
  if (!st->latency) return;
  prometheus_hist(o, "task_queue_wait_seconds", "From submit to start.", labels, queue);
  prometheus_hist(o, "task_run_seconds", "From start to finish.", labels, run);
}

static void text_latency(out *o, const char *what, const fp_latency *l) {
  put(o, "%s: %llu, mean %.3g s, p50 %.3g s, p90 %.3g s, p99 %.3g s, max %.3g s\n", what,
      (unsigned long long)l->count, l->mean, l->p50, l->p90, l->p99, l->max);
}

int fp_executor_stats_format(const fp_executor *ex, char *buf, size_t len,
                             fp_stats_format format) {
  if (!ex || (!buf && len))
    return fp__einval("fp_executor_stats_format: %s is NULL", ex ? "buf" : "executor");
  if (format != FP_STATS_TEXT && format != FP_STATS_PROMETHEUS)
    return fp__einval("fp_executor_stats_format: unknown format %d", (int)format);
  fp__hist *h = fp__calloc(2, sizeof *h);
  if (!h) return fp__fail(FP_ENOMEM, "fp_executor_stats_format: out of memory");
  fp_executor_stats st;
  snapshot(ex, &st, h); /* the summaries and the buckets from one merge */
  out o = {buf, len, 0};
  if (format == FP_STATS_PROMETHEUS) {
    format_prometheus(&o, ex, &st, &h[0], &h[1]);
  } else {
    put(&o, "%s %llu: %llu submitted, %llu completed, %llu failed, %llu cancelled, "
            "%llu timed out, %llu crashed, %llu retried; %zu queued, %zu threads (%zu idle)\n",
        ex->vt->kind ? ex->vt->kind : "executor", (unsigned long long)ex->serial,
        (unsigned long long)st.submitted, (unsigned long long)st.completed,
        (unsigned long long)st.failed, (unsigned long long)st.cancelled,
        (unsigned long long)st.timed_out, (unsigned long long)st.crashed,
        (unsigned long long)st.retried, st.queued, st.threads, st.idle);
    if (st.latency) {
      text_latency(&o, "queue wait", &st.queue_wait);
      text_latency(&o, "run", &st.run);
    } else {
      put(&o, "latency: off (fp_executor_stats_enable)\n");
    }
  }
  fp__free(h);
  if (o.at > INT_MAX) return fp__fail(FP_ENOMEM, "fp_executor_stats_format: too long");
  return (int)o.at;
}
