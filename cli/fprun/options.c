/* options.c - fprun's command line: GNU parallel's option spellings, each
 * value checked, a bad one a one-line message and exit status 2. */
#define _GNU_SOURCE
#include "fprun.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FPRUN_VERSION "0.1.0"

static const char usage_text[] =
    "usage: fprun [options] command [args with {} ...] ::: items [::: items ...]\n"
    "       fprun [options] command [args ...] :::: file [...]\n"
    "       fprun [options] command [args ...] < lines\n"
    "Runs the command once per input, several at a time; the first failing job\n"
    "stops the run (--halt now,fail=1). See fprun(1).\n"
    "\n"
    "  -j, --jobs N          slots: N, 0 (one per job, up to 256), +N, -N, N% of the CPUs\n"
    "  -a, --arg-file FILE   read inputs from FILE instead of stdin\n"
    "  -0, --null            inputs are separated by NUL, not newline\n"
    "  -N, --max-args N      N inputs per job ({1} ... {N})\n"
    "      --colsep REGEX    split each input line into columns {1} {2} ...\n"
    "      --halt SPEC       now,fail=N | soon,fail=N | now,success=N | soon,success=N |\n"
    "                        never (N may be a percentage: fail=10%)\n"
    "      --timeout SECS    stop a job after SECS seconds (N%: of the median job's time)\n"
    "      --retries N       try a failing job up to N times in all\n"
    "      --retry-delay D   wait D seconds before the first retry, doubling after\n"
    "      --delay SECS      start jobs at least SECS apart\n"
    "      --bar, --progress, --eta  show progress (toward --total N for stdin)\n"
    "      --monitor SECS    a monitor line every SECS seconds\n"
    "      --line-buffer     write each job's output a whole line at a time, as it comes\n"
    "  -u, --ungroup         let jobs write straight to the output (may mix)\n"
    "  -k, --keep-order      write the outputs in input order\n"
    "      --resume          with --joblog: skip the jobs it lists, append to it\n"
    "      --resume-failed   with --joblog: skip the jobs it lists as succeeded\n"
    "      --retry-failed    with --joblog: run again the commands it lists as failed\n"
    "      --joblog FILE     one line per job, in GNU parallel's columns\n"
    "      --trace FILE      a Chrome trace of the run (JSON: open it in Perfetto)\n"
    "      --tag             prefix each output line with the job's input\n"
    "      --tagstring STR   prefix each output line with STR ({} and the rest work)\n"
    "      --shell           run the command with /bin/sh -c (inputs quoted)\n"
    "      --mpi             under mpirun: run the jobs on the other ranks, -j on each\n"
    "      --dry-run         print the commands, run nothing\n"
    "  -h, --help            this text\n"
    "      --version         the version\n"
    "\n"
    "Exit status: 0 all jobs succeeded; the failing job's status with a fail halt;\n"
    "the number of failed jobs (at most 101) with --halt never; 130 on Ctrl-C;\n"
    "2 for a bad command line; 255 when fprun itself fails.\n";

/* ---- the command line ---- */

int options_usage_error(const char *fmt, const char *what) {
  fprintf(stderr, "fprun: ");
  fprintf(stderr, fmt, what);
  fprintf(stderr, " (fprun --help)\n");
  return FPRUN_EXIT_USAGE;
}

/* -j's forms; -1 if it is none of them. */
static int parse_slots(const char *s) {
  char *end;
  int ncpu = fp_cpu_count();
  errno = 0;
  long n = strtol(s, &end, 10);
  if (end == s || errno || n < -100000 || n > 100000) return -1;
  if (*end == '%' && !end[1] && n > 0) return (int)(ncpu * n / 100) > 0 ? (int)(ncpu * n / 100) : 1;
  if (*end) return -1;
  if (*s == '+') return ncpu + (int)n;
  if (*s == '-') return ncpu + (int)n > 0 ? ncpu + (int)n : 1;
  if (n == 0) return 256; /* "as many as there are jobs", within reason */
  return n > 0 ? (int)n : -1;
}

