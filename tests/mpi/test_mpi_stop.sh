#!/usr/bin/env bash
# test_mpi_stop.sh TEST_MPI FPRUN MPIEXEC - an MPI job stopped from outside
# ends, with nothing left running: Ctrl-C (SIGINT to mpirun) and a worker
# rank killed with SIGKILL, for an executor holding long tasks on every
# rank (each in a local worker process) and for fprun --mpi (jobs spawned
# by the worker ranks).
set -u
test_mpi=$1
fprun=$2
mpiexec=$3
passed=0 failed=0
check() { # name, expected, actual
  if [ "$2" == "$3" ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    printf 'FAIL %s\n  expected: %q\n  actual:   %q\n' "$1" "$2" "$3"
  fi
}
# Wait up to $3 s for pgrep -f PATTERN to count N.
wait_count() {
  for _ in $(seq $(($3 * 20))); do [ "$(pgrep -fc "$1")" -eq "$2" ] && return 0; sleep 0.05; done
  return 1
}
# Wait up to $3 s for at least N.
wait_atleast() {
  for _ in $(seq $(($3 * 20))); do [ "$(pgrep -fc "$1")" -ge "$2" ] && return 0; sleep 0.05; done
  return 1
}
left() { pgrep -fc "$1"; }

for how in INT KILL-RANK; do
  # An executor: 8 tasks of 60 s, one running on each worker rank.
  "$mpiexec" -n 3 "$test_mpi" hold >/dev/null 2>&1 &
  job=$!
  # mpirun, 3 ranks, 2 fork servers, 2 local workers running a task
  wait_atleast "$test_mpi hold" 8 20
  start=$(date +%s%N)
  if [ $how = INT ]; then
    kill -INT $job
  else
    victim=$(pgrep -f "$test_mpi hold" | sort -n | sed -n 3p) # a rank, not mpirun
    echo "killing rank $victim of: $(pgrep -f "$test_mpi hold" | tr "\n" " ")"
    kill -KILL "$victim"
  fi
  wait $job 2>/dev/null
  took=$((($(date +%s%N) - start) / 1000000))
  check "executor, $how: mpirun ends (ms < 5000)" yes "$([ $took -lt 5000 ] && echo yes || echo $took)"
  wait_count "$test_mpi hold" 0 5
  check "executor, $how: no rank or local worker is left" 0 "$(left "$test_mpi hold")"

  # fprun --mpi: jobs spawned by the worker ranks.
  marker="sleep 42.$((RANDOM % 1000))"
  "$mpiexec" -n 3 "$fprun" --mpi -j2 "$marker; : {}" ::: 1 2 3 4 5 6 >/dev/null 2>&1 &
  job=$!
  wait_atleast "^$marker" 4 20
  start=$(date +%s%N)
  if [ $how = INT ]; then
    kill -INT $job
  else
    kill -KILL "$(pgrep -f -- "$fprun --mpi" | sort -n | sed -n 3p)"
  fi
  wait $job 2>/dev/null
  took=$((($(date +%s%N) - start) / 1000000))
  check "fprun --mpi, $how: mpirun ends (ms < 5000)" yes "$([ $took -lt 5000 ] && echo yes || echo $took)"
  wait_count "^$marker" 0 5
  check "fprun --mpi, $how: no job is left" 0 "$(left "^$marker")"
  pkill -f "^$marker"
done

echo "mpi stop: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
