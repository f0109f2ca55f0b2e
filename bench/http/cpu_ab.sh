#!/usr/bin/env bash
# bench/http/cpu_ab.sh - the C aco rule (crule.c) against the raw C
# responder (rawc.c), CPU time per request in paired rounds: each round
# runs both (which goes first alternates), 50 connections one request at a
# time and pipelined x16, wrk (Debian's) on one CPU, the server pinned to
# the other.  CPU time is the scheduler's own account of every thread of
# the server (/proc/PID/task/*/schedstat, nanoseconds: not the 10 ms ticks
# of utime/stime), over the run, / requests wrk completed.  On a machine
# shared with other work a round's two figures see the same load, so the
# per-round ratio is steadier than a ratio of medians: the summary gives
# the median and the range of the per-round ratios, and the medians.
#
#   bash bench/http/cpu_ab.sh [rounds] [secs]     (default 7 rounds of 4 s)
#   BASE=path/to/server bash bench/http/cpu_ab.sh ...
#       the given server (another build of crule.c, say on main's library)
#       in rawc's place: the ratio is then this tree's build against it
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-7}
secs=${2:-4}
out=build/bench/http/cpu_ab
mkdir -p "$out"
command -v wrk >/dev/null || { echo "bench/http/cpu_ab.sh: needs wrk" >&2; exit 1; }
srv_cpu=${SERVER_CPU:-1}
wrk_cpu=${WRK_CPU:-0}
. bench/http/ab_lib.sh
ab_build_c "$out"

pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; true' EXIT
# one run: server load -> "reqs/s cpu_us_per_req"
run() {
  local srv=$1 load=$2
  rm -f "$out/port"
  local bin=$out/$srv
  [ "$srv" = rawc ] && [ -n "${BASE:-}" ] && bin=$BASE
  taskset -c "$srv_cpu" "$bin" >"$out/port" 2>"$out/err" &
  pid=$!
  local port
  port=$(ab_port "$out/port" 200 0.05)
  [ -n "$port" ] || { echo "bench/http/cpu_ab.sh: $srv did not start: $(cat "$out/err")" >&2; exit 1; }
  ab_measure "$pid" "http://127.0.0.1:$port/hello" "$load"
  pid=
}
res=$out/results.txt
: >"$res"
for r in $(seq "$rounds"); do
  order=(rawc crule)
  [ $((r % 2)) = 0 ] && order=(crule rawc)
  for load in c50 pipe16; do
    for s in "${order[@]}"; do echo "$r $load $s $(run "$s" "$load")" >>"$res"; done
  done
  echo "round $r done, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
echo "http cpu_ab: $rounds rounds of ${secs}s, wrk -t1 -c50 on CPU $wrk_cpu, server on CPU $srv_cpu"
[ -n "${BASE:-}" ] && echo "  (rawc's columns are $BASE)"
awk "$AB_MED"'
  { rps[$1, $2, $3] = $4; cpu[$1, $2, $3] = $5; if ($1 > R) R = $1 }
  END {
    split("c50 pipe16", L, " ")
    printf "  %-7s %12s %12s %12s %12s %26s %10s\n", "load", "rawc req/s", "crule req/s", "rawc us/req", "crule us/req", "CPU crule/rawc med (range)", "req/s"
    for (l = 1; l <= 2; l++) {
      for (r = 1; r <= R; r++) {
        a[r] = cpu[r, L[l], "crule"] / cpu[r, L[l], "rawc"]; b[r] = rps[r, L[l], "crule"] / rps[r, L[l], "rawc"]
        c[r] = cpu[r, L[l], "rawc"]; d[r] = cpu[r, L[l], "crule"]; e[r] = rps[r, L[l], "rawc"]; f[r] = rps[r, L[l], "crule"]
        if (r == 1 || a[r] < lo) lo = a[r]; if (r == 1 || a[r] > hi) hi = a[r]
      }
      printf "  %-7s %12.0f %12.0f %12.3f %12.3f %14.3f (%.2f-%.2f) %10.2f\n", L[l], med(e, R), med(f, R), med(c, R), med(d, R), med(a, R), lo, hi, med(b, R)
    }
  }' "$res"
