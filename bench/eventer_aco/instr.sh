#!/usr/bin/env bash
# bench/eventer_aco/instr.sh - instructions per operation, coroutine against
# classic callback, counted by valgrind's callgrind (steadier than time on a
# shared machine):
#   - a ping-pong hop (half a round trip: one side's read and write, one
#     epoll_wait, one dispatch), two coroutines against two callbacks;
#   - a would-block-then-ready cycle, a coroutine against a callback.
# Each side runs alone (bench_eventer_aco pingpong-aco, pingpong-classic,
# cycle-aco, cycle-classic) at n and 2n operations; the difference of the
# two totals over n leaves set-up and teardown out.  libaco is built
# without its valgrind hooks (ACO_NO_VALGRIND), so the stack copies take
# their native path.  CALLGRIND_DIR=dir keeps the profiles there (for
# callgrind_annotate --auto=yes); else they are dropped.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-10000}
command -v valgrind >/dev/null || { echo "instr.sh: valgrind not found" >&2; exit 1; }
make -s lib >/dev/null
out=build/bench/eventer_aco
mkdir -p "$out"
run=$(mktemp -d "$out/instr.XXXXXX")
trap 'rm -rf "$run"' EXIT
cc=${CC:-gcc}
flags="-std=gnu11 -O2 -g -pthread -D_GNU_SOURCE -fstack-clash-protection"
$cc $flags -DACO_NO_VALGRIND -Icsrc/libaco -c csrc/libaco/aco.c -o "$run/aco.o"
# the native aco.o first: the archive's own aco.o is then never pulled in
$cc $flags -Wall -Wextra -Werror -Ibuild/include \
  bench/eventer_aco/bench_eventer_aco.c "$run/aco.o" \
  build/lib/libacoeventer.a -lssl -lcrypto -lm -o "$run/bench_eventer_aco"
irefs() { # mode count -> total instructions
  valgrind --tool=callgrind --callgrind-out-file="$run/cg.$1.$2" \
    "$run/bench_eventer_aco" "$1" "$2" 2>&1 >/dev/null |
    awk '/refs:/ { gsub(",", "", $NF); print $NF }'
}
per() { # mode divisor -> instructions per operation
  local a b
  a=$(irefs "$1" "$n")
  b=$(irefs "$1" $((2 * n)))
  awk -v a="$a" -v b="$b" -v n="$n" -v d="$2" 'BEGIN { printf "%.0f", (b - a) / n / d }'
}
ppa=$(per pingpong-aco 2)
ppc=$(per pingpong-classic 2)
cya=$(per cycle-aco 1)
cyc=$(per cycle-classic 1)
if [ -n "${CALLGRIND_DIR:-}" ]; then mkdir -p "$CALLGRIND_DIR" && cp "$run"/cg.* "$CALLGRIND_DIR"/; fi
echo "eventer_aco instructions per operation (callgrind, n=$n and $((2 * n)), $($cc -dumpfullversion 2>/dev/null || echo cc) -O2)"
printf "  %-36s %10s %10s %8s\n" "" coroutine classic ratio
printf "  %-36s %10s %10s %8s\n" "ping-pong hop (half a round trip)" "$ppa" "$ppc" \
  "$(awk -v a="$ppa" -v c="$ppc" 'BEGIN { printf "%.2f", a / c }')"
printf "  %-36s %10s %10s %8s\n" "would-block-then-ready cycle" "$cya" "$cyc" \
  "$(awk -v a="$cya" -v c="$cyc" 'BEGIN { printf "%.2f", a / c }')"
