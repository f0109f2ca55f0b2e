#!/usr/bin/env bash
# bench/tls/ab.sh REV [scale] - the Go binding's TLS listener at git
# revision REV (before) against the working tree's (after): the figures
# of go.sh (full and resumed handshakes, 1 MiB messages in and out, and
# the HTTPS hello through bench/tls/gorest), server CPU per item of each
# side, same client, same certificate, the two servers taking turns for
# RUNS rounds (default 5), pinned as in go.sh.  REV's programs are built
# from `git archive REV` (its bench/tls/goaco, and this tree's gorest and
# bench/hello against REV's module).  ONLY=https: the HTTPS hello alone.  Prints, per figure, the medians and the median
# over the rounds of before/after (above 1.00: after costs less).
set -euo pipefail
cd "$(dirname "$0")/../.."
rev=${1:?usage: ab.sh REV [scale]}
scale=${2:-1}
runs=${RUNS:-5}
scpu=${BENCH_CPU:-$(($(nproc) - 1))}
ccpu=${CLIENT_CPU:-0}
dur=${DUR:-3}
out=build/bench/tls
mkdir -p "$out"
run=$(mktemp -d "$PWD/$out/ab.XXXXXX")
spid=""
cleanup() {
  [ -n "$spid" ] && kill "$spid" 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT

mkdir -p "$run/old/src" "$run/new"
git archive "$rev" | tar -x -C "$run/old/src"
mkdir -p "$run/old/src/bench/tls/gorest" "$run/old/src/bench/hello"
cp bench/tls/gorest/main.go "$run/old/src/bench/tls/gorest/"
cp bench/hello/hello.go "$run/old/src/bench/hello/"
(cd "$run/old/src" && scripts/cgo-stamp.sh >/dev/null &&
  go build -o "$run/old/" ./bench/tls/goaco ./bench/tls/gorest)
scripts/cgo-stamp.sh
go build -o "$run/new/" ./bench/tls/goaco ./bench/tls/gorest ./bench/tls/goclient

. bench/tls/certs.sh
bench_certs "$run"

n() { awk -v s="$scale" -v b="$1" 'BEGIN { printf "%d", (b * s < 1 ? 1 : b * s) }'; }
figures=("full $(n 1000) 8" "resumed $(n 1000) 8" "up $(n 256) 1" "down $(n 256) 1")
only=${ONLY:-}
case "$only" in
"") ;;
https) command -v wrk >/dev/null || { echo "ONLY=https needs wrk" >&2; exit 1; } ;;
*) echo "ONLY: https or nothing" >&2; exit 2 ;;
esac

start_server() { # BIN
  : >"$run/port"
  taskset -c "$scpu" "$1" "$run/srv.pem" "$run/srv.key" >"$run/port" 2>"$run/err" &
  spid=$!
  port=""
  for _ in $(seq 200); do
    port=$(sed -n 's/^port \([0-9]*\)$/\1/p' "$run/port")
    [ -n "$port" ] && break
    sleep 0.05
  done
  [ -n "$port" ] || { echo "$1 did not start" >&2; cat "$run/err" >&2; exit 1; }
}
stop_server() { kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; spid=""; }
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }'; }

res="$run/results.tsv" # round side(old|new) figure cpu_us
: >"$res"
for r in $(seq "$runs"); do
  sides=(old new)
  [ $((r % 2)) = 0 ] && sides=(new old)
  for side in "${sides[@]}"; do
    [ -n "$only" ] && break
    start_server "$run/$side/goaco"
    for f in "${figures[@]}"; do
      set -- $f
      taskset -c "$ccpu" "$run/new/goclient" "$1" "127.0.0.1:$port" "$2" "$3" "$spid" >"$run/c.out"
      printf '%s\t%s\t%s\t%s\n' "$r" "$side" "$1" "$(sed -n 's/^cpu_us //p' "$run/c.out")" >>"$res"
    done
    stop_server
  done
  if command -v wrk >/dev/null; then
    for side in "${sides[@]}"; do
      start_server "$run/$side/gorest"
      c0=$(cpu_ns "$spid")
      taskset -c "$ccpu" wrk -t1 -c50 -d"${dur}s" "https://127.0.0.1:$port/hello" >"$run/wrk.out"
      c1=$(cpu_ns "$spid")
      awk -v r="$r" -v s="$side" -v c="$((c1 - c0))" '/ requests in / { n = $1 }
        END { if (n < 1) exit 1; printf "%s\t%s\thttps\t%.2f\n", r, s, c / 1e3 / n }' \
        "$run/wrk.out" >>"$res"
      stop_server
    done
  fi
done
cp "$res" "$out/ab_results.tsv"

echo "tls before/after: $rev against the working tree, server CPU per item (us), $runs rounds, medians"
awk -F'\t' '
  function med(list,   a, k, i, j, t) {
    k = split(list, a, " ")
    for (i = 2; i <= k; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return k % 2 ? a[(k+1)/2] : (a[k/2] + a[k/2+1]) / 2
  }
  { c[$2, $3] = c[$2, $3] " " $4; C[$1, $2, $3] = $4; if ($1 > rounds) rounds = $1 }
  END {
    printf "  %-10s %10s %10s %14s %s\n", "figure", "before", "after", "before/after", "(range)"
    n = split("full resumed up down https", F, " ")
    for (i = 1; i <= n; i++) {
      f = F[i]; rr = ""; lo = 1e9; hi = 0
      if (!((1, "new", f) in C)) continue
      for (r = 1; r <= rounds; r++) {
        x = C[r, "old", f] / C[r, "new", f]; rr = rr " " x
        if (x < lo) lo = x; if (x > hi) hi = x
      }
      printf "  %-10s %10.2f %10.2f %14.2f (%.2f-%.2f)\n", f, med(c["old", f]), med(c["new", f]), med(rr), lo, hi
    }
  }' "$res"
