#!/usr/bin/env bash
# bench/libaco/run.sh [rounds] - our libaco against libaco 1.2.4, same run.
#
# Builds bench/libaco/bench_aco.c against our library (make lib) and, when
# LIBACO_DIR points at a libaco 1.2.4 source checkout (aco.c, acosw.S,
# aco.h), against that too, twice, with gcc -O2 as libaco's own build
# does: "libaco" in its default configuration (MXCSR and x87 control word
# per coroutine, as ours) and "libaco_share" with
# -DACO_CONFIG_SHARE_FPU_MXCSR_ENV (one floating-point environment for all
# coroutines: the switch never touches it).  Runs them in turn, `rounds`
# times (default 5), each run itself taking the median of several timed
# runs on one pinned CPU, and prints the median of the rounds side by side
# with the median of the per-round ratios ours/peer (< 1: ours is faster
# or smaller) and their range over the rounds.  Without LIBACO_DIR it
# prints our figures next to published reference figures for libaco
# 1.2.4 (measured elsewhere on a machine like ours).
#
# Environment: LIBACO_DIR (see above), CC (default gcc), BENCH_CPU (the
# CPU to pin to; default the last allowed), MEM_COUNT (coroutines in the
# memory test, default 1000000).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-5}
out=build/bench/libaco
cc=${CC:-gcc}
mem_count=${MEM_COUNT:-1000000}
mkdir -p "$out"

make -s lib >/dev/null
$cc -std=gnu11 -O2 -Wall -Wextra -Werror -Ibuild/include \
  bench/libaco/bench_aco.c build/lib/libacoeventer.a -pthread -lm \
  -o "$out/bench_ours"

tags="ours"
if [ -n "${LIBACO_DIR:-}" ]; then
  for f in aco.c acosw.S aco.h; do
    [ -f "$LIBACO_DIR/$f" ] || { echo "LIBACO_DIR=$LIBACO_DIR has no $f" >&2; exit 2; }
  done
  # libaco's own build: gcc -O2; its acosw.S has no .note.GNU-stack.
  # The config macro changes aco_t and acosw, so it is given to all three
  # files, as libaco's make.sh does.
  for peer in libaco libaco_share; do
    def=""
    [ $peer = libaco_share ] && def=-DACO_CONFIG_SHARE_FPU_MXCSR_ENV
    $cc -O2 $def -I"$LIBACO_DIR" -c "$LIBACO_DIR/aco.c" -o "$out/${peer}_aco.o"
    $cc -O2 $def -c "$LIBACO_DIR/acosw.S" -o "$out/${peer}_acosw.o"
    $cc -std=gnu11 -O2 $def -Wall -Wextra -I"$LIBACO_DIR" \
      bench/libaco/bench_aco.c "$out/${peer}_aco.o" "$out/${peer}_acosw.o" \
      -Wl,-z,noexecstack -o "$out/bench_$peer"
  done
  tags="ours libaco libaco_share"
fi
ntags=$(echo $tags | wc -w)

# One round: for each copy size, each binary's switch figure; then each
# one's create figures and its memory figures (a fresh process each, so
# memory freed by one test can't hide another's).  The binaries take
# turns at every step, and which goes first rotates by round, so a drift
# of the machine's speed hits all alike.
sizes="0 8 24 40 56 120 136 488 1000 7992"
run_step() { # round step-args...
  local r=$1; shift
  local -a order=($tags)
  local i k
  for ((i = 0; i < ntags; i++)); do
    k=$(( (i + r) % ntags ))
    "$out/bench_${order[$k]}" "$@" >>"$out/${order[$k]}.$r.txt"
  done
}
rm -f "$out"/ours.*.txt "$out"/libaco.*.txt "$out"/libaco_share.*.txt
for r in $(seq 1 "$rounds"); do
  for s in $sizes; do run_step "$r" switch 15 "$s"; done
  run_step "$r" create
  run_step "$r" mem "$mem_count"
  run_step "$r" mem-default "$mem_count"
done

# what each binary really copied per switch (read back from max_cpsz)
copied() { grep -h '^# switch_.*copied' "$1" | sed 's/.*copied \([0-9]*\) B.*/\1/' | tr '\n' ' '; }
for t in $tags; do
  printf 'bytes copied each way per resume, as measured: %-12s %s\n' "$t:" "$(copied "$out/$t.1.txt")"
