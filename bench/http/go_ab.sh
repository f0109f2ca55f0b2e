#!/usr/bin/env bash
# bench/http/go_ab.sh - the Go rules against their peers in paired rounds,
# as bench/http/cpu_ab.sh does for the C rule: each round runs both
# servers of a pair back to back (which goes first alternates), wrk
# (Debian's) on one CPU, the server pinned to the other; CPU time is the
# scheduler's account of every thread of the server
# (/proc/PID/task/*/schedstat, ns) over the run / requests wrk completed.
# A round's two figures see the same machine load, so the per-round ratio
# is steadier than a ratio of medians on a shared machine.  Pairs:
#   go-aco / gnet            CPU per request, 50 connections
#   go-aco / gnet            CPU per request, 1000 connections
#   go-handlehttp / nethttp  CPU per request, 50 and 1000 connections
#   go-aco / fasthttp        req/s pipelined x16 (50 connections)
#
#   bash bench/http/go_ab.sh [rounds] [secs]     (default 7 rounds of 4 s)
#   BASE=path/to/goserver bash bench/http/go_ab.sh [rounds] [secs]
#       this build's Go aco rule against another build's (go-aco-base):
#       CPU per request at c50, c1000 and pipe16, and the pipelined rate
#   LOADS="c1000" ...   only the pairs at these loads (c50, c1000, pipe16)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-7}
secs=${2:-4}
out=build/bench/http/go_ab
mkdir -p "$out"
command -v wrk >/dev/null || { echo "bench/http/go_ab.sh: needs wrk" >&2; exit 1; }
srv_cpu=${SERVER_CPU:-1}
wrk_cpu=${WRK_CPU:-0}
scripts/cgo-stamp.sh
(cd bench/http && go build -o "../../$out/peers" ./peers && go build -o "../../$out/goserver" ./goserver)
declare -A CMD=(
  [gnet]="$out/peers -server gnet"
  [fasthttp]="$out/peers -server fasthttp"
  [nethttp]="$out/peers -server nethttp"
  [go-aco]="$out/goserver -mode aco"
  [go-handlehttp]="$out/goserver -mode http"
)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; true' EXIT
. bench/http/ab_lib.sh
port=${PORT:-18300}
# one run: server load -> "reqs/s cpu_us_per_req"
run() {
  local srv=$1 load=$2
  port=$((port + 1))
  local addr=127.0.0.1:$port
  taskset -c "$srv_cpu" ${CMD[$srv]} -addr "$addr" >"$out/$srv.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -fs "http://$addr/hello" -o /dev/null 2>/dev/null && break; sleep 0.05; done
  ab_measure "$pid" "http://$addr/hello" "$load"
  pid=
}
pairs=("go-aco gnet c50" "go-aco gnet c1000" "go-handlehttp nethttp c50" "go-handlehttp nethttp c1000" "go-aco fasthttp pipe16")
if [ -n "${BASE:-}" ]; then
  CMD[go-aco-base]="$BASE -mode aco"
  pairs=("go-aco go-aco-base c50" "go-aco go-aco-base c1000" "go-aco go-aco-base pipe16")
fi
if [ -n "${LOADS:-}" ]; then
  kept=()
  for p in "${pairs[@]}"; do
    for l in $LOADS; do [ "${p##* }" = "$l" ] && kept+=("$p"); done
  done
  [ ${#kept[@]} -gt 0 ] || { echo "bench/http/go_ab.sh: no pair at LOADS=\"$LOADS\" (c50, c1000, pipe16)" >&2; exit 1; }
  pairs=("${kept[@]}")
fi
res=$out/results.txt
: >"$res"
for r in $(seq "$rounds"); do
  for p in "${pairs[@]}"; do
    read -r a b load <<<"$p"
    order=("$a" "$b")
    [ $((r % 2)) = 0 ] && order=("$b" "$a")
    for s in "${order[@]}"; do echo "$r $load $s $(run "$s" "$load")" >>"$res"; done
  done
  echo "round $r done, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
echo "http go_ab: $rounds rounds of ${secs}s, wrk -t1 on CPU $wrk_cpu, server on CPU $srv_cpu"
printf '  %-30s %10s %10s %24s\n' "pair, load" "A med" "B med" "A/B med (range)"
report=("${pairs[@]}")
[ -n "${BASE:-}" ] && [[ " ${pairs[*]} " == *" pipe16 "* ]] && report+=("go-aco go-aco-base pipe16 rate")
for p in "${report[@]}"; do
  read -r a b load what <<<"$p"
  field=5 # CPU us per request
  [ "$load" = pipe16 ] && { [ -z "${BASE:-}" ] || [ "${what:-}" = rate ]; } && field=4 # req/s
  awk -v a="$a" -v b="$b" -v l="$load" -v f="$field" "$AB_MED"'
    $2 == l && $3 == a { va[$1] = $f }
    $2 == l && $3 == b { vb[$1] = $f }
    END {
      n = 0
      for (r in va) if (r in vb) { n++; ra[n] = va[r] / vb[r]; xa[n] = va[r]; xb[n] = vb[r] }
      lo = hi = ra[1]
      for (i = 2; i <= n; i++) { if (ra[i] < lo) lo = ra[i]; if (ra[i] > hi) hi = ra[i] }
      printf "  %-30s %10.2f %10.2f %12.2f (%.2f-%.2f)\n", a "/" b " " l (f == 4 ? " req/s" : " us/req"), med(xa, n), med(xb, n), med(ra, n), lo, hi
    }' "$res"
done
