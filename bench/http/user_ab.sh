#!/usr/bin/env bash
# bench/http/user_ab.sh - the user-space and kernel parts of a server's CPU
# per request, for several builds side by side: each round runs every
# given server (the order rotates), 50 connections one request at a time
# (wrk on one CPU, the server pinned to the other), and samples the server
# with perf's software clock (cpu-clock, 4999 Hz, user and kernel: this
# VM has no hardware counters).  The server's CPU per request is the
# scheduler's account (/proc/PID/task/*/schedstat) over the run / the
# requests wrk completed; its user part is that times the share of the
# samples outside the kernel.  On builds that make the same system calls
# (the C rule's builds do: kpath.sh) the kernel part is the same work and
# the user part is what a change in user space moves; its sampling error
# is about 1/sqrt(user samples), printed as "+-".
#
#   bash bench/http/user_ab.sh ROUNDS SECS NAME=BINARY[@PATH]...
#   e.g. bash bench/http/user_ab.sh 4 4 main=/tmp/main/crule this=build/bench/http/cpu_ab/crule
#        bash bench/http/user_ab.sh 4 4 aco=build/bench/http/cpu_ab/crule \
#          classic=build/bench/http/cpu_ab/crule@/classic
# Each BINARY prints "port N" and serves GET PATH (default /hello; crule.c
# serves /hello from an aco rule and /classic from a classic one, rawc.c
# answers anything).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:?rounds}
secs=${2:?secs}
shift 2
[ $# -ge 1 ] || { echo "usage: user_ab.sh ROUNDS SECS NAME=BINARY..." >&2; exit 2; }
for t in wrk perf; do
  command -v "$t" >/dev/null || { echo "bench/http/user_ab.sh: needs $t" >&2; exit 1; }
done
out=build/bench/http/user_ab
mkdir -p "$out"
srv_cpu=${SERVER_CPU:-1}
wrk_cpu=${WRK_CPU:-0}
. bench/http/ab_lib.sh
names=() bins=() paths=()
for a in "$@"; do
  names+=("${a%%=*}")
  b=${a#*=}
  bins+=("${b%%@*}")
  if [ "$b" != "${b#*@}" ]; then paths+=("${b#*@}"); else paths+=(/hello); fi
done
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; true' EXIT
# one run: BINARY PATH -> "reqs cpu_us_per_req user_samples kernel_samples"
run() {
  local bin=$1 path=$2
  rm -f "$out/port"
  taskset -c "$srv_cpu" "$bin" >"$out/port" 2>"$out/err" &
  pid=$!
  local port
  port=$(ab_port "$out/port" 200 0.05)
  [ -n "$port" ] || { echo "bench/http/user_ab.sh: $bin did not start: $(cat "$out/err")" >&2; exit 1; }
  local url="http://127.0.0.1:$port$path" t0 t1 n
  taskset -c "$wrk_cpu" wrk -t1 -c50 -d1s "$url" >/dev/null
  t0=$(ab_cpu_ns "$pid")
  perf record -q -e cpu-clock -F 4999 -p "$pid" -o "$out/perf.data" -- sleep "$secs" \
    >/dev/null 2>&1 &
  local ppid=$!
  n=$(taskset -c "$wrk_cpu" wrk -t1 -c50 -d"${secs}s" "$url" | awk '/requests in/{print $1}')
  t1=$(ab_cpu_ns "$pid")
  wait "$ppid" || true
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  perf report -i "$out/perf.data" --sort dso --stdio -F overhead,sample,dso 2>/dev/null |
    awk -v n="$n" -v d="$((t1 - t0))" '
      !/^#/ && /%/ { if ($3 ~ /kernel/) k += $2; else u += $2 }
      END { printf "%d %.4f %d %d\n", n, d / 1e3 / n, u, k }'
}
res=$out/results.txt
: >"$res"
k=${#names[@]}
for r in $(seq "$rounds"); do
  for j in $(seq 0 $((k - 1))); do
    i=$(((j + r - 1) % k))
    echo "$r ${names[$i]} $(run "${bins[$i]}" "${paths[$i]}")" >>"$res"
  done
  echo "round $r done, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
echo "http user_ab: $rounds rounds of ${secs}s, wrk -t1 -c50 on CPU $wrk_cpu, server on CPU $srv_cpu"
awk "$AB_MED"'
  { n = $3; cpu = $4; u = $5; kk = $6; s = $2
    us = cpu * u / (u + kk); ks = cpu * kk / (u + kk)
    U[s, $1] = us; K[s, $1] = ks; C[s, $1] = cpu; NU[s] += u; if (!(s in seen)) { seen[s] = 1; order[++m] = s }
    if ($1 > R) R = $1 }
  END {
    printf "  %-10s %12s %14s %14s %10s   (medians of %d rounds; user: ranges)\n", "server", "CPU us/req", "user us/req", "kernel us/req", "+-", R
    for (i = 1; i <= m; i++) {
      s = order[i]
      for (r = 1; r <= R; r++) { a[r] = U[s, r]; b[r] = K[s, r]; c[r] = C[s, r]
        if (r == 1 || a[r] < lo) lo = a[r]; if (r == 1 || a[r] > hi) hi = a[r] }
      printf "  %-10s %12.3f %8.3f (%.3f-%.3f) %10.3f %9.1f%%\n", s, med(c, R), med(a, R), lo, hi, med(b, R), 100 / sqrt(NU[s] / R)
    }
  }' "$res"
