#!/usr/bin/env bash
# bench/http/passes.sh - what one event-loop pass of a server looks like at
# 1000 connections: the server (gnet, c-aco or go-aco, built by p99_ab.sh)
# pinned to one CPU, wrk -t1 -c1000 on the other, and for [secs] s in the
# middle of the load `perf record` of the server's epoll_wait/epoll_pwait
# enters and exits and its write syscalls (write, sendto, sendmsg) and
# reads (read, recvfrom).  Per server: how many events one epoll_wait
# returned (the median and the 99th percentile over passes, and the
# median seen by an event, which is the pass a request is in), how long a
# pass took (from epoll_wait's return to the next call: the median and
# p99 over passes, and the median and p99 seen by an event), syscalls per
# pass, and where in its pass a response is written (the time from the
# pass's start to each write, as a fraction of the pass: about 0.5 when
# every response goes out as its event is handled, near 1 when they wait
# for the end of the pass).  No clock is read by the servers for this;
# perf's tracepoints cost the server time, so the absolute times are
# larger than without perf, alike for every server.
#
#   bash bench/http/passes.sh [secs] [servers...]    (default 2 s; gnet c-aco go-aco)
#   (build first with p99_ab.sh; run under flock /tmp/bench.lock)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-2}
shift || true
servers=("$@")
[ ${#servers[@]} -gt 0 ] || servers=(gnet c-aco go-aco)
out=build/bench/http/p99_ab
[ -x "$out/crule" ] && [ -x "$out/goserver" ] && [ -x "$out/peers" ] ||
  { echo "bench/http/passes.sh: build the servers first (bench/http/p99_ab.sh)" >&2; exit 1; }
command -v perf >/dev/null || { echo "bench/http/passes.sh: needs perf" >&2; exit 1; }
srv_cpu=${SERVER_CPU:-1}
wrk_cpu=${WRK_CPU:-0}
nice_n=${NICE:--10}
nice -n "$nice_n" true 2>/dev/null || nice_n=0
# as in p99_ab.sh: a session of its own at nice_n (autogroup), pinned
pin=(setsid bash -c 'echo "$1" >/proc/$$/autogroup 2>/dev/null; exec nice -n "$1" taskset -c "$2" "${@:3}"' pin "$nice_n")
declare -A CMD=(
  [gnet]="$out/peers -server gnet -addr {ADDR}"
  [c-aco]="$out/crule {ADDR}"
  [go-aco]="$out/goserver -mode aco -addr {ADDR}"
)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
pid=
wpid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; [ -n "$wpid" ] && kill "$wpid" 2>/dev/null; true' EXIT
port=${PORT:-18700}
ev=syscalls:sys_enter_epoll_wait,syscalls:sys_exit_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_exit_epoll_pwait
ev=$ev,syscalls:sys_enter_write,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg
ev=$ev,syscalls:sys_enter_read,syscalls:sys_enter_recvfrom
printf '%-8s %7s %7s %9s %9s %9s %9s %9s %9s %9s %7s\n' server passes "ev med" "ev p99" "ev/evmed" \
  "us med" "us p99" "us/ev med" "us/ev p99" "sys/pass" "wr pos"
for s in "${servers[@]}"; do
  port=$((port + 1))
  addr=127.0.0.1:$port
  "${pin[@]}" "$srv_cpu" ${CMD[$s]//\{ADDR\}/$addr} >"$out/$s.passes.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -fs "http://$addr/hello" -o /dev/null 2>/dev/null && break; sleep 0.05; done
  "${pin[@]}" "$wrk_cpu" wrk -t1 -c1000 -d"$((secs + 3))s" "http://$addr/hello" >"$out/$s.passes.wrk" &
  wpid=$!
  sleep 1.5
  perf record -q -e "$ev" -p "$pid" -o "$out/$s.perf.data" -- sleep "$secs" 2>/dev/null
  wait "$wpid" || true
  wpid=
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  # per thread: a pass starts when epoll_wait returns n > 0 and ends at the
  # thread's next epoll_wait
  # per thread: a pass starts when epoll_wait returns n > 0 and ends at the
  # thread's next epoll_wait; one line per pass: events, us, syscalls,
  # then each write's position in the pass (0-1)
  perf script -i "$out/$s.perf.data" -F tid,time,event,trace 2>/dev/null | awk '
    function hex(x,   i, c, v) {
      x = tolower(x); sub(/^0x/, "", x); v = 0
      for (i = 1; i <= length(x); i++) { c = index("0123456789abcdef", substr(x, i, 1)) - 1; if (c < 0) return -1; v = v * 16 + c }
      return v
    }
    {
      tid = $1; ts = $2; sub(/:$/, "", ts); t = ts + 0; ev = $3
      if (ev ~ /sys_exit_epoll/) {
        n = hex($NF)
        if (n > 0 && n < 100000) { start[tid] = t; nev[tid] = n; nw[tid] = 0; ns[tid] = 0; w[tid] = "" }
        else start[tid] = 0
        next
      }
      if (ev ~ /sys_enter_epoll/) {
        if (start[tid] > 0) {
          d = t - start[tid]; line = nev[tid] " " d * 1e6 " " ns[tid]
          if (d > 0) { k = split(w[tid], x, " "); for (i = 1; i <= k; i++) line = line " " (x[i] - start[tid]) / d }
          print line
          start[tid] = 0
        }
        next
      }
      if (start[tid] > 0) { ns[tid]++; if (ev ~ /write|send/) w[tid] = w[tid] " " ts }
    }' >"$out/$s.passes"
  {
    printf '%s ' "$s"
    # passes; events per pass: median, p99; the median event's pass size
    awk '{print $1}' "$out/$s.passes" | sort -n | awk '{a[NR] = $1; t += $1} END {
      c = 0; for (i = 1; i <= NR; i++) { c += a[i]; if (c >= t / 2) { m = a[i]; break } }
      printf "%d %d %d %d ", NR, a[int(NR * 0.5) + 1], a[int(NR * 0.99) + 1], m }'
    # pass length: median and p99 over passes
    awk '{print $2}' "$out/$s.passes" | sort -g | awk '{a[NR] = $1} END {printf "%.0f %.0f ", a[int(NR * 0.5) + 1], a[int(NR * 0.99) + 1]}'
    # pass length seen by an event: median and p99 (weighted by events)
    awk '{print $2, $1}' "$out/$s.passes" | sort -g | awk '{a[NR] = $1; n[NR] = $2; t += $2} END {
      c = 0; for (i = 1; i <= NR; i++) { c += n[i]; if (!m && c >= t * 0.5) m = a[i]; if (c >= t * 0.99) { q = a[i]; break } }
      printf "%.0f %.0f ", m, q }'
    awk '{s += $3; for (i = 4; i <= NF; i++) { p += $i; k++ }} END {printf "%.1f %.2f\n", s / NR, k ? p / k : 0}' "$out/$s.passes"
  } | awk '{printf "%-8s %7d %7d %9d %9d %9.0f %9.0f %9.0f %9.0f %9.1f %7.2f\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11}'
done
