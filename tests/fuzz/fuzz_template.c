/* fuzz_template.c - libFuzzer target for fprun's command template: any
 * words (NUL-separated; the first byte picks the shell form and how many
 * input columns) are parsed, expanded, and written as a shell line,
 * without a crash, a leak or undefined behaviour; and an item is never
 * changed on its way into an argument. */
#include "../../cli/fprun/fprun.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

enum { MAX_WORDS = 16 };

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  if (size < 1) return 0;
  bool shell = data[0] & 1;
  size_t ncols = 1 + (size_t)((data[0] >> 1) % 3);
  char *text = malloc(size); /* the words, each NUL-terminated */
  if (!text) return 0;
  memcpy(text, data + 1, size - 1);
  text[size - 1] = 0;
  char *words[MAX_WORDS];
  size_t nwords = 0;
  for (size_t at = 0; at < size - 1 && nwords < MAX_WORDS; at += strlen(text + at) + 1)
    words[nwords++] = text + at;
  char err[256];
  template *t = template_parse(words, nwords, shell, err, sizeof err);
  if (!t) {
    if (!err[0]) abort(); /* a refusal always says why */
    free(text);
    return 0;
  }
  char *cols[] = {"a b", "it's/x.y.tar", "$(id)\n;*{}"};
  job_input in = {.cols = cols, .ncols = ncols, .seq = 7, .index = 7};
  char **argv = template_expand(t, &in, 3);
  if (argv) {
    size_t argc = 0;
    while (argv[argc]) argc++;
    if (!argc) abort(); /* a job always has a program */
    /* Without a shell and without a replacement string, the items follow
     * the words unchanged. */
    bool append = true;
    for (size_t i = 0; i < nwords && append; i++) append = !strchr(words[i], '{');
    if (!shell && nwords && append && !strcmp(argv[0], words[0]) && argc == nwords + ncols)
      for (size_t c = 0; c < ncols; c++)
        if (strcmp(argv[nwords + c], cols[c])) abort();
    char *line = argv_line(argv);
    free(line);
    argv_free(argv);
  }
  free(template_expand_string(t, &in, 3));
  template_free(t);
  free(text);
  return 0;
}
