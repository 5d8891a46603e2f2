/* fprun.c - the futureproof job runner: the halt policy, the joblog, and the
 * run itself -- a task manager over a thread pool of -j slots, each task
 * one job (job.c) built from the template (template.c) and an input
 * (input.c) read only when a slot can take it. */
#define _GNU_SOURCE
#include "fprun.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Between SIGTERM and SIGKILL for a job that is stopped. */
#define KILL_GRACE_S 0.5
/* --keep-order: jobs finished ahead of the one whose output is next. */
#define KEEP_WINDOW 256
/* --timeout N%: run times from 1 us, 2% apart (the last bucket: days). */
#define RUNTIME_BUCKETS 1024
#define RUNTIME_MIN_S 1e-6
#define RUNTIME_STEP 1.02
/* --timeout N%: the median is trusted after this many successful jobs. */
#define RUNTIME_MIN_JOBS 3

/* ---- the run ---- */

typedef struct run {
  options opt;
  template *tmpl;
  template *tag_tmpl; /* --tagstring */
  input *in;
  FILE *joblog;
  pthread_mutex_t mu; /* the joblog, the counters */
  atomic_bool stop_starting; /* a soon halt: jobs not started are skipped */
  atomic_int next_slot;
  double next_start; /* --delay (mu) */
  /* --keep-order: finished jobs wait here for their turn to be written,
   * at most KEEP_WINDOW of them; a job further ahead holds its slot until
   * the output catches up (so no new job starts: bounded memory). */
  uint64_t *done_before; /* --resume: the joblog's seqs to skip, sorted */
  size_t n_done_before;
  uint64_t resumed;
  fp_task **kept;
  uint64_t next_print; /* (mu) */
  pthread_cond_t order_cv;
  int output_error; /* -errno: stdout could not be written */
  uint64_t succeeded, failed, timed_out, killed, stopped, skipped, retried;
  fp_executor *mpi; /* --mpi: the other ranks */
  double started; /* fp_now() at the start, for the summary's wall time */
  /* --timeout N%: successful jobs' run times, log-bucketed (mu) */
  uint64_t runtimes[RUNTIME_BUCKETS], n_runtimes;
  double median_runtime;
} run;

static run the_run;
static _Thread_local unsigned my_slot; /* {%}: 1 .. -j, one per pool thread */

/* ---- the joblog ---- */


/* What a joblog says: the seqs it has (--resume), those that succeeded
 * (--resume-failed), and for --retry-failed each seq's last outcome. */
typedef struct logged {
  uint64_t seq, order; /* order: its place in the file */
  char *command;       /* --retry-failed: the command of a failure */
} logged;

typedef struct joblog_scan {
  run *r;
  logged *entries;
  size_t n, cap;
} joblog_scan;

static int scan_entry(const joblog_entry *e, void *userdata) {
  joblog_scan *scan = userdata;
  const options *o = &scan->r->opt;
  bool failed = e->exitval || e->signal;
  if (o->resume_failed && failed) return 0;
  if (scan->n == scan->cap) {
    size_t cap = scan->cap ? 2 * scan->cap : 256;
    logged *grown = realloc(scan->entries, cap * sizeof *grown);
    if (!grown) return FP_ENOMEM;
    scan->entries = grown;
    scan->cap = cap;
  }
  logged *l = &scan->entries[scan->n];
  *l = (logged){e->seq, scan->n, NULL};
  if (o->retry_failed && failed && !(l->command = strdup(e->command))) return FP_ENOMEM;
  scan->n++;
  return 0;
}

static int compare_logged(const void *a, const void *b) {
  const logged *x = a, *y = b;
  if (x->seq != y->seq) return x->seq < y->seq ? -1 : 1;
  return x->order < y->order ? -1 : x->order > y->order;
}

/* --retry-failed: the input is the failures the joblog ends with, their
 * commands run by the shell under their own seqs. */
