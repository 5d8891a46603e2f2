/* log.c - the logging hook, the default stderr logger, and the log line
 * that goes with a refused argument (fp__einval). */
#define _GNU_SOURCE
#include "internal.h"

#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The hook is process-wide (one stderr, one application log); it is
 * read and swapped under a lock so that fp_set_logger is safe at any time. */
static pthread_mutex_t logger_mu = PTHREAD_MUTEX_INITIALIZER;
static fp_log_fn logger_fn = NULL; /* NULL: default_logger */
static void *logger_userdata = NULL;
static atomic_int logger_min_level = FP_LOG_WARNING;

const char *fp_log_level_name(fp_log_level level) {
  switch (level) {
  case FP_LOG_DEBUG: return "debug";
  case FP_LOG_INFO: return "info";
  case FP_LOG_WARNING: return "warning";
  case FP_LOG_ERROR: return "error";
  }
  return "unknown";
}

static unsigned long thread_id(void) {
#ifdef SYS_gettid
  return (unsigned long)syscall(SYS_gettid);
#else
  return (unsigned long)pthread_self();
#endif
}

static void default_logger(fp_log_level level, const char *message, void *userdata) {
  (void)userdata;
  time_t now = time(NULL);
  struct tm tm;
  localtime_r(&now, &tm);
  /* One fprintf: stdio locks the stream, so lines from threads never mix. */
  fprintf(stderr, "[%02d:%02d:%02d %lu] %s: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
          thread_id(), fp_log_level_name(level), message);
}

int fp_set_logger(fp_log_fn fn, void *userdata, fp_log_level min_level) {
  if ((int)min_level < FP_LOG_DEBUG || min_level > FP_LOG_ERROR)
    return fp__einval("fp_set_logger: unknown log level %d", (int)min_level);
  pthread_mutex_lock(&logger_mu);
  logger_fn = fn;
  logger_userdata = fn ? userdata : NULL;
  atomic_store(&logger_min_level, (int)min_level);
  pthread_mutex_unlock(&logger_mu);
  return 0;
}

static void vlog(fp_log_level level, const char *fmt, va_list ap) {
  if ((int)level < FP_LOG_DEBUG || level > FP_LOG_ERROR) level = FP_LOG_ERROR; /* unknown: loud */
  if ((int)level < atomic_load(&logger_min_level)) return;
  char line[1024];
  if (fmt)
    vsnprintf(line, sizeof line, fmt, ap);
  else /* a NULL format is a caller's slip, not a reason to crash */
    snprintf(line, sizeof line, "(fp_log called with a NULL format)");
  pthread_mutex_lock(&logger_mu);
  fp_log_fn fn = logger_fn ? logger_fn : default_logger;
  void *ud = logger_userdata;
  pthread_mutex_unlock(&logger_mu);
  fn(level, line, ud);
}

int fp__einval(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fp__vfail(FP_EINVAL, fmt, ap);
  va_end(ap);
  fp_log(FP_LOG_WARNING, "invalid argument: %s", fp_last_error_message());
  return FP_EINVAL;
}

void fp_log(fp_log_level level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(level, fmt, ap);
  va_end(ap);
}
