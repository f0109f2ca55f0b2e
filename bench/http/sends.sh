#!/usr/bin/env bash
# bench/http/sends.sh - how many write system calls (send, sendto,
# sendmsg, write, writev) a server makes per request under wrk (Debian's)
# with 50 connections pipelining 16 requests per write: the batching of
# pipelined responses.  Counted by `perf stat` on the syscalls:sys_enter_*
# tracepoints of the server's process, over one run of SECS seconds; wrk
# on CPU 0, the server pinned to CPU 1.  Servers: rawc (rawc.c), c-aco
# (crule.c), go-aco and go-handlehttp (goserver, -mode aco / http).
#
#   bash bench/http/sends.sh [secs] [server...]  (default 3 s, go-aco c-aco)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-3}
shift || true
servers=("$@")
[ ${#servers[@]} -gt 0 ] || servers=(go-aco c-aco)
out=build/bench/http/sends
mkdir -p "$out"
for t in wrk perf; do
  command -v $t >/dev/null || { echo "bench/http/sends.sh: needs $t" >&2; exit 1; }
done
port=${PORT:-18190}
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; true' EXIT
for s in "${servers[@]}"; do
  case $s in
    rawc)
      gcc -std=gnu11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror bench/http/rawc.c -o "$out/rawc"
      cmd=("$out/rawc" "127.0.0.1:$port") ;;
    c-aco)
      make -s lib >/dev/null
      gcc -std=gnu11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -Ibuild/include bench/http/crule.c \
        $(PKG_CONFIG_PATH=build/lib/pkgconfig pkg-config --cflags --libs --static acoeventer) \
        -o "$out/crule"
      cmd=("$out/crule" "127.0.0.1:$port") ;;
    go-aco | go-handlehttp)
      scripts/cgo-stamp.sh
      (cd bench/http && go build -o "../../$out/goserver" ./goserver)
      mode=aco
      [ "$s" = go-handlehttp ] && mode=http
      cmd=("$out/goserver" -mode "$mode" -addr "127.0.0.1:$port") ;;
    *) echo "bench/http/sends.sh: unknown server $s" >&2; exit 1 ;;
  esac
  taskset -c 1 "${cmd[@]}" >"$out/out" 2>&1 &
  pid=$!
  url=http://127.0.0.1:$port/hello
  for _ in $(seq 100); do
    curl -s -o /dev/null "$url" && break
    sleep 0.1
  done
  taskset -c 0 wrk -t1 -c50 -d1s "$url" >/dev/null
  perf stat -e 'syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_write,syscalls:sys_enter_writev' \
    -p "$pid" -o "$out/perf.txt" &
  ppid=$!
  sleep 0.3
  n=$(taskset -c 0 wrk -t1 -c50 -d"${secs}s" -s bench/http/pipeline.lua "$url" -- 16 |
    awk '/requests in/{print $1}')
  kill -INT "$ppid"
  wait "$ppid" 2>/dev/null || true
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  w=$(awk '/syscalls:sys_enter/{gsub(",", "", $1); t += $1} END{print t + 0}' "$out/perf.txt")
  awk -v s="$s" -v n="$n" -v w="$w" -v d="$secs" \
    'BEGIN{printf "%-14s %9.0f req/s  %10d writes  %.3f writes/request\n", s, n / d, w, w / n}'
  port=$((port + 1))
done
