/* wire.h - private to futureproof-mpi: the messages between the root and
 * its worker ranks, and running one unit of work.
 *
 * A unit (one task, or fp_map's chunk) goes from the root as
 *   header {magic, count, key}, then count x (task, its bytes padded to 8)
 * and comes back as
 *   header {magic, count, key}, then count x (outcome, its bytes padded),
 * where an outcome's bytes are the result (fp_submit_bytes) or the error
 * message. Host byte order: the ranks share one architecture. */
#ifndef FP_MPI_WIRE_H
#define FP_MPI_WIRE_H

#include <futureproof.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_MAGIC 0x31706d66u /* "fmp1" */

enum { TAG_UNIT = 7701, TAG_RESULT, TAG_CANCEL, TAG_SHUTDOWN, TAG_STREAM };
enum { KIND_VALUE = 1, KIND_BYTES = 2 };

typedef struct wire_header {
  uint32_t magic, count;
  uint64_t key; /* the root's handle on the unit */
} wire_header;

typedef struct wire_task {
  uint64_t fn_id;  /* fp_task_id */
  uint32_t kind;
  uint32_t pad;
  uint64_t value;  /* KIND_VALUE: the argument; KIND_BYTES: the length that follows */
} wire_task;

typedef struct wire_outcome {
  int32_t code;    /* 0, or the task's error */
  uint32_t kind;
  uint64_t value;  /* a value result, or the length of what follows */
} wire_outcome;

/* A task's stream (fp_mpi_stream): this, then the bytes. */
typedef struct wire_stream {
  uint64_t key;    /* the unit's */
  uint32_t index;  /* the task's in its unit */
  uint32_t pad;
} wire_stream;

/* The task of a unit that wire_run_unit is running in this thread
 * (running false outside one): what fp_mpi_stream sends with. */
typedef struct wire_running {
  bool running;
  uint64_t key;
  uint32_t index;
} wire_running;
extern _Thread_local wire_running wire_current;

static inline size_t wire_padded(size_t n) { return (n + 7) & ~(size_t)7; }

/* Run a unit message (the worker's local process pool calls it, in a
 * worker process): a `const fp_bytes *` in, the outcomes message out
 * (key 0). Fails with fp_raise only for a malformed unit. */
void *wire_run_unit(void *unit);

/* An outcomes message in which each of count tasks failed with code and
 * message (the unit as a whole crashed, timed out, was cancelled). NULL on
 * ENOMEM; *size its length. */
void *wire_failed_outcomes(uint32_t count, uint64_t key, int code, const char *message,
                           size_t *size);

#endif
