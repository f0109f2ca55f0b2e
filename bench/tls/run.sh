#!/usr/bin/env bash
# bench/tls/run.sh [scale] - the TLS opset next to its peers, same process,
# same run (bench_tls.c says what each figure measures):
#   - 64-byte echo round trips over one TLS 1.3 connection: a coroutine
#     server against a classic fd-callback server;
#   - bulk transfer in 1 MiB writes: TLS 1.3 against plain TCP;
#   - TLS 1.3 handshakes per second on one loop: full, and resumed;
#   - full handshakes through a TLS listener (mtev_listener, an aco
#     function) against the hand-written accept loop;
#   - then bench/tls/go.sh: the Go binding's TLS listener against Go's
#     crypto/tls (handshakes, 1 MiB messages, server CPU).
# The server loop is pinned to BENCH_CPU (default: the last CPU), the
# OpenSSL client thread to CLIENT_CPU (default 0).  Certificates (ECDSA
# P-256) are made for the run in a temp dir.  `make bench` runs it after
# `make lib`; scale (default 1) multiplies the counts.  About 30 s.
set -euo pipefail
cd "$(dirname "$0")/../.."
scale=${1:-1}
out=build/bench/tls
mkdir -p "$out"
run=$(mktemp -d "$out/run.XXXXXX")
trap 'rm -rf "$run"' EXIT

make -s lib >/dev/null
${CC:-gcc} -std=gnu11 -O2 -pthread -D_GNU_SOURCE -Wall -Wextra -Werror \
  -Ibuild/include bench/tls/bench_tls.c \
  build/lib/libacoeventer.a -lssl -lcrypto -lm -o "$run/bench_tls"

. bench/tls/certs.sh
bench_certs "$run"

n() { awk -v s="$scale" -v b="$1" 'BEGIN { printf "%d", b * s }'; }
b="$run/bench_tls"
certs=("$run/srv.pem" "$run/srv.key" "$run/ca.pem")
{
  "$b" echo "$(n 20000)" "${certs[@]}"
  "$b" bulk "$(n 256)" "${certs[@]}"
  "$b" handshake "$(n 1000)" "${certs[@]}"
  "$b" listener "$(n 1000)" "${certs[@]}"
} >"$run/results.txt"
cp "$run/results.txt" "$out/results.txt.$$" && mv "$out/results.txt.$$" "$out/results.txt"

echo "tls ($(nproc) CPUs, $(openssl version | cut -d' ' -f1-2), $(${CC:-gcc} -dumpfullversion 2>/dev/null || echo gcc) -O2, scale $scale, ${RUNS:-5} runs per side, medians)"
awk '
  /^#/ { next }
  { v[$1] = $2 }
  function row(label, a, b, ratio) { printf "  %-46s %12s %12s %8s\n", label, a, b, ratio }
  END {
    row("", "coroutine", "classic", "ratio")
    row("TLS 1.3 echo, 64 B (round trips/s)", v["echo_aco_rt_per_s"], v["echo_classic_rt_per_s"],
        sprintf("%.2f", v["echo_aco_vs_echo_classic"]))
    row("  server CPU per round trip (us)", v["echo_aco_server_cpu_us_per_rt"],
        v["echo_classic_server_cpu_us_per_rt"],
        sprintf("%.2f", v["echo_aco_server_cpu_us_per_rt"] / v["echo_classic_server_cpu_us_per_rt"]))
    row("", "TLS 1.3", "plain TCP", "ratio")
    row("bulk, 1 MiB writes (MiB/s)", v["bulk_tls_mib_per_s"], v["bulk_plain_mib_per_s"],
        sprintf("%.2f", v["bulk_tls_vs_bulk_plain"]))
    row("  server CPU per MiB (ms)", v["bulk_tls_server_cpu_ms_per_mib"],
        v["bulk_plain_server_cpu_ms_per_mib"],
        sprintf("%.2f", v["bulk_tls_server_cpu_ms_per_mib"] / v["bulk_plain_server_cpu_ms_per_mib"]))
    row("", "full", "resumed", "ratio")
    row("TLS 1.3 handshakes, one loop (per s)", v["hs_full_per_s"], v["hs_resumed_per_s"],
        sprintf("%.2f", v["hs_full_vs_hs_resumed"]))
    row("  server CPU per handshake (us)", v["hs_full_server_cpu_us_per_hs"],
        v["hs_resumed_server_cpu_us_per_hs"],
        sprintf("%.2f", v["hs_full_server_cpu_us_per_hs"] / v["hs_resumed_server_cpu_us_per_hs"]))
    row("", "listener", "accept loop", "ratio")
    row("TLS 1.3 full handshakes, one loop (per s)", v["hs_listener_per_s"], v["hs_loop_per_s"],
        sprintf("%.2f", v["hs_listener_vs_hs_loop"]))
    row("  server CPU per handshake (us)", v["hs_listener_server_cpu_us_per_hs"],
        v["hs_loop_server_cpu_us_per_hs"],
        sprintf("%.2f", v["hs_listener_server_cpu_us_per_hs"] / v["hs_loop_server_cpu_us_per_hs"]))
  }' "$run/results.txt"

# the Go binding's TLS listener next to Go's crypto/tls (its own script)
bash bench/tls/go.sh "$scale"
