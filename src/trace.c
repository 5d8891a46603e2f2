/* trace.c - the Chrome trace: one complete event per task (the Trace
 * Event format, a JSON array), written as tasks end through a bounded
 * buffer; the file is a whole JSON array after every write. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The buffer is written out when it holds FLUSH_AT bytes, and at most
 * FLUSH_EVERY_S after an event went into it (on the timer). */
enum { BUF_MAX = 64 * 1024, EVENT_MAX = 1024, FLUSH_AT = BUF_MAX - EVENT_MAX };
#define FLUSH_EVERY_S 0.2

static const char TAIL[] = "\n]\n";

static struct {
  pthread_mutex_t mu;
  int fd;              /* -1: no trace open */
  pid_t pid;           /* the process that opened it: a forked child never writes */
  off_t end;           /* where the file's TAIL starts */
  uint64_t events;     /* events written or buffered */
  uint64_t origin_ns;  /* the trace's time 0 */
  uint64_t generation; /* one per trace: executors are named once in each */
  uint64_t timer;      /* a flush due on the timer, 0 if none */
  char path[256];
  size_t len;
  char buf[BUF_MAX];
} tr = {.mu = PTHREAD_MUTEX_INITIALIZER, .fd = -1};
static atomic_bool tracing;
/* The process that opened the trace: a forked child (a worker whose task
 * calls exit()) must not even take tr.mu, which another thread of the
 * parent may have held at the fork. */
static _Atomic pid_t owner;

bool fp__trace_on(void) { return atomic_load_explicit(&tracing, memory_order_relaxed); }

/* Write the buffer and the tail where the tail was (tr.mu held). On a
 * write error the trace stops (logged once). */
static void flush_locked(void) {
  if (tr.fd < 0 || getpid() != tr.pid) return;
  memcpy(tr.buf + tr.len, TAIL, sizeof TAIL - 1);
  size_t total = tr.len + sizeof TAIL - 1, done = 0;
  while (done < total) {
    ssize_t n = pwrite(tr.fd, tr.buf + done, total - done, tr.end + (off_t)done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      fp_log(FP_LOG_WARNING, "trace %s: write failed (%s): the trace stops here", tr.path,
             strerror(n < 0 ? errno : EIO));
      atomic_store(&tracing, false);
      close(tr.fd);
      tr.fd = -1;
      return;
    }
    done += (size_t)n;
  }
  tr.end += (off_t)tr.len;
  tr.len = 0;
}

static void flush_due(void *ctx) {
  (void)ctx;
  pthread_mutex_lock(&tr.mu);
  tr.timer = 0;
  flush_locked();
  pthread_mutex_unlock(&tr.mu);
}

static void stop_at_exit(void) { fp_trace_stop(); }

int fp_trace_start(const char *path) {
  if (!path || !*path)
    return fp__einval("fp_trace_start: %s", path ? "the path is empty" : "path is NULL");
  pthread_mutex_lock(&tr.mu);
  int rc = 0;
  if (tr.fd >= 0 && getpid() == tr.pid) {
    rc = fp__fail(FP_EBUSY, "fp_trace_start: a trace is being written already (to %s)", tr.path);
  } else {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || pwrite(fd, "[", 1, 0) != 1) {
      rc = fp__fail(-errno, "fp_trace_start: cannot write %s: %s", path, strerror(errno));
      if (fd >= 0) close(fd);
    } else {
      static bool registered;
      if (!registered) registered = atexit(stop_at_exit) == 0;
      tr.fd = fd;
      tr.pid = getpid();
      atomic_store(&owner, tr.pid);
      tr.end = 1;
      tr.events = 0;
      tr.len = 0;
      tr.origin_ns = fp__now_ns();
      tr.generation++;
      snprintf(tr.path, sizeof tr.path, "%s", path);
      flush_locked(); /* "[" and the tail: an empty array */
      atomic_store(&tracing, tr.fd >= 0);
    }
  }
  pthread_mutex_unlock(&tr.mu);
  return rc;
}

int fp_trace_stop(void) {
  if (atomic_load(&owner) != getpid()) return fp__fail(FP_EOF, "fp_trace_stop: no trace is open");
  pthread_mutex_lock(&tr.mu);
  bool open_here = tr.fd >= 0 && getpid() == tr.pid;
  uint64_t timer = tr.timer;
  tr.timer = 0;
  pthread_mutex_unlock(&tr.mu);
  if (timer) fp__timer_cancel(timer); /* (it takes tr.mu: not under it) */
  pthread_mutex_lock(&tr.mu);
  if (open_here && tr.fd >= 0) {
    atomic_store(&tracing, false);
    flush_locked();
    if (tr.fd >= 0) close(tr.fd);
    tr.fd = -1;
  }
  pthread_mutex_unlock(&tr.mu);
  return open_here ? 0 : fp__fail(FP_EOF, "fp_trace_stop: no trace is open");
}

