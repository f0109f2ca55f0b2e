#!/usr/bin/env bash
# bench/tls/go.sh [scale] - the Go binding's TLS listener next to Go's
# crypto/tls, same machine, same run, same client:
#   goaco    a Go aco function on a TLS listener (eventer.ListenAco with
#            eventer.WithTLS: one loop, OpenSSL 3 under the fd opset)
#   gopeer   Go's crypto/tls server, a goroutine per connection
#   goclient Go's crypto/tls client driving both (see its comment)
# Each server runs pinned to BENCH_CPU (default the last CPU), the client
# to CLIENT_CPU (default 0).  Figures, each as a rate and as the server's
# CPU time per item (all its threads, /proc/PID/task/*/schedstat):
#   full      full TLS 1.3 handshakes per second (X25519, ECDSA P-256),
#             8 connections at a time, each a handshake, a 1-byte
#             exchange and the close
#   resumed   the same, each resuming a session (tickets)
#   up        1 MiB messages client -> server over one connection
#             (the server reads and decrypts), MiB/s
#   down      1 MiB messages server -> client, each one Write (the
#             server encrypts), MiB/s
#   https     HTTPS "hello" (when bench/tls/gorest is there): GET /hello
#             from wrk (50 keep-alive connections, DUR seconds, default 5)
#             against the REST engine over TLS with a Go rule (gorest)
#             and against net/http over TLS (gopeer -https); requests/s
#             and server CPU per request
# ONLY=https runs the HTTPS hello alone (no handshake or bulk figures).
# The servers take turns, RUNS (default 5) rounds; each ratio is the
# median over the rounds of that round's ours/Go (rates) or Go/ours
# (CPU): above 1.0 we do better; "range" is the lowest and the highest
# round's.  Writes build/bench/tls/go_results.tsv,
# go_summary.txt and the chart go_ratios.png (gnuplot).  About a minute.
set -euo pipefail
cd "$(dirname "$0")/../.."
scale=${1:-1}
runs=${RUNS:-5}
ncpu=$(nproc)
scpu=${BENCH_CPU:-$((ncpu - 1))}
ccpu=${CLIENT_CPU:-0}
out=build/bench/tls
mkdir -p "$out"
run=$(mktemp -d "$out/go.XXXXXX")
spid=""
cleanup() {
  [ -n "$spid" ] && kill "$spid" 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT

scripts/cgo-stamp.sh
go build -o "$run/" ./bench/tls/goaco ./bench/tls/gopeer ./bench/tls/goclient
https=""
if [ -d bench/tls/gorest ] && command -v wrk >/dev/null; then
  go build -o "$run/" ./bench/tls/gorest
  https=1
fi
dur=${DUR:-5}

. bench/tls/certs.sh
bench_certs "$run"

n() { awk -v s="$scale" -v b="$1" 'BEGIN { printf "%d", (b * s < 1 ? 1 : b * s) }'; }
figures=("full $(n 1000) 8" "resumed $(n 1000) 8" "up $(n 256) 1" "down $(n 256) 1")
only=${ONLY:-}
case "$only" in
"") ;;
https) [ -n "$https" ] || { echo "ONLY=https needs bench/tls/gorest and wrk" >&2; exit 1; } ;;
*) echo "ONLY: https or nothing" >&2; exit 2 ;;
esac

start_server() { # NAME [ARGS]
  : >"$run/$1.port"
  taskset -c "$scpu" "$run/$1" "${@:2}" "$run/srv.pem" "$run/srv.key" >"$run/$1.port" 2>"$run/$1.err" &
  spid=$!
  port=""
  for _ in $(seq 200); do
    port=$(sed -n 's/^port \([0-9]*\)$/\1/p' "$run/$1.port")
    [ -n "$port" ] && break
    sleep 0.05
  done
  [ -n "$port" ] || { echo "$1 did not start" >&2; cat "$run/$1.err" >&2; exit 1; }
}
stop_server() { kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; spid=""; }

cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }'; }

res="$run/results.tsv" # round side(ours|go) figure rate cpu_us
: >"$res"
: >"$run/params.txt" # side figure version cipher group
for r in $(seq "$runs"); do
  for s in goaco gopeer; do
    [ -n "$only" ] && break
    side=ours; [ "$s" = gopeer ] && side=go
    start_server "$s"
    for f in "${figures[@]}"; do
      set -- $f
      taskset -c "$ccpu" "$run/goclient" "$1" "127.0.0.1:$port" "$2" "$3" "$spid" >"$run/c.out"
      awk -v r="$r" -v s="$side" -v f="$1" '{ v[$1] = $2 }
        END { printf "%s\t%s\t%s\t%s\t%s\n", r, s, f, v["rate"], v["cpu_us"] }' "$run/c.out" >>"$res"
      echo "$side $1 $(sed -n 's/^params //p' "$run/c.out")" >>"$run/params.txt"
      if [ "$1" = resumed ] && ! grep -q '^resumed_frac 1.000$' "$run/c.out"; then
        echo "$s: not every handshake resumed: $(cat "$run/c.out")" >&2
        exit 1
      fi
    done
    stop_server
  done
  if [ -n "$https" ]; then
    for s in gorest gopeer; do
      side=ours; args=()
      [ "$s" = gopeer ] && side=go && args=(-https)
      start_server "$s" "${args[@]}"
      if [ "$r" = 1 ]; then # what the server chooses for an OpenSSL client (wrk's defaults)
        echo "$side https $(openssl s_client -connect "127.0.0.1:$port" </dev/null 2>/dev/null | awk '
          /^New, / { v = $2; c = $NF } /^Server Temp Key:/ { g = $4; sub(/,$/, "", g) }
          END { sub(/,$/, "", v); printf "%s %s %s", v, c, g }')" >>"$run/params.txt"
      fi
      c0=$(cpu_ns "$spid")
      taskset -c "$ccpu" wrk -t1 -c50 -d"${dur}s" "https://127.0.0.1:$port/hello" >"$run/wrk.out"
      c1=$(cpu_ns "$spid")
      awk -v r="$r" -v s="$side" -v c="$((c1 - c0))" '
        / requests in / { n = $1 } /^Requests\/sec:/ { rps = $2 }
        END { if (n < 1) exit 1; printf "%s\t%s\thttps\t%s\t%.2f\n", r, s, rps, c / 1e3 / n }' \
        "$run/wrk.out" >>"$res" || { echo "wrk against $s failed: $(cat "$run/wrk.out")" >&2; exit 1; }
      stop_server
    done
  fi
