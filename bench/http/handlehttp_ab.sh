#!/usr/bin/env bash
# bench/http/handlehttp_ab.sh - HandleHTTP (goserver -mode http) against
# net/http in paired rounds, as go_ab.sh does for every Go rule, with the
# figures this pair is judged by: server CPU per request (the scheduler's
# account of every thread of the server, /proc/PID/task/*/schedstat, over
# the run / requests wrk completed), req/s, p99 latency (wrk --latency),
# and the server's context switches per request (voluntary + involuntary,
# /proc/PID/task/*/status).  Each round runs both servers back to back at
# each load (which goes first alternates): wrk (Debian's) on one CPU, the
# server pinned to the other.  The figure is the median of the per-round
# ratios; the range shows the noise.
#
#   bash bench/http/handlehttp_ab.sh [rounds] [secs]   (default 7 rounds of 4 s)
#   LOADS="c50 c1000" (default); BASE=path: a goserver binary built from
#   another commit takes net/http's place (before/after of a change)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-7}
secs=${2:-4}
out=build/bench/http/handlehttp_ab
mkdir -p "$out"
command -v wrk >/dev/null || { echo "bench/http/handlehttp_ab.sh: needs wrk" >&2; exit 1; }
srv_cpu=${SERVER_CPU:-1}
wrk_cpu=${WRK_CPU:-0}
loads=(${LOADS:-c50 c1000})
scripts/cgo-stamp.sh
(cd bench/http && go build -o "../../$out/peers" ./peers && go build -o "../../$out/goserver" ./goserver)
[ -z "${BASE:-}" ] && BASE_CMD="$out/peers -server nethttp"
declare -A CMD=(
  [nethttp]="${BASE_CMD:-$BASE -mode http}"
  [go-handlehttp]="$out/goserver -mode http"
)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; true' EXIT
. bench/http/ab_lib.sh
ctxsw() { cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ {s += $2} END {printf "%d", s}'; }
port=${PORT:-18700}
# one run: server load -> "req/s cpu_us_per_req p99_ms switches_per_req"
run() {
  local srv=$1 load=$2
  port=$((port + 1))
  local addr=127.0.0.1:$port
  taskset -c "$srv_cpu" ${CMD[$srv]} -addr "$addr" >"$out/$srv.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -fs "http://$addr/hello" -o /dev/null 2>/dev/null && break; sleep 0.05; done
  local url="http://$addr/hello" args=(-t1 -d"${secs}s" --latency)
  case $load in
  c*) args+=(-"$load") ;;
  esac
  taskset -c "$wrk_cpu" wrk -t1 -c50 -d1s "$url" >/dev/null
  local t0 t1 s0 s1 w
  t0=$(ab_cpu_ns "$pid")
  s0=$(ctxsw "$pid")
  w=$(taskset -c "$wrk_cpu" wrk "${args[@]}" "$url")
  t1=$(ab_cpu_ns "$pid")
  s1=$(ctxsw "$pid")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  awk -v d="$((t1 - t0))" -v sw="$((s1 - s0))" -v s="$secs" '
    function ms(v) {
      if (v ~ /us$/) return v / 1000
      if (v ~ /ms$/) return v + 0
      if (v ~ /s$/) return v * 1000
      return v
    }
    /requests in/ { n = $1 }
    $1 == "99%" { p99 = ms($2) }
    END { printf "%.0f %.3f %.2f %.3f", n / s, d / 1e3 / n, p99, sw / n }' <<<"$w"
}
res=$out/results.txt
: >"$res"
for r in $(seq "$rounds"); do
  for load in "${loads[@]}"; do
    order=(go-handlehttp nethttp)
    [ $((r % 2)) = 0 ] && order=(nethttp go-handlehttp)
    for s in "${order[@]}"; do echo "$r $load $s $(run "$s" "$load")" >>"$res"; done
  done
  echo "round $r done, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
echo "http handlehttp_ab: $rounds rounds of ${secs}s, wrk -t1 on CPU $wrk_cpu, server on CPU $srv_cpu"
printf '  %-34s %10s %10s %24s\n' "figure, load" "HandleHTTP" "${BASE:-net/http}" "ratio med (range)"
for load in "${loads[@]}"; do
  for f in 5:"CPU us/req" 4:"req/s" 6:"p99 ms" 7:"switches/req"; do
    awk -v l="$load" -v f="${f%%:*}" -v name="${f#*:}" "$AB_MED"'
      $2 == l && $3 == "go-handlehttp" { va[$1] = $f }
      $2 == l && $3 == "nethttp" { vb[$1] = $f }
      END {
        n = 0
        for (r in va) if (r in vb && vb[r] > 0) { n++; ra[n] = va[r] / vb[r]; xa[n] = va[r]; xb[n] = vb[r] }
        if (n == 0) exit
        lo = hi = ra[1]
        for (i = 2; i <= n; i++) { if (ra[i] < lo) lo = ra[i]; if (ra[i] > hi) hi = ra[i] }
        printf "  %-34s %10.2f %10.2f %12.2f (%.2f-%.2f)\n", name " " l, med(xa, n), med(xb, n), med(ra, n), lo, hi
      }' "$res"
  done
done
