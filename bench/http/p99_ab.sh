#!/usr/bin/env bash
# bench/http/p99_ab.sh - p99 latency at 1000 connections, the C aco rule
# (c-aco: crule.c) and the Go aco rule (go-aco: goserver -mode aco)
# against gnet, in paired rounds: each round runs the three servers back
# to back (the order rotates from round to round), with run.sh's settings:
# wrk (Debian's) with one thread on one CPU, the server pinned to the
# other, a fresh server per run, a 2 s warm-up at 50 connections, then
# wrk -t1 -c1000 --latency for [secs].  A round's three runs see about the
# same machine load, so the per-round ratios (c-aco/gnet, go-aco/gnet)
# are steadier than a ratio of medians; the summary gives each server's
# p99 per round, the median and range of the per-round ratios, and the
# CPU per request of the same runs (the scheduler's account of every
# thread of the server, /proc/PID/task/*/schedstat, over the run /
# requests wrk completed).
#
#   flock /tmp/bench.lock bash bench/http/p99_ab.sh [rounds] [secs]   (default 5 rounds of 5 s)
#   SERVERS="gnet c-aco" ...      a subset (gnet first: the ratios are against it)
#   SESSION=0 ...                 server and wrk in the caller's session (as go_ab.sh, run.sh)
#   BASE_C=path/to/crule BASE_GO=path/to/goserver ...
#                                 adds c-aco-base / go-aco-base: another build's servers
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-5}
secs=${2:-5}
out=build/bench/http/p99_ab
mkdir -p "$out"
command -v wrk >/dev/null || { echo "bench/http/p99_ab.sh: needs wrk" >&2; exit 1; }
srv_cpu=${SERVER_CPU:-1}
# the server and wrk each run in a session of their own at nice NICE
# (default -10, when allowed), the session's too (/proc/PID/autogroup:
# with autogrouping, which this machine has, a nice inside a session
# weighs only against that session's own processes, and other work on the
# machine, a build in another session, took half the server's CPU); the
# CPU wait column shows what is left.  NICE=0 measures as run.sh does.
nice_n=${NICE:--10}
nice -n "$nice_n" true 2>/dev/null || nice_n=0
# "${pin[@]}" CPU command...: the command on CPU, in a new session at
# nice_n (a simple command, not a function: started with &, $! is its pid)
pin=(setsid bash -c 'echo "$1" >/proc/$$/autogroup 2>/dev/null; exec nice -n "$1" taskset -c "$2" "${@:3}"' pin "$nice_n")
# SESSION=0: both in the caller's session at the caller's nice instead, as
# go_ab.sh and run.sh run them (NICE is then not used)
[ "${SESSION:-1}" = 0 ] && { pin=(taskset -c); nice_n="the caller's"; }
wrk_cpu=${WRK_CPU:-0}
make -s lib >/dev/null
gcc -std=gnu11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -Ibuild/include bench/http/crule.c \
  $(PKG_CONFIG_PATH=build/lib/pkgconfig pkg-config --cflags --libs --static acoeventer) \
  -o "$out/crule"
