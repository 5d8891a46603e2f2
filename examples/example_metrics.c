/* example_metrics.c - a service that embeds futureproof serves its pool's
 * statistics on /metrics in the Prometheus text format (libmicrohttpd),
 * while a task manager keeps the pool busy with tasks of 1-20 ms (one in
 * ten fails). Without arguments: run a second, fetch /metrics once with
 * libcurl as a scraper would, show part of it. With --serve SECONDS: print
 * the URL and serve that long (what the test scrapes).
 * Usage: example_metrics [--serve SECONDS] */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <curl/curl.h>
#include <futureproof.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static fp_executor *pool;

/* ---- /metrics ---- */

static enum MHD_Result serve(void *cls, struct MHD_Connection *conn, const char *url,
                             const char *method, const char *version, const char *data,
                             size_t *size, void **state) {
  (void)cls, (void)method, (void)version, (void)data, (void)size, (void)state;
  if (strcmp(url, "/metrics") != 0) {
    static char missing[] = "not found: try /metrics\n";
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(missing), missing, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_NOT_FOUND, r);
    MHD_destroy_response(r);
    return ret;
  }
  int need = fp_executor_stats_format(pool, NULL, 0, FP_STATS_PROMETHEUS);
  char *body = need > 0 ? malloc((size_t)need + 1) : NULL;
  if (!body || fp_executor_stats_format(pool, body, (size_t)need + 1, FP_STATS_PROMETHEUS) < 0) {
    free(body);
    return MHD_NO;
  }
  struct MHD_Response *r =
      MHD_create_response_from_buffer((size_t)need, body, MHD_RESPMEM_MUST_FREE);
  MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4");
  enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
  MHD_destroy_response(r);
  return ret;
}

/* ---- the work ---- */

static atomic_bool stopping;

static void *work(void *arg) {
  uintptr_t i = (uintptr_t)arg;
  struct timespec d = {0, (long)(1 + (i * 7919) % 20) * 1000000L}; /* 1-20 ms */
  nanosleep(&d, NULL);
  if (i % 10 == 9) return fp_raise(FP_ETASK, "item %lu failed (one in ten does)", (unsigned long)i);
  return arg;
}

static int endless(void *state, void **item) {
  uintptr_t *n = state;
  if (atomic_load(&stopping)) return 0;
  *item = (void *)(*n)++;
  return 1;
}

typedef struct runner {
  fp_task_manager *tm;
  uintptr_t next;
  pthread_t thread;
} runner;

static void *run(void *arg) {
  runner *r = arg;
  fp_tm_map(r->tm, work, endless, &r->next, NULL);
  fp_tm_run(r->tm, -1);
  return NULL;
}

/* ---- a scrape, as Prometheus would ---- */

static size_t keep(char *data, size_t size, size_t n, void *userdata) {
  FILE *out = userdata;
  return fwrite(data, size, n, out);
}

static int scrape(unsigned port) {
  char url[64], *text = NULL;
  size_t len = 0;
  snprintf(url, sizeof url, "http://127.0.0.1:%u/metrics", port);
  FILE *mem = open_memstream(&text, &len);
  CURL *c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, keep);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, mem);
  CURLcode rc = curl_easy_perform(c);
  curl_easy_cleanup(c);
  fclose(mem);
  if (rc != CURLE_OK) {
    fprintf(stderr, "scraping %s: %s\n", url, curl_easy_strerror(rc));
    free(text);
    return 1;
  }
  printf("   GET %s: %zu bytes; the counters and the run-time histogram's tail:\n", url, len);
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    bool tail = strstr(line, "run_seconds_bucket{") &&
                (strstr(line, "le=\"0.01\"") || strstr(line, "le=\"+Inf\""));
    if (line[0] != '#' && (strstr(line, "_total{") || tail)) printf("     %s\n", line);
  }
  free(text);
  return 0;
}

int main(int argc, char **argv) {
  double serve_for = argc > 2 && !strcmp(argv[1], "--serve") ? atof(argv[2]) : 0;
  setvbuf(stdout, NULL, _IOLBF, 0);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  fp_thread_pool_options popt;
  fp_thread_pool_options_init(&popt);
  popt.max_workers = 4;
  if (fp_thread_pool_new(&popt, &pool) || fp_executor_stats_enable(pool)) return 1;

  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0,
                                          NULL, NULL, serve, NULL, MHD_OPTION_SOCK_ADDR,
                                          (struct sockaddr *)&addr, MHD_OPTION_END);
  if (!d) {
    fprintf(stderr, "cannot start the HTTP server\n");
    return 1;
  }
  unsigned port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;

  fp_tm_options topt;
  fp_tm_options_init(&topt);
  topt.error_policy = FP_POLICY_IGNORE; /* a service goes on; the counters tell */
  topt.monitor_interval = 0;
  runner r = {.next = 0};
  if (fp_tm_new(pool, &topt, &r.tm) || pthread_create(&r.thread, NULL, run, &r)) return 1;

  int rc = 0;
  if (serve_for > 0) {
    printf("serving http://127.0.0.1:%u/metrics for %g s\n", port, serve_for);
    struct timespec t = {(time_t)serve_for, (long)((serve_for - (double)(time_t)serve_for) * 1e9)};
    nanosleep(&t, NULL);
  } else {
    printf("== metrics: a pool's statistics on /metrics (Prometheus text), served with "
           "libmicrohttpd while a task manager keeps 4 threads busy\n\n");
    struct timespec t = {1, 0};
    nanosleep(&t, NULL);
    rc = scrape(port);
    char text[1024];
    fp_executor_stats_format(pool, text, sizeof text, FP_STATS_TEXT);
    printf("\n   the same, as text (fp_executor_stats_format, FP_STATS_TEXT):\n%s", text);
  }
  atomic_store(&stopping, true);
  pthread_join(r.thread, NULL);
  fp_tm_free(r.tm);
  MHD_stop_daemon(d);
  fp_executor_free(pool);
  curl_global_cleanup();
  return rc;
}
