/* template.c - fprun's command template: GNU parallel's replacement
 * strings ({} {.} {/} {//} {/.} {#} {%} {N} {N.} {N/} {N//} {N/.}),
 * expanded into an argv with no shell (an item is always one argument,
 * never code), or into a shell script with every value quoted (also in
 * the script word of `sh -c SCRIPT`). */
#define _POSIX_C_SOURCE 200809L
#include "fprun.h"


#include <stdlib.h>
#include <string.h>

typedef enum { F_ALL, F_NOEXT, F_BASE, F_DIR, F_BASE_NOEXT, F_SEQ, F_SLOT } field_fn;

typedef struct segment {
  bool field;
  char *text;   /* literal */
  size_t col;   /* field: 0 for all the columns, else 1-based */
  field_fn fn;
} segment;

typedef struct word {
  segment *segs;
  size_t nsegs;
  bool script; /* the script of `sh -c`: its values are quoted */
} word;

struct template {
  word *words;
  size_t nwords;
  bool shell;      /* run with /bin/sh -c, values quoted */
  bool append;     /* no replacement string: the items follow the words */
  bool items_are_commands; /* no command at all */
};

/* Is words[i] the script a shell runs (sh -c SCRIPT, bash -ec SCRIPT)?
 * Values put into it are quoted, so that an item is never code there
 * either. */
static bool is_shell_script(char **words, size_t i) {
  if (i < 2) return false;
  const char *prog = strrchr(words[0], '/') ? strrchr(words[0], '/') + 1 : words[0];
  size_t len = strlen(prog);
  if (len < 2 || strcmp(prog + len - 2, "sh")) return false; /* sh, bash, dash, zsh, ksh */
  const char *opt = words[i - 1];
  size_t n = strlen(opt);
  if (opt[0] != '-' || n < 2 || opt[n - 1] != 'c') return false;
  for (size_t k = 1; k < n; k++)
    if (!((opt[k] >= 'a' && opt[k] <= 'z') || (opt[k] >= 'A' && opt[k] <= 'Z'))) return false;
  return true;
}

/* Characters that make a single command string a shell script. */
static bool needs_shell(const char *s) { return strpbrk(s, " \t\n|&;<>()$`\\\"'*?[~") != NULL; }

/* A replacement string at s ("{...}"), as (col, fn); its length, 0 if it
 * is no replacement string (literal text such as awk's {print}), -1 if it
 * looks like one but is unknown. */
static long parse_field(const char *s, size_t *col, field_fn *fn) {
  size_t i = 1, n = 0;
  while (s[i] >= '0' && s[i] <= '9' && n < 100000) n = n * 10 + (size_t)(s[i++] - '0');
  bool has_col = i > 1;
  size_t mod = i;
  while (s[i] && strchr("./#%", s[i])) i++;
  if (s[i] != '}') return 0;
  size_t len = i - mod;
  const char *m = s + mod;
  *col = has_col ? n : 0;
  if (has_col && n == 0) return -1;
  if (len == 0) *fn = F_ALL;
  else if (len == 1 && *m == '.') *fn = F_NOEXT;
  else if (len == 1 && *m == '/') *fn = F_BASE;
  else if (len == 2 && !strncmp(m, "//", 2)) *fn = F_DIR;
  else if (len == 2 && !strncmp(m, "/.", 2)) *fn = F_BASE_NOEXT;
  else if (len == 1 && *m == '#' && !has_col) *fn = F_SEQ;
  else if (len == 1 && *m == '%' && !has_col) *fn = F_SLOT;
  else return -1;
  return (long)i + 1;
}

static bool push_segment(word *w, segment seg) {
  segment *grown = realloc(w->segs, (w->nsegs + 1) * sizeof *grown);
  if (!grown) return false;
  w->segs = grown;
  w->segs[w->nsegs++] = seg;
  return true;
}

