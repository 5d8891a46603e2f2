/* example_serial.c - the serial executor of this folder, built outside the
 * library on its public executor interface, running the library's own
 * machinery: submit, a lazy map, and a task manager that fails fast. */
#include "serial_executor.h"

#include <stdint.h>
#include <stdio.h>

static void *square(void *arg) {
  intptr_t x = (intptr_t)arg;
  if (x == 5) return fp_raise(-EDOM, "no square for %ld today", (long)x);
  return (void *)(x * x);
}

static int count_to_8(void *state, void **item) {
  intptr_t *n = state;
  if (*n >= 8) return 0;
  *item = (void *)(*n)++;
  return 1;
}

int main(void) {
  fp_executor *ex;
  if (serial_executor_new(&ex)) {
    fprintf(stderr, "serial executor: %s\n", fp_last_error_message());
    return 1;
  }
  fp_future *f;
  void *r;
  fp_submit(ex, square, (void *)12, &f);
  if (fp_future_result(f, 10.0, &r) == 0) printf("square(12) = %ld\n", (long)(intptr_t)r);
  fp_future_release(f);

  intptr_t next = 0;
  fp_map *m;
  fp_map_new(ex, square, count_to_8, &next, NULL, &m);
  printf("map:");
  for (int rc; (rc = fp_map_next(m, &r)) != FP_EOF;)
    if (rc)
      printf(" [%s]", fp_err_name(rc));
    else
      printf(" %ld", (long)(intptr_t)r);
  printf("\n");
  fp_map_free(m);

  fp_tm_options opt;
  fp_tm_options_init(&opt);
  opt.monitor_interval = 0;
  fp_task_manager *tm;
  fp_tm_new(ex, &opt, &tm);
  next = 0;
  fp_tm_map(tm, square, count_to_8, &next, NULL);
  int rc = fp_tm_run(tm, 10.0);
  printf("task manager: %s (%s), %ld of 8 items read\n", fp_err_name(rc), fp_last_error_message(),
         (long)next);
  fp_tm_free(tm);
  fp_executor_free(ex);
  return 0;
}
