/* fuzz_options.c - libFuzzer target for fprun's command line: any
 * arguments (NUL-separated) are parsed without a crash, a leak or
 * undefined behaviour, and every refusal is a usage error (exit status 2);
 * what is accepted has sane values, and its command parses as a template. */
#include "../../cli/fprun/fprun.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

enum { MAX_ARGS = 32 };

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  /* fprun's messages go nowhere; fd 2 stays for the sanitizers' reports. */
  FILE *quiet = fopen("/dev/null", "w");
  if (quiet) stdout = stderr = quiet;
  return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = 0;
  char *argv[MAX_ARGS + 1] = {"fprun"};
  int argc = 1;
  for (size_t at = 0; at < size && argc < MAX_ARGS; at += strlen(text + at) + 1)
    argv[argc++] = text + at;
  argv[argc] = NULL;
  options o;
  int first = argc;
  int rc = options_parse(argc, argv, &o, &first);
  if (rc != 0 && rc != -1 && rc != FPRUN_EXIT_USAGE) abort();
  if (rc == 0) {
    if (first < 1 || first > argc) abort();
    if (o.slots < 1 || o.per_job < 1 || o.timeout < 0 || o.delay < 0 || o.retries < 0) abort();
    if ((o.resume || o.resume_failed || o.retry_failed) && !o.joblog) abort();
    int words = first;
    while (words < argc && strcmp(argv[words], ":::") && strcmp(argv[words], "::::") &&
           strcmp(argv[words], ":::+"))
      words++;
    char err[256];
    template *t = template_parse(argv + first, (size_t)(words - first), o.shell, err, sizeof err);
    template_free(t);
  }
  free(text);
  return 0;
}
