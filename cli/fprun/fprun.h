/* fprun.h - private to fprun: the parts of the job runner (options,
 * command templates, inputs, jobs) and what they share. fprun uses only
 * the public API of futureproof.h. */
#ifndef FPRUN_H
#define FPRUN_H

#include <futureproof.h>
#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* Exit statuses (docs/fprun.1): GNU parallel's where it has one. */
enum {
  FPRUN_EXIT_USAGE = 2,     /* a bad command line */
  FPRUN_EXIT_FAILED_CAP = 101, /* --halt never: failed jobs, at most this */
  FPRUN_EXIT_INTERRUPTED = 130,
  FPRUN_EXIT_OWN_ERROR = 255 /* fprun itself failed (no memory, no input file) */
};

/* ---- the command line (options.c) ---- */
typedef enum { HALT_NEVER, HALT_NOW, HALT_SOON } halt_when;

typedef struct options {
  int slots;
  const char *arg_file;
  char sep;
  size_t per_job;
  halt_when halt;
  bool halt_on_success; /* success=N rather than fail=N */
  double halt_count;    /* N, or a percentage */
  bool halt_percent;
  double timeout;
  bool timeout_percent; /* --timeout N%: of the median run time of successful jobs */
  const char *joblog;
  const char *trace; /* --trace: a Chrome trace of the run */
  bool tag, shell, dry_run, ungroup, keep_order, line_buffer;
  bool mpi;             /* --mpi: jobs run on the other ranks of an MPI job */
  bool resume, resume_failed; /* skip what the joblog says ran (succeeded) */
  bool retry_failed;          /* run again what the joblog says failed */
  int retries;          /* tries in all, at most (GNU parallel's count) */
  double retry_delay;   /* before the first retry; doubles for each later one */
  double delay;         /* between starts */
  bool progress;        /* --bar, --progress, --eta */
  uint64_t total;       /* --total: jobs expected, for the progress */
  double monitor;       /* seconds between monitor lines, 0: none */
  const char *colsep;   /* a regular expression (POSIX extended) */
  const char *tagstring; /* --tagstring: the tag, with replacement strings */
} options;

/* Options first; the command's words start at *first. 0 to run, -1 to
 * exit 0 (--help, --version), or an exit status (a usage error, said on
 * stderr in one line). */
int options_parse(int argc, char **argv, options *o, int *first);
/* "fprun: <fmt with what> (fprun --help)" on stderr; FPRUN_EXIT_USAGE. */
int options_usage_error(const char *fmt, const char *what);

/* ---- a job's input: its columns ---- */
typedef struct job_input {
  char **cols;
  size_t ncols;
  uint64_t seq;   /* the job number ({#}, the joblog's Seq) */
  uint64_t index; /* 1, 2, ... in input order (-k): seq, but for --retry-failed */
} job_input;
void job_input_free(void *input); /* an fp_free_fn */

/* ---- the command template (template.c) ---- */
typedef struct template template;
/* Parse the command words; NULL with a message in err (one line) for an
 * unknown replacement string. No words: each input is itself a command
 * (run by the shell). */
template *template_parse(char **words, size_t nwords, bool shell, char *err, size_t errlen);
void template_free(template *t);
/* The argv for one job (NULL-terminated, malloc'd strings and array), or
 * with the shell: {"/bin/sh", "-c", script, NULL}. NULL on ENOMEM. */
char **template_expand(const template *t, const job_input *in, unsigned slot);
void argv_free(char **argv);
/* The words expanded into one string, nothing appended, nothing quoted
 * (--tagstring). NULL on ENOMEM. */
char *template_expand_string(const template *t, const job_input *in, unsigned slot);
/* The command as a shell line (the joblog, --dry-run): a shell job's
 * script, or the words, each quoted where the shell needs it. */
char *argv_line(char *const *argv);

/* ---- inputs (input.c) ---- */
typedef struct input input;
/* From the command line after the command: ":::" groups (their product),
 * ":::+" groups (linked to the one before, item by item), "::::" files;
 * with none, lines of `file` (NULL: stdin). sep: '\n' or '\0' (-0).
 * per_job: lines per job for line inputs (-N); colsep (may be NULL)
 * splits each line into columns. */
