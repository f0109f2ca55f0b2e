#!/usr/bin/env bash
# bench/http/goprobes.sh - how often the Go runtime's scheduler acts per
# request in a Go server under wrk: perf uprobes (perf probe -x) on
# runtime functions of the server's binary, counted with perf stat over
# the middle of the load, divided by the requests of that window:
#   retake      sysmon's ticks (it calls retake once a tick)
#   handoffp    a P handed to another thread (sysmon retaking the P of a
#               cgo call or system call that spanned two of its ticks)
#   startm      a thread woken (or made) to run a P
#   stopm       a thread that found nothing to do going to sleep
#   notewakeup  futex wake-ups of parked threads (sysmon's included)
#   stoplockedm a locked goroutine (the loop's driver) giving up its P
# Servers: gnet and the Go aco rule (goserver -mode aco), and another
# build's Go aco rule (BASE=...).  wrk (Debian's) with one thread on one
# CPU, the server pinned to the other; a 1 s warm-up at 50 connections,
# then LOAD for SECS + 1 s, counted over SECS - 1 s from 1 s in.  The
# probes cost a few microseconds each time they fire (the rates are what
# this gives, not the CPU).  Needs root and a kernel with uprobes.  Timed
# load: run it under the benchmark lock.
#
#   flock /tmp/bench.lock bash bench/http/goprobes.sh [secs] [load]   (default 4 c1000)
#   BASE=path/to/goserver ...     adds go-aco-base
#   SERVERS="go-aco" ...          a subset
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/http/ab_lib.sh
secs=${1:-4}
load=${2:-c1000}
out=build/bench/http/goprobes
mkdir -p "$out"
command -v wrk >/dev/null || { echo "bench/http/goprobes.sh: needs wrk" >&2; exit 1; }
command -v perf >/dev/null || { echo "bench/http/goprobes.sh: needs perf (linux-perf)" >&2; exit 1; }
srv_cpu=${SERVER_CPU:-1}
wrk_cpu=${WRK_CPU:-0}
ab_probe_build "$out"
funcs=(retake handoffp startm stopm notewakeup stoplockedm)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  perf probe -q -d 'goprobes:*' >/dev/null 2>&1
  true
}
trap cleanup EXIT
port=${PORT:-19100}
printf '%-12s %-7s %10s' server load "req/s"
printf ' %12s' "${funcs[@]}"
echo "   (per request)"
# the probes' counts over the middle of the load
measure() { perf stat -x, -e 'goprobes:*' -p "$1" -- sleep "$((secs - 1))" 2>"$out/stat.txt" >/dev/null; }
for s in "${AB_SERVERS[@]}"; do
  perf probe -q -d 'goprobes:*' >/dev/null 2>&1 || true
  for f in "${funcs[@]}"; do
    perf probe -q -x "${BIN[$s]}" -a "goprobes:gp_$f=runtime.$f" >/dev/null 2>&1 ||
      { echo "bench/http/goprobes.sh: cannot probe runtime.$f in ${BIN[$s]}" >&2; exit 1; }
  done
  port=$((port + 1))
  ab_probe_run "$s" "$port" "$out" measure
  # the window's requests: wrk's rate over the whole run x the window
  awk -F, -v s="$s" -v l="$load" -v r="$AB_RATE" -v w="$((secs - 1))" -v fl="${funcs[*]}" '
    NF > 2 { name = $3; sub(/^.*:gp_/, "", name); n[name] = $1 }
    END {
      printf "%-12s %-7s %10.0f", s, l, r
      k = split(fl, f, " ")
      for (i = 1; i <= k; i++) printf " %12.4f", n[f[i]] / (r * w)
      printf "\n"
    }' "$out/stat.txt"
done
