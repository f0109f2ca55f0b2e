#!/usr/bin/env bash
# bench/http/instr.sh - user-space instructions per request, counted by
# valgrind's callgrind (deterministic: no clock, no other process's load in
# the figure), for the raw C responder (rawc.c) and the engine's C aco rule
# (crule.c): each server runs under callgrind while wrk (Debian's) sends
# GET /hello for SECS seconds, 50 connections, one request at a time
# ("alone") and pipelined 16 per write; instructions of the whole process
# after a 1 s warm-up with the same load (callgrind's counters are zeroed
# then: start-up, the dynamic linker's relocations of the libraries, is
# millions of instructions, a tenth of a 4 s run under callgrind) /
# requests wrk completed.
# The kernel's share of a request (the same system calls for both
# servers) is not in these figures: bench/http/run.sh measures CPU time.
#
#   bash bench/http/instr.sh [secs]          (default 4)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-4}
out=build/bench/http/instr
mkdir -p "$out"
command -v valgrind >/dev/null || { echo "bench/http/instr.sh: needs valgrind" >&2; exit 1; }
command -v wrk >/dev/null || { echo "bench/http/instr.sh: needs wrk" >&2; exit 1; }
. bench/http/ab_lib.sh
ab_build_c "$out"

pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; true' EXIT
# one run: server load -> instructions per request
count() {
  local srv=$1 load=$2
  rm -f "$out/cg.out" "$out/port"
  valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" "$out/$srv" \
    >"$out/port" 2>"$out/vg.log" &
  pid=$!
  local port
  port=$(ab_port "$out/port" 200 0.1)
  [ -n "$port" ] || { echo "bench/http/instr.sh: $srv did not start" >&2; cat "$out/vg.log" >&2; exit 1; }
  local args=(-t1 -c50 -d"${secs}s") sargs=()
  [ "$load" = pipelined ] && { args+=(-s bench/http/pipeline.lua); sargs=(-- 16); }
  local url="http://127.0.0.1:$port/hello" n
  wrk "${args[@]/-d${secs}s/-d1s}" "$url" "${sargs[@]}" >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  n=$(wrk "${args[@]}" "$url" "${sargs[@]}" | awk '/requests in/{print $1}')
  kill "$pid" # callgrind writes its counts on SIGTERM
  wait "$pid" 2>/dev/null || true
  pid=
  local ir
  ir=$(callgrind_annotate "$out/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
  awk -v ir="$ir" -v n="$n" 'BEGIN{printf "%.0f", ir / n}'
}
printf '%-10s %14s %14s\n' server "alone" "pipelined x16"
for s in rawc crule; do
  printf '%-10s %14s %14s\n' "$s" "$(count "$s" alone)" "$(count "$s" pipelined)"
done