static int retry_input(run *r, logged *l, size_t n) {
  char **commands = malloc((n ? n : 1) * sizeof *commands);
  uint64_t *seqs = malloc((n ? n : 1) * sizeof *seqs);
  size_t k = 0;
  if (commands && seqs)
    for (size_t i = 0; i < n; i++) {
      bool last = i + 1 == n || l[i + 1].seq != l[i].seq; /* its latest outcome */
      if (!last || !l[i].command) continue;
      seqs[k] = l[i].seq;
      commands[k++] = l[i].command;
      l[i].command = NULL;
    }
  if (!commands || !seqs) {
    free(commands);
    free(seqs);
    return FP_ENOMEM;
  }
  input_free(r->in);
  return (r->in = input_from_commands(commands, seqs, k)) ? 0 : FP_ENOMEM;
}

static int read_joblog(run *r) {
  joblog_scan scan = {.r = r};
  int rc = joblog_read(r->opt.joblog, scan_entry, &scan);
  if (!rc) qsort(scan.entries, scan.n, sizeof *scan.entries, compare_logged);
  if (!rc && r->opt.retry_failed) {
    rc = retry_input(r, scan.entries, scan.n);
  } else if (!rc && (r->done_before = malloc((scan.n ? scan.n : 1) * sizeof *r->done_before))) {
    for (size_t i = 0; i < scan.n; i++) r->done_before[i] = scan.entries[i].seq;
    r->n_done_before = scan.n;
  } else if (!rc) {
    rc = FP_ENOMEM;
  }
  for (size_t i = 0; i < scan.n; i++) free(scan.entries[i].command);
  free(scan.entries);
  if (rc) {
    fprintf(stderr, "fprun: cannot read the joblog %s: %s\n", r->opt.joblog,
            rc == FP_ENOMEM ? "out of memory" : strerror(-rc));
    return FPRUN_EXIT_OWN_ERROR;
  }
  return 0;
}

static bool done_before(const run *r, uint64_t seq) {
  if (!r->n_done_before) return false;
  size_t lo = 0, hi = r->n_done_before; /* sorted, maybe with repeats */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (r->done_before[mid] < seq) lo = mid + 1;
    else hi = mid;
  }
  return lo < r->n_done_before && r->done_before[lo] == seq;
}

/* A job's outcome, kept in its input for the consumer. */
typedef struct job_state {
  job_input in; /* first: the input the task manager hands around */
  int status;
  bool ran, skipped, resumed;
  job_result kept; /* --keep-order: the output, written in input order */
  char *kept_tag;  /* and its tag, made on the job's slot ({%}) */
} job_state;

static void job_state_free(void *p) {
  job_state *js = p;
  if (js) {
    job_result_clear(&js->kept);
    free(js->kept_tag);
  }
  job_input_free(p);
}

static int next_job(void *state, void **out) {
  run *r = state;
  if (atomic_load(&r->stop_starting)) return 0;
  job_input *in;
  int rc = input_next(r->in, (void **)&in);
  if (rc <= 0) return rc;
  job_state *js = realloc(in, sizeof *js); /* room for the outcome after the input */
  if (!js) {
    job_input_free(in);
    return FP_ENOMEM;
  }
  js->status = 0;
  js->ran = js->skipped = js->resumed = false;
  memset(&js->kept, 0, sizeof js->kept);
  js->kept_tag = NULL;
  *out = js;
  return 1;
}

/* A job's name in messages and the trace: its number and its inputs. */
static void describe_job(const void *item, char *buf, size_t len) {
  const job_input *in = item;
  int n = snprintf(buf, len, "job %llu:", (unsigned long long)in->seq);
  for (size_t i = 0; i < in->ncols && n > 0 && (size_t)n < len; i++)
    n += snprintf(buf + n, len - (size_t)n, " %s", in->cols[i]);
}

static void log_job(run *r, const job_state *js, char *const *argv, const job_result *res) {
  if (!r->joblog) return;
  char *line = argv_line(argv);
  pthread_mutex_lock(&r->mu);
  fprintf(r->joblog, "%llu\t%s\t%.3f\t%.3f\t0\t%zu\t%d\t%d\t%s\n",
          (unsigned long long)js->in.seq, res->host[0] ? res->host : ":", res->started, res->runtime, res->received, res->status,
          res->signal, line ? line : "");
  fflush(r->joblog);
  pthread_mutex_unlock(&r->mu);
  free(line);
}

