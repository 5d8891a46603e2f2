#!/usr/bin/env bash
# scrape.sh EXAMPLE_METRICS - start the metrics example serving, GET
# /metrics over a plain TCP socket as a scraper does, and parse every line
# of the Prometheus text: a comment (# HELP / # TYPE) or a sample
# `name{labels} value`. The counters must move: tasks completed and failed,
# and the run-time histogram counted.
set -u
exe=$1
out=$(mktemp)
"$exe" --serve 60 >"$out" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$out"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# Its URL, then a page where tasks have finished and failed (deadline 20 s).
deadline=$((SECONDS + 20))
until grep -q '^serving http' "$out"; do
  [ $SECONDS -lt $deadline ] || fail "no URL within 20 s: $(cat "$out")"
  sleep 0.05
done
port=$(sed -n 's|^serving http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$out")
get() {
  exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$1" >&3
  tr -d '\r' <&3
  exec 3<&-
}
while :; do
  page=$(get /metrics) || fail "cannot connect to port $port"
  echo "$page" | grep -Eq '^fp_tasks_failed_total\{[^}]*\} [1-9]' && break
  [ $SECONDS -lt $deadline ] || fail "no failed task counted within 20 s"
  sleep 0.05
done

echo "$page" | head -1 | grep -q '^HTTP/1\.[01] 200' || fail "status: $(echo "$page" | head -1)"
body=$(echo "$page" | sed '1,/^$/d')
samples=0
while IFS= read -r line; do
  if [[ $line =~ ^#\ (HELP|TYPE)\ fp_[a-z_]+\ .+$ ]]; then
    continue
  elif [[ $line =~ ^fp_[a-z_]+\{([a-z_]+=\"[^\"]*\",?)+\}\ [0-9][0-9.e+-]*$ ]]; then
    samples=$((samples + 1))
  else
    fail "not a Prometheus line: '$line'"
  fi
done <<<"$body"
[ "$samples" -ge 50 ] || fail "only $samples samples"
echo "$body" | grep -Eq '^fp_tasks_completed_total\{executor="thread pool",id="[0-9]+"\} [1-9]' ||
  fail "no completed tasks counted"
echo "$body" | grep -Eq '^fp_task_run_seconds_count\{[^}]*\} [1-9]' || fail "no run-time histogram"
[ "$(get /nothing | head -1)" = "HTTP/1.0 404 Not Found" ] ||
  [ "$(get /nothing | head -1)" = "HTTP/1.1 404 Not Found" ] || fail "another path is not a 404"
echo "ok: $samples samples, every line parses"