/* s as a JSON string's content, into out (room bytes, terminated):
 * quotes, backslashes and control bytes escaped, other bytes above ASCII
 * as '?' (the file stays valid UTF-8 whatever a name holds). */
static size_t json_escape(char *out, size_t room, const char *s) {
  size_t n = 0;
  for (; *s && n + 7 < room; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      out[n++] = '\\';
      out[n++] = (char)c;
    } else if (c < 0x20) {
      n += (size_t)snprintf(out + n, room - n, "\\u%04x", c);
    } else {
      out[n++] = c < 0x80 ? (char)c : '?';
    }
  }
  out[n] = 0;
  return n;
}

static pid_t thread_id(void) {
  static _Thread_local pid_t tid;
  if (!tid) tid = (pid_t)syscall(SYS_gettid);
  return tid;
}

/* The run context a process pool's dispatcher sets (stats.c reads it). */
static _Thread_local struct {
  int row;
  uint64_t started_ns;
} run_context;

void fp__run_context_set(int row, uint64_t started_ns) {
  run_context.row = row;
  run_context.started_ns = row ? started_ns : 0;
}

int fp__run_context(uint64_t *started_ns) {
  *started_ns = run_context.started_ns;
  return run_context.row ? run_context.row : (int)thread_id();
}

void fp__trace_task(fp_executor *ex, uint64_t id, const char *name, uint64_t started_ns,
                    uint64_t finished_ns, int code, const char *error) {
  char escaped[200], message[240] = "", event[EVENT_MAX];
  uint64_t dummy;
  int row = fp__run_context(&dummy);
  json_escape(escaped, sizeof escaped, name);
  if (code && error) {
    char text[200];
    json_escape(text, sizeof text, error);
    snprintf(message, sizeof message, ",\"error\":\"%s\"", text);
  }
  pthread_mutex_lock(&tr.mu);
  if (tr.fd < 0) {
    pthread_mutex_unlock(&tr.mu);
    return;
  }
  uint64_t origin = tr.origin_ns;
  double ts = started_ns > origin ? (double)(started_ns - origin) / 1e3 : 0;
  double dur = finished_ns > started_ns ? (double)(finished_ns - started_ns) / 1e3 : 0;
  int n = 0;
  if (ex && atomic_exchange(&ex->trace_named, tr.generation) != tr.generation)
    n = snprintf(event, sizeof event,
                 "%s\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%llu,\"tid\":0,"
                 "\"args\":{\"name\":\"%s %llu\"}}",
                 tr.events++ ? "," : "", (unsigned long long)ex->serial,
                 ex->vt->kind ? ex->vt->kind : "executor", (unsigned long long)ex->serial);
  n += snprintf(event + n, sizeof event - (size_t)n,
                "%s\n{\"name\":\"%s\",\"cat\":\"task\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,"
                "\"pid\":%llu,\"tid\":%d,\"args\":{\"id\":%llu,\"outcome\":\"%s\"%s}}",
                tr.events++ ? "," : "", escaped, ts, dur,
                (unsigned long long)(ex ? ex->serial : 0), row,
                (unsigned long long)id, code ? fp_err_name(code) : "ok", message);
  if (n >= (int)sizeof event) n = (int)sizeof event - 1; /* cannot happen: bounded fields */
  if (tr.len + (size_t)n + sizeof TAIL > BUF_MAX) flush_locked();
  if (tr.fd >= 0) {
    memcpy(tr.buf + tr.len, event, (size_t)n);
    tr.len += (size_t)n;
    if (tr.len >= FLUSH_AT) flush_locked();
    else if (!tr.timer) tr.timer = fp__timer_at(fp__now() + FLUSH_EVERY_S, flush_due, NULL);
  }
  pthread_mutex_unlock(&tr.mu);
}

uint64_t fp__executor_serial(void) {
  static atomic_uint_fast64_t serials;
  uint64_t serial = atomic_fetch_add(&serials, 1) + 1;
  if (serial == 1) {
    const char *path = getenv("FP_TRACE");
    if (path && *path && fp_trace_start(path))
      fp_log(FP_LOG_WARNING, "FP_TRACE=%s: %s", path, fp_last_error_message());
  }
  return serial;
}
