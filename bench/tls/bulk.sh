#!/usr/bin/env bash
# bench/tls/bulk.sh [pairs] [MiB] - the bulk rows of go.sh made steady
# enough to see a 5% change: server CPU per MiB of 1 MiB messages in
# (the server decrypts) and out (it encrypts) over one TLS 1.3
# connection, ours (bench/tls/goaco) against Go's crypto/tls
# (bench/tls/gopeer), or with REV=rev ours at git revision rev against
# the working tree's.  Both servers run the whole time, pinned to the
# same CPU (BENCH_CPU, default the last; an idle one costs nothing), the
# client (goclient) to CLIENT_CPU (0).  Each pair is one transfer of MiB
# MiB (default 512) to each server, the two taking turns (which goes
# first alternates), in then out; pairs (default 9) of them.  Prints,
# per direction, each side's median CPU per MiB, the median of the
# pairs' ratios (peer/ours, or before/after: above 1.00 ours, or the
# working tree, costs less) and their range.  A_ENV / B_ENV: settings
# for one side's environment ("SPIN_US=0 GOMAXPROCS=2"), to try a knob
# against the same binary (REV=HEAD).  FIGS="full resumed" (or any of
# up down full resumed): the handshake figures instead, go.sh's (HS
# connections a transfer, default 1500, 8 at a time; MiB unused),
# server CPU per handshake.  BENCH_LOCK=file: build first,
# then measure holding that lock (flock), so a shared machine's timed
# runs take turns without holding the lock through the build.  About a
# minute at the defaults.
set -euo pipefail
cd "$(dirname "$0")/../.."
pairs=${1:-9}
mib=${2:-512}
figs=${FIGS:-up down}
hs=${HS:-1500}
scpu=${BENCH_CPU:-$(($(nproc) - 1))}
ccpu=${CLIENT_CPU:-0}
rev=${REV:-}
out=build/bench/tls
mkdir -p "$out"
run=$(mktemp -d "$PWD/$out/bulk.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$run"
}
trap cleanup EXIT

scripts/cgo-stamp.sh
go build -o "$run/" ./bench/tls/goaco ./bench/tls/gopeer ./bench/tls/goclient
a="$run/gopeer" aname=crypto/tls
if [ -n "$rev" ]; then
  mkdir -p "$run/old/src"
  git archive "$rev" | tar -x -C "$run/old/src"
  (cd "$run/old/src" && scripts/cgo-stamp.sh >/dev/null && go build -o "$run/old/" ./bench/tls/goaco)
  a="$run/old/goaco" aname="$rev"
fi
b="$run/goaco"

. bench/tls/certs.sh
bench_certs "$run"

start() { # BIN NAME ENV: sets port_NAME, pid_NAME
  : >"$run/$2.port"
  # shellcheck disable=SC2086
  env $3 taskset -c "$scpu" "$1" "$run/srv.pem" "$run/srv.key" >"$run/$2.port" 2>"$run/$2.err" &
  local pid=$! port=""
  pids+=("$pid")
  for _ in $(seq 200); do
    port=$(sed -n 's/^port \([0-9]*\)$/\1/p' "$run/$2.port")
    [ -n "$port" ] && break
    sleep 0.05
  done
  [ -n "$port" ] || { echo "$1 did not start" >&2; cat "$run/$2.err" >&2; exit 1; }
  eval "port_$2=$port pid_$2=$pid"
}
if [ -n "${BENCH_LOCK:-}" ]; then
  exec 9>>"$BENCH_LOCK"
  flock 9
fi
start "$a" A "${A_ENV:-}"
start "$b" B "${B_ENV:-}"

res="$run/results.tsv" # pair side(A|B) figure cpu_us
: >"$res"
one() { # SIDE FIG PAIR
  local port pid n=$mib conc=1
  eval "port=\$port_$1 pid=\$pid_$1"
  case $2 in full | resumed) n=$hs conc=8 ;; esac
  taskset -c "$ccpu" "$run/goclient" "$2" "127.0.0.1:$port" "$n" "$conc" "$pid" >"$run/c.out"
  if [ "$2" = resumed ] && ! grep -q '^resumed_frac 1.000$' "$run/c.out"; then
    echo "side $1: not every handshake resumed: $(cat "$run/c.out")" >&2
    exit 1
  fi
  printf '%s\t%s\t%s\t%s\n' "$3" "$1" "$2" "$(sed -n 's/^cpu_us //p' "$run/c.out")" >>"$res"
}
for p in $(seq "$pairs"); do
  sides=(A B)
  [ $((p % 2)) = 0 ] && sides=(B A)
  for f in $figs; do
    for s in "${sides[@]}"; do one "$s" "$f" "$p"; done
  done
done
cp "$res" "$out/bulk_results.tsv"

echo "tls $figs: server CPU per MiB or handshake (us), $aname${A_ENV:+ ($A_ENV)} (A) against ours${B_ENV:+ ($B_ENV)} (B), $pairs pairs of $mib MiB or $hs handshakes," \
  "load $(cut -d' ' -f1-3 /proc/loadavg)"
awk -F'\t' '
  function med(list,   a, k, i, j, t) {
    k = split(list, a, " ")
    for (i = 2; i <= k; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return k % 2 ? a[(k+1)/2] : (a[k/2] + a[k/2+1]) / 2
  }
  { c[$2, $3] = c[$2, $3] " " $4; C[$1, $2, $3] = $4; if ($1 > pairs) pairs = $1 }
  END {
    printf "  %-7s %10s %10s %8s %s\n", "", "A", "B", "A/B", "(range)"
    n = split(figs, F, " ")
    for (i = 1; i <= n; i++) {
      f = F[i]; rr = ""; lo = 1e9; hi = 0
      for (p = 1; p <= pairs; p++) {
        x = C[p, "A", f] / C[p, "B", f]; rr = rr " " x
        if (x < lo) lo = x; if (x > hi) hi = x
      }
      printf "  %-7s %10.2f %10.2f %8.3f (%.2f-%.2f)\n", (f == "up" ? "in" : f == "down" ? "out" : f), med(c["A", f]), med(c["B", f]), med(rr), lo, hi
    }
  }' figs="$figs" "$res"
