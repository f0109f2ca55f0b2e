#!/usr/bin/env bash
# run-tests.sh MODE BINARY...
# Runs each C test program and reports; exits non-zero if any failed.
# MODE: plain | asan | tsan | valgrind-wrap | qemu.  Test programs read
# ACO_TEST_MODE to scale loads down under slow runners (valgrind, qemu).
# TEST_JOBS programs run at once (default 2 natively, 1 under valgrind
# and qemu): most of a native program's time is spent waiting on timers
# and sockets, and each program uses its own ports (0) and temporary
# files, so two can share the machine; under valgrind and qemu a program
# keeps a CPU busy and its handshake and timer bounds need that CPU.
set -u
mode=$1; shift
case $mode in
  valgrind-wrap|qemu) jobs_max=${TEST_JOBS:-1} ;;
  *) jobs_max=${TEST_JOBS:-2} ;;
esac
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
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT

# run_one INDEX PROGRAM: runs it, writes its report to $results/INDEX
# (first line "ok" or "FAIL") and prints the report in one piece.
run_one() {
  local i=$1 t=$2 log start rc ms
  log=$results/$i.log
  start=$(date +%s%N)
  timeout --foreground -k 10 600 "${wrap[@]}" "$t" >"$log" 2>&1
  rc=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  if [ $rc -ne 0 ]; then
    { echo "FAIL [$mode] $t (exit $rc, ${ms}ms)"
      tail -n 60 "$log" | sed 's/^/    /'; } >"$results/$i.out"
  else
    printf 'ok   [%s] %s (%sms, %s)\n' "$mode" "$t" "$ms" \
      "$(grep -c '^ok ' "$log") cases" >"$results/$i.out"
  fi
  cat "$results/$i.out"
}

n=0
for t in "$@"; do
  n=$((n+1))
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n; done
  run_one "$n" "$t" &
done
wait
fail=$(cat "$results"/*.out /dev/null | grep -c '^FAIL ')
if [ "$fail" -ne 0 ]; then echo "$fail of $n test programs failed [$mode]"; exit 1; fi
echo "all $n test programs passed [$mode]"
