/* example_urls.c - the URL scenario: fetch 20 pages from a local HTTP
 * server (started here, pages with small random delays) plus one host
 * that does not resolve, three ways: the plain executor, the task manager
 * with the raise policy (stops at the failure), and with log (reports it,
 * finishes the rest, and writes a Chrome trace of the run: the first
 * argument, else $TMPDIR/futureproof_urls_trace.json).
 * Usage: example_urls [TRACE.json] */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <futureproof.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { PAGES = 20, URLS = PAGES + 1, BAD_URL = 8 };

/* ---- the local server: /page/N answers after 10-80 ms ---- */

static enum MHD_Result serve(void *cls, struct MHD_Connection *conn, const char *url,
                             const char *method, const char *version, const char *data,
                             size_t *size, void **state) {
  (void)cls, (void)method, (void)version, (void)data, (void)size, (void)state;
  unsigned n = 0;
  sscanf(url, "/page/%u", &n);
  struct timespec delay = {0, (long)(10 + (n * 37) % 71) * 1000000L};
  nanosleep(&delay, NULL);
  char body[512];
  int len = snprintf(body, sizeof body, "<html><body><h1>page %u</h1>%.*s</body></html>\n", n,
                     (int)(n * 13 % 300), "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur excepteur sint occaecat cupidatat non proident sunt in culpa");
  struct MHD_Response *r =
      MHD_create_response_from_buffer((size_t)len, body, MHD_RESPMEM_MUST_COPY);
  enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
  MHD_destroy_response(r);
  return ret;
}

static struct MHD_Daemon *start_server(unsigned *port) {
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct MHD_Daemon *d = MHD_start_daemon(
      MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0,
      NULL, NULL, serve, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_END);
  if (d) *port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
  return d;
}

/* ---- the task: fetch one URL, return its size ---- */

static size_t count_bytes(char *data, size_t size, size_t n, void *total) {
  (void)data;
  *(size_t *)total += size * n;
  return size * n;
}

static void *fetch(void *arg) {
  const char *url = arg;
  CURL *curl = curl_easy_init();
  if (!curl) return fp_raise(-ENOMEM, "curl_easy_init failed");
  size_t total = 0;
  curl_easy_setopt(curl, CURLOPT_URL, url);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, count_bytes);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &total);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM */
  CURLcode rc = curl_easy_perform(curl);
  curl_easy_cleanup(curl);
  if (rc == CURLE_COULDNT_RESOLVE_HOST)
    return fp_raise(-EHOSTUNREACH, "fetch %s: %s", url, curl_easy_strerror(rc));
  if (rc != CURLE_OK) return fp_raise(FP_ETASK, "fetch %s: %s", url, curl_easy_strerror(rc));
  return (void *)(uintptr_t)total;
}

static char urls[URLS][96];

static void print_task_line(const char *url, int rc, void *size, const fp_error *err) {
  if (rc == 0)
    printf("   %-34s %5zu bytes\n", url, (size_t)(uintptr_t)size);
  else
    printf("   %-34s failed: %s: %s\n", url, fp_err_name(err ? err->code : rc),
           err ? err->message : fp_strerror(rc));
}

/* ---- 1. the plain executor ---- */

static void plain(fp_executor *pool) {
  printf("-- plain executor: submit all, take them as they complete\n");
  double t0 = fp_now();
  fp_future *fs[URLS];
  for (int i = 0; i < URLS; i++) fp_submit(pool, fetch, urls[i], &fs[i]);
  fp_as_completed *it;
  fp_as_completed_new(fs, URLS, 30, &it);
  fp_future *f;
  int failed = 0;
  while (fp_as_completed_next(it, &f) == 0) {
    void *size;
    int rc = fp_future_result(f, 0, &size);
    failed += rc != 0;
    print_task_line(fp_future_arg(f), rc, size, fp_future_error(f));
  }
  fp_as_completed_free(it);
  for (int i = 0; i < URLS; i++) fp_future_release(fs[i]);
  printf("   all %d done in %.2f s, %d failed: the failure did not stop anything\n\n", URLS,
         fp_now() - t0, failed);
}

/* ---- 2 and 3. the task manager ---- */

