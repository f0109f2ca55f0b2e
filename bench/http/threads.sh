#!/usr/bin/env bash
# bench/http/threads.sh - where a server's threads spend a run: for gnet,
# the C aco rule (crule.c), the Go aco rule (goserver -mode aco), and
# another build's Go aco rule (BASE=...), the CPU time,
# the CPU wait (runnable but not running: schedstat's run delay) and the
# voluntary and involuntary context switches of each thread of the server
# (/proc/PID/task/*/schedstat and status, read before and after the run),
# per request (CPU, wait, and CPU split into user and system time from
# the 10 ms ticks of /proc/PID/task/TID/stat) and per 1,000 requests
# (switches).  wrk (Debian's) with one thread on one CPU, the
# server pinned to the other, a 1 s warm-up at 50 connections, then LOAD
# for SECS seconds; the servers run one after the other, ROUNDS times.
# A thread is named by its rank in CPU time (t0 the busiest: the loop's),
# its share of the server's CPU and its switches; the Go runtime's sysmon
# is the thread with many voluntary switches and little CPU.
# Timed (the CPU figures are the machine's too): run it under the
# benchmark lock.
#
#   flock /tmp/bench.lock bash bench/http/threads.sh [rounds] [secs] [load]
#       (default 3 rounds of 4 s, c50; load c50, c1000 or pipe16)
#   SERVERS="gnet go-aco" ...       a subset
#   BASE=path/to/goserver ...       adds go-aco-base
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/http/ab_lib.sh
rounds=${1:-3}
secs=${2:-4}
load=${3:-c50}
out=build/bench/http/threads
mkdir -p "$out"
command -v wrk >/dev/null || { echo "bench/http/threads.sh: needs wrk" >&2; exit 1; }
srv_cpu=${SERVER_CPU:-1}
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
[ -n "${BASE:-}" ] && { CMD[go-aco-base]="$BASE -mode aco -addr {ADDR}"; servers+=(go-aco-base); }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; true' EXIT
# "tid cpu_ns wait_ns voluntary involuntary utime stime" per thread of
# PID (utime, stime: clock ticks of /proc/PID/task/TID/stat)
snap() {
  local t
  for t in /proc/"$1"/task/*; do
    awk -v t="${t##*/}" 'FILENAME ~ /schedstat$/ {c = $1; w = $2}
      /^voluntary_ctxt_switches/ {v = $2} /^nonvoluntary_ctxt_switches/ {n = $2}
      FILENAME ~ /\/stat$/ {sub(/^.*\) /, ""); u = $12; k = $13}
      END {printf "%s %s %s %s %s %s %s\n", t, c, w, v, n, u, k}' "$t/schedstat" "$t/status" "$t/stat" 2>/dev/null || true
  done
}
hz=$(getconf CLK_TCK)
port=${PORT:-18900}
res=$out/results.txt
: >"$res"
for r in $(seq "$rounds"); do
  for s in "${servers[@]}"; do
    port=$((port + 1))
    url=http://127.0.0.1:$port/hello
    taskset -c "$srv_cpu" ${CMD[$s]//\{ADDR\}/127.0.0.1:$port} >"$out/$s.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -fs "$url" -o /dev/null 2>/dev/null && break; sleep 0.05; done
    ab_load_args "$load" "${secs}"
    taskset -c "$wrk_cpu" wrk -t1 -c50 -d1s "$url" >/dev/null
    snap "$pid" >"$out/before"
    n=$(taskset -c "$wrk_cpu" wrk "${AB_ARGS[@]}" "$url" "${AB_EXTRA[@]}" | awk '/requests in/{print $1}')
    snap "$pid" >"$out/after"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
    # per thread: deltas; threads ranked by CPU
    awk -v r="$r" -v s="$s" -v n="$n" '
      FNR == NR {c[$1] = $2; w[$1] = $3; v[$1] = $4; x[$1] = $5; u[$1] = $6; k[$1] = $7; next}
      {dc = $2 - c[$1]; dw = $3 - w[$1]; dv = $4 - v[$1]; dx = $5 - x[$1]
       du = ($6 - u[$1]) / hz * 1e9; dk = ($7 - k[$1]) / hz * 1e9
       # (printf: mawk prints an integral value past 2^31-1 as %.6g)
       if (dc > 0 || dv > 0 || dx > 0) printf "%s %s %s %.0f %.0f %.0f %.0f %.0f %.0f\n", r, s, n, dc, dw, dv, dx, du, dk
      }' hz="$hz" "$out/before" "$out/after" |
      sort -k4,4nr | awk '{print $0, NR - 1}' >>"$res"
  done
  echo "round $r done, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
echo "http threads: $rounds rounds of ${secs}s at $load, wrk -t1 on CPU $wrk_cpu, server on CPU $srv_cpu"
echo "  per request (CPU, wait: us) and per 1,000 requests (switches), medians of the rounds;"
echo "  a thread: its rank in CPU time (t0 the busiest)"
printf '  %-12s %-6s %10s %10s %10s %10s %10s %10s\n' server thread "CPU us" "wait us" "vol sw" "invol sw" "user us" "sys us"
for s in "${servers[@]}"; do
  awk -v s="$s" '
    function med(a, k,   i, j, t) {
      for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
    }
    $2 == s { k = $10; if (k > 3) k = "rest"
      key = k; cnt[key, $1] = 1
      c[key, $1] += $4 / $3 / 1e3; w[key, $1] += $5 / $3 / 1e3; v[key, $1] += $6 / $3 * 1000; x[key, $1] += $7 / $3 * 1000; u[key, $1] += $8 / $3 / 1e3; y[key, $1] += $9 / $3 / 1e3
      C[$1] += $4 / $3 / 1e3; W[$1] += $5 / $3 / 1e3; V[$1] += $6 / $3 * 1000; X[$1] += $7 / $3 * 1000; U[$1] += $8 / $3 / 1e3; Y[$1] += $9 / $3 / 1e3
      if ($1 > R) R = $1; keys[key] = 1 }
    END {
      split("0 1 2 3 rest", order, " ")
      for (o = 1; o <= 5; o++) { key = order[o]; if (!(key in keys)) continue
        m = 0
        for (r = 1; r <= R; r++) if ((key, r) in cnt) { m++; a1[m] = c[key, r]; a2[m] = w[key, r]; a3[m] = v[key, r]; a4[m] = x[key, r]; a5[m] = u[key, r]; a6[m] = y[key, r] }
        printf "  %-12s %-6s %10.3f %10.3f %10.2f %10.2f %10.3f %10.3f\n", s, "t" key, med(a1, m), med(a2, m), med(a3, m), med(a4, m), med(a5, m), med(a6, m)
      }
      m = 0
      for (r = 1; r <= R; r++) if (r in C) { m++; a1[m] = C[r]; a2[m] = W[r]; a3[m] = V[r]; a4[m] = X[r]; a5[m] = U[r]; a6[m] = Y[r] }
      printf "  %-12s %-6s %10.3f %10.3f %10.2f %10.2f %10.3f %10.3f\n", s, "all", med(a1, m), med(a2, m), med(a3, m), med(a4, m), med(a5, m), med(a6, m)
    }' "$res"
done
