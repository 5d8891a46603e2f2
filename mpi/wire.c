/* wire.c - running a unit of work on a worker rank: decode the tasks, look
 * each function up by its registered id, call it (fp_raise works inside),
 * and encode the outcomes; and the outcomes of a unit that failed whole. */
#define _POSIX_C_SOURCE 200809L
#include "wire.h"

#include <futureproof/executor.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Thread_local wire_running wire_current;

/* A growing output message. */
typedef struct out {
  unsigned char *data;
  size_t len, room;
  bool failed;
} out;

static void put(out *o, const void *p, size_t n) {
  size_t need = o->len + wire_padded(n);
  if (o->failed) return;
  if (need > o->room) {
    size_t room = o->room ? o->room : 256;
    while (room < need) room *= 2;
    unsigned char *grown = realloc(o->data, room);
    if (!grown) {
      o->failed = true;
      return;
    }
    o->data = grown;
    o->room = room;
  }
  if (n) memcpy(o->data + o->len, p, n);
  memset(o->data + o->len + n, 0, wire_padded(n) - n);
  o->len = need;
}

static void put_outcome(out *o, int code, uint32_t kind, uint64_t value, const void *data,
                        size_t len) {
  wire_outcome oc = {code, kind, data ? len : value};
  put(o, &oc, sizeof oc);
  if (data) put(o, data, len);
}

void *wire_run_unit(void *arg) {
  const fp_bytes *unit = arg;
  const unsigned char *p = unit->data, *end = unit->data + unit->size;
  wire_header h;
  if (unit->size < sizeof h) return fp_raise(FP_EINVAL, "futureproof-mpi: a unit too short");
  memcpy(&h, p, sizeof h);
  if (h.magic != WIRE_MAGIC) return fp_raise(FP_EINVAL, "futureproof-mpi: not a unit");
  p += sizeof h;
  out o = {0};
  wire_header reply = {WIRE_MAGIC, h.count, 0};
  put(&o, &reply, sizeof reply);
  uint64_t fn_id = 0;
  fp_fn fn = NULL;
  wire_current = (wire_running){true, h.key, 0};
  for (uint32_t i = 0; i < h.count; i++) {
    wire_current.index = i;
    wire_task t;
    if ((size_t)(end - p) < sizeof t) break;
    memcpy(&t, p, sizeof t);
    p += sizeof t;
    size_t len = t.kind == KIND_BYTES ? (size_t)t.value : 0;
    if ((size_t)(end - p) < wire_padded(len)) break;
    const unsigned char *data = p;
    p += wire_padded(len);
    if (t.fn_id != fn_id) { /* a chunk's items share their function: look it up once */
      fn_id = t.fn_id;
      fn = fp_task_by_id(fn_id);
    }
    char message[512];
    if (!fn) {
      snprintf(message, sizeof message,
               "task id %016llx is not registered in this program (fp_task_register)",
               (unsigned long long)t.fn_id);
      put_outcome(&o, FP_EINVAL, t.kind, 0, message, strlen(message));
      continue;
    }
    int code = 0;
    if (t.kind == KIND_BYTES) {
      fp_bytes *in = fp_bytes_copy(data, len);
      fp_bytes *result = in ? fp_call_task(fn, in, &code, message, sizeof message) : NULL;
      if (!in) code = FP_ENOMEM, snprintf(message, sizeof message, "no memory for %zu bytes", len);
      fp_bytes_free(in);
      if (code)
        put_outcome(&o, code, KIND_BYTES, 0, message, strlen(message));
      else
        put_outcome(&o, 0, KIND_BYTES, 0, result ? result->data : (const void *)"",
                    result ? result->size : 0);
      fp_bytes_free(result);
    } else {
      void *result = fp_call_task(fn, (void *)(uintptr_t)t.value, &code, message, sizeof message);
      if (code)
        put_outcome(&o, code, KIND_VALUE, 0, message, strlen(message));
      else
        put_outcome(&o, 0, KIND_VALUE, (uint64_t)(uintptr_t)result, NULL, 0);
    }
  }
  wire_current.running = false;
  if (o.failed) {
    free(o.data);
    return fp_raise(FP_ENOMEM, "futureproof-mpi: no memory for the results");
  }
  fp_bytes *b = fp_bytes_copy(o.data, o.len);
  free(o.data);
  return b ? b : fp_raise(FP_ENOMEM, "futureproof-mpi: no memory for the results");
}

void *wire_failed_outcomes(uint32_t count, uint64_t key, int code, const char *message,
                           size_t *size) {
  out o = {0};
  wire_header h = {WIRE_MAGIC, count, key};
  put(&o, &h, sizeof h);
  for (uint32_t i = 0; i < count; i++) put_outcome(&o, code, KIND_VALUE, 0, message, strlen(message));
  if (o.failed) {
    free(o.data);
    return NULL;
  }
  *size = o.len;
  return o.data;
}
