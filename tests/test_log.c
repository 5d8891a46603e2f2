/* test_log.c - the logging hook, levels, and the default stderr format. */
#include "helpers.h"

#include <regex.h>
#include <unistd.h>

START_TEST(custom_logger_receives_lines_at_or_above_its_level) {
  capture_start();
  fp_log(FP_LOG_DEBUG, "debug %d", 1);
  fp_log(FP_LOG_ERROR, "error %d", 2);
  ck_assert(captured("debug: debug 1"));
  ck_assert(captured("error: error 2"));
  fp_set_logger(capture_logger, &test_log, FP_LOG_ERROR);
  fp_log(FP_LOG_WARNING, "filtered out");
  ck_assert(!captured("filtered out"));
  fp_log(FP_LOG_ERROR, "kept");
  ck_assert(captured("error: kept"));
  ck_assert_int_eq(fp_set_logger(NULL, NULL, (fp_log_level)9), FP_EINVAL);
}
END_TEST

/* Run fn with stderr sent to a temporary file; return what it wrote. */
static char *capture_stderr(void (*fn)(void)) {
  fflush(stderr);
  int saved = dup(2);
  FILE *tmp = tmpfile();
  dup2(fileno(tmp), 2);
  fn();
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  static char text[4096];
  rewind(tmp);
  size_t n = fread(text, 1, sizeof text - 1, tmp);
  text[n] = 0;
  fclose(tmp);
  return text;
}

static void log_three_levels(void) {
  fp_log(FP_LOG_INFO, "not shown by default");
  fp_log(FP_LOG_WARNING, "something odd: %s", "x");
  fp_log(FP_LOG_ERROR, "something bad");
}

START_TEST(default_logger_writes_time_thread_level_message_to_stderr) {
  fp_set_logger(NULL, NULL, FP_LOG_WARNING);
  char *text = capture_stderr(log_three_levels);
  ck_assert_ptr_null(strstr(text, "not shown by default"));
  regex_t re;
  ck_assert_int_eq(regcomp(&re,
                           "^\\[[0-9]{2}:[0-9]{2}:[0-9]{2} [0-9]+\\] warning: something odd: x\n"
                           "\\[[0-9]{2}:[0-9]{2}:[0-9]{2} [0-9]+\\] error: something bad\n$",
                           REG_EXTENDED),
                   0);
  ck_assert_msg(regexec(&re, text, 0, NULL, 0) == 0, "got: %s", text);
  regfree(&re);
}
END_TEST

static void bad_call(void) { fp_thread_pool_new(NULL, NULL); }

START_TEST(bad_arguments_log_by_default) {
  fp_set_logger(NULL, NULL, FP_LOG_WARNING);
  char *text = capture_stderr(bad_call);
  ck_assert_ptr_nonnull(strstr(text, "warning: invalid argument: fp_thread_pool_new: out is NULL"));
}
END_TEST

START_TEST(level_names) {
  ck_assert_str_eq(fp_log_level_name(FP_LOG_DEBUG), "debug");
  ck_assert_str_eq(fp_log_level_name(FP_LOG_INFO), "info");
  ck_assert_str_eq(fp_log_level_name(FP_LOG_WARNING), "warning");
  ck_assert_str_eq(fp_log_level_name(FP_LOG_ERROR), "error");
  ck_assert_str_eq(fp_log_level_name((fp_log_level)42), "unknown");
}
END_TEST

TEST_MAIN("log", custom_logger_receives_lines_at_or_above_its_level,
          default_logger_writes_time_thread_level_message_to_stderr, bad_arguments_log_by_default,
          level_names)
