#!/bin/sh
# tools/trace_timeline.sh - draw a futureproof trace (fp_trace_start,
# FP_TRACE, fp_tm_options.trace_path, fprun --trace) as a PNG timeline: a
# row per worker (executor and thread, or worker process), a bar per task
# from its start to its end, green when it succeeded, red when it failed,
# grey when cancelled; a bar is named where it has room (a path or URL by
# its last part). Needs
# gnuplot (Debian: gnuplot-nox).
# Usage: tools/trace_timeline.sh TRACE.json OUT.png [TITLE]
set -eu
[ $# -ge 2 ] || { echo "usage: $0 TRACE.json OUT.png [TITLE]" >&2; exit 2; }
trace=$1 png=$2 title=${3:-$(basename "$1")}
command -v gnuplot >/dev/null || { echo "$0: gnuplot is not installed (apt-get install gnuplot-nox)" >&2; exit 1; }
[ -r "$trace" ] || { echo "$0: cannot read $trace" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One event a line (the library writes them so): the executors' names, then
# bars as "row start_ms end_ms colour" and labels as "row start_ms name".
awk -v bars="$work/bars" -v labels="$work/labels" -v tics="$work/tics" '
function field(key,   m) {
  if (match($0, "\"" key "\":[-0-9.e+]+")) return substr($0, RSTART + length(key) + 3, RLENGTH - length(key) - 3)
  return ""
}
function text(key,   m, s) {
  if (!match($0, "\"" key "\":\"([^\"\\\\]|\\\\.)*\"")) return ""
  s = substr($0, RSTART + length(key) + 4, RLENGTH - length(key) - 5)
  gsub(/\\"/, "\x27", s)
  return s
}
/"ph":"M"/ && /"process_name"/ { pid = field("pid"); sub(/.*"args":\{"name":"/, ""); sub(/".*/, ""); kind[pid] = $0; next }
/"ph":"X"/ {
  pid = field("pid"); tid = field("tid"); key = pid ":" tid
  if (!(key in row)) { row[key] = rows++; rowpid[row[key]] = pid; rowtid[row[key]] = tid }
  t0 = field("ts") / 1000; t1 = t0 + field("dur") / 1000
  o = text("outcome")
  colour = o == "ok" ? "0x2e9e44" : o == "FP_ECANCELED" ? "0x9a9a9a" : "0xd7301f"
  printf "%d %.6f %.6f %s\n", row[key], t0, t1, colour > bars
  name = text("name")  # a path or URL: its last part (page/15 -> 15)
  if (name ~ /\/[^\/]+\/?$/) { sub(/\/$/, "", name); sub(/.*\//, "", name) }
  n++; lrow[n] = row[key]; lt0[n] = t0; lt1[n] = t1; lname[n] = name
  if (t1 > end) end = t1
}
END {
  for (i = 1; i <= n; i++)  # a name only where its bar has room for it
    if ((lt1[i] - lt0[i]) >= end * (length(lname[i]) + 1) * 0.0085)
      printf "%d %.6f \"%s\"\n", lrow[i], lt0[i], lname[i] > labels
  close(labels)
  printf "set ytics (" > tics
  for (r = 0; r < rows; r++) {
    name = rowpid[r] in kind ? kind[rowpid[r]] : "executor " rowpid[r]
    printf "%s\"%s, %s %s\" %d", (r ? ", " : ""), name, (name ~ /process/ ? "worker" : "thread"), rowtid[r], r > tics
  }
  printf ")\n" > tics
  print n > "/dev/stderr"
}' "$trace" 2>"$work/count"
events=$(cat "$work/count")
[ "${events:-0}" -gt 0 ] || { echo "$0: no task events in $trace" >&2; exit 1; }
rows=$(cut -d' ' -f1 "$work/bars" | sort -n | tail -1)
height=$((160 + 40 * (rows + 1)))
labelled=""
[ -s "$work/labels" ] && labelled=", '$work/labels' using 2:1:3 with labels left offset 0.3,0 font ',8' notitle"
gnuplot <<GNUPLOT
set terminal pngcairo size 1100,$height font 'sans,10'
set output '$png'
set title "$title ($events tasks)"
set xlabel 'milliseconds from the start of the trace'
load '$work/tics'
set yrange [-0.6:$rows + 0.9]
set grid xtics
set key off
set style fill solid 0.85 border rgb 'white'
plot '$work/bars' using ((\$2+\$3)/2):1:((\$3-\$2)/2):(0.3):4 with boxxyerror fc rgb variable $labelled
GNUPLOT
echo "$png: $events tasks on $((rows + 1)) rows"
