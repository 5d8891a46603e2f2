/* remote.c - fprun over MPI (--mpi, where futureproof-mpi was built): rank
 * 0 runs fprun as always, but each job's command goes to a worker rank,
 * which spawns it on its own machine (job.c, as locally) and sends back its
 * status, timing, host and output; a stop (fail fast, Ctrl-C, a timeout)
 * reaches the remote job through the MPI executor's cancel. */
#define _GNU_SOURCE
#include "fprun.h"

#ifdef FPRUN_MPI
#include <futureproof_mpi.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The request: timeout, grace and how output goes, then the argv's
 * strings and the tag (empty: none), NUL-ended. */
typedef struct request {
  double timeout, kill_grace;
  uint32_t argc;
  uint8_t group, line_buffer, pad[2];
} request;

/* --line-buffer: whole lines go to rank 0 as they come (fp_mpi_stream),
 * after this header and the tag. */
typedef struct stream_header {
  int32_t fd;
  uint32_t tag_len;
} stream_header;

/* On a worker rank: whole lines of the job, to rank 0 now. */
static int stream_lines(int fd, const char *data, size_t len, const char *tag) {
  stream_header h = {fd, tag ? (uint32_t)strlen(tag) : 0};
  size_t size = sizeof h + h.tag_len + len;
  char *msg = malloc(size);
  if (!msg) return FP_ENOMEM;
  memcpy(msg, &h, sizeof h);
  if (h.tag_len) memcpy(msg + sizeof h, tag, h.tag_len);
  memcpy(msg + sizeof h + h.tag_len, data, len);
  int rc = fp_mpi_stream(msg, size);
  free(msg);
  return rc;
}

/* On rank 0: a job's lines from its worker rank, written as a local
 * job's are. */
static void lines_arrived(fp_future *f, const void *data, size_t len, void *userdata) {
  (void)f, (void)userdata;
  stream_header h;
  if (len < sizeof h) return;
  memcpy(&h, data, sizeof h);
  if (len - sizeof h < h.tag_len) return;
  const char *p = (const char *)data + sizeof h;
  char *tag = h.tag_len ? strndup(p, h.tag_len) : NULL;
  job_write_lines(h.fd == 2 ? 2 : 1, p + h.tag_len, len - sizeof h - h.tag_len, tag);
  free(tag);
}

/* The reply, then the output and the error output. */
typedef struct reply {
  int32_t status, signal;
  uint8_t timed_out, stopped, not_found, pad;
  double started, runtime;
  uint64_t out_len, err_len, received;
  char host[64];
} reply;

/* Runs on a worker rank, in a thread of its own: one job. */
static void *fprun_remote_job(void *arg) {
  const fp_bytes *in = arg;
  request q;
  if (in->size < sizeof q) return fp_raise(FP_EINVAL, "fprun --mpi: a short request");
  memcpy(&q, in->data, sizeof q);
  char **argv = calloc((size_t)q.argc + 1, sizeof *argv);
  if (!argv) return fp_raise(FP_ENOMEM, "fprun --mpi: out of memory");
  const char *p = (const char *)in->data + sizeof q, *end = (const char *)in->data + in->size;
  const char *tag = NULL;
  for (uint32_t i = 0; i <= q.argc; i++) { /* the argv, then the tag */
    const char *nul = memchr(p, 0, (size_t)(end - p));
    if (!nul) {
      free(argv);
      return fp_raise(FP_EINVAL, "fprun --mpi: a malformed request");
    }
    if (i < q.argc) argv[i] = (char *)p;
    else tag = *p ? p : NULL;
    p = nul + 1;
  }
  /* -u: the job writes to this rank's own stdout, which mpirun forwards */
  job_options jo = {.timeout = q.timeout,
                    .kill_grace = q.kill_grace,
                    .group = q.group,
                    .line_buffer = q.group && q.line_buffer,
                    .tag = tag,
                    .write_lines = stream_lines};
  job_result res;
  int rc = job_run(argv, &jo, &res);
  free(argv);
  if (rc) {
    job_result_clear(&res);
    return fp_raise(rc, "fprun --mpi: the job could not run: %s", fp_strerror(rc));
  }
  fp_bytes *out = fp_bytes_new(sizeof(reply) + res.out_len + res.err_len);
  if (!out) {
    job_result_clear(&res);
    return fp_raise(FP_ENOMEM, "fprun --mpi: out of memory for %zu bytes of output", res.out_len);
  }
  reply y = {.status = res.status, .signal = res.signal, .timed_out = res.timed_out,
             .stopped = res.stopped, .not_found = res.not_found, .started = res.started,
             .runtime = res.runtime, .out_len = res.out_len, .err_len = res.err_len,
             .received = res.received};
  gethostname(y.host, sizeof y.host - 1);
  memcpy(out->data, &y, sizeof y);
  if (res.out_len) memcpy(out->data + sizeof y, res.out, res.out_len);
  if (res.err_len) memcpy(out->data + sizeof y + res.out_len, res.err, res.err_len);
  job_result_clear(&res);
  return out;
}
FP_TASK_REGISTER(fprun_remote_job)