static bool parse_word(word *w, const char *s, bool *any_field, char *err, size_t errlen) {
  size_t lit_start = 0;
  for (size_t i = 0;; i++) {
    size_t col = 0;
    field_fn fn = F_ALL;
    long len = s[i] == '{' ? parse_field(s + i, &col, &fn) : 0;
    if (len < 0) {
      const char *end = strchr(s + i, '}');
      snprintf(err, errlen, "unknown replacement string %.*s", (int)(end - (s + i) + 1), s + i);
      return false;
    }
    if (len > 0 || !s[i]) {
      if (i > lit_start) {
        char *text = strndup(s + lit_start, i - lit_start);
        if (!text || !push_segment(w, (segment){false, text, 0, F_ALL})) {
          free(text);
          snprintf(err, errlen, "out of memory");
          return false;
        }
      }
      if (!s[i]) return true;
      if (!push_segment(w, (segment){true, NULL, col, fn})) {
        snprintf(err, errlen, "out of memory");
        return false;
      }
      *any_field = true;
      i += (size_t)len - 1;
      lit_start = i + 1;
    }
  }
}

template *template_parse(char **words, size_t nwords, bool shell, char *err, size_t errlen) {
  template *t = calloc(1, sizeof *t);
  if (!t || (nwords && !(t->words = calloc(nwords, sizeof *t->words)))) {
    free(t);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  t->nwords = nwords;
  t->items_are_commands = nwords == 0;
  t->shell = shell || nwords == 0 || (nwords == 1 && needs_shell(words[0]));
  bool any_field = false;
  for (size_t i = 0; i < nwords; i++)
    if (!parse_word(&t->words[i], words[i], &any_field, err, errlen)) {
      template_free(t);
      return NULL;
    } else {
      t->words[i].script = is_shell_script(words, i);
    }
  t->append = !any_field && nwords;
  return t;
}

void template_free(template *t) {
  if (!t) return;
  for (size_t i = 0; i < t->nwords; i++) {
    for (size_t j = 0; j < t->words[i].nsegs; j++) free(t->words[i].segs[j].text);
    free(t->words[i].segs);
  }
  free(t->words);
  free(t);
}

/* ---- expansion ---- */

typedef struct buf {
  char *s;
  size_t len, room;
  bool failed;
} buf;

static void put(buf *b, const char *s, size_t n) {
  if (b->failed) return;
  if (b->len + n + 1 > b->room) {
    size_t room = b->room ? b->room : 64;
    while (room < b->len + n + 1) room *= 2;
    char *grown = realloc(b->s, room);
    if (!grown) {
      b->failed = true;
      return;
    }
    b->s = grown;
    b->room = room;
  }
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = 0;
}
static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

/* s as one shell word, as GNU parallel writes it: bare when it is only
 * letters, digits and _+./-, else single-quoted, a quote as '"'"'. */
static bool shell_safe(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c && strchr("_+./-", c));
}

static void put_quoted(buf *b, const char *s, size_t n) {
  bool bare = n > 0;
  for (size_t i = 0; i < n && bare; i++) bare = shell_safe(s[i]);
  if (bare) {
    put(b, s, n);
    return;
  }
  put(b, "'", 1);
  for (size_t i = 0; i < n; i++)
    if (s[i] == '\'')
      put(b, "'\"'\"'", 5);
    else
      put(b, s + i, 1);
  put(b, "'", 1);
}

/* The part of value a field takes (basename, dirname, without extension). */
static void field_value(const char *v, field_fn fn, const char **start, size_t *len) {
  size_t n = strlen(v);
  const char *slash = strrchr(v, '/');
  const char *base = slash ? slash + 1 : v;
  switch (fn) {
  case F_BASE:
    *start = base;
    *len = n - (size_t)(base - v);
    return;
  case F_DIR:
    if (!slash) {
      *start = ".";
      *len = 1;
    } else {
      *start = v;
      *len = slash == v ? 1 : (size_t)(slash - v);
    }
    return;
  case F_NOEXT:
  case F_BASE_NOEXT: {
    const char *from = fn == F_BASE_NOEXT ? base : v;
    const char *dot = strrchr(base, '.');
    *start = from;
    *len = dot && dot > base ? (size_t)(dot - from) : n - (size_t)(from - v);
    return;
  }
  default:
    *start = v;
    *len = n;
  }
}

