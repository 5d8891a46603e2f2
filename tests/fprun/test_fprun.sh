#!/usr/bin/env bash
# test_fprun.sh FPRUN - fprun from the shell, as a user runs it: inputs,
# replacement strings, quoting, exit statuses, fail fast, timeouts, the
# joblog, Ctrl-C. Each check prints ok/FAIL; the last line counts them.
set -u
fprun=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/../shell_helpers.sh"

# ---- inputs and replacement strings ----
check "::: runs once per item" $'a\nb\nc' "$("$fprun" echo {} ::: a b c | sort)"
check "no replacement string: the item is appended" $'x 1\nx 2' "$("$fprun" -j1 echo x ::: 1 2)"
check "replacement strings" "echo /x/y.tar y.tar.gz /x y.tar 1 1" \
  "$("$fprun" --dry-run echo {.} {/} {//} {/.} {#} {%} ::: /x/y.tar.gz)"
check "--dry-run lines stay whole on many slots" 500 \
  "$(seq 500 | "$fprun" -j8 --dry-run echo | grep -cx 'echo [0-9]*')"
check "{//} of a bare name is ." "echo . a" "$("$fprun" --dry-run echo {//} {/} ::: a)"
check "groups form their product, the last fastest" $'a1\na2\nb1\nb2' "$("$fprun" -j1 echo {1}{2} ::: a b ::: 1 2)"
check ":::+ links a group item by item" $'a-1\nb-2' "$("$fprun" -j1 echo {1}-{2} ::: a b :::+ 1 2)"
printf 'l1\nl2\n' >"$tmp/lines"
check ":::: reads a file's lines" $'l1\nl2' "$("$fprun" -j1 echo :::: "$tmp/lines")"
check "-a reads a file" $'l1\nl2' "$("$fprun" -j1 -a "$tmp/lines" echo)"
check "stdin lines" $'s1\ns2' "$(printf 's1\ns2\n' | "$fprun" -j1 echo)"
check "-0: NUL-separated" $'with\nnewline|x|' "$(printf 'with\nnewline\0x\0' | "$fprun" -j1 -0 printf '%s|')"
check "-N 2: two inputs a job" $'1 2\n3 4\n5' "$(printf '1\n2\n3\n4\n5\n' | "$fprun" -j1 -N 2 echo)"
check "no command: the items are commands" "hi" "$("$fprun" ::: 'echo hi')"
check "a single string with shell syntax runs in a shell, the item quoted" "a b;c" \
  "$("$fprun" 'echo {} | cat' ::: 'a b;c')"
check "--tag" $'t\tx t' "$("$fprun" --tag echo x ::: t)"
check "--tagstring with replacement strings" $'[1:a]\tx a' "$("$fprun" --tagstring '[{#}:{}]' echo x ::: a)"
check "--colsep splits a line into columns" $'ba\ndc' "$(printf 'a,b\nc,d\n' | "$fprun" -j1 --colsep , echo {2}{1})"
"$fprun" --colsep '(' echo ::: a >/dev/null 2>&1
check "--colsep that is no regular expression: 2" 2 $?

# ---- an item is one argument, never code ----
out=$("$fprun" -j1 printf '[%s]\n' ::: 'a b' "it's" '$HOME' '-n' ';touch pwned' '*')
check "hostile items stay single arguments" $'[a b]\n[it\'s]\n[$HOME]\n[-n]\n[;touch pwned]\n[*]' "$out"
check "nothing was executed from an item" "no" "$([ -e pwned ] && echo yes || echo no)"
check "an item in the script of sh -c is quoted there too" $'[a;touch pwned]\n[$(touch pwned)]' \
  "$("$fprun" -j1 -k bash -ec 'echo [{}]' ::: 'a;touch pwned' '$(touch pwned)')"
check "nothing was executed from an item in a script" "no" "$([ -e pwned ] && echo yes || echo no)"
check "an item with a newline is one item" $'[new\nline]' "$("$fprun" printf '[%s]\n' ::: $'new\nline')"
check "non-UTF-8 bytes pass through" "$(printf '[\377\376x]' | od -An -tx1)" \
  "$("$fprun" printf '[%s]' ::: $'\xff\xfex' | od -An -tx1)"

