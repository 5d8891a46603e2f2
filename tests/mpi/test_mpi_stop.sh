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
. "$(dirname "$0")/../shell_helpers.sh"
# stop NAME HOW JOB RANKS LEFT: once the job runs, stop it HOW (INT: Ctrl-C
# to mpirun JOB; KILL-RANK: SIGKILL to a worker rank, the third of the
# processes `pgrep -f RANKS` lists by pid, after mpirun and rank 0); mpirun
# must end within 5 s, and no process matching LEFT may be left.
stop() {
  local name=$1 how=$2 job=$3 ranks=$4 left=$5
  local start took
  start=$(date +%s%N)
  if [ "$how" = INT ]; then
    kill -INT "$job"
  else
    kill -KILL "$(pgrep -f -- "$ranks" | sort -n | sed -n 3p)"
  fi
  wait "$job" 2>/dev/null
  took=$((($(date +%s%N) - start) / 1000000))
  check "$name, $how: mpirun ends (ms < 5000)" yes "$([ $took -lt 5000 ] && echo yes || echo $took)"
  wait_count "$left" 0 5
  check "$name, $how: nothing is left" 0 "$(pgrep -fc -- "$left")"
}

for how in INT KILL-RANK; do
  # An executor: 8 tasks of 60 s, one running on each worker rank (ready:
  # mpirun, 3 ranks, 2 fork servers, 2 local workers running a task).
  "$mpiexec" -n 3 "$test_mpi" hold >/dev/null 2>&1 &
  wait_atleast "$test_mpi hold" 8 20
  stop executor $how $! "$test_mpi hold" "$test_mpi hold"

  # fprun --mpi: jobs spawned by the worker ranks.
  marker="sleep 42.$((RANDOM % 1000))"
  "$mpiexec" -n 3 "$fprun" --mpi -j2 "$marker; : {}" ::: 1 2 3 4 5 6 >/dev/null 2>&1 &
  wait_atleast "^$marker" 4 20
  stop "fprun --mpi" $how $! "$fprun --mpi" "^$marker"
  pkill -f "^$marker"
done

finish "mpi stop"
