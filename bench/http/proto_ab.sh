#!/usr/bin/env bash
# bench/http/proto_ab.sh - why run.sh and go_ab.sh give the Go aco rule
# different ratios against gnet: both servers in paired rounds (the order
# alternates), each measured three ways in the same round, every figure
# counted both ways (the scheduler's account of every thread,
# /proc/PID/task/*/schedstat, as go_ab.sh counts; utime+stime of
# /proc/PID/stat in clock ticks, as run.sh counts):
#   runsh-c50    run.sh's protocol: a fresh server, a 2 s warm-up at 50
#                connections, then 50 connections for SECS s
#   runsh-c1000  then, on the same server, 1000 connections (run.sh's c1000
#                follows its c50 on one server)
#   ab-c1000     go_ab.sh's protocol: a fresh server, a 1 s warm-up at 50
#                connections, then 1000 connections for SECS s
# wrk (Debian's) with one thread on one CPU, the server pinned to the
# other.  Prints one line per run and the per-round ratios go-aco/gnet.
# Timed: run it under the benchmark lock.
#
#   flock /tmp/bench.lock bash bench/http/proto_ab.sh [rounds] [secs]   (default 4 rounds of 5 s)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-4}
secs=${2:-5}
out=build/bench/http/proto_ab
mkdir -p "$out"
command -v wrk >/dev/null || { echo "bench/http/proto_ab.sh: needs wrk" >&2; exit 1; }
srv_cpu=${SERVER_CPU:-1}
wrk_cpu=${WRK_CPU:-0}
scripts/cgo-stamp.sh
(cd bench/http && go build -o "../../$out/peers" ./peers && go build -o "../../$out/goserver" ./goserver)
declare -A CMD=([gnet]="$out/peers -server gnet" [go-aco]="$out/goserver -mode aco")
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
port=${PORT:-19600}
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; true' EXIT
sched() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%.0f", s}'; }
ticks() { awk '{print $14 + $15}' /proc/"$1"/stat; }
hz=$(getconf CLK_TCK)
start() {
  port=$((port + 1))
  addr=127.0.0.1:$port
  taskset -c "$srv_cpu" ${CMD[$1]} -addr "$addr" >"$out/$1.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -fs "http://$addr/hello" -o /dev/null 2>/dev/null && break; sleep 0.05; done
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
# measure LABEL CONNS: "LABEL req/s sched_us_per_req ticks_us_per_req"
measure() {
  local s0 k0 s1 k1 n
  s0=$(sched "$pid"); k0=$(ticks "$pid")
  n=$(taskset -c "$wrk_cpu" wrk -t1 -c"$2" -d"${secs}s" --latency "http://$addr/hello" | awk '/requests in/{print $1}')
  s1=$(sched "$pid"); k1=$(ticks "$pid")
  awk -v l="$1" -v n="$n" -v ds="$((s1 - s0))" -v dk="$((k1 - k0))" -v hz="$hz" -v s="$secs" \
    'BEGIN{printf "%s %.0f %.3f %.3f", l, n / s, ds / 1e3 / n, dk * 1e6 / hz / n}'
}
res=$out/results.txt
: >"$res"
for r in $(seq "$rounds"); do
  order=(go-aco gnet)
  [ $((r % 2)) = 0 ] && order=(gnet go-aco)
  for s in "${order[@]}"; do
    start "$s"
    taskset -c "$wrk_cpu" wrk -t1 -c50 -d2s "http://$addr/hello" >/dev/null
    echo "$r $s $(measure runsh-c50 50)" >>"$res"
    echo "$r $s $(measure runsh-c1000 1000)" >>"$res"
    stop
    start "$s"
    taskset -c "$wrk_cpu" wrk -t1 -c50 -d1s "http://$addr/hello" >/dev/null
    echo "$r $s $(measure ab-c1000 1000)" >>"$res"
    stop
  done
  echo "round $r done, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
echo "http proto_ab: $rounds rounds of ${secs}s; CPU us per request, schedstat / ticks; go-aco/gnet per round"
awk '{ v[$1 " " $3 " " $2] = $5; k[$1 " " $3 " " $2] = $6; if ($1 > n) n = $1; print }
  END {
    split("runsh-c50 runsh-c1000 ab-c1000", L, " ")
    for (i = 1; i <= 3; i++) {
      printf "  %-12s go-aco/gnet:", L[i]
      for (r = 1; r <= n; r++) printf " %.2f", v[r " " L[i] " go-aco"] / v[r " " L[i] " gnet"]
      printf "  (ticks:"
      for (r = 1; r <= n; r++) printf " %.2f", k[r " " L[i] " go-aco"] / k[r " " L[i] " gnet"]
      printf ")\n"
    }
  }' "$res"