static void record_output_error(run *r, int code) {
  pthread_mutex_lock(&r->mu);
  r->output_error = code;
  pthread_mutex_unlock(&r->mu);
}

static char *tag_of(const job_input *in);
/* The tag of a job's output lines: --tagstring expanded, or its inputs
 * (--tag); NULL without either. */
static char *job_tag(const run *r, const job_input *in) {
  if (r->tag_tmpl) return template_expand_string(r->tag_tmpl, in, my_slot);
  return r->opt.tag ? tag_of(in) : NULL;
}

static char *tag_of(const job_input *in) {
  size_t len = 1;
  for (size_t i = 0; i < in->ncols; i++) len += strlen(in->cols[i]) + 1;
  char *tag = malloc(len);
  if (!tag) return NULL;
  tag[0] = 0;
  for (size_t i = 0; i < in->ncols; i++) {
    if (i) strcat(tag, " ");
    strcat(tag, in->cols[i]);
  }
  return tag;
}

/* ---- --timeout N% ---- */

/* A successful job's run time, for the median. */
static void record_runtime(run *r, double seconds) {
  double b = seconds > RUNTIME_MIN_S ? log(seconds / RUNTIME_MIN_S) / log(RUNTIME_STEP) : 0;
  size_t bucket = b < RUNTIME_BUCKETS - 1 ? (size_t)b : RUNTIME_BUCKETS - 1;
  pthread_mutex_lock(&r->mu);
  r->runtimes[bucket]++;
  r->n_runtimes++;
  uint64_t seen = 0;
  for (size_t i = 0; i < RUNTIME_BUCKETS; i++)
    if ((seen += r->runtimes[i]) * 2 >= r->n_runtimes) {
      r->median_runtime = RUNTIME_MIN_S * pow(RUNTIME_STEP, (double)i + 0.5);
      break;
    }
  pthread_mutex_unlock(&r->mu);
}

/* The timeout of a running job: N% of the median, none until it is known. */
static double timeout_of_median(void) {
  run *r = &the_run;
  pthread_mutex_lock(&r->mu);
  double t = r->n_runtimes >= RUNTIME_MIN_JOBS ? r->median_runtime * r->opt.timeout / 100 : 0;
  pthread_mutex_unlock(&r->mu);
  return t;
}

/* Sleep `seconds`, in slices, unless the run stops; false if it did. */
static bool pause_unless_stopped(double seconds) {
  double end = fp_now() + seconds;
  for (double now = fp_now(); now < end; now = fp_now()) {
    if (fp_cancel_requested()) return false;
    double slice = end - now < 0.02 ? end - now : 0.02;
    struct timespec ts = {0, (long)(slice * 1e9)};
    nanosleep(&ts, NULL);
  }
  return !fp_cancel_requested();
}

/* --delay: jobs start at least that far apart; false if the run stopped
 * while this one waited. */
static bool wait_turn(run *r) {
  if (!(r->opt.delay > 0)) return true;
  pthread_mutex_lock(&r->mu);
  double now = fp_now(), at = r->next_start > now ? r->next_start : now;
  r->next_start = at + r->opt.delay;
  pthread_mutex_unlock(&r->mu);
  return pause_unless_stopped(at - now);
}

/* --keep-order: a job that finished too far ahead of the output waits,
 * holding its slot, until the output catches up (or the run stops). */
static void wait_for_turn(run *r, uint64_t seq) {
  pthread_mutex_lock(&r->mu);
  while (seq >= r->next_print + KEEP_WINDOW && !fp_cancel_requested()) {
    struct timespec at;
    clock_gettime(CLOCK_REALTIME, &at);
    at.tv_nsec += 20 * 1000000L; /* a look at a stop request, now and then */
    if (at.tv_nsec >= 1000000000L) {
      at.tv_sec++;
      at.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&r->order_cv, &r->mu, &at);
  }
  pthread_mutex_unlock(&r->mu);
}