static int next_url(void *state, void **item) {
  int *i = state;
  if (*i >= URLS) return 0;
  *item = urls[(*i)++];
  return 1;
}

/* A task's name in messages and the trace: its URL. */
static void describe_url(const void *item, char *buf, size_t len) {
  snprintf(buf, len, "%s", (const char *)item);
}

static void managed(fp_executor *pool, fp_error_policy policy, const char *trace) {
  printf("-- task manager, error policy %s\n", fp_error_policy_name(policy));
  fp_tm_options opt;
  fp_tm_options_init(&opt);
  opt.error_policy = policy;
  opt.describe = describe_url;
  opt.trace_path = trace;
  opt.monitor_interval = 0;
  opt.max_in_flight = 4;
  fp_task_manager *tm;
  fp_tm_new(pool, &opt, &tm);
  int next = 0;
  fp_tm_map(tm, fetch, next_url, &next, NULL);
  double t0 = fp_now();
  fp_task *t;
  int rc, fetched = 0;
  while ((rc = fp_tm_next(tm, 30, &t)) == 0) {
    void *size;
    int trc = fp_task_result(t, &size);
    fetched += trc == 0;
    print_task_line(fp_task_arg(t), trc, size, fp_task_error(t));
    fp_task_release(t);
  }
  double returned = fp_now();
  if (rc == FP_EOF) {
    printf("   finished in %.2f s: %d fetched, the failure was logged and the run went on\n",
           returned - t0, fetched);
  } else {
    double finished;
    fp_task_times(t, NULL, NULL, &finished);
    printf("   stopped at task %llu (%s): %s\n", (unsigned long long)fp_task_index(t),
           (char *)fp_task_arg(t), fp_last_error_message());
    printf("   %d of %d fetched; returned %.3f ms after the failure, %.2f s after the start\n",
           fetched, URLS, (returned - finished) * 1e3, returned - t0);
    fp_task_release(t);
  }
  fp_tm_stats st;
  fp_tm_get_stats(tm, &st);
  printf("   run time p50 %.0f ms, p99 %.0f ms; queue wait p99 %.0f ms (fp_tm_get_stats)\n",
         st.run.p50 * 1e3, st.run.p99 * 1e3, st.queue_wait.p99 * 1e3);
  fp_tm_free(tm);
  if (trace)
    printf("   trace: %s (open it in Perfetto, or: tools/trace_timeline.sh %s urls.png)\n", trace,
           trace);
  printf("\n");
}

int main(int argc, char **argv) {
  fp_set_logger(NULL, NULL, FP_LOG_INFO);
  setvbuf(stdout, NULL, _IOLBF, 0); /* in order with the log lines on stderr */
  curl_global_init(CURL_GLOBAL_DEFAULT); /* before any thread */
  unsigned port = 0;
  struct MHD_Daemon *server = start_server(&port);
  if (!server) {
    fprintf(stderr, "cannot start the local HTTP server\n");
    return 1;
  }
  for (int i = 0, page = 1; i < URLS; i++)
    if (i == BAD_URL)
      snprintf(urls[i], sizeof urls[i], "http://no-such-host.invalid/");
    else
      snprintf(urls[i], sizeof urls[i], "http://127.0.0.1:%u/page/%d", port, page++);
  printf("== URLs: %d pages from a local server (10-80 ms each) and one host that does not "
         "resolve, 4 threads\n\n", PAGES);

  fp_thread_pool_options popt;
  fp_thread_pool_options_init(&popt);
  popt.max_workers = 4;
  fp_executor *pool;
  fp_thread_pool_new(&popt, &pool);
  plain(pool);
  char trace[512];
  const char *tmp = getenv("TMPDIR");
  snprintf(trace, sizeof trace, "%s", argc > 1 ? argv[1] : "");
  if (argc < 2) snprintf(trace, sizeof trace, "%s/futureproof_urls_trace.json", tmp ? tmp : "/tmp");
  managed(pool, FP_POLICY_RAISE, NULL);
  managed(pool, FP_POLICY_LOG, trace);
  fp_executor_free(pool);
  MHD_stop_daemon(server);
  curl_global_cleanup();
  return 0;
}
