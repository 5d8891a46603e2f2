#!/bin/sh
# tools/fprun_demo.sh FPRUN - make demo's fprun scenario: fail fast on a
# failing job, then --halt never with a joblog.
fprun=$1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "fprun: ten jobs, the third fails after 0.3 s; the default stops the run there"
"$fprun" -j4 sh -c 'sleep 0.{}; [ {} != 3 ] || exit 7; echo job {} done' ::: 1 2 3 4 5 6 7 8 9 10
echo "exit status $? (the failing job's)"
echo
echo "fprun --halt never --joblog: every job runs, the log says which failed"
"$fprun" -j4 --halt never --joblog "$log" sh -c 'sleep 0.{}; [ {} != 3 ] || exit 7' ::: 1 2 3 4 5 6
echo "exit status $? (the number of failed jobs)"
cut -f1,7,9 "$log"