/* --keep-order: write the kept outputs that are next, in input order. */
static void write_in_order(run *r, bool to_the_end) {
  for (;;) {
    pthread_mutex_lock(&r->mu);
    uint64_t next = r->next_print;
    pthread_mutex_unlock(&r->mu);
    size_t at = (size_t)(next % KEEP_WINDOW);
    fp_task *t = r->kept[at];
    if (!t && to_the_end) { /* a hole (never run): pass it, if anything follows */
      bool more = false;
      for (size_t k = 0; k < KEEP_WINDOW && !more; k++) more = r->kept[k] != NULL;
      if (!more) return;
    } else if (!t) {
      return;
    }
    if (t) {
      job_state *js = fp_task_arg(t);
      int wrc = job_write_output(&js->kept, js->kept_tag);
      if (wrc) record_output_error(r, wrc);
      r->kept[at] = NULL;
      fp_task_release(t);
    }
    pthread_mutex_lock(&r->mu);
    r->next_print++;
    pthread_cond_broadcast(&r->order_cv);
    pthread_mutex_unlock(&r->mu);
  }
}

/* --dry-run: the job's output is its command, as the shell would get it. */
static int show_command(char *const *argv, job_result *res) {
  memset(res, 0, sizeof *res);
  char *line = argv_line(argv);
  size_t len = line ? strlen(line) : 0;
  char *shown = line ? realloc(line, len + 2) : NULL;
  if (!shown) {
    free(line);
    return FP_ENOMEM;
  }
  memcpy(shown + len, "\n", 2);
  res->out = shown;
  res->out_len = len + 1;
  return 0;
}

/* The task: one job. A failed job fails its task with the job's status in
 * the message; the status itself stays in the job's state. */
static void *job_task(void *arg) {
  job_state *js = arg;
  run *r = &the_run;
  if (!my_slot) my_slot = (unsigned)atomic_fetch_add(&r->next_slot, 1) + 1;
  if (atomic_load(&r->stop_starting) || fp_cancel_requested()) {
    js->skipped = true;
    return NULL;
  }
  if (done_before(r, js->in.seq)) { /* --resume: it ran (and succeeded) before */
    js->resumed = true;
    return NULL;
  }
  char **argv = template_expand(r->tmpl, &js->in, my_slot);
  if (!argv) return fp_raise(FP_ENOMEM, "job %llu: out of memory", (unsigned long long)js->in.seq);
  char *tag = r->opt.dry_run ? NULL : job_tag(r, &js->in);
  job_options jo = {.timeout = r->opt.timeout_percent ? 0 : r->opt.timeout,
                    .kill_grace = KILL_GRACE_S,
                    .group = !r->opt.ungroup,
                    .line_buffer = r->opt.line_buffer && !r->opt.keep_order,
                    .tag = tag,
                    .timeout_now = r->opt.timeout_percent ? timeout_of_median : NULL};
  job_result res;
  int rc = r->opt.dry_run ? show_command(argv, &res) : 0;
  double retry_delay = r->opt.retry_delay;
  for (int tries = 1; !r->opt.dry_run; tries++) {
    if (!wait_turn(r)) { /* stopped while waiting for its turn */
      js->skipped = true;
      argv_free(argv);
      free(tag);
      return NULL;
    }
#ifdef FPRUN_MPI
    rc = r->mpi ? remote_job_run(r->mpi, argv, &jo, &res) : job_run(argv, &jo, &res);
#else
    rc = job_run(argv, &jo, &res);
#endif
    if (rc || !res.status || tries >= r->opt.retries || fp_cancel_requested()) break;
    job_result_clear(&res); /* the output of the last try is the one written */
    pthread_mutex_lock(&r->mu);
    r->retried++;
    pthread_mutex_unlock(&r->mu);
    if (!pause_unless_stopped(retry_delay)) break;
    retry_delay *= 2;
  }
  js->ran = true;
  js->status = res.status;
  if (res.write_error) record_output_error(r, res.write_error);
  if (!rc && !res.status) record_runtime(r, res.runtime);
  /* res goes on with -k: what the summary counts is taken now */
  bool timed_out = res.timed_out, stopped = res.stopped,
       killed = res.signal && !timed_out && !stopped;
  if (!r->opt.dry_run) log_job(r, js, argv, &res);
  if (r->opt.keep_order) {
    js->kept = res; /* written by the consumer, in order */
    js->kept_tag = tag;
    memset(&res, 0, sizeof res);
    wait_for_turn(r, js->in.index);
  } else {
    int wrc = job_write_output(&res, tag);
    if (wrc) record_output_error(r, wrc);
    free(tag);
  }
  job_result_clear(&res);
  void *result = NULL;
  if (rc) {
    result = fp_raise(rc, "job %llu could not run: %s", (unsigned long long)js->in.seq,
                      fp_strerror(rc));
  } else if (js->status) { /* the command line, for the message: only then */
    char *line = argv_line(argv);
    result = fp_raise(FP_ETASK, "job %llu %s %d: %s", (unsigned long long)js->in.seq,
                      timed_out ? "timed out, status" : "failed with status", js->status,
                      line ? line : "");
    free(line);
  }
  argv_free(argv);
  if (timed_out || killed || stopped) {
    pthread_mutex_lock(&r->mu);
    r->timed_out += timed_out;
    r->killed += killed;
    r->stopped += stopped;
    pthread_mutex_unlock(&r->mu);
  }
  return result;
}