int remote_start(int *argc, char ***argv, int slots, fp_executor **ex) {
  *ex = NULL;
  if (fp_mpi_init(argc, argv)) return -1;
  fp_mpi_options o;
  fp_mpi_options_init(&o);
  o.isolate = false;             /* jobs are processes already; a stop reaches them */
  o.local_workers = slots;       /* -j is per rank, as GNU parallel's is per host */
  o.tasks_per_worker = slots;    /* a job leaves rank 0 only when a slot can take it */
  o.on_stream = lines_arrived;   /* --line-buffer */
  int rc = fp_mpi_comm_executor_new(MPI_COMM_WORLD, 0, &o, ex);
  if (rc) return -1;
  return *ex ? 0 : 1; /* 1: a worker rank, done serving */
}

int remote_slots(void) {
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size - 1;
}

void remote_end(void) { MPI_Finalize(); }

int remote_job_run(fp_executor *ex, char *const *argv, const job_options *opt, job_result *res) {
  memset(res, 0, sizeof *res);
  const char *tag = opt->tag ? opt->tag : "";
  size_t size = sizeof(request) + strlen(tag) + 1, argc = 0;
  for (; argv[argc]; argc++) size += strlen(argv[argc]) + 1;
  char *buf = malloc(size);
  if (!buf) return FP_ENOMEM;
  request q = {.timeout = opt->timeout_now ? opt->timeout_now() : opt->timeout,
               .kill_grace = opt->kill_grace,
               .argc = (uint32_t)argc,
               .group = opt->group,
               .line_buffer = opt->line_buffer};
  memcpy(buf, &q, sizeof q);
  size_t at = sizeof q;
  for (size_t i = 0; i <= argc; i++) {
    const char *str = i < argc ? argv[i] : tag;
    size_t n = strlen(str) + 1;
    memcpy(buf + at, str, n);
    at += n;
  }
  fp_future *f;
  int rc = fp_submit_bytes(ex, fprun_remote_job, buf, size, &f);
  free(buf);
  if (rc) return rc;
  fp_bytes *out = NULL;
  bool cancelled = false;
  for (;;) { /* in slices: a stop of the run reaches the remote job */
    rc = fp_future_result(f, 0.02, (void **)&out);
    if (rc != FP_ETIMEDOUT) break;
    if (!cancelled && fp_cancel_requested()) {
      fp_future_cancel(f); /* the worker rank terminates the job's group */
      cancelled = true;
    }
  }
  reply y;
  if (rc || !out || out->size < sizeof y) {
    if (rc == FP_ECANCELED) { /* stopped before its rank replied */
      res->status = 128 + 15;
      res->signal = 15;
      res->stopped = true;
      rc = 0;
    }
    fp_future_release(f);
    return rc ? rc : 0;
  }
  memcpy(&y, out->data, sizeof y);
  res->status = y.status;
  res->signal = y.signal;
  res->timed_out = y.timed_out;
  res->stopped = y.stopped;
  res->not_found = y.not_found;
  res->started = y.started;
  res->runtime = y.runtime;
  res->received = (size_t)y.received;
  memcpy(res->host, y.host, sizeof res->host);
  res->host[sizeof res->host - 1] = 0;
  if (sizeof y + y.out_len + y.err_len <= out->size) {
    res->out = malloc(y.out_len + 1);
    res->err = malloc(y.err_len + 1);
    if (res->out && res->err) {
      memcpy(res->out, out->data + sizeof y, y.out_len);
      memcpy(res->err, out->data + sizeof y + y.out_len, y.err_len);
      res->out_len = y.out_len;
      res->err_len = y.err_len;
    }
  }
  fp_future_release(f);
  return 0;
}
#endif
