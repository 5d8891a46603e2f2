/* example_map.c - map over an input that never ends: results come in
 * input order, and only a few items are ever read ahead, so memory stays
 * flat. Stops after the first 20 primes above a billion. */
#include <futureproof.h>
#include <stdint.h>
#include <stdio.h>

typedef struct numbers {
  uint64_t next;
  uint64_t read;
} numbers;

/* The input: every odd number from `next` on, forever. */
static int odd_numbers(void *state, void **item) {
  numbers *s = state;
  *item = (void *)(uintptr_t)s->next;
  s->next += 2;
  s->read++;
  return 1;
}

static void *is_prime(void *arg) {
  uint64_t n = (uintptr_t)arg;
  for (uint64_t d = 3; d * d <= n; d += 2)
    if (n % d == 0) return NULL;
  return arg;
}

int main(void) {
  fp_thread_pool_options popt;
  fp_thread_pool_options_init(&popt);
  popt.max_workers = 4;
  fp_executor *pool;
  if (fp_thread_pool_new(&popt, &pool)) return 1;

  fp_map_options mopt;
  fp_map_options_init(&mopt);
  mopt.buffersize = 8;  /* at most 8 items read ahead of us */
  mopt.timeout_s = 30;  /* for the whole map */
  numbers input = {1000000001, 0};
  fp_map *m;
  if (fp_map_new(pool, is_prime, odd_numbers, &input, &mopt, &m)) return 1;

  int found = 0;
  uint64_t consumed = 0;
  void *result;
  int rc;
  while (found < 20 && (rc = fp_map_next(m, &result)) == 0) {
    consumed++;
    if (result) printf("prime %2d: %llu\n", ++found, (unsigned long long)(uintptr_t)result);
  }
  printf("consumed %llu results, read %llu items: never more than %zu ahead\n",
         (unsigned long long)consumed, (unsigned long long)input.read, mopt.buffersize);
  fp_map_free(m); /* cancels the read-ahead that has not started */
  return fp_executor_free(pool);
}
