/* input.c - fprun's inputs, read lazily: lines of stdin or a file (-a),
 * NUL-separated with -0, several a job with -N; or the items after ":::"
 * (groups combined as their cartesian product, ":::+" linking a group to
 * the one before item by item) and the lines of files after "::::". */
#define _POSIX_C_SOURCE 200809L
#include "fprun.h"

#include <errno.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

typedef struct group {
  char **items;
  size_t n, room;
  bool linked; /* ":::+": advances with the group before it */
} group;

struct input {
  group *groups; /* the argument groups; none: lines */
  size_t ngroups;
  size_t *pos;
  bool started, done;
  FILE *fp;      /* lines */
  bool own_fp;
  char sep;
  size_t per_job;
  char *line;
  size_t line_room;
  const regex_t *colsep; /* --colsep: split each line into columns */
  uint64_t seq;
  uint64_t *seqs; /* the job numbers of the one group's items, or NULL */
};

void job_input_free(void *p) {
  job_input *in = p;
  if (!in) return;
  for (size_t i = 0; i < in->ncols; i++) free(in->cols[i]);
  free(in->cols);
  free(in);
}

static bool group_add(group *g, const char *item, size_t len) {
  if (g->n == g->room) {
    size_t room = g->room ? 2 * g->room : 16;
    char **grown = realloc(g->items, room * sizeof *grown);
    if (!grown) return false;
    g->items = grown;
    g->room = room;
  }
  return (g->items[g->n++] = strndup(item, len)) != NULL;
}

/* Every line of a file into g. */
static bool group_read_file(group *g, const char *path, char sep, char *err, size_t errlen) {
  FILE *fp = strcmp(path, "-") ? fopen(path, "r") : stdin;
  if (!fp) {
    snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
    return false;
  }
  char *line = NULL;
  size_t room = 0;
  ssize_t n;
  bool ok = true;
  while (ok && (n = getdelim(&line, &room, sep, fp)) > 0) {
    if (line[n - 1] == sep) n--;
    ok = group_add(g, line, (size_t)n);
  }
  free(line);
  if (fp != stdin) fclose(fp);
  if (!ok) snprintf(err, errlen, "out of memory reading %s", path);
  return ok;
}

input *input_from_args(char **args, size_t nargs, const char *file, char sep, size_t per_job,
                       const regex_t *colsep, char *err, size_t errlen) {
  input *in = calloc(1, sizeof *in);
  if (!in) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  in->sep = sep;
  in->per_job = per_job ? per_job : 1;
  in->colsep = colsep;
  group *g = NULL;
  bool files = false;
  for (size_t i = 0; i < nargs; i++) {
    const char *a = args[i];
    bool marker = !strcmp(a, ":::") || !strcmp(a, ":::+") || !strcmp(a, "::::");
    if (marker) {
      group *grown = realloc(in->groups, (in->ngroups + 1) * sizeof *grown);
      if (!grown) {
        snprintf(err, errlen, "out of memory");
        input_free(in);
        return NULL;
      }
      in->groups = grown;
      g = &in->groups[in->ngroups++];
      memset(g, 0, sizeof *g);
      g->linked = !strcmp(a, ":::+") && in->ngroups > 1;
      files = !strcmp(a, "::::");
      continue;
    }
    bool ok = files ? group_read_file(g, a, sep, err, errlen) : group_add(g, a, strlen(a));
    if (!ok) {
      if (!files) snprintf(err, errlen, "out of memory");
      input_free(in);
      return NULL;
    }
  }
  if (in->ngroups) {
    if (!(in->pos = calloc(in->ngroups, sizeof *in->pos))) {
      snprintf(err, errlen, "out of memory");
      input_free(in);
      return NULL;
    }
    return in;
  }
  in->fp = file && strcmp(file, "-") ? fopen(file, "r") : stdin;
  if (!in->fp) {
    snprintf(err, errlen, "cannot read %s: %s", file, strerror(errno));
    free(in);
    return NULL;
  }
  in->own_fp = in->fp != stdin;
  return in;
}

input *input_from_commands(char **commands, uint64_t *seqs, size_t n) {
  input *in = calloc(1, sizeof *in);
  group *g = calloc(1, sizeof *g);
  size_t *pos = calloc(1, sizeof *pos);
  if (!in || !g || !pos) {
    free(in);
    free(g);
    free(pos);
    for (size_t i = 0; i < n; i++) free(commands[i]);
    free(commands);
    free(seqs);
    return NULL;
  }
  *g = (group){.items = commands, .n = n, .room = n};
  in->groups = g;
  in->ngroups = 1;
  in->pos = pos;
  in->seqs = seqs;
  in->per_job = 1;
  return in;
}

