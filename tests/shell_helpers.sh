# shell_helpers.sh - what the shell-level tests share (sourced): check()
# counts and reports, wait_count / wait_atleast wait for processes and
# wait_file_has for a file's line, with a deadline, and finish() prints the count and sets the exit status.
passed=0 failed=0

check() { # name, expected, actual
  if [ "$2" == "$3" ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    printf 'FAIL %s\n  expected: %q\n  actual:   %q\n' "$1" "$2" "$3"
  fi
}

# Wait up to SECONDS (default 5) for `pgrep -f PATTERN` to count exactly N.
wait_count() { # pattern, n, [seconds]
  for _ in $(seq $((${3:-5} * 20))); do [ "$(pgrep -fc -- "$1")" -eq "$2" ] && return 0; sleep 0.05; done
  return 1
}

# Wait up to SECONDS (default 5) for at least N.
wait_atleast() { # pattern, n, [seconds]
  for _ in $(seq $((${3:-5} * 20))); do [ "$(pgrep -fc -- "$1")" -ge "$2" ] && return 0; sleep 0.05; done
  return 1
}

# Wait up to SECONDS (default 5) for FILE to hold a line with TEXT.
wait_file_has() { # file, text, [seconds]
  for _ in $(seq $((${3:-5} * 20))); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  return 1
}

finish() { # what
  echo "$1: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