# ---- exit statuses ----
"$fprun" -j1 sh -c 'exit {}' ::: 0 3 0 >/dev/null 2>&1
check "fail fast: the failing job's status" 3 $?
"$fprun" --halt never sh -c 'exit {}' ::: 1 0 2 >/dev/null 2>&1
check "--halt never: the number of failed jobs" 2 $?
"$fprun" nosuchcommand-fprun ::: 1 >/dev/null 2>&1
check "a command that does not exist: 127" 127 $?
"$fprun" --bogus-option echo >/dev/null 2>&1
check "an unknown option: 2" 2 $?
"$fprun" -j many echo ::: 1 >/dev/null 2>&1
check "-j not a number: 2" 2 $?
"$fprun" echo {1%} ::: 1 >/dev/null 2>&1
check "an unknown replacement string: 2" 2 $?
"$fprun" '' ::: 1 >/dev/null 2>&1
check "an empty command: 2" 2 $?
"$fprun" -a "$tmp/no-such-file" echo >/dev/null 2>&1
check "an unreadable input file: 255" 255 $?
msg=$("$fprun" --bogus-option echo 2>&1 >/dev/null)
check "a usage error is one line" 1 "$(printf '%s\n' "$msg" | wc -l)"

# ---- fail fast stops the rest ----
start=$(date +%s%N)
"$fprun" -j2 sh -c 'sleep {}; exit {}' ::: 1 30 >/dev/null 2>&1
rc=$?
took=$((($(date +%s%N) - start) / 1000000))
check "the first failure ends the run" 1 $rc
check "the running job was stopped, not waited for (ms < 5000)" yes "$([ $took -lt 5000 ] && echo yes || echo $took)"
"$fprun" -j1 --halt soon,fail=1 sh -c 'echo {}; exit {}' ::: 0 1 0 >"$tmp/soon" 2>/dev/null
check "--halt soon: no new job after the failure" $'0\n1' "$(cat "$tmp/soon")"

start=$(date +%s%N)
"$fprun" sh -c 'setsid sleep 4.91 & sleep 0.3; echo {}' ::: escaped >/dev/null 2>&1
took=$((($(date +%s%N) - start) / 1000000))
pkill -xf 'sleep 4.91' # it escaped the job's group on purpose
check "a process that left the job's group does not hold fprun (ms < 3000)" yes \
  "$([ $took -lt 3000 ] && echo yes || echo $took)"

# ---- time ----
"$fprun" --timeout 0.3 sleep ::: 30 >/dev/null 2>&1
rc=$?
check "--timeout stops the job (SIGTERM: 143)" 143 $rc

"$fprun" --retries 3 --retry-delay 0.01 sh -c 'echo x >>"$0"; exit 1' "$tmp/tries" ::: 1 >/dev/null 2>&1
check "--retries 3: three tries in all" 3 "$(wc -l <"$tmp/tries")"
"$fprun" --retries 3 sh -c 'echo x >>"$0"' "$tmp/once" ::: 1 >/dev/null 2>&1
check "--retries: a success is not tried again" 1 "$(wc -l <"$tmp/once")"
start=$(date +%s%N)
"$fprun" -j4 --delay 0.1 true ::: 1 2 3 4
took=$((($(date +%s%N) - start) / 1000000))
check "--delay 0.1: four starts take 0.3 s at least" yes "$([ $took -ge 290 ] && echo yes || echo $took)"

# ---- seeing it run ----
check "--progress: the last line says all are done" "fprun: progress: 3/3 (100%)" \
  "$("$fprun" --progress true ::: 1 2 3 2>&1 | grep -o 'fprun: progress: 3/3 (100%)' | tail -1)"
check "--ungroup: output goes straight out" "x" "$("$fprun" -u echo ::: x)"

# ---- the joblog ----
"$fprun" -j1 --joblog "$tmp/log" sh -c 'exit {}' ::: 0 >/dev/null 2>&1
check "joblog header" $'Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand' \
  "$(head -1 "$tmp/log")"
