#!/usr/bin/env bash
# bench/eventer/run.sh [scale] - builds the C eventer benchmark and its Go
# peer, runs both (in that order, same machine, same run) and prints each
# figure next to its Go equivalent with the ratio C/Go (< 1: C is faster).
# `make bench` runs it after `make lib`; scale (default 1) multiplies the
# iteration counts.
set -euo pipefail
cd "$(dirname "$0")/../.."
scale=${1:-1}
out=build/bench/eventer
mkdir -p "$out"

make -s lib >/dev/null
${CC:-gcc} -std=gnu11 -O2 -pthread -D_GNU_SOURCE -Wall -Wextra -Werror \
  -Ibuild/include bench/eventer/bench_eventer.c build/lib/libacoeventer.a \
  -lm -o "$out/bench_eventer"
go build -o "$out/gopeer" ./bench/eventer/gopeer

"$out/bench_eventer" "$scale" >"$out/c.txt"
"$out/gopeer" -scale "$scale" >"$out/go.txt"

echo "eventer vs Go ($(nproc) CPUs, $(go env GOVERSION), scale $scale); ns per event"
awk '
  NR == FNR { c[$1] = $2; order[n++] = $1; next }
  { g[$1] = $2; if (!($1 in c)) order[n++] = $1 }
  END {
    printf "  %-34s %11s %11s %8s\n", "metric", "C", "Go", "C/Go"
    for (i = 0; i < n; i++) {
      m = order[i]
      if ((m in c) && (m in g))
        printf "  %-34s %11.1f %11.1f %8.2f\n", m, c[m], g[m], c[m] / g[m]
      else if (m in c)
        printf "  %-34s %11.1f %11s %8s\n", m, c[m], "-", "-"
      else
        printf "  %-34s %11s %11.1f %8s\n", m, "-", g[m], "-"
    }
  }' "$out/c.txt" "$out/go.txt"
