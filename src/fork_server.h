/* fork_server.h - private: the fork server (fork_server.c) and what the
 * process pool's parent side (process_pool.c) shares with it and its
 * workers: the wire formats, and how to start it. */
#ifndef FP_FORK_SERVER_H
#define FP_FORK_SERVER_H

#include "internal.h"

#include <sys/types.h>

/* Parent <-> fork server: SOCK_SEQPACKET messages. */
enum { CTL_SPAWN = 'S', CTL_WORKER = 'W', CTL_EXITED = 'X', CTL_SPAWN_FAILED = 'E' };
typedef struct ctl_msg {
  int32_t type;
  int32_t worker_id;
  int32_t pid;
  int32_t status; /* wait status (CTL_EXITED) or errno (CTL_SPAWN_FAILED) */
} ctl_msg;

/* What the fork server needs to start workers. */
typedef struct fork_server_config {
  int (*initializer)(void *arg);
  void *initializer_arg;
  long max_tasks_per_child; /* 0: no limit */
  size_t memory_limit;      /* bytes of address space, 0: none */
  int fault;                /* test builds only (FP_TESTING): see fork_server.c */
  bool reply_each;          /* send each reply at once (the parent times items) */
} fork_server_config;

/* Parent <-> worker: a stream. A request is a job header and its items; a
 * reply is one record per item. All integers in host order (same program).
 * Every header starts with WIRE_MAGIC and names its job (seq) and item, so
 * that bytes a task writes to the socket by accident are never taken for a
 * reply: the parent kills a worker whose stream does not check out. */
#define WIRE_MAGIC 0x66707231u /* "fpr1" */
enum { JOB_VALUE = 1, JOB_BYTES = 2 };
enum { REPLY_MESSAGE_MAX = 4096 }; /* a worker cuts longer error messages */
typedef struct job_header {
  uint32_t magic;
  uint32_t seq; /* the job's number, per worker */
  uint32_t kind;
  uint32_t count;
} job_header;
typedef struct item_header {
  uint64_t fn;
  uint64_t arg; /* the value (JOB_VALUE) or the byte count (JOB_BYTES) */
} item_header;
typedef struct reply_header {
  uint32_t magic;
  uint32_t seq;     /* the job's */
  uint32_t item;    /* the item's index in its job */
  int32_t code;     /* 0: success */
  uint32_t msg_len; /* error message bytes that follow (code != 0) */
  uint32_t reserved;
  uint64_t value;   /* the value, or the result's byte count (JOB_BYTES) */
} reply_header;
/* The worker's first words after it starts: its initializer's outcome. */
typedef struct hello {
  uint32_t magic;
  int32_t code;
  int32_t pid;
  int32_t reserved;
} hello;

/* A worker that cannot allocate what it needs to read a job exits with
 * this status, which the parent names. */
enum { WORKER_EXIT_NOMEM = 121 };

/* Whole reads and writes on a blocking descriptor: 0, FP_EOF (read: the
 * peer closed), or -errno (a dead peer). */
int fp__read_full(int fd, void *buf, size_t len);
int fp__write_full(int fd, const void *buf, size_t len);

/* waitpid, retried when a signal interrupts it. */
pid_t fp__waitpid(pid_t pid, int *status, int options);

/* Start the fork server (fork_server.c). Returns its pid and the parent's
 * end of the control socket, or a negative code. */
int fp__fork_server_start(const fork_server_config *cfg, pid_t *pid, int *ctl_fd);

#endif
