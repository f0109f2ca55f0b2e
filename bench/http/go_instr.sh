#!/usr/bin/env bash
# bench/http/go_instr.sh - user-space instructions per request of a Go aco
# rule (goserver -mode aco), counted by valgrind's callgrind, as
# bench/http/instr.sh counts them for the C servers: the server runs under
# callgrind while wrk (Debian's) sends GET /hello; instrumentation is
# switched on after a 1 s warm-up and off after SECS seconds of the
# measured load; instructions / requests wrk completed, for each load:
# c50 (50 connections, one request at a time), c1000, pipe16 (50
# connections, 16 pipelined per write).
# Under valgrind the process's threads take turns, so the Go runtime's
# scheduler and sysmon (findRunnable, stealWork, lock2, retake) show more
# than they do on a real run and vary with the machine's load; the
# request path's functions do not: compare two builds function by
# function (callgrind_annotate on the files named in the output).
# No timed figure: it needs no benchmark lock.
#
#   bash bench/http/go_instr.sh [secs] [loads...]     (default 4 c50 c1000 pipe16)
#   BIN=path/to/goserver bash bench/http/go_instr.sh  (another build)
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/http/ab_lib.sh
secs=${1:-4}
shift || true
loads=("$@")
[ ${#loads[@]} -gt 0 ] || loads=(c50 c1000 pipe16)
out=build/bench/http/go_instr
mkdir -p "$out"
command -v valgrind >/dev/null || { echo "bench/http/go_instr.sh: needs valgrind" >&2; exit 1; }
command -v wrk >/dev/null || { echo "bench/http/go_instr.sh: needs wrk" >&2; exit 1; }
bin=${BIN:-}
if [ -z "$bin" ]; then
  scripts/cgo-stamp.sh
  (cd bench/http && go build -o "../../$out/goserver" ./goserver)
  bin=$out/goserver
fi
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; true' EXIT
port=${PORT:-18700}
for load in "${loads[@]}"; do
  port=$((port + 1))
  url=http://127.0.0.1:$port/hello
  cg=$out/cg.$load.out
  rm -f "$cg" "$cg".*
  GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$cg" "$bin" -mode aco -addr "127.0.0.1:$port" >"$out/$load.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do curl -fs "$url" -o /dev/null 2>/dev/null && break; sleep 0.1; done
  ab_load_args "$load" "${secs}"
  wrk -t1 -c50 -d1s "$url" >/dev/null
  callgrind_control -i on "$pid" >/dev/null
  n=$(wrk "${AB_ARGS[@]}" "$url" "${AB_EXTRA[@]}" | awk '/requests in/{print $1}')
  callgrind_control -i off "$pid" >/dev/null
  callgrind_control -d "$pid" >/dev/null
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  ir=$(callgrind_annotate "$cg.1" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",", "", $1); print $1}')
  awk -v l="$load" -v n="$n" -v ir="$ir" -v f="$cg.1" \
    'BEGIN{printf "%-7s %8d requests  %6.0f instructions/request  (%s)\n", l, n, ir / n, f}'
done