done
grep -h '^# pinned' "$out/ours.1.txt" | head -1 | sed 's/^# /each run /'
grep -h '^# fp:' "$out/ours.1.txt" | head -1 | sed 's/^# //'

# reference figures for libaco 1.2.4 (measured elsewhere)
ref() {
  case $1 in
    switch_0) echo 14.0 ;; switch_8|switch_24|switch_40|switch_56) echo 19.5-20.8 ;;
    switch_120|switch_136) echo 21.8-22.7 ;; switch_488) echo 30.3 ;;
    switch_1000) echo 59 ;; switch_7992) echo 544 ;;
    create_*) echo 16-115 ;;
    sizeof_aco_t) echo 160 ;; mem_default_10m_gib) echo 3.06 ;;
    mem_sized_beyond) echo "goal:<=200" ;;
    *) echo - ;;
  esac
}
refs=""
for k in $(grep -v '^#' "$out/ours.1.txt" | awk '{print $1}'); do
  refs="$refs $k=$(ref "$k")"
done

if [ "$ntags" -gt 1 ]; then
  echo "ours vs libaco 1.2.4, same machine, same run ($(nproc) CPUs, gcc $($cc -dumpfullversion 2>/dev/null || $cc -dumpversion) -O2)"
  echo "libaco: default configuration; libaco_share: built with -DACO_CONFIG_SHARE_FPU_MXCSR_ENV"
  echo "each figure: median of $rounds rounds (each a median of several runs); ratio: median of the per-round ratios ours/peer (< 1: ours faster/smaller), then their lowest-highest"
else
  echo "ours ($(nproc) CPUs, gcc $($cc -dumpfullversion 2>/dev/null || $cc -dumpversion) -O2, median of $rounds rounds) next to the"
  echo "reference figures for libaco 1.2.4 (measured elsewhere; set LIBACO_DIR=/path/to/libaco-1.2.4 to measure it here)"
fi
echo "switch_N: ns per resume+yield pair copying N bytes each way; create/destroy: ns; mem: bytes per idle coroutine"
files=""
for t in $tags; do files="$files $(ls "$out"/$t.*.txt)"; done
awk -v tags="$tags" -v refs="$refs" '
  function med(list,   a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
      if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  BEGIN {
    nt = split(tags, tag, " ")
    n = split(refs, r, " ")
    for (i = 1; i <= n; i++) {
      eq = index(r[i], "=")
      ref[substr(r[i], 1, eq - 1)] = substr(r[i], eq + 1)
    }
  }
  /^#/ { next }
  {
    f = FILENAME; sub(/.*\//, "", f); split(f, parts, ".")
    t = parts[1]; round = parts[2]
    if (t == "ours" && !($1 in seen)) { seen[$1] = 1; order[m++] = $1 }
    v[t, $1] = v[t, $1] " " $2
    val[t, $1, round] = $2; rounds[round] = 1
  }
  END {
    if (nt == 1) {
      printf "  %-22s %10s %12s\n", "figure", "ours", "reference"
      for (i = 0; i < m; i++) {
        k = order[i]
        printf "  %-22s %10.2f %12s\n", k, med(v["ours", k]), ref[k]
      }
      exit
    }
    printf "  %-22s %10s", "figure", "ours"
    for (j = 2; j <= nt; j++) printf " %12s %8s %11s", tag[j], "ratio", "range"
    printf "\n"
    for (i = 0; i < m; i++) {
      k = order[i]
      printf "  %-22s %10.2f", k, med(v["ours", k])
      for (j = 2; j <= nt; j++) {
        p = tag[j]
        if (!((p, k) in v)) { printf " %12s %8s %11s", "-", "-", "-"; continue }
        rl = ""; lo = ""; hi = ""
        for (rr in rounds)
          if ((("ours", k, rr) in val) && ((p, k, rr) in val) && val[p, k, rr] + 0 > 0) {
            q = val["ours", k, rr] / val[p, k, rr]
            rl = rl " " q
            if (lo == "" || q < lo) lo = q
            if (hi == "" || q > hi) hi = q
          }
        printf " %12.2f %8.2f %5.2f-%-5.2f", med(v[p, k]), med(rl), lo, hi
      }
      printf "\n"
    }
  }' $files
