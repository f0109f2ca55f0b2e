#!/usr/bin/env bash
# bench/tls/instr.sh [N] - user-space instructions per TLS 1.3 handshake
# on the server's loop thread (callgrind), full and resumed, through the
# TLS opset of the library built by `make lib`: bench_tls's handshake
# mode (an aco server on one eventer loop, a blocking OpenSSL client
# thread), one side at a time (ONLY), the client offering
# TLS_AES_128_GCM_SHA256 as Go's client does (bench/tls/go.sh), N
# handshakes (default 400).  A figure no other process's load moves: the
# way to see what a change to the TLS layer costs or saves.  Prints
# "full I" and "resumed I" (instructions per handshake, the thread's total
# over N: the SSL_CTX's one-time set-up is a few percent of it at 400),
# then "echo I": instructions per round trip of bench_tls's echo mode (64
# bytes each way over one TLS 1.3 connection to an aco server: a read
# that finds the bytes, one that finds nothing and waits, a write), over
# ECHO_N round trips (default 20000; 0: skip), the per-message cost of
# the TLS layer.  A few minutes (valgrind).
# STATIC=1: link OpenSSL's static libraries (libssl.a, libcrypto.a, from
# the libssl-dev package) instead of the shared ones, so that callgrind
# names libssl's and libcrypto's internal functions too (the shared
# libraries export only their API; every internal function shows as ???);
# the counts are 1-2% lower (no PLT calls, no lazy symbol binding).
# KEEP=1: keep the run directory (the callgrind files, cg.*-01 the loop
# thread's) and print its path, for callgrind_annotate --inclusive=yes.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-400}
echo_n=${ECHO_N:-20000}
out=build/bench/tls
mkdir -p "$out"
run=$(mktemp -d "$out/instr.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then
  echo "run directory $run" >&2
else
  trap 'rm -rf "$run"' EXIT
fi

make -s lib >/dev/null
ssl_libs=(-lssl -lcrypto)
if [ "${STATIC:-0}" = 1 ]; then
  mkdir "$run/static"
  for l in libssl.a libcrypto.a; do
    a=$(${CC:-gcc} -print-file-name="$l")
    [ -f "$a" ] || { echo "instr.sh: STATIC=1 needs $l (libssl-dev)" >&2; exit 1; }
    ln -s "$a" "$run/static/$l"
  done
  ssl_libs=(-L"$run/static" -lssl -lcrypto -ldl)
fi
${CC:-gcc} -std=gnu11 -O2 -g -pthread -D_GNU_SOURCE -Wall -Wextra -Werror \
  -Ibuild/include bench/tls/bench_tls.c \
  build/lib/libacoeventer.a "${ssl_libs[@]}" -lm -o "$run/bench_tls"

. bench/tls/certs.sh
bench_certs "$run"

for side in first second; do
  name=full
  [ "$side" = second ] && name=resumed
  RUNS=1 ONLY=$side TLS13_CIPHERS=TLS_AES_128_GCM_SHA256 \
    valgrind --tool=callgrind --separate-threads=yes \
    --callgrind-out-file="$run/cg.$side.%p" \
    "$run/bench_tls" handshake "$n" "$run/srv.pem" "$run/srv.key" "$run/ca.pem" \
    >/dev/null 2>"$run/vg.$side.log" || { cat "$run/vg.$side.log" >&2; exit 1; }
  # thread 1 is the loop (main); the client is the other thread
  f=$(ls "$run"/cg."$side".*-01 | head -1)
  awk -v n="$n" -v name="$name" '/^(summary|totals):/ { printf "%s %d\n", name, $2 / n; exit }' "$f"
done
if [ "$echo_n" -gt 0 ]; then
  RUNS=1 ONLY=first TLS13_CIPHERS=TLS_AES_128_GCM_SHA256 \
    valgrind --tool=callgrind --separate-threads=yes \
    --callgrind-out-file="$run/cg.echo.%p" \
    "$run/bench_tls" echo "$echo_n" "$run/srv.pem" "$run/srv.key" "$run/ca.pem" \
    >/dev/null 2>"$run/vg.echo.log" || { cat "$run/vg.echo.log" >&2; exit 1; }
  f=$(ls "$run"/cg.echo.*-01 | head -1)
  awk -v n="$echo_n" '/^(summary|totals):/ { printf "echo %d\n", $2 / n; exit }' "$f"
fi
