#!/usr/bin/env bash
# test_fprun_mpi.sh FPRUN MPIEXEC - fprun --mpi under mpirun with 3 ranks:
# the jobs run on both worker ranks, outputs and the joblog (with the host)
# come back to rank 0, fail fast and timeouts stop remote jobs, --resume
# works, and nothing is left running after.
set -u
fprun=$1
mpiexec=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/../shell_helpers.sh"
run() { "$mpiexec" -n 3 "$fprun" --mpi "$@"; }

check "every job's output, in order (-k)" "$(seq 40)" "$(run -j2 -k echo ::: $(seq 40) 2>/dev/null)"
check "the jobs ran on both worker ranks" 2 \
  "$(run -j2 'sleep 0.2; echo $PPID # {}' ::: $(seq 8) 2>/dev/null | sort -u | wc -l)"
run -j1 --joblog "$tmp/both" sleep ::: 1 1 >/dev/null 2>&1
check "-j1 on 2 worker ranks: two jobs at once (starts < 0.5 s apart)" yes \
  "$(tail -n +2 "$tmp/both" | cut -f3 | sort -n | awk 'NR == 1 { a = $1 } NR == 2 { print ($1 - a < 0.5) ? "yes" : $1 - a }')"
run -j1 --joblog "$tmp/log" echo ::: a b >/dev/null 2>&1
check "the joblog's Host column is the rank's host" "$(hostname)" "$(tail -1 "$tmp/log" | cut -f2)"
check "the joblog has every job" $'1\n2' "$(tail -n +2 "$tmp/log" | cut -f1 | sort)"

start=$(date +%s%N)
run -j1 'sleep {}; exit {}' ::: 1 41.5 >/dev/null 2>"$tmp/err"
rc=$?
took=$((($(date +%s%N) - start) / 1000000))
check "fail fast: the failing job's status" 1 $rc
check "fail fast: the job running on the other rank was stopped" 1 "$(grep -c '1 stopped' "$tmp/err")"
check "fail fast: within seconds, not 41 (ms < 10000)" yes "$([ $took -lt 10000 ] && echo yes || echo $took)"
check "nothing is left running" 0 "$(pgrep -fc 'sleep 41.5')"

run --timeout 0.5 sleep ::: 30 >/dev/null 2>&1
check "--timeout stops a remote job (143)" 143 $?

rm -f "$tmp/r.log"
run -j1 --halt never --joblog "$tmp/r.log" 'exit $(({} % 2))' ::: 1 2 3 4 >/dev/null 2>&1
check "--resume-failed runs only what failed" $'1\n3' \
  "$(run -j1 -k --resume-failed --joblog "$tmp/r.log" echo ::: 1 2 3 4 2>/dev/null)"

# --line-buffer: a remote job's lines reach rank 0's output as they come.
# The job prints a line, then waits (10 s at most) for a file that the
# test makes only once it has seen that line.
run --lb --tag -j1 'echo first {}; for i in $(seq 200); do [ -e {} ] && break; sleep 0.05; done; echo second {}' \
  ::: "$tmp/go" >"$tmp/lb" 2>/dev/null &
lb=$!
wait_file_has "$tmp/lb" "first" 5
check "--line-buffer: a line arrives while its job still runs" yes "$(grep -q first "$tmp/lb" && echo yes)"
touch "$tmp/go"
wait $lb
check "--line-buffer: every line, tagged, in order" "$tmp/go	first $tmp/go|$tmp/go	second $tmp/go" \
  "$(paste -sd'|' "$tmp/lb")"
check "-u: the jobs' output reaches the terminal through mpirun" $'a\nb' \
  "$(run -u -j1 echo ::: a b 2>/dev/null | sort)"

finish "fprun --mpi"