static bool parse_halt(const char *s, options *o) {
  if (!strcmp(s, "never")) {
    o->halt = HALT_NEVER;
    return true;
  }
  const char *rest;
  if (!strncmp(s, "now,", 4)) o->halt = HALT_NOW;
  else if (!strncmp(s, "soon,", 5)) o->halt = HALT_SOON;
  else return false;
  rest = strchr(s, ',') + 1;
  if (!strncmp(rest, "fail=", 5)) o->halt_on_success = false;
  else if (!strncmp(rest, "success=", 8)) o->halt_on_success = true;
  else return false;
  rest = strchr(rest, '=') + 1;
  char *end;
  double n = strtod(rest, &end);
  o->halt_percent = *end == '%';
  if (end == rest || (*end && strcmp(end, "%")) || !(n > 0)) return false;
  o->halt_count = n;
  return true;
}

/* Long options may be written --name VALUE or --name=VALUE. */
static const char *option_value(char **argv, int argc, int *i, const char *name, bool *bad) {
  size_t len = strlen(name);
  const char *a = argv[*i];
  if (a[len] == '=') return a + len + 1;
  if (*i + 1 >= argc) {
    *bad = true;
    return NULL;
  }
  return argv[++*i];
}

static bool is_long(const char *a, const char *name) {
  size_t len = strlen(name);
  return !strncmp(a, name, len) && (a[len] == 0 || a[len] == '=');
}

/* The options that take a number of seconds or a count. */
static const char *numeric_option(const char *a) {
  static const char *const names[] = {"--retries", "--retry-delay", "--delay", "--total",
                                      "--monitor"};
  for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
    if (is_long(a, names[k])) return names[k];
  return NULL;
}

