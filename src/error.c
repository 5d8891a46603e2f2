/* error.c - error codes and messages, and the thread's last error. */
#define _GNU_SOURCE /* strerrorname_np, strerrordesc_np (glibc 2.32) */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *fp_version_string(void) { return FP_VERSION_STRING; }

/* Tasks fail with -errno as often as with our codes: name the common ones
 * too (libuv does the same). */
#define FP__ERRNO_EXTRA(XX)                               \
  XX(EPERM, "operation not permitted")                     \
  XX(ENOENT, "no such file or directory")                  \
  XX(ESRCH, "no such process")                             \
  XX(EIO, "i/o error")                                     \
  XX(ENXIO, "no such device or address")                   \
  XX(E2BIG, "argument list too long")                      \
  XX(EBADF, "bad file descriptor")                         \
  XX(ECHILD, "no child processes")                         \
  XX(EACCES, "permission denied")                          \
  XX(EFAULT, "bad address")                                \
  XX(EEXIST, "file exists")                                \
  XX(ENOTDIR, "not a directory")                           \
  XX(EISDIR, "is a directory")                             \
  XX(ENFILE, "too many open files in system")              \
  XX(EMFILE, "too many open files")                        \
  XX(EFBIG, "file too large")                              \
  XX(ENOSPC, "no space left on device")                    \
  XX(EROFS, "read-only file system")                       \
  XX(EPIPE, "broken pipe")                                 \
  XX(EDOM, "argument out of domain")                       \
  XX(ERANGE, "result out of range")                        \
  XX(ENOSYS, "function not implemented")                   \
  XX(ENOTSUP, "operation not supported")                   \
  XX(EPROTO, "protocol error")                             \
  XX(EADDRINUSE, "address already in use")                 \
  XX(ECONNABORTED, "connection aborted")                   \
  XX(ECONNRESET, "connection reset by peer")               \
  XX(ECONNREFUSED, "connection refused")                   \
  XX(ENETUNREACH, "network is unreachable")                \
  XX(EHOSTUNREACH, "host is unreachable")

/* Any other -errno: its name ("EBADMSG") or description, where the C
 * library can tell without a buffer; else "FP_UNKNOWN" / "unknown error". */
static const char *errno_text(int code, bool name) {
  const char *text = NULL;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  if (code < 0 && code > -4096) text = name ? strerrorname_np(-code) : strerrordesc_np(-code);
#endif
  return text ? text : name ? "FP_UNKNOWN" : "unknown error";
}

const char *fp_strerror(int code) {
  switch (code) {
#define FP__ERR_TEXT(name, value, text) \
  case FP_##name:                       \
    return text;
    FP_ERRNO_MAP(FP__ERR_TEXT)
#undef FP__ERR_TEXT
#define FP__ERRNO_TEXT(name, text) \
  case -name:                      \
    return text;
    FP__ERRNO_EXTRA(FP__ERRNO_TEXT)
#undef FP__ERRNO_TEXT
  case 0:
    return "success";
  default:
    return errno_text(code, false);
  }
}

const char *fp_err_name(int code) {
  switch (code) {
#define FP__ERR_NAME(name, value, text) \
  case FP_##name:                       \
    return "FP_" #name;
    FP_ERRNO_MAP(FP__ERR_NAME)
#undef FP__ERR_NAME
#define FP__ERRNO_NAME(name, text) \
  case -name:                      \
    return #name;
    FP__ERRNO_EXTRA(FP__ERRNO_NAME)
#undef FP__ERRNO_NAME
  case 0:
    return "FP_OK";
  default:
    return errno_text(code, true);
  }
}

/* ---- the thread's last error ---- */

enum { LAST_ERROR_MESSAGE_SIZE = 512 };
static _Thread_local char last_message[LAST_ERROR_MESSAGE_SIZE];
static _Thread_local fp_error last_error = {0, ""};

static void set_last_error(int code, const char *fmt, va_list ap) {
  vsnprintf(last_message, sizeof last_message, fmt, ap);
  last_error.code = code;
  last_error.message = last_message;
}

int fp__fail(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  set_last_error(code, fmt, ap);
  va_end(ap);
  return code;
}

int fp__vfail(int code, const char *fmt, va_list ap) {
  set_last_error(code, fmt, ap);
  return code;
}

const fp_error *fp_last_error(void) {
  last_error.message = last_message;
  return &last_error;
}

const char *fp_last_error_message(void) { return last_message; }
