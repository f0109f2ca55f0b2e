#!/usr/bin/env bash
# bench/http/kpath.sh - the kernel side of a request, server by server, in
# one run: rawc (rawc.c), c-aco (crule.c) and gnet (bench/http/peers) in
# turn under the same load, wrk (Debian's) -t1 on CPU 0, the server
# pinned to CPU 1.  Per request: the server's CPU time (the scheduler's
# nanosecond account of all its threads, /proc/PID/task/*/schedstat), how
# often it was put on the CPU (schedstat's third field: each sleep and
# wake-up or preemption is one) and its system calls by kind (`perf stat`
# on the syscalls:sys_enter_* tracepoints, a separate run: the
# tracepoints cost time, so the CPU figure comes from the run without
# them).  Rounds alternate the order of the servers.
#
#   bash bench/http/kpath.sh [rounds] [secs] [load] [servers...]
#        (default 3 rounds of 4 s, c50 (or pipe16), rawc c-aco gnet)
#   (a timed benchmark: run it under flock /tmp/bench.lock)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
secs=${2:-4}
load=${3:-c50}
shift 3 || shift $#
servers=("$@")
[ ${#servers[@]} -gt 0 ] || servers=(rawc c-aco gnet)
out=build/bench/http/kpath
mkdir -p "$out"
for t in wrk perf; do
  command -v $t >/dev/null || { echo "bench/http/kpath.sh: needs $t" >&2; exit 1; }
done
wrk_cpu=0
. bench/http/ab_lib.sh
ab_build_c "$out"
(cd bench/http && go build -o "../../$out/peers" ./peers)
port=${PORT:-18290}
declare -A CMD=(
  [rawc]="$out/rawc 127.0.0.1:$port"
  [c-aco]="$out/crule 127.0.0.1:$port"
  [gnet]="$out/peers -server gnet -addr 127.0.0.1:$port"
)
calls=read,recvfrom,write,sendto,sendmsg,writev,epoll_wait,epoll_pwait,epoll_ctl,futex,sched_yield,nanosleep
events=$(echo "$calls" | tr , '\n' | sed 's/^/syscalls:sys_enter_/' | paste -sd,)
wargs=(-t1 -c50 -d"${secs}s")
sargs=()
[ "$load" = pipe16 ] && { wargs+=(-s bench/http/pipeline.lua); sargs=(-- 16); }
url=http://127.0.0.1:$port/hello
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; true' EXIT
start() {
  # shellcheck disable=SC2086
  taskset -c 1 ${CMD[$1]} >"$out/out" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null "$url" && break
    sleep 0.1
  done
  taskset -c "$wrk_cpu" wrk -t1 -c50 -d1s "$url" >/dev/null
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
sched() { cat /proc/"$1"/task/*/schedstat | awk '{c += $1; s += $3} END {printf "%.0f %.0f\n", c, s}'; }
res=$out/results.txt
: >"$res"
for r in $(seq "$rounds"); do
  order=("${servers[@]}")
  [ $((r % 2)) = 0 ] && order=($(printf '%s\n' "${servers[@]}" | tac))
  for s in "${order[@]}"; do
    start "$s"
    read -r c0 s0 < <(sched "$pid")
    n=$(taskset -c "$wrk_cpu" wrk "${wargs[@]}" "$url" "${sargs[@]}" | awk '/requests in/{print $1}')
    read -r c1 s1 < <(sched "$pid")
    stop
    start "$s"
    perf stat -x, -e "$events" -p "$pid" -o "$out/perf.txt" &
    ppid=$!
    sleep 0.3
    m=$(taskset -c "$wrk_cpu" wrk "${wargs[@]}" "$url" "${sargs[@]}" | awk '/requests in/{print $1}')
    kill -INT "$ppid"
    wait "$ppid" 2>/dev/null || true
    stop
    sc=$(awk -F, -v m="$m" '/sys_enter_/{sub(/.*sys_enter_/, "", $3); printf "%s=%.3f ", $3, $1 / m}' "$out/perf.txt")
    echo "$r $s $(awk -v n="$n" -v c="$((c1 - c0))" -v k="$((s1 - s0))" -v t="$secs" \
      'BEGIN{printf "%.0f %.3f %.3f", n / t, c / 1e3 / n, k / n}') $sc" >>"$res"
  done
  echo "round $r done, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
echo "http kpath: $rounds rounds of ${secs}s, load $load, wrk -t1 on CPU $wrk_cpu, server on CPU 1"
echo "round server req/s cpu_us/req on-cpu/req syscalls/req..."
cat "$res"