check "joblog line: seq, exit value, command (quoted as GNU parallel does)" $'1\t0\tsh -c \'exit 0\'' "$(tail -1 "$tmp/log" | cut -f1,7,9)"

# ---- the trace ----
"$fprun" -j2 --halt never --trace "$tmp/trace.json" sh -c 'exit {}' ::: 0 1 0 >/dev/null 2>&1
check "--trace: one complete event a job" "3" "$(grep -c '"ph":"X"' "$tmp/trace.json")"
check "--trace: a JSON array, whole" "[ ]" "$(head -c1 "$tmp/trace.json") $(tail -c2 "$tmp/trace.json" | head -c1)"
check "--trace: jobs named by their inputs" "1" "$(grep -c '"name":"job 2: 1"' "$tmp/trace.json")"
rm -f "$tmp/env.json"
FP_TRACE="$tmp/env.json" "$fprun" -j2 true ::: 1 2 >/dev/null 2>&1
check "FP_TRACE=file traces a program that never asked" "2" "$(grep -c '"ph":"X"' "$tmp/env.json")"
check "--trace: a file it cannot write is a one-line error, exit 255" "255" \
  "$("$fprun" --trace /nonexistent/t.json true ::: 1 2>/dev/null; echo $?)"

rm -f "$tmp/r.log"
"$fprun" -j1 --halt never --joblog "$tmp/r.log" sh -c 'exit $(({} % 2))' ::: 1 2 3 4 >/dev/null 2>&1
check "--resume-failed runs only what failed" $'1\n3' \
  "$("$fprun" -j1 --resume-failed --joblog "$tmp/r.log" sh -c 'echo {}' ::: 1 2 3 4 2>/dev/null)"
check "--resume runs only what the joblog lacks" "5" \
  "$("$fprun" -j1 --resume --joblog "$tmp/r.log" sh -c 'echo {}' ::: 1 2 3 4 5 2>/dev/null)"
check "--resume appends to the joblog (one header)" 1 "$(grep -c '^Seq' "$tmp/r.log")"
"$fprun" --resume echo ::: 1 >/dev/null 2>&1
check "--resume without --joblog: 2" 2 $?

# ---- Ctrl-C ----
"$fprun" -j2 sh -c 'trap "" TERM; sleep 30; echo {}' ::: fprun-ctrl-c-1 fprun-ctrl-c-2 >/dev/null 2>"$tmp/ctrl-c.err" &
pid=$!
for _ in $(seq 200); do [ "$(pgrep -fc '^sleep 30$')" -ge 2 ] && break; sleep 0.05; done
start=$(date +%s%N)
kill -INT $pid
wait $pid
rc=$?
took=$((($(date +%s%N) - start) / 1000000))
check "Ctrl-C: exit 130" 130 $rc
[ $rc -eq 130 ] || cat "$tmp/ctrl-c.err"
# A second, as promised; sanitizer builds run slower (FPRUN_SLOW).
limit=$([ -n "${FPRUN_SLOW:-}" ] && echo 3000 || echo 1000)
check "Ctrl-C: within a second (ms)" yes "$([ $took -lt $limit ] && echo yes || echo $took)"
check "Ctrl-C: nothing it started is left" 0 "$(pgrep -fc 'trap "" TERM; sleep 30')"

n=0
for sig in TERM HUP INT KILL; do # no orphans, whatever stops fprun (KILL: the watchdog)
  n=$((n + 1))
  marker="sleep 41.$n"
  "$fprun" -j2 sh -c "$marker & $marker; :" ::: a b >/dev/null 2>&1 &
  pid=$!
  wait_count "^$marker\$" 4
  kill -$sig $pid
  wait $pid
  rc=$?
  [ $sig = KILL ] || check "SIG$sig stops the run as Ctrl-C does" 130 $rc
  wait_count "^$marker\$" 0
  check "SIG$sig: every job and what it started is gone" 0 "$(pgrep -fc "^$marker\$")"
  pkill -f "^$marker\$"
done

