/* test_errors.c - codes, names, messages, the thread's last error, and the
 * version. */
#include "helpers.h"

START_TEST(every_code_has_a_name_and_a_message) {
  static const struct {
    int code;
    const char *name;
  } known[] = {
#define ROW(name, value, text) {FP_##name, "FP_" #name},
      FP_ERRNO_MAP(ROW)
#undef ROW
  };
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
    ck_assert_int_lt(known[i].code, 0);
    ck_assert_str_eq(fp_err_name(known[i].code), known[i].name);
    ck_assert_str_ne(fp_strerror(known[i].code), "unknown error");
    for (size_t j = 0; j < i; j++) ck_assert_int_ne(known[i].code, known[j].code);
  }
  ck_assert_int_eq(FP_ETIMEDOUT, -ETIMEDOUT); /* errno-compatible where it can */
  ck_assert_int_eq(FP_EINVAL, -EINVAL);
  ck_assert_str_eq(fp_strerror(FP_ESHUTDOWN), "cannot schedule new futures after shutdown");
  ck_assert_str_eq(fp_err_name(FP_EBROKEN), "FP_EBROKEN");
  ck_assert_str_eq(fp_err_name(FP_ECRASHED), "FP_ECRASHED");
  ck_assert_str_eq(fp_err_name(FP_EDEADLK), "FP_EDEADLK");
  ck_assert_str_eq(fp_err_name(FP_EINTR), "FP_EINTR");
}
END_TEST

START_TEST(unknown_codes_are_named_unknown) {
  ck_assert_str_eq(fp_strerror(-123456), "unknown error");
  ck_assert_str_eq(fp_err_name(-123456), "FP_UNKNOWN");
  ck_assert_str_eq(fp_strerror(0), "success");
}
END_TEST

START_TEST(common_errno_values_are_named) {
  ck_assert_str_eq(fp_err_name(-ENOENT), "ENOENT");
  ck_assert_str_eq(fp_strerror(-ENOENT), "no such file or directory");
  ck_assert_str_eq(fp_err_name(-EIO), "EIO");
  ck_assert_str_eq(fp_err_name(-ECONNREFUSED), "ECONNREFUSED");
  ck_assert_str_eq(fp_err_name(ENOENT), "FP_UNKNOWN"); /* errors are negative */
}
END_TEST

/* Every errno the C library knows by name, not only the common ones: a
 * task may fail with any -errno. */
START_TEST(every_errno_is_named) {
  ck_assert_str_eq(fp_err_name(-EBADMSG), "EBADMSG");
  ck_assert_str_eq(fp_err_name(-EOVERFLOW), "EOVERFLOW");
  ck_assert_str_eq(fp_err_name(-ENOTCONN), "ENOTCONN");
  ck_assert_str_ne(fp_strerror(-EBADMSG), "unknown error");
  int named = 0;
  for (int e = 1; e < 134; e++) {
    if (!strerrorname_np(e)) continue; /* a gap in the numbering */
    ck_assert_msg(strcmp(fp_err_name(-e), "FP_UNKNOWN") != 0, "errno %d has no name", e);
    ck_assert_msg(strcmp(fp_strerror(-e), "unknown error") != 0, "errno %d has no text", e);
    named++;
  }
  ck_assert_int_gt(named, 120);
}
END_TEST

static void *fail_in_thread(void *arg) {
  (void)arg;
  fp_future_new(NULL);
  return (void *)(intptr_t)fp_last_error()->code;
}

START_TEST(last_error_is_per_thread) {
  capture_start();
  fp_future *f;
  fp_future_new(&f);
  fp_future_result(f, 0, NULL);
  ck_assert_int_eq(fp_last_error()->code, FP_ETIMEDOUT);
  pthread_t th;
  void *other;
  pthread_create(&th, NULL, fail_in_thread, NULL);
  pthread_join(th, &other);
  ck_assert_int_eq((intptr_t)other, FP_EINVAL);
  ck_assert_int_eq(fp_last_error()->code, FP_ETIMEDOUT); /* ours is untouched */
  ck_assert_ptr_nonnull(strstr(fp_last_error_message(), "not done"));
  fp_future_release(f);
}
END_TEST

START_TEST(version_matches_the_header) {
  ck_assert_str_eq(fp_version_string(), FP_VERSION_STRING);
  char built[32];
  snprintf(built, sizeof built, "%d.%d.%d", FP_VERSION_MAJOR, FP_VERSION_MINOR, FP_VERSION_PATCH);
  ck_assert_str_eq(built, FP_VERSION_STRING);
}
END_TEST

TEST_MAIN("errors", every_code_has_a_name_and_a_message, unknown_codes_are_named_unknown,
          common_errno_values_are_named, every_errno_is_named,
          last_error_is_per_thread, version_matches_the_header)
