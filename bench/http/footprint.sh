#!/usr/bin/env bash
# bench/http/footprint.sh - what a request costs the CPU's first-level
# caches, under valgrind's callgrind (no clock: no lock needed), for the
# raw C responder (rawc.c) and the engine's C aco rule (crule.c), wrk
# sending GET /hello, one request at a time on CONNS connections (default
# 50), counted after a 1 s warm-up as in instr.sh:
#   instr/req      user-space instructions a request
#   code lines     64-byte lines of code run in at least half the requests
#                  (--dump-instr=yes): the code each request fetches again
#                  when the kernel's work between two requests evicted it
#   D1 misses      first-level data cache read and write misses a request
#                  (--cache-sim=yes, callgrind's model of this CPU's caches;
#                  user space only: the kernel's own accesses are not
#                  simulated, so the figures are a floor)
#
#   bash bench/http/footprint.sh [secs]        (default 3)
#   CONNS=1000 bash bench/http/footprint.sh
#   CRULE=path/to/crule bash bench/http/footprint.sh   (another build)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-3}
conns=${CONNS:-50}
out=build/bench/http/footprint
mkdir -p "$out"
for t in valgrind wrk perl; do
  command -v "$t" >/dev/null || { echo "bench/http/footprint.sh: needs $t" >&2; exit 1; }
done
. bench/http/ab_lib.sh
ab_build_c "$out"

pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; true' EXIT
# run BIN OUTFILE VALGRIND-OPTION: callgrind's output in OUTFILE, prints
# the requests wrk completed after the warm-up
run() {
  local bin=$1 cg=$2 opt=$3
  rm -f "$cg" "$out/port"
  valgrind --tool=callgrind "$opt" --callgrind-out-file="$cg" "$bin" \
    >"$out/port" 2>"$out/vg.log" &
  pid=$!
  local port
  port=$(ab_port "$out/port" 200 0.1)
  [ -n "$port" ] || { echo "bench/http/footprint.sh: $bin did not start" >&2; cat "$out/vg.log" >&2; exit 1; }
  local url="http://127.0.0.1:$port/hello" n
  wrk -t1 -c"$conns" -d1s "$url" >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  n=$(wrk -t1 -c"$conns" -d"${secs}s" "$url" | awk '/requests in/{print $1}')
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  echo "$n"
}
# code lines: instruction addresses (callgrind's compressed positions:
# absolute, +/- relative, * the same) with their counts; the line after a
# calls= line is the call's inclusive cost, not an execution count
lines() {
  perl -e '
    my ($n, %max) = (shift);
    my ($ob, $addr, $skip) = ("", 0, 0);
    while (<>) {
      if (/^ob=(.*)/) { $ob = $1; $ob =~ s/^\((\d+)\).*/$1/; next }
      if (/^calls=/) { $skip = 1; next }
      next unless /^([0-9+*-]\S*)\s+\S+\s+(\d+)/;
      my ($a, $c) = ($1, $2);
      if ($a =~ /^0x/) { $addr = hex($a) } elsif ($a =~ /^[+-]/) { $addr += $a }
      if ($skip) { $skip = 0; next }
      my $k = "$ob:" . int($addr / 64);
      $max{$k} = $c if !defined $max{$k} || $c > $max{$k};
    }
    print scalar(grep { $_ >= $n / 2 } values %max), "\n";
  ' "$1" "$2"
}
printf '%-8s %5s %10s %11s %10s %10s\n' server conns instr/req "code lines" "D1 rd/req" "D1 wr/req"
for s in rawc crule; do
  bin=$out/$s
  [ "$s" = crule ] && [ -n "${CRULE:-}" ] && bin=$CRULE
  n=$(run "$bin" "$out/cg.instr" --dump-instr=yes)
  cl=$(lines "$n" "$out/cg.instr")
  n2=$(run "$bin" "$out/cg.cache" --cache-sim=yes)
  callgrind_annotate --show-percs=no "$out/cg.cache" 2>/dev/null | awk -v n="$n2" -v s="$s" -v c="$conns" -v cl="$cl" '
    /PROGRAM TOTALS/ { gsub(",", ""); printf "%-8s %5d %10.0f %11d %10.2f %10.2f\n", s, c, $1 / n, cl, $5 / n, $6 / n }'
done