int options_parse(int argc, char **argv, options *o, int *first) {
  *o = (options){.slots = fp_cpu_count(), .sep = '\n', .per_job = 1, .halt = HALT_NOW,
                 .halt_count = 1};
  int i = 1;
  for (; i < argc; i++) {
    const char *a = argv[i];
    bool bad = false;
    const char *v = NULL, *name;
    if (!strcmp(a, "--")) {
      i++;
      break;
    }
    if (a[0] != '-' || !a[1]) break; /* the command */
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(usage_text, stdout);
      return -1;
    } else if (!strcmp(a, "--version")) {
      printf("fprun %s (futureproof %s)\n", FPRUN_VERSION, fp_version_string());
      return -1;
    } else if (!strncmp(a, "-j", 2) && a[2]) {
      if ((o->slots = parse_slots(a + 2)) < 1) return options_usage_error("-j: not a number of slots: %s", a + 2);
    } else if (!strcmp(a, "-j") || is_long(a, "--jobs")) {
      v = !strcmp(a, "-j") ? (i + 1 < argc ? argv[++i] : NULL) : option_value(argv, argc, &i, "--jobs", &bad);
      if (!v || (o->slots = parse_slots(v)) < 1) return options_usage_error("-j: not a number of slots: %s", v ? v : "(none)");
    } else if (!strcmp(a, "-a") || is_long(a, "--arg-file")) {
      v = !strcmp(a, "-a") ? (i + 1 < argc ? argv[++i] : NULL) : option_value(argv, argc, &i, "--arg-file", &bad);
      if (!v) return options_usage_error("%s needs a file", a);
      o->arg_file = v;
    } else if (!strcmp(a, "-0") || !strcmp(a, "--null")) {
      o->sep = '\0';
    } else if (!strcmp(a, "-N") || is_long(a, "--max-args")) {
      v = !strcmp(a, "-N") ? (i + 1 < argc ? argv[++i] : NULL) : option_value(argv, argc, &i, "--max-args", &bad);
      char *end;
      long n = v ? strtol(v, &end, 10) : 0;
      if (!v || *end || n < 1 || n > 100000) return options_usage_error("-N: not a count: %s", v ? v : "(none)");
      o->per_job = (size_t)n;
    } else if (is_long(a, "--halt")) {
      v = option_value(argv, argc, &i, "--halt", &bad);
      if (!v || !parse_halt(v, o)) return options_usage_error("--halt: unknown policy %s", v ? v : "(none)");
    } else if (is_long(a, "--tagstring")) {
      if (!(o->tagstring = option_value(argv, argc, &i, "--tagstring", &bad)))
        return options_usage_error("%s needs a string", a);
      o->tag = true;
    } else if (is_long(a, "--colsep")) {
      if (!(o->colsep = option_value(argv, argc, &i, "--colsep", &bad)))
        return options_usage_error("%s needs a regular expression", a);
    } else if (is_long(a, "--timeout")) {
      v = option_value(argv, argc, &i, "--timeout", &bad);
      char *end;
      o->timeout = v ? strtod(v, &end) : 0;
      o->timeout_percent = v && *end == '%' && !end[1];
      if (!v || (*end && !o->timeout_percent) || !(o->timeout > 0) || o->timeout > 1e9)
        return options_usage_error("--timeout: not a number of seconds or a percentage: %s", v ? v : "(none)");
    } else if (is_long(a, "--trace")) {
      if (!(o->trace = option_value(argv, argc, &i, "--trace", &bad)))
        return options_usage_error("%s needs a file", a);
    } else if (is_long(a, "--joblog")) {
      if (!(o->joblog = option_value(argv, argc, &i, "--joblog", &bad))) return options_usage_error("%s needs a file", a);
    } else if ((name = numeric_option(a)) != NULL) {
      v = option_value(argv, argc, &i, name, &bad);
      char *end;
      double n = v ? strtod(v, &end) : -1;
      if (!v || *end || !(n >= 0) || n > 1e9) return options_usage_error("%s needs a number", name);
      if (!strcmp(name, "--retries")) o->retries = (int)n;
      else if (!strcmp(name, "--retry-delay")) o->retry_delay = n;
      else if (!strcmp(name, "--delay")) o->delay = n;
      else if (!strcmp(name, "--total")) o->total = (uint64_t)n;
      else if (n > 0 && n < 0.001) return options_usage_error("%s: at least 0.001 s", name);
      else o->monitor = n;
    } else if (!strcmp(a, "--bar") || !strcmp(a, "--progress") || !strcmp(a, "--eta")) {
      o->progress = true;
    } else if (!strcmp(a, "--resume")) {
      o->resume = true;
    } else if (!strcmp(a, "--resume-failed")) {
      o->resume_failed = true;
    } else if (!strcmp(a, "--retry-failed")) {
      o->retry_failed = true;
    } else if (!strcmp(a, "-k") || !strcmp(a, "--keep-order")) {
      o->keep_order = true;
    } else if (!strcmp(a, "-u") || !strcmp(a, "--ungroup")) {
      o->ungroup = true;
    } else if (!strcmp(a, "--line-buffer") || !strcmp(a, "--lb")) {
      o->line_buffer = true;
    } else if (!strcmp(a, "--tag")) {
      o->tag = true;
    } else if (!strcmp(a, "--mpi")) {
#ifdef FPRUN_MPI
      o->mpi = true;
#else
      return options_usage_error("%s: this fprun was built without MPI (futureproof-mpi)", a);
#endif
    } else if (!strcmp(a, "--shell")) {
      o->shell = true;
    } else if (!strcmp(a, "--dry-run")) {
      o->dry_run = true;
    } else {
      return options_usage_error("unknown option %s", a);
    }
  }
  if ((o->resume || o->resume_failed || o->retry_failed) && !o->joblog)
    return options_usage_error("%s needs --joblog", o->resume ? "--resume"
                                            : o->resume_failed ? "--resume-failed" : "--retry-failed");
  *first = i;
  return 0;
}
