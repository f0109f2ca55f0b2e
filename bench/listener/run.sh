#!/usr/bin/env bash
# bench/listener/run.sh [idle_connections] [rate_seconds] - the seed's aco
# listener in C (bench_listener serve: one loop, accept thread) and in Go
# on the same C listener (goaco: eventer.ListenAco, a Go coroutine per
# connection on one loop) against the Go peer (gopeer: net.Listener, a
# goroutine and a bufio.Reader per connection), same machine, same run,
# same clients (bench_listener idle-client / rate-client):
#   - resident memory per idle connection: the server's VmRSS before and
#     after idle_connections (default 10,000) clients have each sent a
#     line, got their "thanks!" and gone quiet;
#   - connections per second, CLIENTS (default 50) client threads each
#     doing connect + one line + its reply + close, the server pinned to
#     one CPU and the clients to another (two rounds, alternating).
# About 70 s.  `make bench` runs it after `make lib`.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-10000}
secs=${2:-4}
clients=${CLIENTS:-50}
out=build/bench/listener
mkdir -p "$out"
run=$(mktemp -d "$out/run.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$run"
}
trap cleanup EXIT

make -s lib >/dev/null
export PKG_CONFIG_PATH=$PWD/build/lib/pkgconfig
${CC:-gcc} -std=gnu11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror \
  bench/listener/bench_listener.c $(pkg-config --cflags --libs --static acoeventer) \
  -o "$run/bench_listener"
go build -o "$run/gopeer" ./bench/listener/gopeer
scripts/cgo-stamp.sh
go build -o "$run/goaco" ./bench/listener/goaco

if [ "$(nproc)" -ge 2 ]; then spin=(taskset -c 0); cpin=(taskset -c 1); else spin=(); cpin=(); fi

# start_server NAME CMD... : starts it (pinned), sets spid and sport
start_server() {
  local name=$1; shift
  : >"$run/$name.port"
  "${spin[@]}" "$@" >"$run/$name.port" 2>"$run/$name.err" &
  spid=$!
  pids+=("$spid")
  sport=""
  for _ in $(seq 200); do
    sport=$(sed -n 's/^port \([0-9]*\)$/\1/p' "$run/$name.port")
    [ -n "$sport" ] && break
    sleep 0.05
  done
  [ -n "$sport" ] || { echo "$name did not start" >&2; cat "$run/$name.err" >&2; exit 1; }
}
stop_server() { kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

idle() { # NAME CMD...
  local name=$1; shift
  start_server "$name" "$@"
  sleep 0.5
  local before after
  before=$(rss_kb "$spid")
  mkfifo "$run/hold.$name"
  "$run/bench_listener" idle-client "$n" "$sport" <"$run/hold.$name" >"$run/$name.ready" &
  local cpid=$!
  pids+=("$cpid")
  exec 7>"$run/hold.$name"
  for _ in $(seq 1200); do grep -q ready "$run/$name.ready" && break; sleep 0.05; done
  grep -q ready "$run/$name.ready" || { echo "$name: clients not ready" >&2; exit 1; }
  sleep 1
  after=$(rss_kb "$spid")
  exec 7>&-
  wait "$cpid" || true
  stop_server
  echo "$name $(( (after - before) * 1024 / n ))" >>"$run/idle.txt"
}

rate() { # NAME CMD...
  local name=$1; shift
  start_server "$name" "$@"
  "${cpin[@]}" "$run/bench_listener" rate-client "$clients" "$secs" "$sport" |
    sed -n "s/^conns_per_s /$name /p" >>"$run/rate.txt"
  stop_server
}

echo "listener: C and Go aco functions vs Go net.Listener ($(nproc) CPUs, $(go env GOVERSION))"
idle c "$run/bench_listener" serve
idle goaco "$run/goaco"
idle go "$run/gopeer"
awk -v n="$n" '
  { b[$1] = $2 }
  END {
    printf "  RSS per idle connection (%d connections):\n", n
    printf "    C aco function    %6d B  /net.Listener %.2f\n", b["c"], b["c"] / b["go"]
    printf "    Go aco function   %6d B  /net.Listener %.2f\n", b["goaco"], b["goaco"] / b["go"]
    printf "    Go net.Listener   %6d B\n", b["go"]
  }' "$run/idle.txt"

for round in 1 2; do
  rate c_thread "$run/bench_listener" serve thread
  rate goaco_thread "$run/goaco"
  rate go "$run/gopeer"
  rate c_loop "$run/bench_listener" serve loop
  rate goaco_loop "$run/goaco" -accept loop
done
awk -v clients="$clients" -v secs="$secs" '
  { if ($2 > best[$1]) best[$1] = $2; all[$1] = all[$1] " " $2 }
  END {
    printf "  connect + one line + close, %d clients, %d s, best of 2 (all runs), /net.Listener:\n", clients, secs
    printf "    C aco function, accept thread  %7d/s (%s)  %.2f\n", best["c_thread"], all["c_thread"], best["c_thread"] / best["go"]
    printf "    C aco function, accept on loop %7d/s (%s)  %.2f\n", best["c_loop"], all["c_loop"], best["c_loop"] / best["go"]
    printf "    Go aco function, accept thread %7d/s (%s)  %.2f\n", best["goaco_thread"], all["goaco_thread"], best["goaco_thread"] / best["go"]
    printf "    Go aco function, accept on loop %6d/s (%s)  %.2f\n", best["goaco_loop"], all["goaco_loop"], best["goaco_loop"] / best["go"]
    printf "    Go net.Listener                %7d/s (%s)\n", best["go"], all["go"]
  }' "$run/rate.txt"
