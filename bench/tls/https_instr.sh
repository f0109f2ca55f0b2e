#!/usr/bin/env bash
# bench/tls/https_instr.sh [N] - user-space instructions per HTTPS hello
# request of the whole server process (valgrind's callgrind, every
# thread), after the handshakes: bench/tls/gorest (the REST engine over
# TLS, a Go aco rule; GOREST_ARGS="-mode http" for HandleHTTP) and, with
# PEER=1, bench/tls/gopeer -https (net/http over crypto/tls) beside it.
# The client (bench/tls/https_client.c, OpenSSL) opens 25 keep-alive
# connections and makes a request on each; the counters are zeroed
# (callgrind_control -z), N requests (default 5000) are made in rounds of
# 25, and the counters dumped: instructions / requests.  The Go runtime
# runs with GODEBUG=asyncpreemptoff=1 (callgrind aborts on its preemption
# signals).  Under valgrind the threads take turns, so the Go scheduler's
# share varies with the machine's load; the request path's functions do
# not: compare builds function by function (callgrind_annotate on the
# files it names).  No timed figure: it needs no benchmark lock.
#   BIN=path/to/gorest bash bench/tls/https_instr.sh   (another build)
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-5000}
out=build/bench/tls/https_instr
mkdir -p "$out"
command -v valgrind >/dev/null || { echo "https_instr.sh: needs valgrind" >&2; exit 1; }
bin=${BIN:-}
scripts/cgo-stamp.sh
if [ -z "$bin" ]; then
  go build -o "$out/" ./bench/tls/gorest
  bin=$out/gorest
fi
sides=("ours $bin ${GOREST_ARGS:-}")
if [ "${PEER:-0}" = 1 ]; then
  go build -o "$out/" ./bench/tls/gopeer
  sides+=("net/http $out/gopeer -https")
fi
${CC:-gcc} -std=gnu11 -O2 -Wall -Wextra -Werror bench/tls/https_client.c -lssl -lcrypto -o "$out/https_client"
. bench/tls/certs.sh
bench_certs "$out"

vpid=""
trap '[ -n "$vpid" ] && kill "$vpid" 2>/dev/null; true' EXIT
for s in "${sides[@]}"; do
  set -- $s
  name=$1
  shift
  tag=${name//\//_}
  rm -f "$out/cg.$tag".*
  : >"$out/port"
  GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind --callgrind-out-file="$out/cg.$tag.%p" \
    "$@" "$out/srv.pem" "$out/srv.key" >"$out/port" 2>"$out/vg.$tag.log" &
  vpid=$!
  port=""
  for _ in $(seq 600); do
    port=$(sed -n 's/^port \([0-9]*\)$/\1/p' "$out/port")
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "$name did not start" >&2; cat "$out/vg.$tag.log" >&2; exit 1; }
  coproc CL { "$out/https_client" "$port" 25 "$n"; }
  read -r line <&"${CL[0]}"
  [ "$line" = ready ] || { echo "client: $line" >&2; exit 1; }
  callgrind_control -z "$vpid" >/dev/null 2>&1
  echo go >&"${CL[1]}"
  read -r line reqs <&"${CL[0]}"
  [ "$line" = done ] || { echo "client: $line" >&2; exit 1; }
  callgrind_control -d "$vpid" >/dev/null 2>&1
  echo x >&"${CL[1]}"
  wait "$CL_PID" 2>/dev/null || true
  kill "$vpid" 2>/dev/null || true
  wait "$vpid" 2>/dev/null || true
  vpid=""
  f=$(ls "$out/cg.$tag".*.1 | head -1)
  awk -v n="$reqs" -v name="$name" -v f="$f" '/^summary:/ { printf "%s %d instructions per request (%s)\n", name, $2 / n, f; exit }' "$f"
done
