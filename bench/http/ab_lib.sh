# bench/http/ab_lib.sh - sourced by the http scripts: one server's figures
# in a paired round (cpu_ab.sh, go_ab.sh, handlehttp_ab.sh, p99_ab.sh;
# these use the caller's $secs, the run length, and $wrk_cpu, the CPU wrk
# is pinned to), the C servers' build (also instr.sh, kpath.sh,
# footprint.sh), wrk's options for a load (also goprobes.sh,
# sysmonprobes.sh, threads.sh, go_instr.sh), and the Go servers under
# load for the probe scripts (goprobes.sh, sysmonprobes.sh).

# ab_build_c OUT: the library, then the raw C responder (OUT/rawc) and the
# C aco rule (OUT/crule), from the repository's root.
ab_build_c() {
  local out=$1 shim=()
  make -s lib >/dev/null
  gcc -std=gnu11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror bench/http/rawc.c -o "$out/rawc"
  # a crule.c that takes its connections from the HTTP tests' listener
  # stand-in links it
  grep -q listener_shim.h bench/http/crule.c &&
    shim=(-Icsrc/http/tests csrc/http/tests/listener_shim.c)
  gcc -std=gnu11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -Ibuild/include bench/http/crule.c \
    "${shim[@]}" $(PKG_CONFIG_PATH=build/lib/pkgconfig pkg-config --cflags --libs --static acoeventer) \
    -o "$out/crule"
}

# ab_port FILE TRIES PAUSE: the port a server announced in FILE (its line
# "port N"), read every PAUSE seconds, TRIES times at most; empty if none
# came.
ab_port() {
  local port=
  for _ in $(seq "$2"); do
    port=$(sed -n 's/^port //p' "$1" 2>/dev/null)
    [ -n "$port" ] && break
    sleep "$3"
  done
  echo "$port"
}

# ab_cpu_ns PID: CPU time of every thread of PID so far, in ns: the
# scheduler's own account (/proc/PID/task/*/schedstat), not the 10 ms
# ticks of utime/stime.
ab_cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%.0f", s}'; }

# ab_load_args LOAD SECS: wrk's options for SECS seconds at LOAD (c50,
# c1000: connections, one request at a time; pipe16: 50 connections
# pipelined x16, bench/http/pipeline.lua) into the arrays AB_ARGS (before
# the URL) and AB_EXTRA (after it); 1 and a message for another LOAD.
ab_load_args() {
  AB_ARGS=(-t1 -d"$2s")
  AB_EXTRA=()
  case $1 in
  c50) AB_ARGS+=(-c50) ;;
  c1000) AB_ARGS+=(-c1000) ;;
  pipe16) AB_ARGS+=(-c50 -s bench/http/pipeline.lua); AB_EXTRA=(-- 16) ;;
  *) echo "${0##*/}: unknown load $1" >&2; return 1 ;;
  esac
}

# ab_measure PID URL LOAD: a 1 s warm-up, then wrk for $secs s at LOAD
# (ab_load_args); stops the server PID and prints "req/s cpu_us_per_req"
# (CPU over the run / requests wrk completed).
ab_measure() {
  local pid=$1 url=$2 load=$3
  ab_load_args "$load" "$secs" || return 1
  taskset -c "$wrk_cpu" wrk -t1 -c50 -d1s "$url" >/dev/null
  local t0 t1 n
  t0=$(ab_cpu_ns "$pid")
  n=$(taskset -c "$wrk_cpu" wrk "${AB_ARGS[@]}" "$url" "${AB_EXTRA[@]}" | awk '/requests in/{print $1}')
  t1=$(ab_cpu_ns "$pid")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  awk -v n="$n" -v d="$((t1 - t0))" -v s="$secs" 'BEGIN{printf "%.0f %.3f", n / s, d / 1e3 / n}'
}

# ab_probe_build OUT: the Go peers (OUT/peers) and the Go aco rule's
# server (OUT/goserver) for the probe scripts, and their table: BIN and
# ARGS by server name, AB_SERVERS the ones to run ($SERVERS, default gnet
# go-aco; go-aco-base added for $BASE, another build's goserver).
ab_probe_build() {
  scripts/cgo-stamp.sh
  (cd bench/http && go build -o "../../$1/peers" ./peers && go build -o "../../$1/goserver" ./goserver)
  declare -gA BIN=([gnet]="$1/peers" [go-aco]="$1/goserver")
  declare -gA ARGS=([gnet]="-server gnet" [go-aco]="-mode aco")
  AB_SERVERS=(${SERVERS:-gnet go-aco})
  if [ -n "${BASE:-}" ]; then
    BIN[go-aco-base]=$BASE
    ARGS[go-aco-base]="-mode aco"
    AB_SERVERS+=(go-aco-base)
  fi
}

# ab_probe_run S PORT OUT MEASURE: server S (ab_probe_build's table) on
# CPU $srv_cpu at PORT (its output in OUT/S.log; its PID in $pid while it
# runs, for the caller's trap), a 1 s warm-up at 50 connections, then wrk
# at $load for $secs + 1 s (OUT/wrk.txt) and, from 1 s in, the command
# "MEASURE PID" (which should last $secs - 1 s); then stops the server and
# sets AB_RATE to wrk's requests a second over its run.
ab_probe_run() {
  local s=$1 port=$2 out=$3 measure=$4 url=http://127.0.0.1:$2/hello w
  taskset -c "$srv_cpu" "${BIN[$s]}" ${ARGS[$s]} -addr "127.0.0.1:$port" >"$out/$s.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -fs "$url" -o /dev/null 2>/dev/null && break; sleep 0.05; done
  ab_load_args "$load" "$((secs + 1))" || return 1
  taskset -c "$wrk_cpu" wrk -t1 -c50 -d1s "$url" >/dev/null
  taskset -c "$wrk_cpu" wrk "${AB_ARGS[@]}" "$url" "${AB_EXTRA[@]}" >"$out/wrk.txt" &
  w=$!
  sleep 1
  "$measure" "$pid"
  wait "$w"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  AB_RATE=$(awk -v d="$((secs + 1))" '/requests in/{print $1 / d}' "$out/wrk.txt")
}

# an awk function: med(x, n), the median of x[1..n] (sorts x)
AB_MED='function med(x, n,   i, j, t) {
  for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
  return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
}'
