#!/usr/bin/env bash
# bench/tls/x25519.sh [N] [ROUNDS] - native ns per X25519 key generation
# and exchange, ours (csrc/eventer/eventer_x25519.c) and OpenSSL's default
# provider, alternating, pinned to one CPU (BENCH_CPU, default the last).
# A timed figure: run it under the shared lock.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=build/bench/tls
mkdir -p "$out"
make -s build/plain/libacoeventer.a >/dev/null
${CC:-gcc} -std=gnu11 -O2 -g -D_GNU_SOURCE -Wall -Wextra -Werror -Icsrc/eventer \
  bench/tls/x25519.c build/plain/libacoeventer.a -lssl -lcrypto -lpthread -o "$out/x25519"
taskset -c "${BENCH_CPU:-$(($(nproc) - 1))}" "$out/x25519" "${1:-2000}" "${2:-7}"