# ---- output ----
check "-k: outputs in input order" $'1\n2\n3\n4' "$("$fprun" -j4 -k sh -c 'sleep 0.$((5 - {})); echo {}' ::: 1 2 3 4)"
check "-k: 3000 jobs, a slow first one, in order" "$(seq 3000 | md5sum)" \
  "$(seq 3000 | "$fprun" -j4 -k sh -c '[ {} != 1 ] || sleep 1; echo {}' | md5sum)"
"$fprun" echo x ::: 1 >/dev/full 2>/dev/null
check "a full disk is an error, not silent loss" 255 $?
head -c 300000 /dev/urandom >"$tmp/binary"
for b in $(seq 0 255); do printf "\\$(printf %o "$b")"; done >>"$tmp/binary"
check "binary output (every byte value) arrives unchanged" "$(md5sum <"$tmp/binary")" \
  "$("$fprun" cat ::: "$tmp/binary" | md5sum)"
check "binary output unchanged with -k and --line-buffer too" "$(md5sum <"$tmp/binary")" \
  "$("$fprun" -k --line-buffer cat ::: "$tmp/binary" | md5sum)"
big=$("$fprun" -j2 head -c {} /dev/zero ::: 1048576 1048576 | wc -c)
check "MiB-sized outputs arrive whole" 2097152 "$big"

check "--line-buffer: whole lines, as they come" $'a1\nb1\na2' \
  "$("$fprun" --line-buffer -j2 ::: 'echo a1; sleep 0.8; echo a2' 'sleep 0.4; echo b1')"
check "--line-buffer --tag: each line tagged, the last one too" $'x\ta\nx\tb' \
  "$("$fprun" --lb --tag sh -c 'printf "a\nb"' ::: x)"
"$fprun" --line-buffer echo x ::: 1 >/dev/full 2>/dev/null
check "--line-buffer to a full disk is an error" 255 $?
check "-k: {%} in --tagstring is the job's slot" $'1\ta\n1\tb' "$("$fprun" -j1 -k --tagstring '{%}' echo ::: a b)"
check "-k: a timed-out job is counted" 1 \
  "$("$fprun" -k --timeout 0.2 sleep ::: 5 2>&1 >/dev/null | grep -c '(1 timed out')"
check "the summary counts the job the fail fast stopped apart from the failed one" 1 \
  "$("$fprun" -j2 'sleep {}; exit 1' ::: 0.2 30 2>&1 | grep -c '1 failed (0 timed out, 0 killed by a signal), 1 stopped')"
check "the summary names what was killed by a signal" 1 \
  "$("$fprun" sh -c 'kill -9 $$' ::: 1 2>&1 | grep -c '1 failed (0 timed out, 1 killed by a signal)')"

# ---- --timeout N%: of the median successful job ----
"$fprun" --halt never -j1 --timeout 300% sh -c 'sleep {}' ::: 0.1 0.1 0.1 0.1 3 0.1 >/dev/null 2>"$tmp/pct"
check "--timeout 300%: the job 30x the median is stopped" 1 $?
check "--timeout 300%: it is counted as timed out" 1 "$(grep -c '(1 timed out' "$tmp/pct")"
"$fprun" --halt never -j1 --timeout 300% sh -c 'sleep {}' ::: 1 0.1 0.1 >/dev/null 2>&1
check "--timeout N%: none until the median is known" 0 $?
"$fprun" --timeout 5x true ::: 1 >/dev/null 2>&1
check "--timeout 5x: 2" 2 $?

# ---- --retry-failed: the joblog's failed commands, again ----
rm -f "$tmp/rf.log" "$tmp"/mark*
cmd='[ -e "$0.{#}" ] || { touch "$0.{#}"; exit 1; }; echo ok {}'
"$fprun" -j1 --halt never --joblog "$tmp/rf.log" sh -c "$cmd" "$tmp/mark" ::: 'a b' $'new\nline' "it's" >/dev/null 2>&1
check "--retry-failed: the first run failed every job" 3 $?
check "--retry-failed runs the joblog's failed commands, whatever the command line says" \
  $'ok a b\nok new\nline\nok it\'s' "$("$fprun" -j1 -k --retry-failed --joblog "$tmp/rf.log" false ::: x 2>&1)"