/* ---- the halt policy ---- */

static bool halt_reached(const run *r) {
  const options *o = &r->opt;
  if (o->halt == HALT_NEVER) return false;
  uint64_t count = o->halt_on_success ? r->succeeded : r->failed;
  if (!count) return false;
  if (!o->halt_percent) return (double)count >= o->halt_count;
  uint64_t done = r->succeeded + r->failed; /* the total may be unknown: of those done */
  return 100.0 * (double)count / (double)done >= o->halt_count;
}

/* Count a consumed job; true when the policy says stop now. */
static bool account(run *r, const job_state *js, int *exit_status) {
  if (js->skipped || js->resumed) {
    if (js->skipped) r->skipped++;
    if (js->resumed) r->resumed++;
    return false;
  }
  if (js->status) {
    r->failed++;
    if (!r->opt.halt_on_success) *exit_status = js->status;
  } else {
    r->succeeded++;
  }
  if (!halt_reached(r)) return false;
  if (r->opt.halt == HALT_SOON) {
    atomic_store(&r->stop_starting, true); /* running jobs finish; no new one starts */
    return false;
  }
  return true;
}

static int open_joblog(run *r) {
  if (!r->opt.joblog) return 0;
  bool resuming = r->opt.resume || r->opt.resume_failed || r->opt.retry_failed;
  int rc = resuming ? read_joblog(r) : 0;
  if (rc) return rc;
  if (!(r->joblog = fopen(r->opt.joblog, resuming ? "a" : "w"))) {
    fprintf(stderr, "fprun: cannot write the joblog %s: %s\n", r->opt.joblog, strerror(errno));
    return FPRUN_EXIT_OWN_ERROR;
  }
  if (ftell(r->joblog) == 0)
    fputs("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n",
          r->joblog);
  return 0;
}

