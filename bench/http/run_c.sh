#!/usr/bin/env bash
# bench/http/run_c.sh [seconds] - the HTTP engine serving a C rule against a
# raw C epoll responder (the ceiling), same machine, same run: wrk (from
# Debian) on one CPU, the server pinned to the other.  For each server and
# load, ROUNDS (default 3) runs of `seconds` (default 5), alternating the
# servers; medians.  Loads: 50 keep-alive connections one request at a
# time, and the same connections pipelining 16 requests per write.
# Figures: requests/s, p99 latency (wrk), and server CPU time per request
# (utime+stime of the server process over the run / requests done: the
# steadiest figure, since one wrk core saturates near the top).
#   servers: rawc (bench/http/rawc.c), crule-aco (an aco rule, the seed's
#   hello handler without its job: crule.c), crule-classic (the same
#   handler as a classic rule).
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${1:-5}
rounds=${ROUNDS:-3}
conns=${CONNS:-50}
out=build/bench/http
mkdir -p "$out"
run=$(mktemp -d "$out/run.XXXXXX")
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$run"' EXIT

command -v wrk >/dev/null || { echo "bench/http: wrk is not installed (apt-get install wrk)"; exit 1; }
ncpu=$(nproc)
srv_cpu=${SERVER_CPU:-$((ncpu - 1))}
wrk_cpu=${WRK_CPU:-0}
[ "$ncpu" -ge 2 ] || echo "bench/http: one CPU only: server and wrk share it"

make -s lib >/dev/null
cc=${CC:-gcc}
$cc -std=gnu11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror bench/http/rawc.c -o "$run/rawc"
PKG_CONFIG_PATH=build/lib/pkgconfig
$cc -std=gnu11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -Ibuild/include \
  bench/http/crule.c \
  $(PKG_CONFIG_PATH=$PKG_CONFIG_PATH pkg-config --cflags --libs --static acoeventer) \
  -o "$run/crule"

tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# one measurement: server path load -> "reqs/s cpu_us_per_req p99_ms"
measure() {
  local srv=$1 path=$2 load=$3
  taskset -c "$srv_cpu" "$run/$srv" >"$run/port" 2>"$run/err" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do grep -q '^port ' "$run/port" 2>/dev/null && break; sleep 0.05; done
  local port
  port=$(sed -n 's/^port //p' "$run/port")
  [ -n "$port" ] || { echo "bench/http: $srv did not start: $(cat "$run/err")" >&2; exit 1; }
  local url="http://127.0.0.1:$port$path" args=(-t1 -c"$conns" -d"${dur}s" --latency)
  [ "$load" = pipe16 ] && args+=(-s bench/http/pipeline.lua)
  local sargs=()
  [ "$load" = pipe16 ] && sargs=(-- 16)
  # warm-up: connections made, pools filled
  taskset -c "$wrk_cpu" wrk -t1 -c"$conns" -d1s "$url" >/dev/null 2>&1 || true
  local t0 t1
  t0=$(cpu_ticks "$pid")
  taskset -c "$wrk_cpu" wrk "${args[@]}" "$url" "${sargs[@]}" >"$run/wrk" 2>&1
  t1=$(cpu_ticks "$pid")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  grep -q 'Non-2xx\|Socket errors' "$run/wrk" && { echo "bench/http: $srv $load: errors:" >&2; cat "$run/wrk" >&2; }
  awk -v t0="$t0" -v t1="$t1" -v tck="$tck" '
    / requests in / { n = $1 }
    /^Requests\/sec:/ { rps = $2 }
    /^ +99%/ { v = $2; if (v ~ /us$/) p = v / 1000; else if (v ~ /ms$/) p = v + 0; else p = v * 1000 }
    END { printf "%.0f %.3f %.3f\n", rps, (t1 - t0) * 1e6 / tck / n, p }' "$run/wrk"
}

servers=(rawc crule-aco crule-classic)
path_of() { case $1 in rawc) echo /hello ;; crule-aco) echo /hello ;; crule-classic) echo /classic ;; esac; }
bin_of() { case $1 in rawc) echo rawc ;; *) echo crule ;; esac; }

for load in c$conns pipe16; do
  for r in $(seq "$rounds"); do
    # alternate who goes first
    order=("${servers[@]}")
    [ $((r % 2)) = 0 ] && order=(crule-classic crule-aco rawc)
    for s in "${order[@]}"; do
      echo "$s $load $(measure "$(bin_of "$s")" "$(path_of "$s")" "${load/c$conns/plain}")" >>"$run/results"
    done
  done
done
cp "$run/results" "$out/results.txt"

echo "http: wrk -t1 -c$conns on CPU $wrk_cpu, server on CPU $srv_cpu, ${dur}s x $rounds rounds, medians ($ncpu CPUs)"
awk '
  function median(a, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { k = $1 " " $2; n[k]++; rps[k, n[k]] = $3; cpu[k, n[k]] = $4; p99[k, n[k]] = $5; loads[$2] = 1; srv[$1] = 1 }
  END {
    split("rawc crule-aco crule-classic", order, " ")
    for (l in loads) {
      printf "  %-8s %-14s %12s %14s %10s %14s %14s\n", l, "server", "req/s", "CPU us/req", "p99 ms", "CPU vs rawc", "req/s vs rawc"
      for (i = 1; i <= 3; i++) {
        s = order[i]; k = s " " l
        for (j = 1; j <= n[k]; j++) { a[j] = rps[k, j] } ; R[s] = median(a, n[k])
        for (j = 1; j <= n[k]; j++) { a[j] = cpu[k, j] } ; C[s] = median(a, n[k])
        for (j = 1; j <= n[k]; j++) { a[j] = p99[k, j] } ; P[s] = median(a, n[k])
      }
      for (i = 1; i <= 3; i++) {
        s = order[i]
        printf "  %-8s %-14s %12.0f %14.3f %10.2f %14.2f %14.2f\n", l, s, R[s], C[s], P[s], C[s] / C["rawc"], R[s] / R["rawc"]
      }
    }
  }' "$run/results"
