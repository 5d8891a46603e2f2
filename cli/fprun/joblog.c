/* joblog.c - reading a joblog in GNU parallel's column layout (Seq, Host,
 * Starttime, JobRuntime, Send, Receive, Exitval, Signal, Command) for
 * --resume, --resume-failed and --retry-failed. A Command that spans lines
 * (a quoted item with a newline in it) is joined again. */
#define _POSIX_C_SOURCE 200809L
#include "fprun.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A record's fields; false if the line is not one (the header, or the
 * rest of a command that spans lines). */
static bool parse_record(char *line, joblog_entry *e) {
  char *field[9];
  field[0] = line;
  for (int i = 1; i < 9; i++) {
    char *tab = strchr(field[i - 1], '\t');
    if (!tab) return false;
    *tab = 0;
    field[i] = tab + 1;
  }
  char *end;
  errno = 0;
  unsigned long long seq = strtoull(field[0], &end, 10);
  if (end == field[0] || *end || errno || !seq) return false;
  long exitval = strtol(field[6], &end, 10);
  if (end == field[6] || *end) return false;
  long sig = strtol(field[7], &end, 10);
  if (end == field[7] || *end) return false;
  e->seq = seq;
  e->exitval = (int)exitval;
  e->signal = (int)sig;
  e->command = field[8];
  return true;
}

int joblog_read(const char *path, int (*each)(const joblog_entry *e, void *userdata),
                void *userdata) {
  FILE *fp = fopen(path, "r");
  if (!fp) return errno == ENOENT ? 0 : -errno; /* none: nothing ran yet */
  char *line = NULL, *command = NULL;
  size_t room = 0;
  ssize_t n;
  joblog_entry pending = {0}; /* its command is in `command` */
  bool have = false;
  int rc = 0;
  while (!rc && (n = getline(&line, &room, fp)) > 0) {
    if (line[n - 1] == '\n') line[--n] = 0;
    joblog_entry e;
    char *copy = strdup(line);
    if (!copy) {
      rc = FP_ENOMEM;
      break;
    }
    if (parse_record(copy, &e)) {
      if (have) rc = each(&pending, userdata);
      free(command);
      command = strdup(e.command);
      pending = e;
      pending.command = command;
      have = command != NULL;
      if (!command) rc = FP_ENOMEM;
    } else if (have) { /* the command goes on: a newline was in it */
      size_t len = strlen(command);
      char *grown = realloc(command, len + (size_t)n + 2);
      if (!grown) {
        rc = FP_ENOMEM;
      } else {
        grown[len] = '\n';
        memcpy(grown + len + 1, line, (size_t)n + 1);
        command = grown;
        pending.command = command;
      }
    }
    free(copy);
  }
  if (!rc && ferror(fp)) rc = -EIO;
  if (!rc && have) rc = each(&pending, userdata);
  free(command);
  free(line);
  fclose(fp);
  return rc;
}