/* Run every job; the exit status. */
static int run_all(run *r) {
  r->started = fp_now();
  fp_thread_pool_options popt;
  fp_thread_pool_options_init(&popt);
  int slots = r->opt.slots;
#ifdef FPRUN_MPI
  if (r->mpi) slots *= remote_slots(); /* -j on each worker rank */
#endif
  popt.max_workers = slots;
  popt.thread_name_prefix = "fprun";
  fp_executor *pool;
  if (fp_thread_pool_new(&popt, &pool)) {
    fprintf(stderr, "fprun: %s\n", fp_last_error_message());
    return FPRUN_EXIT_OWN_ERROR;
  }
  fp_tm_options topt;
  fp_tm_options_init(&topt);
  topt.monitor_interval = r->opt.monitor;
  topt.handle_interrupt = true;
  topt.progress = r->opt.progress;
  topt.total = r->opt.total ? r->opt.total : input_total(r->in);
  topt.max_in_flight = (size_t)slots; /* read an input only when a slot is free */
  /* The first failure stops everything at once: the manager does it. Other
   * policies are counted here. */
  bool fail_fast = r->opt.halt == HALT_NOW && !r->opt.halt_on_success && !r->opt.halt_percent &&
                   r->opt.halt_count == 1;
  topt.error_policy = fail_fast ? FP_POLICY_RAISE : FP_POLICY_IGNORE;
  topt.trace_path = r->opt.trace;
  topt.describe = describe_job;
  fp_task_manager *tm;
  if (fp_tm_new(pool, &topt, &tm)) {
    fprintf(stderr, "fprun: %s\n", fp_last_error_message());
    fp_executor_free(pool);
    return FPRUN_EXIT_OWN_ERROR;
  }
  /* A Ctrl-C may come as early as this: the map then reports it. */
  int map_rc = fp_tm_map(tm, job_task, next_job, r, job_state_free);
  int exit_status = 0;
  bool interrupted = map_rc == FP_EINTR, own_error = map_rc && !interrupted;
  if (own_error) fprintf(stderr, "fprun: %s\n", fp_last_error_message());
  while (!map_rc) {
    fp_task *t = NULL;
    int rc = fp_tm_next(tm, -1, &t);
    if (rc == FP_EOF) break;
    if (rc == FP_EINTR) {
      interrupted = true;
      break;
    }
    const job_state *js = t ? fp_task_arg(t) : NULL;
    if (!js || (rc && !js->ran)) { /* not a job's own failure: fprun's */
      fprintf(stderr, "fprun: %s\n", fp_last_error_message());
      own_error = true;
      fp_task_release(t);
      break;
    }
    bool stop = account(r, js, &exit_status) || rc; /* rc: the fail-fast stop */
    if (r->opt.keep_order && js->ran) {
      r->kept[(size_t)(js->in.index % KEEP_WINDOW)] = t; /* released once written */
      write_in_order(r, false);
    } else {
      fp_task_release(t);
    }
    if (stop) break;
  }
  fp_tm_free(tm);        /* cancels what has not started, asks running jobs to stop */
  fp_executor_free(pool); /* waits for them: their process groups are gone after */
  if (r->opt.keep_order) write_in_order(r, true); /* what finished, in order */
  if (r->opt.halt == HALT_NEVER && r->failed)
    exit_status = r->failed < FPRUN_EXIT_FAILED_CAP ? (int)r->failed : FPRUN_EXIT_FAILED_CAP;
  if (r->opt.halt_on_success) exit_status = 0;
  /* The summary, when something went wrong or progress was asked for. */
  if (r->failed || interrupted || r->skipped || r->opt.progress || r->opt.monitor > 0)
    fprintf(stderr,
            "fprun: %llu succeeded, %llu failed (%llu timed out, %llu killed by a signal), "
            "%llu stopped, %llu retried, %.3f s%s\n",
            (unsigned long long)r->succeeded, (unsigned long long)r->failed,
            (unsigned long long)r->timed_out, (unsigned long long)r->killed,
            (unsigned long long)r->stopped, (unsigned long long)r->retried,
            fp_now() - r->started,
            interrupted ? ", interrupted" : "");
  if (r->output_error) {
    fprintf(stderr, "fprun: cannot write the output: %s\n", strerror(-r->output_error));
    return FPRUN_EXIT_OWN_ERROR;
  }
  if (own_error) return FPRUN_EXIT_OWN_ERROR;
  return interrupted ? FPRUN_EXIT_INTERRUPTED : exit_status;
}

/* SIGTERM, SIGHUP: handled as the library handles Ctrl-C (a second one
 * exits at once). kill() is async-signal-safe. */
static void as_ctrl_c(int sig) {
  (void)sig;
  kill(getpid(), SIGINT);
}

/* The library's log lines (a stop on Ctrl-C), as fprun's own. */
static void log_line(fp_log_level level, const char *message, void *userdata) {
  (void)level;
  (void)userdata;
  fprintf(stderr, "fprun: %s\n", message);
}

