#!/usr/bin/env bash
# bench/libaco/run.sh [rounds] - our libaco against libaco 1.2.4, same run.
#
# Builds bench/libaco/bench_aco.c against our library (make lib) and, when
# LIBACO_DIR points at a libaco 1.2.4 source checkout (aco.c, acosw.S,
# aco.h), against that too, both with gcc -O2 and libaco's default
# configuration.  Runs the two in turn, `rounds` times (default 5), each
# run itself taking the median of several timed runs on one pinned CPU,
# and prints the median of the rounds side by side with the median of the
# per-round ratios ours/libaco (< 1: ours is faster or smaller).  Without LIBACO_DIR it
# prints our figures next to the reference figures of issue 2 (libaco
# 1.2.4 measured elsewhere on a machine like ours).
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

peer=""
if [ -n "${LIBACO_DIR:-}" ]; then
  for f in aco.c acosw.S aco.h; do
    [ -f "$LIBACO_DIR/$f" ] || { echo "LIBACO_DIR=$LIBACO_DIR has no $f" >&2; exit 2; }
  done
  # libaco's own build: gcc -O2, its default config (FPU/MXCSR control
  # words saved per coroutine); its acosw.S has no .note.GNU-stack.
  $cc -O2 -I"$LIBACO_DIR" -c "$LIBACO_DIR/aco.c" -o "$out/libaco_aco.o"
  $cc -O2 -c "$LIBACO_DIR/acosw.S" -o "$out/libaco_acosw.o"
  $cc -std=gnu11 -O2 -Wall -Wextra -I"$LIBACO_DIR" bench/libaco/bench_aco.c \
    "$out/libaco_aco.o" "$out/libaco_acosw.o" -Wl,-z,noexecstack \
    -o "$out/bench_libaco"
  peer="$out/bench_libaco"
fi

# One round: for each copy size, each binary's switch figure; then each
# one's create figures and its memory figures (a fresh process each, so
# memory freed by one test can't hide another's).  The two binaries take
# turns at every step, and which goes first alternates by round, so a
# drift of the machine's speed hits both alike.
sizes="0 8 24 40 56 120 136 488 1000 7992"
run_step() { # round step-args...
  local r=$1; shift
  local first=ours second=libaco
  if [ $((r % 2)) -eq 0 ]; then first=libaco; second=ours; fi
  for tag in $first $second; do
    [ "$tag" = libaco ] && [ -z "$peer" ] && continue
    "$out/bench_$tag" "$@" >>"$out/$tag.$r.txt"
  done
}
rm -f "$out"/ours.*.txt "$out"/libaco.*.txt
for r in $(seq 1 "$rounds"); do
  for s in $sizes; do run_step "$r" switch 15 "$s"; done
  run_step "$r" create
  run_step "$r" mem "$mem_count"
  run_step "$r" mem-default "$mem_count"
done

# what each binary really copied per switch (read back from max_cpsz)
copied() { grep -h '^# switch_.*copied' "$1" | sed 's/.*copied \([0-9]*\) B.*/\1/' | tr '\n' ' '; }
echo "bytes copied each way per resume, as measured: ours: $(copied "$out/ours.1.txt")"
[ -n "$peer" ] && echo "                                          libaco: $(copied "$out/libaco.1.txt")"
grep -h '^# pinned' "$out/ours.1.txt" | head -1 | sed 's/^# /each run /'

# reference figures of libaco 1.2.4 from issue 2 (measured elsewhere)
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

if [ -n "$peer" ]; then
  echo "ours vs libaco 1.2.4, same machine, same run ($(nproc) CPUs, gcc $($cc -dumpfullversion 2>/dev/null || $cc -dumpversion) -O2)"
  echo "each figure: median of $rounds rounds (each a median of several runs); ratio: median of the per-round ratios ours/libaco (< 1: ours faster/smaller)"
  hdr="libaco"
else
  echo "ours ($(nproc) CPUs, gcc $($cc -dumpfullversion 2>/dev/null || $cc -dumpversion) -O2, median of $rounds rounds) next to issue 2's"
  echo "reference figures for libaco 1.2.4 (measured elsewhere; set LIBACO_DIR=/path/to/libaco-1.2.4 to measure it here)"
  hdr="reference"
fi
echo "switch_N: ns per resume+yield pair copying N bytes each way; create/destroy: ns; mem: bytes per idle coroutine"
awk -v hdr="$hdr" -v havepeer="${peer:+1}" -v refs="$refs" '
  function med(list,   a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
      if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  BEGIN {
    n = split(refs, r, " ")
    for (i = 1; i <= n; i++) {
      eq = index(r[i], "=")
      ref[substr(r[i], 1, eq - 1)] = substr(r[i], eq + 1)
    }
  }
  /^#/ { next }
  {
    f = FILENAME; sub(/.*\//, "", f); split(f, parts, ".")
    tag = parts[1]; round = parts[2]
    if (tag == "ours" && !($1 in seen)) { seen[$1] = 1; order[m++] = $1 }
    v[tag, $1] = v[tag, $1] " " $2
    val[tag, $1, round] = $2; rounds[round] = 1
  }
  END {
    printf "  %-22s %10s %12s %8s\n", "figure", "ours", hdr, (havepeer ? "ratio" : "")
    for (i = 0; i < m; i++) {
      k = order[i]; o = med(v["ours", k])
      if (!havepeer) { printf "  %-22s %10.2f %12s\n", k, o, ref[k]; continue }
      if (!(("libaco", k) in v)) { printf "  %-22s %10.2f %12s %8s\n", k, o, "-", "-"; continue }
      p = med(v["libaco", k]); rl = ""
      for (rr in rounds)
        if (((("ours", k, rr) in val)) && ((("libaco", k, rr) in val)) && val["libaco", k, rr] + 0 > 0)
          rl = rl " " (val["ours", k, rr] / val["libaco", k, rr])
      printf "  %-22s %10.2f %12.2f %8.2f\n", k, o, p, med(rl)
    }
  }' $(ls "$out"/ours.*.txt) $( [ -n "$peer" ] && ls "$out"/libaco.*.txt)
