#!/usr/bin/env bash
# HTTP "hello" benchmark: every server answers GET /hello with the same
# 13-byte body; wrk (Debian) loads it from one CPU while the server is
# pinned to the other.  Servers: the Go peers (bench/http/peers: net/http,
# fasthttp, gnet) and, from the plugins in bench/http/servers.d (each may
# build a server and add CMD[name] and ORDER), our own: rawc (a raw C
# epoll responder, the ceiling), c-aco (the engine, a C aco rule), go-aco
# (a Go rule with SetAco) and go-handlehttp (a net/http handler via
# HandleHTTP).  Per server and scenario (50 and 1000 connections,
# pipelined x16 on 50): requests/s, p99 latency and the server's CPU time
# per request (utime+stime from /proc, the steadiest figure: one wrk core
# saturates near the top).  Idle: the RSS growth per idle keep-alive
# connection of a freshly started server (one request answered first),
# N of them held open.
#
#   bash bench/http/run.sh [rounds]       (DUR=5 IDLE_N=10000 SERVERS="a b")
#
# Servers run in a different order each round; the tables give medians
# over the rounds, and goals.md the same-run ratios against the goals
# (when the servers they compare ran).  Results: build/bench/http/
# results.tsv, medians.tsv, summary.md, goals.md, http_cpu.png,
# http_pipe.png.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
ROUNDS=${1:-3}
DUR=${DUR:-5}
IDLE_N=${IDLE_N:-10000}
SRV_CPU=${SRV_CPU:-1}
CLI_CPU=${CLI_CPU:-0}
PORT=${PORT:-18080}
OUT=$ROOT/build/bench/http
mkdir -p "$OUT"
command -v wrk >/dev/null || { echo "bench/http: needs wrk (apt-get install wrk)" >&2; exit 1; }

( cd bench/http && go build -o "$OUT/peers" ./peers && go build -o "$OUT/idleconns" ./idleconns )

