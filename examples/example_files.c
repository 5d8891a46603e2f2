/* example_files.c - the quick start: checksum files concurrently, take
 * results as they complete, and see a failure as a named error.
 * Run: build/examples/example_files [FILE...] */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <futureproof.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* A task: FNV-1a over the file's bytes. Fails like C code fails. */
static void *checksum(void *arg) {
  const char *path = arg;
  FILE *fp = fopen(path, "rb");
  if (!fp) return fp_raise(-errno, "open %s: %s", path, strerror(errno));
  uint64_t h = 1469598103934665603ULL;
  for (int c; (c = getc(fp)) != EOF;) h = (h ^ (uint64_t)c) * 1099511628211ULL;
  fclose(fp);
  return (void *)(uintptr_t)h;
}

int main(int argc, char **argv) {
  const char *defaults[] = {"/etc/hostname", "/etc/os-release", "/no/such/file",
                            "/etc/passwd",   "/etc/services"};
  const char **paths = argc > 1 ? (const char **)argv + 1 : defaults;
  size_t n = argc > 1 ? (size_t)argc - 1 : sizeof defaults / sizeof *defaults;

  fp_executor *pool;
  fp_thread_pool_new(NULL, &pool); /* min(32, ncpu + 4) threads, started lazily */
  fp_future *futures[64];
  if (n > 64) n = 64;
  for (size_t i = 0; i < n; i++) fp_submit(pool, checksum, (void *)paths[i], &futures[i]);

  fp_as_completed *done;
  fp_as_completed_new(futures, n, 10.0 /* seconds */, &done);
  fp_future *f;
  while (fp_as_completed_next(done, &f) == 0) {
    void *sum;
    if (fp_future_result(f, 0, &sum) == 0)
      printf("%-20s %016llx\n", (char *)fp_future_arg(f), (unsigned long long)(uintptr_t)sum);
    else
      printf("%-20s failed: %s (%s)\n", (char *)fp_future_arg(f), fp_future_error(f)->message,
             fp_err_name(fp_future_error(f)->code));
  }
  fp_as_completed_free(done);
  for (size_t i = 0; i < n; i++) fp_future_release(futures[i]);
  return fp_executor_free(pool);
}