check "--retry-failed: the retried jobs keep their seqs" $'1\n2\n3' \
  "$(awk -F'\t' '$1 ~ /^[0-9]+$/ && $7 == 0 { print $1 }' "$tmp/rf.log" | sort)"
check "--retry-failed: nothing is left to retry" "" "$("$fprun" --retry-failed --joblog "$tmp/rf.log" 2>&1)"
"$fprun" --retry-failed true >/dev/null 2>&1
check "--retry-failed without --joblog: 2" 2 $?

# ---- the same command line gives GNU parallel's output ----
if command -v parallel >/dev/null && parallel --version 2>/dev/null | grep -q 'GNU parallel'; then
  printf 'l1\nl2 x\n' >"$tmp/gnu-lines"
  same() { # stdin, then the arguments both get
    local input=$1
    shift
    local ours theirs
    ours=$(printf '%s' "$input" | "$fprun" "$@" 2>/dev/null; echo "exit $?")
    theirs=$(printf '%s' "$input" | parallel --will-cite "$@" 2>/dev/null; echo "exit $?")
    check "as GNU parallel: $*" "$theirs" "$ours"
  }
  # GNU parallel joins the command's words into one shell line: the
  # commands here mean the same to both (docs/fprun.md, differences).
  same "" -k echo {} ::: a b c
  same "" -k echo x ::: 1 2
  same "" -k echo {1}{2} ::: a b ::: 1 2
  same "" -k echo {1}-{2} ::: a b c :::+ 1 2 3
  same "" -k echo {.} {/} {//} {/.} ::: /x/y.tar.gz a.b/c d
  same "" -k echo {#} {1.} {2/} ::: a.x b.y ::: /p/q
  same "" -k echo {} ::: 'a b' "it's" '$HOME' '*' 'x;y' '`id`'
  same "" -k --dry-run echo {} ::: 'a b' "it's" '$HOME' -n '*' '' 'x=y' '~'
  same "" -k --dry-run 'echo {} | cat' ::: 'a b;c' "it's"
  same "" -k 'echo {} | tr a-z A-Z' ::: 'a b;c'
  same $'1\n2\n3\n4\n5\n' -k -N 2 echo
  same $'a,b\nc,d\n' -k --colsep , echo {2}{1}
  same $'with space\0x\0' -k -0 echo
  same "" -k --tag echo x ::: a b
  same "" -k --tagstring '[{}]' echo x ::: a
  same "" -k echo :::: "$tmp/gnu-lines"
  same "" -k -a "$tmp/gnu-lines" echo
  same "" -j1 --halt now,fail=1 'echo {}; exit {}' ::: 0 3 0
  same "" -k --halt never 'exit {}' ::: 1 0 2
  same "" -k --halt soon,fail=1 -j1 'echo {}; exit {}' ::: 0 1 0
  same "" -k --halt now,success=1 -j1 'echo {}; exit {}' ::: 1 0 1
  same "" -k --retries 2 'echo {}; exit 1' ::: a
  same "" --halt never nosuchcommand-fprun ::: 1
  "$fprun" -j1 --halt never --joblog "$tmp/ours.log" 'exit {}' ::: 0 1 2 >/dev/null 2>&1
  parallel --will-cite -j1 --halt never --joblog "$tmp/theirs.log" 'exit {}' ::: 0 1 2 >/dev/null 2>&1
  check "as GNU parallel: the joblog's Seq, Exitval, Signal and Command" \
    "$(cut -f1,7,8,9 "$tmp/theirs.log")" "$(cut -f1,7,8,9 "$tmp/ours.log")"
  "$fprun" -j1 --halt never --joblog "$tmp/ours.log" echo ::: 'a b' "it's" >/dev/null 2>&1
  parallel --will-cite -j1 --halt never --joblog "$tmp/theirs.log" echo ::: 'a b' "it's" >/dev/null 2>&1
  check "as GNU parallel: the joblog's Command, quoted" \
    "$(cut -f9 "$tmp/theirs.log")" "$(cut -f9 "$tmp/ours.log")"
else
  echo "skipped: the comparison with GNU parallel (the parallel package is not installed)"
fi

finish fprun