# name -> command; {ADDR} is replaced by host:port.  Our own servers are
# added by their builders below when they exist.
declare -A CMD=(
  [nethttp]="$OUT/peers -server nethttp -addr {ADDR}"
  [fasthttp]="$OUT/peers -server fasthttp -addr {ADDR}"
  [gnet]="$OUT/peers -server gnet -addr {ADDR}"
)
ORDER=(nethttp fasthttp gnet)
for extra in bench/http/servers.d/*.sh; do
  [ -e "$extra" ] || continue
  # shellcheck source=/dev/null
  source "$extra"   # may build a server and add CMD[name] and ORDER+=(name)
done
if [ -n "${SERVERS:-}" ]; then read -r -a ORDER <<<"$SERVERS"; fi

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
addr="127.0.0.1:$PORT"
res=$OUT/results.tsv
printf 'round\tserver\tscenario\trps\tp99_ms\tcpu_us_per_req\n' >"$res"

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
to_ms() { awk -v v="$1" 'BEGIN{ if (v ~ /us$/) print v/1000; else if (v ~ /ms$/) print v+0; else if (v ~ /s$/) print v*1000; else print v }'; }
hz=$(getconf CLK_TCK)

srv_pid=
stop_server() { if [ -n "$srv_pid" ]; then kill "$srv_pid" 2>/dev/null || true; wait "$srv_pid" 2>/dev/null || true; fi; srv_pid=; }
trap stop_server EXIT

nstart=0
start_server() {
  # a port of its own each time: the last server's closed connections may
  # hold its port (TIME_WAIT), and not every server sets SO_REUSEADDR
  addr="127.0.0.1:$((PORT + nstart % 100))"
  nstart=$((nstart + 1))
  local cmd=${CMD[$1]//\{ADDR\}/$addr}
  taskset -c "$SRV_CPU" $cmd >"$OUT/$1.log" 2>&1 &
  srv_pid=$!
  for _ in $(seq 100); do
    if curl -fs "http://$addr/hello" -o "$OUT/body" 2>/dev/null; then
      if [ "$(cat "$OUT/body")" != "Hello world." ]; then
        echo "bench/http: $1 answered $(head -c 80 "$OUT/body")" >&2; exit 1
      fi
      return 0
    fi
    sleep 0.1
  done
  echo "bench/http: $1 did not start:" >&2; cat "$OUT/$1.log" >&2; exit 1
}

# load <round> <server> <scenario> <wrk options> [-- <script args>]
load() {
  local r=$1 s=$2 sc=$3 opts=$4; shift 4
  local t0 t1 out reqs rps p99
  t0=$(ticks "$srv_pid")
  out=$(taskset -c "$CLI_CPU" wrk -t1 -d"${DUR}s" --latency $opts "http://$addr/hello" "$@")
  t1=$(ticks "$srv_pid")
  reqs=$(awk '/requests in/{print $1}' <<<"$out")
  rps=$(awk '/^Requests\/sec/{print $2}' <<<"$out")
  p99=$(to_ms "$(awk '$1=="99%"{print $2}' <<<"$out")")
  if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then
    echo "bench/http: $s $sc: $(grep 'Non-2xx\|Socket errors' <<<"$out")" >&2
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$s" "$sc" "$rps" "$p99" \
    "$(awk -v d=$((t1 - t0)) -v n="$reqs" -v hz="$hz" 'BEGIN{printf "%.3f", d*1e6/hz/n}')" >>"$res"
}

idle() {
  local r=$1 s=$2 before after fifo=$OUT/idle.fifo
  rm -f "$fifo"; mkfifo "$fifo"
  before=$(rss_kb "$srv_pid")
  "$OUT/idleconns" -addr "$addr" -n "$IDLE_N" <"$fifo" >"$OUT/idle.out" &
  local cli=$!
  exec 9>"$fifo"
  for _ in $(seq 600); do grep -q ready "$OUT/idle.out" 2>/dev/null && break; kill -0 $cli 2>/dev/null || break; sleep 0.1; done
  sleep 1
  after=$(rss_kb "$srv_pid")
  exec 9>&-
  wait $cli || echo "bench/http: idleconns failed against $s" >&2
  printf '%s\t%s\tidle\t-\t-\t%s\n' "$r" "$s" \
    "$(awk -v a="$after" -v b="$before" -v n="$IDLE_N" 'BEGIN{printf "%.0f", (a-b)*1024/n}')" >>"$res"
}

n=${#ORDER[@]}
for r in $(seq "$ROUNDS"); do
  for i in $(seq 0 $((n - 1))); do
    s=${ORDER[$(((i + r) % n))]}
    echo "round $r: $s" >&2
    start_server "$s"
    taskset -c "$CLI_CPU" wrk -t1 -c50 -d2s "http://$addr/hello" >/dev/null
    load "$r" "$s" c50 "-c50"
    load "$r" "$s" c1000 "-c1000"
    load "$r" "$s" pipe16 "-c50 -s $ROOT/bench/http/pipeline.lua" -- 16
    # idle connections on a fresh server: after the loads, memory the
    # 1000 connections left behind (malloc's, Go's heap) would be reused
    # and hide what an idle connection costs
    stop_server
    start_server "$s"
    idle "$r" "$s"
    stop_server
  done
done

# medians per server and scenario
awk -F'\t' 'NR>1{k=$2"\t"$3; rps[k]=rps[k]" "$4; p99[k]=p99[k]" "$5; cpu[k]=cpu[k]" "$6}
  function med(s,   a,n,i,j,t){n=split(s,a," "); for(i=1;i<=n;i++)for(j=i+1;j<=n;j++)if(a[j]+0<a[i]+0){t=a[i];a[i]=a[j];a[j]=t}; return n%2?a[(n+1)/2]:(a[n/2]+a[n/2+1])/2}
  END{for(k in rps) printf "%s\t%s\t%s\t%s\n", k, med(rps[k]), med(p99[k]), med(cpu[k])}' "$res" | sort >"$OUT/medians.tsv"

{
  echo "| server | CPU us/req c50 | CPU us/req c1000 | req/s c50 | req/s c1000 | p99 ms c1000 | req/s pipelined x16 | idle keep-alive B/conn |"
  echo "|---|---|---|---|---|---|---|---|"
  for s in "${ORDER[@]}"; do
    awk -F'\t' -v s="$s" '$1==s{m[$2"_rps"]=$3; m[$2"_p99"]=$4; m[$2"_cpu"]=$5}
      END{printf "| %s | %.2f | %.2f | %.0f | %.0f | %.2f | %.0f | %s |\n", s, m["c50_cpu"], m["c1000_cpu"],
        m["c50_rps"], m["c1000_rps"], m["c1000_p99"], m["pipe16_rps"], m["idle_cpu"]}' "$OUT/medians.tsv"
  done
} | tee "$OUT/summary.md"

# the goals, as same-run ratios (a goal whose servers did not both run is
# left out)
awk -F'\t' '{v[$1" "$2" rps"]=$3; v[$1" "$2" p99"]=$4; v[$1" "$2" cpu"]=$5}
  function goal(text, a, b, want, le,   r, ok) {
    if (!(a in v) || !(b in v) || v[b] + 0 == 0) return
    r = v[a] / v[b]; ok = le ? r <= want : r >= want
    printf "| %s | %.2f | %s %.2f | %s |\n", text, r, le ? "<=" : ">=", want, ok ? "met" : "not met"
  }
  function limit(text, a, want,   ok) {
    if (!(a in v)) return
    ok = v[a] <= want
    printf "| %s | %s B | <= %d B | %s |\n", text, v[a], want, ok ? "met" : "not met"
  }
  END {
    print "| goal | measured | wanted | |"
    print "|---|---|---|---|"
    goal("C aco rule CPU/req vs raw C, 50 conns", "c-aco c50 cpu", "rawc c50 cpu", 1.05, 1)
    goal("C aco rule CPU/req vs raw C, 1000 conns", "c-aco c1000 cpu", "rawc c1000 cpu", 1.05, 1)
    goal("C aco rule pipelined x16 vs raw C", "c-aco pipe16 rps", "rawc pipe16 rps", 0.95, 0)
    goal("Go aco rule CPU/req vs gnet, 50 conns", "go-aco c50 cpu", "gnet c50 cpu", 1.0, 1)
    goal("Go aco rule CPU/req vs gnet, 1000 conns", "go-aco c1000 cpu", "gnet c1000 cpu", 1.0, 1)
    goal("Go aco rule pipelined x16 vs fasthttp", "go-aco pipe16 rps", "fasthttp pipe16 rps", 1.0, 0)
    goal("HandleHTTP CPU/req vs net/http, 50 conns", "go-handlehttp c50 cpu", "nethttp c50 cpu", 0.75, 1)
    goal("HandleHTTP CPU/req vs net/http, 1000 conns", "go-handlehttp c1000 cpu", "nethttp c1000 cpu", 0.75, 1)
    limit("idle keep-alive connection, C aco rule", "c-aco idle cpu", 1024)
    limit("idle keep-alive connection, Go aco rule", "go-aco idle cpu", 4096)
    limit("idle keep-alive connection, HandleHTTP", "go-handlehttp idle cpu", 4096)
    goal("p99 at 1000 conns, C aco rule vs gnet", "c-aco c1000 p99", "gnet c1000 p99", 1.0, 1)
    goal("p99 at 1000 conns, Go aco rule vs gnet", "go-aco c1000 p99", "gnet c1000 p99", 1.0, 1)
    goal("p99 at 1000 conns, HandleHTTP vs gnet", "go-handlehttp c1000 p99", "gnet c1000 p99", 1.0, 1)
  }' "$OUT/medians.tsv" | tee "$OUT/goals.md"

if command -v gnuplot >/dev/null; then
  : >"$OUT/cpu.dat"; : >"$OUT/pipe.dat"
  for s in "${ORDER[@]}"; do
    awk -F'\t' -v s="$s" '$1==s{m[$2]=$5; r[$2]=$3}
      END{printf "%s %s %s\n", s, m["c50"], m["c1000"] >> "'"$OUT/cpu.dat"'";
          printf "%s %s\n", s, r["pipe16"]/1000 >> "'"$OUT/pipe.dat"'"}' "$OUT/medians.tsv"
  done
  gnuplot <<GP
set terminal pngcairo size 900,420 noenhanced
set style fill solid 0.7
set grid ytics
set yrange [0:*]
set output "$OUT/http_cpu.png"
set title "server CPU per request, us (lower is better); wrk -t1, server on one CPU"
set style data histograms
set style histogram clustered gap 1
set key top left
plot "$OUT/cpu.dat" using 2:xtic(1) title "50 conns", "" using 3 title "1000 conns"
set output "$OUT/http_pipe.png"
set title "pipelined x16, 50 conns: thousand req/s (higher is better)"
unset key
plot "$OUT/pipe.dat" using 2:xtic(1) title "pipelined x16"
GP
  echo "charts: $OUT/http_cpu.png $OUT/http_pipe.png" >&2
fi
