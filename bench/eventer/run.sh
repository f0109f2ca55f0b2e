#!/usr/bin/env bash
# bench/eventer/run.sh [scale] - builds the C eventer benchmark and its Go
# peer, runs them side by side in the same session and prints each figure
# next to its Go equivalent (ratio C/Go, < 1: C is faster).
#
#   scale          multiplies the iteration counts (default 1)
#   ROUNDS=n       rounds (default 3); each round runs every C build
#                  unpinned and pinned, taking turns, and the Go peer once;
#                  the table gives the median over the rounds
#   BENCH_PIN=a,b  the pinned runs put loop 0 / the sender on CPU a and
#                  loop 1 / the job threads on CPU b (default 0,1; skipped
#                  on a single CPU)
#   BASE_REF=ref   also builds the library of git revision `ref` (e.g.
#                  main) and runs the same benchmark against it in the same
#                  rounds: column "base", ratio C/base
#   IDLE_SECONDS=s CPU at rest of each build and of the Go peer, s seconds
#                  each (default 10; 0 skips it)
#
# `make bench` runs it after `make lib`.
set -euo pipefail
cd "$(dirname "$0")/../.."
scale=${1:-1}
rounds=${ROUNDS:-3}
pin=${BENCH_PIN:-0,1}
idle_s=${IDLE_SECONDS:-10}
out=build/bench/eventer
mkdir -p "$out"
run=$(mktemp -d "$out/run.XXXXXX")
trap 'rm -rf "$run"' EXIT

cc_bench() { # include dir, library, output
  ${CC:-gcc} -std=gnu11 -O2 -pthread -D_GNU_SOURCE -Wall -Wextra -Werror \
    -I"$1" bench/eventer/bench_eventer.c "$2" -lssl -lcrypto -lm -o "$3"
}

make -s lib >/dev/null
cc_bench build/include build/lib/libacoeventer.a "$run/C"
builds=(C)
if [ -n "${BASE_REF:-}" ]; then
  # the same benchmark source against the library of another revision,
  # built from a clean export of it (no worktree, nothing shared)
  src="$run/base-src"
  mkdir -p "$src"
  git archive "$BASE_REF" | tar -x -C "$src"
  make -s -C "$src" lib >/dev/null
  cc_bench "$src/build/include" "$src/build/lib/libacoeventer.a" "$run/base"
  rm -rf "$src"
  builds+=(base)
fi
go build -o "$run/gopeer" ./bench/eventer/gopeer

modes=(unpinned)
[ "$(nproc)" -ge 2 ] && modes+=(pinned)
for r in $(seq 1 "$rounds"); do
  order=("${builds[@]}")
  # alternate which build goes first, so a slow spell hits both
  if [ $((r % 2)) -eq 0 ] && [ ${#builds[@]} -gt 1 ]; then order=(base C); fi
  for m in "${modes[@]}"; do
    p=""
    [ "$m" = pinned ] && p=$pin
    for b in "${order[@]}"; do
      BENCH_PIN=$p "$run/$b" "$scale" >"$run/$r.$m.$b.txt"
    done
  done
  "$run/gopeer" -scale "$scale" >"$run/$r.go.txt"
done
if [ "$idle_s" != 0 ]; then
  for b in "${builds[@]}"; do "$run/$b" idle "$idle_s" >"$run/$b.idle"; done
  "$run/gopeer" -idle "$idle_s" >"$run/go.idle"
fi

# the median over the rounds of each metric, in the order of the first file
median() { # files...
  awk '!($1 in v) { order[n++] = $1 } { v[$1] = v[$1] " " $2 }
       END { for (i = 0; i < n; i++) print order[i], v[order[i]] }' "$@" |
    while read -r m vals; do
      printf '%s %s\n' "$m" "$(tr ' ' '\n' <<<"$vals" | grep -v '^$' | sort -g |
        awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')"
    done
}
median "$run"/*.go.txt >"$run/med-go.txt"
for m in "${modes[@]}"; do
  for b in "${builds[@]}"; do median "$run"/*."$m.$b.txt" >"$run/med-$m-$b.txt"; done
done

echo "eventer vs Go ($(nproc) CPUs, $(go env GOVERSION), scale $scale," \
  "median of $rounds rounds${BASE_REF:+, base = $BASE_REF}); ns unless named"
echo "  (Go lk: the Go receiver locked to its OS thread, as the Go driver's loops are)"
for m in "${modes[@]}"; do
  echo
  if [ "$m" = pinned ]; then
    echo "  C pinned: loop 0 / sender on CPU ${pin%,*}, loop 1 / job threads on CPU ${pin#*,} (Go: not pinned)"
  else
    echo "  unpinned (the kernel places every thread)"
  fi
  base_file=/dev/null
  [ -n "${BASE_REF:-}" ] && base_file="$run/med-$m-base.txt"
  awk -v hasbase="${BASE_REF:+1}" '
    FILENAME == ARGV[1] { c[$1] = $2; order[n++] = $1; next }
    FILENAME == ARGV[2] { b[$1] = $2; next }
    { g[$1] = $2 }
    function cell(v) { return v == "" ? "-" : (v >= 100 ? sprintf("%.0f", v) : sprintf("%.2f", v)) }
    function ratio(x, y) { return (x == "" || y == "" || y == 0) ? "-" : sprintf("%.2f", x / y) }
    END {
      printf "  %-34s %9s", "metric", "C"
      if (hasbase) printf " %9s %6s", "base", "C/base"
      printf " %9s %6s %9s %6s\n", "Go", "C/Go", "Go lk", "C/lk"
      for (i = 0; i < n; i++) {
        m = order[i]
        if (m ~ /_avg_ns$/) continue
        lk = m
        sub(/^xthread_trigger/, "xthread_trigger_lockedrecv", lk)
        if (lk == m) lk = ""
        printf "  %-34s %9s", m, cell(c[m])
        if (hasbase) printf " %9s %6s", cell(b[m]), ratio(c[m], b[m])
        printf " %9s %6s %9s %6s\n", cell(g[m]), ratio(c[m], g[m]),
               cell(lk == "" ? "" : g[lk]), ratio(c[m], lk == "" ? "" : g[lk])
      }
    }' "$run/med-$m-C.txt" "$base_file" "$run/med-go.txt"
done

if [ "$idle_s" != 0 ]; then
  echo
  echo "  at rest for ${idle_s} s after a burst (C: loops 0 and 1, a job queue of 4 threads;"
  echo "  Go: 4 worker goroutines, a locked receiver)"
  for b in "${builds[@]}" go; do
    awk -v b="$b" '{ v[$1] = $2 } END {
      printf "  %-6s CPU %.4f%% of one core, %.1f context switches/s\n", b, v["idle_cpu_pct"], v["idle_wakeups_per_s"] }' \
      "$run/$b.idle"
  done
fi
# every round's raw figures and the medians, for a closer look
rm -rf "$out/last" && cp -r "$run" "$out/last"