static bool is_source_marker(const char *a) {
  return !strcmp(a, ":::") || !strcmp(a, ":::+") || !strcmp(a, "::::");
}

int main(int argc, char **argv) {
  run *r = &the_run;
  int first = argc;
  int rc = options_parse(argc, argv, &r->opt, &first);
  if (rc) return rc < 0 ? 0 : rc;
#ifdef FPRUN_MPI
  if (r->opt.mpi) { /* every rank: the watchdog before MPI starts its threads */
    if (watchdog_start(KILL_GRACE_S) < 0 || (rc = remote_start(&argc, &argv, r->opt.slots, &r->mpi)) < 0) {
      fprintf(stderr, "fprun: --mpi: %s\n", fp_last_error_message());
      return FPRUN_EXIT_OWN_ERROR;
    }
    if (rc == 1) { /* a worker rank: it served the run */
      watchdog_stop();
      remote_end();
      return 0;
    }
  }
#endif
  int sources = first;
  while (sources < argc && !is_source_marker(argv[sources])) sources++;
  size_t nwords = (size_t)(sources - first);
  if (nwords && !argv[first][0]) return options_usage_error("%sthe command is empty", "");
  char err[256];
  /* --retry-failed runs the joblog's commands: the command line's are ignored */
  r->tmpl = template_parse(argv + first, r->opt.retry_failed ? 0 : nwords, r->opt.shell, err,
                           sizeof err);
  if (!r->tmpl) return options_usage_error("%s", err);
  if (r->opt.tagstring) {
    char *words[1] = {(char *)r->opt.tagstring};
    if (!(r->tag_tmpl = template_parse(words, 1, false, err, sizeof err))) {
      template_free(r->tmpl);
      return options_usage_error("--tagstring: %s", err);
    }
  }
  regex_t colsep;
  if (r->opt.colsep && regcomp(&colsep, r->opt.colsep, REG_EXTENDED)) {
    template_free(r->tmpl);
    return options_usage_error("--colsep: not a regular expression: %s", r->opt.colsep);
  }
  r->in = input_from_args(argv + sources, (size_t)(argc - sources), r->opt.arg_file, r->opt.sep,
                          r->opt.per_job, r->opt.colsep ? &colsep : NULL, err, sizeof err);
  if (!r->in) {
    fprintf(stderr, "fprun: %s\n", err);
    template_free(r->tmpl);
    if (r->opt.colsep) regfree(&colsep);
    return FPRUN_EXIT_OWN_ERROR;
  }
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->order_cv, NULL);
  r->next_print = 1;
  if (r->opt.keep_order && !(r->kept = calloc(KEEP_WINDOW, sizeof *r->kept))) {
    fprintf(stderr, "fprun: out of memory\n");
    return FPRUN_EXIT_OWN_ERROR;
  }
  /* Progress and monitor lines are the library's info lines. */
  fp_set_logger(log_line, NULL, r->opt.progress || r->opt.monitor ? FP_LOG_INFO : FP_LOG_WARNING);
  signal(SIGPIPE, SIG_IGN); /* a closed stdout is an error to report, not a death */
  struct sigaction sa; /* SIGTERM and SIGHUP stop the run as Ctrl-C does */
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = as_ctrl_c;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  rc = open_joblog(r);
  if (!rc && !r->opt.dry_run && (rc = watchdog_start(KILL_GRACE_S)) < 0) {
    fprintf(stderr, "fprun: cannot start the watchdog: %s\n", strerror(-rc));
    rc = FPRUN_EXIT_OWN_ERROR;
  }
  if (!rc) rc = run_all(r);
#ifdef FPRUN_MPI
  if (r->mpi) { /* the worker ranks stop serving */
    fp_executor_free(r->mpi);
    remote_end();
  }
#endif
  watchdog_stop();
  if (r->joblog) fclose(r->joblog);
  free(r->kept);
  free(r->done_before);
  input_free(r->in);
  template_free(r->tag_tmpl);
  if (r->opt.colsep) regfree(&colsep);
  template_free(r->tmpl);
  return rc;
}
