/* alloc.c - the allocator hook every allocation of the library goes
 * through (fp_set_allocator), and the allocations built on it. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct allocator {
  fp_malloc_fn malloc_fn;
  fp_calloc_fn calloc_fn;
  fp_realloc_fn realloc_fn;
  fp_free_fn free_fn;
} allocator;

/* Process-wide, like the C allocator it replaces; set before use (the
 * header says so), read without locks. */
static allocator alloc = {malloc, calloc, realloc, free};

/* What keeps memory of the allocator in force (the futures' slabs) and
 * must give it back before the allocator changes; registered by it, so
 * that this file names no one above it. */
static _Atomic(fp__alloc_hook) before_change;

void fp__alloc_before_change(fp__alloc_hook hook) { atomic_store(&before_change, hook); }

static void change(allocator next) {
  fp__alloc_hook hook = atomic_load(&before_change);
  if (hook) hook(); /* cached memory goes back where it came from */
  alloc = next;
}

int fp_set_allocator(fp_malloc_fn malloc_fn, fp_calloc_fn calloc_fn, fp_realloc_fn realloc_fn,
                     fp_free_fn free_fn) {
  if (!malloc_fn || !calloc_fn || !realloc_fn || !free_fn)
    return fp__einval("fp_set_allocator: all four functions are required");
  change((allocator){malloc_fn, calloc_fn, realloc_fn, free_fn});
  return 0;
}

void fp_reset_allocator(void) { change((allocator){malloc, calloc, realloc, free}); }

void *fp__malloc(size_t size) { return alloc.malloc_fn(size); }
void *fp__calloc(size_t count, size_t size) { return alloc.calloc_fn(count, size); }
void *fp__realloc(void *ptr, size_t size) { return alloc.realloc_fn(ptr, size); }
void *fp__malloc_array(size_t count, size_t size) {
  if (size && count > SIZE_MAX / size) return NULL;
  return alloc.malloc_fn(count * size);
}
fp_free_fn fp__current_free(void) { return alloc.free_fn; }

void *fp__calloc_lines(size_t size) {
  if (size > SIZE_MAX - FP__APART - sizeof(void *)) return NULL;
  char *raw = fp__calloc(1, size + FP__APART + sizeof(void *));
  if (!raw) return NULL;
  void **lines =
      (void **)(((uintptr_t)raw + sizeof(void *) + FP__APART - 1) & ~(uintptr_t)(FP__APART - 1));
  lines[-1] = raw;
  return lines;
}

void fp__free_lines(void *ptr) {
  if (ptr) fp__free(((void **)ptr)[-1]);
}
void fp__free(void *ptr) {
  if (ptr) alloc.free_fn(ptr);
}

char *fp__strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *copy = fp__malloc(n);
  if (copy) memcpy(copy, s, n);
  return copy;
}

char *fp__format(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = fp__vformat(fmt, ap);
  va_end(ap);
  return s;
}

char *fp__vformat(const char *fmt, va_list ap) {
  va_list copy;
  va_copy(copy, ap);
  int len = vsnprintf(NULL, 0, fmt, copy);
  va_end(copy);
  if (len < 0) len = 0;
  char *s = fp__malloc((size_t)len + 1);
  if (s) vsnprintf(s, (size_t)len + 1, fmt, ap);
  return s;
}