void input_free(input *in) {
  if (!in) return;
  free(in->seqs);
  for (size_t i = 0; i < in->ngroups; i++) {
    for (size_t j = 0; j < in->groups[i].n; j++) free(in->groups[i].items[j]);
    free(in->groups[i].items);
  }
  free(in->groups);
  free(in->pos);
  free(in->line);
  if (in->own_fp) fclose(in->fp);
  free(in);
}

/* How many items a unit (a group and those linked to it) has: the
 * shortest of them. */
static size_t unit_length(const input *in, size_t u) {
  size_t n = in->groups[u].n;
  for (size_t k = u + 1; k < in->ngroups && in->groups[k].linked; k++)
    if (in->groups[k].n < n) n = in->groups[k].n;
  return n;
}

/* The odometer: the last unit turns fastest, as GNU parallel's order. */
static bool advance(input *in) {
  for (size_t u = in->ngroups; u-- > 0;) {
    if (in->groups[u].linked) continue; /* it moves with its unit */
    size_t next = in->pos[u] + 1;
    bool wrap = next >= unit_length(in, u);
    for (size_t k = u; k < in->ngroups && (k == u || in->groups[k].linked); k++)
      in->pos[k] = wrap ? 0 : next;
    if (!wrap) return true;
  }
  return false;
}

uint64_t input_total(const input *in) {
  if (!in->ngroups) return 0; /* lines: not known before they are read */
  uint64_t total = 1;
  for (size_t u = 0; u < in->ngroups; u++)
    if (!in->groups[u].linked) total *= unit_length(in, u);
  return total;
}

static int next_from_groups(input *in, job_input *job) {
  if (!in->started) {
    in->started = true;
    for (size_t u = 0; u < in->ngroups; u++)
      if (!in->groups[u].linked && unit_length(in, u) == 0) in->done = true;
  } else if (!advance(in)) {
    in->done = true;
  }
  if (in->done) return 0;
  if (!(job->cols = calloc(in->ngroups, sizeof *job->cols))) return FP_ENOMEM;
  for (size_t k = 0; k < in->ngroups; k++) {
    if (!(job->cols[k] = strdup(in->groups[k].items[in->pos[k]]))) return FP_ENOMEM;
    job->ncols++;
  }
  return 1;
}

static int add_col(job_input *job, size_t *room, const char *s, size_t n) {
  if (job->ncols == *room) {
    size_t grown_room = *room ? 2 * *room : 4;
    char **grown = realloc(job->cols, grown_room * sizeof *grown);
    if (!grown) return FP_ENOMEM;
    job->cols = grown;
    *room = grown_room;
  }
  if (!(job->cols[job->ncols] = strndup(s, n))) return FP_ENOMEM;
  job->ncols++;
  return 0;
}

/* A line's columns: split where colsep matches (an empty match splits
 * nothing), or the whole line. */
static int add_line(input *in, job_input *job, size_t *room, const char *line, size_t n) {
  if (!in->colsep) return add_col(job, room, line, n);
  size_t at = 0;
  regmatch_t m;
  while (at <= n && regexec(in->colsep, line + at, 1, &m, at ? REG_NOTBOL : 0) == 0 &&
         m.rm_eo > m.rm_so && at + (size_t)m.rm_so <= n) {
    int rc = add_col(job, room, line + at, (size_t)m.rm_so);
    if (rc) return rc;
    at += (size_t)m.rm_eo;
  }
  return add_col(job, room, line + at, n - at);
}

static int next_from_lines(input *in, job_input *job) {
  size_t room = 0, lines = 0;
  while (lines < in->per_job) {
    ssize_t n = getdelim(&in->line, &in->line_room, in->sep, in->fp);
    if (n <= 0) break;
    if (in->line[n - 1] == in->sep) n--;
    in->line[n] = 0;
    int rc = add_line(in, job, &room, in->line, (size_t)n);
    if (rc) return rc;
    lines++;
  }
  if (ferror(in->fp)) return -EIO;
  return lines ? 1 : 0;
}

int input_next(void *p, void **out) {
  input *in = p;
  job_input *job = calloc(1, sizeof *job);
  if (!job) return FP_ENOMEM;
  int rc = in->ngroups ? next_from_groups(in, job) : next_from_lines(in, job);
  if (rc <= 0) {
    job_input_free(job);
    return rc;
  }
  job->index = ++in->seq;
  job->seq = in->seqs ? in->seqs[in->pos[0]] : job->index;
  *out = job;
  return 1;
}
