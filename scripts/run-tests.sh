#!/usr/bin/env bash
# run-tests.sh MODE BINARY...
# Runs each C test program and reports; exits non-zero if any failed.
# MODE: plain | asan | tsan | valgrind-wrap | qemu.  Test programs read
# ACO_TEST_MODE to scale loads down under slow runners (valgrind, qemu).
set -u
mode=$1; shift
fail=0; n=0
case $mode in
  valgrind-wrap) export ACO_TEST_MODE=valgrind
    wrap=(valgrind --quiet --error-exitcode=99 --leak-check=full
          --errors-for-leak-kinds=definite --show-leak-kinds=definite
          --track-fds=no --fair-sched=yes) ;;
  # -L /: the arm64 shared libraries (Debian multiarch) of the programs
  # linked dynamically (the OpenSSL ones: Makefile)
  qemu) export ACO_TEST_MODE=qemu; wrap=(${QEMU:-qemu-aarch64-static} -L /) ;;
  *) export ACO_TEST_MODE=$mode; wrap=() ;;
esac
for t in "$@"; do
  n=$((n+1))
  log=$(mktemp)
  start=$(date +%s%N)
  timeout --foreground -k 10 600 "${wrap[@]}" "$t" >"$log" 2>&1
  rc=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  if [ $rc -ne 0 ]; then
    fail=$((fail+1))
    echo "FAIL [$mode] $t (exit $rc, ${ms}ms)"
    tail -n 60 "$log" | sed 's/^/    /'
  else
    printf 'ok   [%s] %s (%sms, %s)\n' "$mode" "$t" "$ms" "$(grep -c '^ok ' "$log") cases"
  fi
  rm -f "$log"
done
if [ $fail -ne 0 ]; then echo "$fail of $n test programs failed [$mode]"; exit 1; fi
echo "all $n test programs passed [$mode]"