input *input_from_args(char **args, size_t nargs, const char *file, char sep, size_t per_job,
                       const regex_t *colsep, char *err, size_t errlen);
/* Commands (run by the shell) with their job numbers, as --retry-failed
 * reads them from a joblog; takes both arrays. */
input *input_from_commands(char **commands, uint64_t *seqs, size_t n);
/* The next job's input (fp_iter_fn): 1, 0 at the end, or a negative code. */
int input_next(void *in, void **out);
void input_free(input *in);
/* How many jobs the input gives, when it is known before reading (":::"
 * groups); 0 otherwise. */
uint64_t input_total(const input *in);

/* ---- running one job (job.c) ---- */
typedef struct job_options {
  double timeout;        /* seconds, 0: none */
  double kill_grace;     /* between SIGTERM and SIGKILL */
  bool group;            /* collect output, write it whole when the job ends */
  bool line_buffer;      /* with group: write whole lines as they come */
  const char *tag;       /* with line_buffer: prefix each line with it, or NULL */
  double (*timeout_now)(void); /* the timeout, asked while it runs (--timeout N%) */
  /* with line_buffer: where whole lines go (fd 1 or 2); NULL: job_write_lines */
  int (*write_lines)(int fd, const char *data, size_t len, const char *tag);
} job_options;

typedef struct job_result {
  int status;            /* exit status, or 128 + signal */
  int signal;            /* the signal that ended it, 0 if none */
  bool timed_out, not_found;
  bool stopped;          /* terminated because the run stopped (a halt, Ctrl-C) */
  double started, runtime; /* wall clock seconds (epoch), seconds */
  char *out, *err;       /* collected output (group) */
  size_t out_len, err_len;
  size_t received;       /* bytes of stdout in all */
  int write_error;       /* line_buffer: -errno when stdout could not be written */
  char host[64];         /* where it ran, for the joblog ("" here) */
} job_result;

/* Spawn argv in a process group of its own, collect its output, wait for
 * it; on a timeout or when the task is asked to stop (fp_cancel_requested)
 * terminate its group (SIGTERM, SIGKILL after the grace period). 0 or a
 * negative code (FP_ENOMEM, spawn failures other than "not found"). */
int job_run(char *const *argv, const job_options *opt, job_result *res);
void job_result_clear(job_result *res);
/* Write lines of a job's output to fd 1 (stdout) or 2 (stderr), each
 * prefixed with tag and a tab if tag is not NULL, under the output lock,
 * flushed. 0, or -errno. */
int job_write_lines(int fd, const char *data, size_t len, const char *tag);
/* Write a job's collected output: whole, under one lock (stdout then
 * stderr). 0, or -errno when stdout cannot be written (a full disk). */
int job_write_output(const job_result *res, const char *tag);


/* ---- the joblog (joblog.c) ---- */
typedef struct joblog_entry {
  uint64_t seq;
  int exitval, signal;
  const char *command; /* the shell line, valid during the call */
} joblog_entry;
/* Call each for every record of the joblog at path, in file order,
 * until it returns non-zero. 0 (also when there is no such file), what
 * each returned, or a negative code. */
int joblog_read(const char *path, int (*each)(const joblog_entry *e, void *userdata),
                void *userdata);

/* ---- fprun over MPI (remote.c; only where futureproof-mpi was built) ---- */
#ifdef FPRUN_MPI
/* Initialise MPI and make the executor of the other ranks, slots jobs at
 * a time on each. 0 on rank 0 (*ex set), 1 on a worker rank once it has
 * served the run (exit), -1 on an error (fp_last_error_message). */
int remote_start(int *argc, char ***argv, int slots, fp_executor **ex);
int remote_slots(void); /* the worker ranks */
void remote_end(void);  /* MPI_Finalize */
/* job_run, on a worker rank: the same result, with the rank's host. */
int remote_job_run(fp_executor *ex, char *const *argv, const job_options *opt, job_result *res);
#endif

/* ---- the watchdog (watchdog.c): jobs die with fprun, even a killed one ---- */
/* Fork it; before any thread starts. 0 or -errno (fprun then runs unwatched). */
int watchdog_start(double grace);
void watchdog_watch(pid_t pgid);  /* a job's group started */
void watchdog_forget(pid_t pgid); /* and is gone */
void watchdog_stop(void);         /* every job is gone: it exits */

#endif
