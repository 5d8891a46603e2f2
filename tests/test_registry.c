/* test_registry.c - tasks by name: registration, stable ids, the refusals,
 * registration at load time, concurrent registration; and running a task
 * outside any future (fp_call_task), as executors on other machines do. */
#include "helpers.h"

#include <futureproof/executor.h>
#include <unistd.h>

static void *square(void *arg) { return (void *)((intptr_t)arg * (intptr_t)arg); }
static void *cube(void *arg) { return (void *)((intptr_t)arg * (intptr_t)arg * (intptr_t)arg); }
static void *failing(void *arg) { return fp_raise(-EIO, "cannot read %s", (const char *)arg); }

static void *echo_bytes(void *arg) {
  const fp_bytes *b = arg;
  return fp_bytes_copy(b->data, b->size);
}

FP_TASK_REGISTER(cube)

START_TEST(a_registered_function_has_a_stable_id_and_its_name) {
  ck_assert_int_eq(fp_task_register("square", square), 0);
  uint64_t id = fp_task_id(square);
  ck_assert(id != 0);
  ck_assert(fp_task_by_id(id) == square);
  ck_assert_str_eq(fp_task_name(square), "square");
  /* The id is the name's: 64-bit FNV-1a, the same in any process. */
  uint64_t h = 14695981039346656037ULL;
  for (const char *p = "square"; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
  ck_assert(id == h);
  ck_assert_int_eq(fp_task_register("square", square), 0); /* again: harmless */
}
END_TEST

START_TEST(registered_at_load_time) {
  ck_assert(fp_task_id(cube) != 0);
  ck_assert_str_eq(fp_task_name(cube), "cube");
  ck_assert((intptr_t)fp_task_by_id(fp_task_id(cube))((void *)3) == 27);
}
END_TEST

START_TEST(what_is_not_registered_is_not_found) {
  ck_assert(fp_task_id(failing) == 0);
  ck_assert_ptr_null(fp_task_name(failing));
  ck_assert(fp_task_by_id(12345) == NULL);
  ck_assert(fp_task_by_id(0) == NULL);
}
END_TEST

START_TEST(bad_registrations_are_refused_with_a_reason) {
  ck_assert_int_eq(fp_task_register("sq", square), 0);
  ck_assert_int_eq(fp_task_register("sq", cube), FP_EINVAL); /* the name is taken */
  ck_assert_ptr_nonnull(strstr(fp_last_error_message(), "the name sq is taken"));
  ck_assert_int_eq(fp_task_register("square2", square), FP_EINVAL); /* registered as sq */
  ck_assert_ptr_nonnull(strstr(fp_last_error_message(), "registered already, as sq"));
  ck_assert_int_eq(fp_task_register(NULL, square), FP_EINVAL);
  ck_assert_int_eq(fp_task_register("", square), FP_EINVAL);
  ck_assert_int_eq(fp_task_register("nofn", NULL), FP_EINVAL);
  char long_name[FP_TASK_NAME_MAX + 2];
  memset(long_name, 'x', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = 0;
  ck_assert_int_eq(fp_task_register(long_name, failing), FP_EINVAL);
  ck_assert_str_eq(fp_task_name(square), "sq");
}
END_TEST

/* Many functions: the tables grow, every name and id stays right. The
 * "functions" are distinct addresses inside one array, never called. */
static char fake_functions[5000];

static fp_fn fake_function(int i) {
  void *p = &fake_functions[i];
  fp_fn fn;
  memcpy(&fn, &p, sizeof fn); /* POSIX: object and function pointers share a form */
  return fn;
}

static void *register_range(void *arg) {
  int from = (int)(intptr_t)arg;
  char name[32];
  for (int i = from; i < from + 1000; i++) {
    snprintf(name, sizeof name, "fake%d", i);
    ck_assert_int_eq(fp_task_register(name, fake_function(i)), 0);
  }
  return NULL;
}

START_TEST(many_registrations_from_many_threads) {
  pthread_t t[5];
  for (int k = 0; k < 5; k++)
    ck_assert_int_eq(pthread_create(&t[k], NULL, register_range, (void *)(intptr_t)(k * 1000)), 0);
  for (int k = 0; k < 5; k++) pthread_join(t[k], NULL);
  char name[32];
  for (int i = 0; i < 5000; i++) {
    fp_fn fn = fake_function(i);
    snprintf(name, sizeof name, "fake%d", i);
    ck_assert_str_eq(fp_task_name(fn), name);
    ck_assert(fp_task_by_id(fp_task_id(fn)) == fn);
  }
}
END_TEST

START_TEST(call_task_runs_a_task_outside_any_future) {
  int code = -1;
  char message[64];
  ck_assert((intptr_t)fp_call_task(square, (void *)7, &code, message, sizeof message) == 49);
  ck_assert_int_eq(code, 0);
  ck_assert_str_eq(message, "");
  ck_assert_ptr_null(fp_call_task(failing, "/x", &code, message, sizeof message));
  ck_assert_int_eq(code, -EIO);
  ck_assert_str_eq(message, "cannot read /x");
  char tiny[5];
  fp_call_task(failing, "/x", &code, tiny, sizeof tiny); /* truncated, terminated */
  ck_assert_str_eq(tiny, "cann");
  fp_call_task(NULL, NULL, &code, message, sizeof message);
  ck_assert_int_eq(code, FP_EINVAL);
}
END_TEST

static void *until_cancelled(void *arg) {
  (void)arg;
  double end = fp_now() + LONG_WAIT;
  while (!fp_cancel_requested() && fp_now() < end) usleep(1000);
  return fp_cancel_requested() ? (void *)1 : NULL;
}

static void *calls_a_task(void *arg) {
  int code;
  return fp_call_task(until_cancelled, arg, &code, NULL, 0);
}

/* An executor that runs units of tasks in its own threads (futureproof-mpi
 * without isolation) calls each with fp_call_task: a cancel of the unit's
 * future must reach them. */
START_TEST(a_task_called_inside_a_task_sees_its_cancel) {
  fp_executor *ex = new_pool(1);
  fp_future *f;
  ck_assert_int_eq(fp_submit(ex, calls_a_task, NULL, &f), 0);
  ck_assert(wait_until(future_running, f, LONG_WAIT));
  fp_future_cancel(f);
  void *r = NULL;
  ck_assert_int_eq(fp_future_result(f, LONG_WAIT, &r), 0);
  ck_assert_ptr_eq(r, (void *)1);
  fp_future_release(f);
  fp_executor_free(ex);
}
END_TEST

START_TEST(a_future_says_whether_it_carries_bytes) {
  fp_executor *ex = new_pool(1);
  fp_future *a, *b;
  ck_assert_int_eq(fp_submit(ex, square, (void *)2, &a), 0);
  ck_assert_int_eq(fp_submit_bytes(ex, echo_bytes, "ab", 2, &b), 0);
  ck_assert(!fp_future_carries_bytes(a));
  ck_assert(fp_future_carries_bytes(b));
  ck_assert(!fp_future_carries_bytes(NULL));
  fp_future_release(a);
  fp_future_release(b);
  fp_executor_free(ex);
}
END_TEST

TEST_MAIN("registry", a_registered_function_has_a_stable_id_and_its_name, registered_at_load_time,
          what_is_not_registered_is_not_found, bad_registrations_are_refused_with_a_reason,
          many_registrations_from_many_threads, call_task_runs_a_task_outside_any_future,
          a_future_says_whether_it_carries_bytes, a_task_called_inside_a_task_sees_its_cancel)