static void put_field(buf *b, const segment *seg, const job_input *in, unsigned slot,
                      bool quote) {
  char num[32];
  if (seg->fn == F_SEQ || seg->fn == F_SLOT) {
    snprintf(num, sizeof num, "%llu",
             seg->fn == F_SEQ ? (unsigned long long)in->seq : (unsigned long long)slot);
    puts_(b, num);
    return;
  }
  size_t first = seg->col ? seg->col - 1 : 0, last = seg->col ? seg->col : in->ncols;
  for (size_t c = first; c < last && c < in->ncols; c++) {
    if (c > first) put(b, " ", 1);
    const char *start;
    size_t len;
    field_value(in->cols[c], seg->fn, &start, &len);
    if (quote)
      put_quoted(b, start, len);
    else
      put(b, start, len);
  }
}

void argv_free(char **argv) {
  if (!argv) return;
  for (char **a = argv; *a; a++) free(*a);
  free(argv);
}

/* One word, its replacement strings expanded (values quoted for a shell). */
static void put_word(buf *b, const word *w, const job_input *in, unsigned slot, bool quote) {
  for (size_t j = 0; j < w->nsegs; j++) {
    if (w->segs[j].field)
      put_field(b, &w->segs[j], in, slot, quote);
    else
      puts_(b, w->segs[j].text);
  }
}

/* Every word, separated by spaces. */
static void put_words(buf *b, const template *t, const job_input *in, unsigned slot, bool quote) {
  for (size_t i = 0; i < t->nwords; i++) {
    if (i) put(b, " ", 1);
    put_word(b, &t->words[i], in, slot, quote);
  }
}

/* The buffer's string (its ownership), or NULL if it ran out of memory. */
static char *take(buf *b) {
  if (b->failed) {
    free(b->s);
    return NULL;
  }
  return b->s ? b->s : strdup("");
}

char **template_expand(const template *t, const job_input *in, unsigned slot) {
  size_t extra = t->append && !t->shell ? in->ncols : 0;
  size_t argc = t->shell ? 3 : t->nwords + extra;
  char **argv = calloc(argc + 1, sizeof *argv);
  if (!argv) return NULL;
  if (t->shell) {
    buf script = {0};
    if (t->items_are_commands)
      for (size_t c = 0; c < in->ncols; c++) {
        if (c) put(&script, " ", 1);
        puts_(&script, in->cols[c]); /* the item is the command: not quoted */
      }
    put_words(&script, t, in, slot, true);
    if (t->append)
      for (size_t c = 0; c < in->ncols; c++) {
        put(&script, " ", 1);
        put_quoted(&script, in->cols[c], strlen(in->cols[c]));
      }
    char *text = take(&script);
    argv[0] = strdup("/bin/sh");
    argv[1] = argv[0] ? strdup("-c") : NULL;
    argv[2] = argv[1] ? text : NULL;
    if (!argv[2]) { /* text was not stored: still ours */
      free(text);
      argv_free(argv);
      return NULL;
    }
    return argv;
  }
  for (size_t i = 0; i < t->nwords; i++) {
    buf b = {0};
    put_word(&b, &t->words[i], in, slot, t->words[i].script);
    if (!(argv[i] = take(&b))) {
      argv_free(argv);
      return NULL;
    }
  }
  for (size_t c = 0; c < extra; c++)
    if (!(argv[t->nwords + c] = strdup(in->cols[c]))) {
      argv_free(argv);
      return NULL;
    }
  return argv;
}

char *template_expand_string(const template *t, const job_input *in, unsigned slot) {
  buf b = {0};
  put_words(&b, t, in, slot, false);
  return take(&b);
}

char *argv_line(char *const *argv) {
  if (argv[0] && !strcmp(argv[0], "/bin/sh") && argv[1] && !strcmp(argv[1], "-c") && argv[2])
    return strdup(argv[2]); /* a shell job: its script */
  buf b = {0};
  for (size_t i = 0; argv[i]; i++) {
    if (i) put(&b, " ", 1);
    put_quoted(&b, argv[i], strlen(argv[i]));
  }
  if (b.failed) {
    free(b.s);
    return NULL;
  }
  return b.s ? b.s : strdup("");
}