scripts/cgo-stamp.sh
(cd bench/http && go build -o "../../$out/peers" ./peers && go build -o "../../$out/goserver" ./goserver)
declare -A CMD=(
  [gnet]="$out/peers -server gnet -addr {ADDR}"
  [c-aco]="$out/crule {ADDR}"
  [go-aco]="$out/goserver -mode aco -addr {ADDR}"
)
servers=(${SERVERS:-gnet c-aco go-aco})
[ -n "${BASE_C:-}" ] && { CMD[c-aco-base]="$BASE_C {ADDR}"; servers+=(c-aco-base); }
[ -n "${BASE_GO:-}" ] && { CMD[go-aco-base]="$BASE_GO -mode aco -addr {ADDR}"; servers+=(go-aco-base); }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; true' EXIT
# "cpu_ns wait_ns": CPU time of every thread of PID so far, and the time
# they were runnable but waited for a CPU (other work on the server's
# CPU: a run whose wait is large measured the machine, not the server)
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1; w += $2} END {printf "%.0f %.0f", s, w}'; }
to_ms() { awk -v v="$1" 'BEGIN{ if (v ~ /us$/) print v/1000; else if (v ~ /ms$/) print v+0; else if (v ~ /s$/) print v*1000; else print v }'; }
port=${PORT:-18500}
# one run: server -> "p99_ms reqs/s cpu_us_per_req p50_ms wait_ms"
run() {
  local srv=$1
  port=$((port + 1))
  local addr=127.0.0.1:$port
  "${pin[@]}" "$srv_cpu" ${CMD[$srv]//\{ADDR\}/$addr} >"$out/$srv.log" 2>&1 &
  pid=$!
  local ok=
  for _ in $(seq 100); do curl -fs "http://$addr/hello" -o /dev/null 2>/dev/null && { ok=1; break; }; sleep 0.05; done
  [ -n "$ok" ] || { echo "bench/http/p99_ab.sh: $srv did not start: $(cat "$out/$srv.log")" >&2; exit 1; }
  "${pin[@]}" "$wrk_cpu" wrk -t1 -c50 -d2s "http://$addr/hello" >/dev/null
  local t0 t1 o c0 w0 c1 w1
  t0=$(cpu_ns "$pid")
  o=$("${pin[@]}" "$wrk_cpu" wrk -t1 -c1000 -d"${secs}s" --latency "http://$addr/hello")
  t1=$(cpu_ns "$pid")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  if grep -q 'Non-2xx\|Socket errors' <<<"$o"; then
    echo "bench/http/p99_ab.sh: $srv: $(grep 'Non-2xx\|Socket errors' <<<"$o")" >&2
  fi
  local n p99 p50
  n=$(awk '/requests in/{print $1}' <<<"$o")
  p99=$(to_ms "$(awk '$1=="99%"{print $2}' <<<"$o")")
  p50=$(to_ms "$(awk '$1=="50%"{print $2}' <<<"$o")")
  read -r c0 w0 <<<"$t0"
  read -r c1 w1 <<<"$t1"
  awk -v n="$n" -v d="$((c1 - c0))" -v w="$((w1 - w0))" -v s="$secs" -v p="$p99" -v m="$p50" \
    'BEGIN{printf "%.3f %.0f %.3f %.3f %.1f", p, n / s, d / 1e3 / n, m, w / 1e6}'
}
res=$out/results.txt
: >"$res"
ns=${#servers[@]}
for r in $(seq "$rounds"); do
  for i in $(seq 0 $((ns - 1))); do
    s=${servers[$(((i + r) % ns))]}
    echo "$r $s $(run "$s")" >>"$res"
  done
  echo "round $r: $(awk -v r="$r" '$1 == r {printf "%s %s ms (waited %s ms)  ", $2, $3, $7}' "$res")load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
. bench/http/ab_lib.sh
echo "http p99_ab: $rounds rounds of ${secs}s, wrk -t1 -c1000 --latency on CPU $wrk_cpu, server on CPU $srv_cpu, both at nice $nice_n"
printf '  %-12s %10s %10s %10s %12s %14s %26s\n' server "p99 ms" "p50 ms" "req/s" "CPU us/req" "CPU wait ms" "p99 / gnet, med (range)"
for s in "${servers[@]}"; do
  awk -v s="$s" "$AB_MED"'
    { p[$1, $2] = $3; q[$1, $2] = $4; c[$1, $2] = $5; m[$1, $2] = $6; wt[$1, $2] = $7; if ($1 > R) R = $1 }
    END {
      n = 0; k = 0
      for (r = 1; r <= R; r++) if ((r, s) in p) {
        n++; xp[n] = p[r, s]; xq[n] = q[r, s]; xc[n] = c[r, s]; xm[n] = m[r, s]; xw[n] = wt[r, s]
        if ((r, "gnet") in p && p[r, "gnet"] > 0) { k++; ra[k] = p[r, s] / p[r, "gnet"]; if (k == 1 || ra[k] < lo) lo = ra[k]; if (k == 1 || ra[k] > hi) hi = ra[k] }
      }
      rs = k && s != "gnet" ? sprintf("%.2f (%.2f-%.2f)", med(ra, k), lo, hi) : "-"
      printf "  %-12s %10.2f %10.2f %10.0f %12.3f %14.1f %26s\n", s, med(xp, n), med(xm, n), med(xq, n), med(xc, n), med(xw, n), rs
    }' "$res"
done
echo "  per round (p99 ms, CPU wait ms): $(awk '{a[$1] = a[$1] " " $2 "=" $3 "," $7} END {for (r = 1; r in a; r++) printf "[%d:%s]", r, a[r]}' "$res")"
