/* registry.c - tasks by name: a function registered under a name has a
 * stable id (a 64-bit FNV-1a hash of the name), the same in every process
 * running the same program, so that an executor on another machine can
 * send the id instead of a pointer. Two open-addressing tables (by id, by
 * function) index one array of entries; a mutex guards them. The registry
 * lives as long as the program (registrations happen before main, before
 * any allocator is set): plain malloc, never freed. Also: a function's
 * name for messages (fp__fn_name). */
#define _GNU_SOURCE
#include "internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
  uint64_t id;
  fp_fn fn;
  char *name; /* its own block: a name handed out stays put when entries grow */
} entry;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static entry *entries;
static size_t count, room;
/* Slots hold an entry's index + 1 (0: empty); the size is a power of two,
 * at least twice the count. */
static size_t *by_id, *by_fn, slots;

static uint64_t hash_name(const char *name) {
  uint64_t h = 14695981039346656037ULL;
  for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 1099511628211ULL;
  return h ? h : 1; /* 0 means "not registered" */
}

static size_t hash_fn(fp_fn fn) {
  uint64_t x = (uint64_t)(uintptr_t)fn;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  return (size_t)(x ^ (x >> 33));
}

static size_t find_id(uint64_t id) { /* the slot for id: its entry's or an empty one */
  size_t at = (size_t)id & (slots - 1);
  while (by_id[at] && entries[by_id[at] - 1].id != id) at = (at + 1) & (slots - 1);
  return at;
}

static size_t find_fn(fp_fn fn) {
  size_t at = hash_fn(fn) & (slots - 1);
  while (by_fn[at] && entries[by_fn[at] - 1].fn != fn) at = (at + 1) & (slots - 1);
  return at;
}

/* Room for one more entry, rehashing when the tables are half full. */
static bool grow(void) {
  if (count == room) {
    size_t new_room = room ? 2 * room : 64;
    entry *grown = realloc(entries, new_room * sizeof *grown);
    if (!grown) return false;
    entries = grown;
    room = new_room;
  }
  if (2 * (count + 1) <= slots) return true;
  size_t new_slots = slots ? 2 * slots : 128;
  size_t *ids = calloc(new_slots, sizeof *ids), *fns = calloc(new_slots, sizeof *fns);
  if (!ids || !fns) {
    free(ids);
    free(fns);
    return false;
  }
  free(by_id);
  free(by_fn);
  by_id = ids;
  by_fn = fns;
  slots = new_slots;
  for (size_t i = 0; i < count; i++) {
    by_id[find_id(entries[i].id)] = i + 1;
    by_fn[find_fn(entries[i].fn)] = i + 1;
  }
  return true;
}

int fp_task_register(const char *name, fp_fn fn) {
  if (!name || !*name) return fp__einval("fp_task_register: the name is NULL or empty");
  if (!fn) return fp__einval("fp_task_register: %s: the function is NULL", name);
  if (strlen(name) > FP_TASK_NAME_MAX)
    return fp__einval("fp_task_register: the name is longer than %d bytes", FP_TASK_NAME_MAX);
  uint64_t id = hash_name(name);
  int rc = 0;
  pthread_mutex_lock(&mu);
  const entry *same_id = slots && by_id[find_id(id)] ? &entries[by_id[find_id(id)] - 1] : NULL;
  const entry *same_fn = slots && by_fn[find_fn(fn)] ? &entries[by_fn[find_fn(fn)] - 1] : NULL;
  if (same_id && same_id->fn == fn && !strcmp(same_id->name, name)) {
    rc = 0; /* registered already */
  } else if (same_id) {
    rc = fp__einval("fp_task_register: the name %s is taken (by %s, function %p)", name,
                    same_id->name, (void *)(uintptr_t)same_id->fn);
  } else if (same_fn) {
    rc = fp__einval("fp_task_register: function %p is registered already, as %s",
                    (void *)(uintptr_t)fn, same_fn->name);
  } else if (!grow() || !(entries[count].name = strdup(name))) {
    rc = fp__fail(FP_ENOMEM, "fp_task_register: no memory for %s", name);
  } else {
    entry *e = &entries[count];
    e->id = id;
    e->fn = fn;
    count++;
    by_id[find_id(id)] = count;
    by_fn[find_fn(fn)] = count;
  }
  pthread_mutex_unlock(&mu);
  return rc;
}

uint64_t fp_task_id(fp_fn fn) {
  pthread_mutex_lock(&mu);
  size_t at = slots ? by_fn[find_fn(fn)] : 0;
  uint64_t id = at ? entries[at - 1].id : 0;
  pthread_mutex_unlock(&mu);
  return id;
}

fp_fn fp_task_by_id(uint64_t id) {
  pthread_mutex_lock(&mu);
  size_t at = slots && id ? by_id[find_id(id)] : 0;
  fp_fn fn = at ? entries[at - 1].fn : NULL;
  pthread_mutex_unlock(&mu);
  return fn;
}

const char *fp__fn_name(fp_fn fn, char *buf, size_t len) {
  const char *name = fp_task_name(fn);
  Dl_info info;
  if (!name && fn && dladdr((void *)(uintptr_t)fn, &info) && info.dli_sname &&
      info.dli_saddr == (void *)(uintptr_t)fn)
    name = info.dli_sname;
  if (name)
    snprintf(buf, len, "%s", name);
  else
    snprintf(buf, len, "fn %p", (void *)(uintptr_t)fn);
  return buf;
}

const char *fp_task_name(fp_fn fn) {
  pthread_mutex_lock(&mu);
  size_t at = slots ? by_fn[find_fn(fn)] : 0;
  const char *name = at ? entries[at - 1].name : NULL;
  pthread_mutex_unlock(&mu);
  return name;
}