done
cp "$res" "$out/go_results.tsv"
# both sides must have negotiated the same version, cipher suite and group
negotiated=$(awk '{ p[$2, $1] = $3 " " $4 " " $5; f[$2] = 1 }
  END { for (k in f) { if (p[k, "ours"] != p[k, "go"]) { printf "%s: ours %s, crypto/tls %s\n", k, p[k, "ours"], p[k, "go"] > "/dev/stderr"; bad = 1 }
          all[p[k, "ours"]] = 1 }
        if (bad) exit 1; for (a in all) printf "%s%s", (n++ ? "; " : ""), a }' "$run/params.txt") ||
  { echo "the servers negotiated different parameters" >&2; exit 1; }

# medians of each side's figures, and of the rounds' ratios
awk -F'\t' '
  function med(list,   a, k, i, j, t) {
    k = split(list, a, " ")
    for (i = 2; i <= k; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return k % 2 ? a[(k+1)/2] : (a[k/2] + a[k/2+1]) / 2
  }
  { rate[$2, $3] = rate[$2, $3] " " $4; cpu[$2, $3] = cpu[$2, $3] " " $5; R[$1, $2, $3] = $4; C[$1, $2, $3] = $5
    if ($1 > rounds) rounds = $1 }
  END {
    n = split("full resumed up down https", F, " ")
    for (i = 1; i <= n; i++) {
      f = F[i]; rr = ""; cr = ""; rlo = clo = 1e9; rhi = chi = 0
      if (!((1, "ours", f) in R)) continue
      for (r = 1; r <= rounds; r++) {
        x = R[r, "ours", f] / R[r, "go", f]; rr = rr " " x
        if (x < rlo) rlo = x; if (x > rhi) rhi = x
        x = C[r, "go", f] / C[r, "ours", f]; cr = cr " " x
        if (x < clo) clo = x; if (x > chi) chi = x
      }
      printf "%s %.1f %.1f %.2f %.2f %.2f %.2f %.2f-%.2f %.2f-%.2f\n", f, med(rate["ours", f]), med(rate["go", f]), med(rr),
        med(cpu["ours", f]), med(cpu["go", f]), med(cr), rlo, rhi, clo, chi
    }
  }' "$res" >"$run/medians.txt"

{
  echo "tls, Go binding vs crypto/tls ($ncpu CPUs, server on CPU $scpu, client on CPU $ccpu," \
    "$(openssl version | cut -d' ' -f1-2), $(go version | cut -d' ' -f3), scale $scale, $runs rounds, medians)"
  echo "  both sides negotiated: $negotiated (ECDSA P-256 certificate)"
  awk '
    function row(a, b, c, d, e) { printf "  %-44s %12s %12s %8s %11s\n", a, b, c, d, e }
    BEGIN {
      row("", "ours", "crypto/tls", "ratio", "range")
      L["full"] = "full handshakes (per s)"; U["full"] = "  server CPU per handshake (us)"
      L["resumed"] = "resumed handshakes (per s)"; U["resumed"] = "  server CPU per handshake (us)"
      L["up"] = "1 MiB messages in, one connection (MiB/s)"; U["up"] = "  server CPU per MiB (us)"
      L["down"] = "1 MiB messages out, one connection (MiB/s)"; U["down"] = "  server CPU per MiB (us)"
      L["https"] = "HTTPS hello, REST engine vs net/http (req/s)"; U["https"] = "  server CPU per request (us)"
    }
    { row(L[$1], $2, $3, $4, $8); row(U[$1], $5, $6, $7, $9) }
  ' "$run/medians.txt"
  echo "  (ratios: ours/crypto/tls for rates, crypto/tls/ours for CPU: above 1.00 we do better;"
  echo "   the median over the rounds, and the lowest and highest round)"
} | tee "$out/go_summary.txt"

if command -v gnuplot >/dev/null; then
  awk '{ printf "\"%s\" %s %s\n", $1, $4, $7 }' "$run/medians.txt" >"$run/ratios.dat"
  gnuplot <<GP
set terminal pngcairo size 800,400 noenhanced
set output "$out/go_ratios.png"
set title "Go aco TLS listener vs Go crypto/tls, same run (above 1: ours better)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.6
set yrange [0:*]
set grid ytics
set key below
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2
plot "$run/ratios.dat" using 2:xtic(1) title "rate, ours / crypto/tls", \
     "" using 3 title "server CPU per item, crypto/tls / ours"
GP
  echo "chart: $out/go_ratios.png" >&2
fi
