#!/usr/bin/env bash
# bench/eventer_aco/run.sh [scale] - coroutines on the loop against classic
# callbacks, same process, same run (bench_eventer_aco.c says what each
# figure measures):
#   - the would-block-then-ready cycle of a coroutine reading a socketpair,
#     next to a classic fd callback doing the same syscalls, and the
#     park/resume machinery alone (no syscalls);
#   - socketpair ping-pong round trips per second, two coroutines against
#     two classic callbacks, as a ratio;
#   (each timed figure also as CPU time of the loop thread per operation:
#   on a machine shared with other work, wall time counts the others too);
#   the cycle's and ping-pong's pairs once more with a second, sleeping
#   thread in the process (BENCH_THREADS=1), as in every program with a
#   job queue, a second loop or a Go runtime: libc's read and write cost
#   more per call in a multi-threaded process (eventer_aco_fd.c says why);
#   - create + run + end of a coroutine (one per request, as the HTTP
#     engine's aco rules do), next to bare libaco doing the same, and one
#     that parks once before it ends;
#   - resident memory of MEM_COUNT (default 1,000,000) coroutines parked
#     on a semaphore, without and with a timeout (a timeout, like a sleep,
#     puts a timer on the loop's heap), per coroutine and beyond its saved
#     stack.
# `make bench` runs it after `make lib`; scale (default 1) multiplies the
# iteration counts of the timed figures.  About 45 s at scale 1.
set -euo pipefail
cd "$(dirname "$0")/../.."
scale=${1:-1}
mem_count=${MEM_COUNT:-1000000}
out=build/bench/eventer_aco
mkdir -p "$out"
# a directory of its own per run: two runs at once (a shared checkout) must
# not share a binary or a results file
run=$(mktemp -d "$out/run.XXXXXX")
trap 'rm -rf "$run"' EXIT

make -s lib >/dev/null
${CC:-gcc} -std=gnu11 -O2 -pthread -D_GNU_SOURCE -Wall -Wextra -Werror \
  -Ibuild/include bench/eventer_aco/bench_eventer_aco.c \
  build/lib/libacoeventer.a -lssl -lcrypto -lm -o "$run/bench_eventer_aco"

n_cycle=$(awk -v s="$scale" 'BEGIN { printf "%d", 30000 * s }')
n_pp=$(awk -v s="$scale" 'BEGIN { printf "%d", 20000 * s }')
n_create=$(awk -v s="$scale" 'BEGIN { printf "%d", 200000 * s }')
b="$run/bench_eventer_aco"
{
  "$b" cycle "$n_cycle"
  "$b" pingpong "$n_pp"
  BENCH_THREADS=1 "$b" cycle "$n_cycle" | sed 's/^/mt_/'
  BENCH_THREADS=1 "$b" pingpong "$n_pp" | sed 's/^/mt_/'
  "$b" create "$n_create"
  "$b" mem "$mem_count" sem
  "$b" mem "$mem_count" sem-timeout
} >"$run/results.txt"
cp "$run/results.txt" "$out/results.txt.$$" && mv "$out/results.txt.$$" "$out/results.txt"

echo "eventer_aco ($(nproc) CPUs, $(${CC:-gcc} -dumpfullversion 2>/dev/null || echo gcc), -O2, scale $scale)"
awk '
  { v[$1] = $2 }
  function row(label, a, b, unit, ratio) {
    printf "  %-44s %12s %12s %8s %s\n", label, a, b, ratio, unit
  }
  END {
    printf "  %-44s %12s %12s %8s\n", "", "coroutine", "classic", "ratio"
    row("would-block-then-ready cycle, median (ns)", v["cycle_aco_ns"], v["cycle_classic_ns"], "",
        sprintf("%.2f", v["cycle_aco_ns"] / v["cycle_classic_ns"]))
    row("would-block-then-ready cycle, CPU median (ns)", v["cycle_aco_cpu_ns"], v["cycle_classic_cpu_ns"], "",
        sprintf("%.2f", v["cycle_aco_cpu_ns"] / v["cycle_classic_cpu_ns"]))
    row("would-block-then-ready cycle, 41 pairs: CPU, wall", "", "", "",
        sprintf("%.2f %.2f", v["cycle_pairs_cpu_ratio"], v["cycle_pairs_wall_ratio"]))
    row("would-block-then-ready cycle, best (ns)", v["cycle_aco_min_ns"], v["cycle_classic_min_ns"], "",
        sprintf("%.2f", v["cycle_aco_min_ns"] / v["cycle_classic_min_ns"]))
    row("  coroutine machinery in it, best-best (ns)", v["cycle_aco_overhead_ns"], "-", "", "-")
    row("  park + hand-off + resume, no syscalls (ns)", v["park_wake_cycle_ns"], "-", "", "-")
    row("socketpair ping-pong, median (round trips/s)", v["pingpong_aco_rt_per_s"],
        v["pingpong_classic_rt_per_s"], "", sprintf("%.2f", v["pingpong_aco_vs_classic"]))
    row("socketpair ping-pong, CPU per round trip (ns)", v["pingpong_aco_cpu_ns_per_rt"],
        v["pingpong_classic_cpu_ns_per_rt"], "", sprintf("%.2f", v["pingpong_aco_vs_classic_cpu"]))
    row("socketpair ping-pong, 41 pairs: CPU, wall", "", "", "",
        sprintf("%.2f %.2f", v["pingpong_pairs_cpu_ratio"], v["pingpong_pairs_wall_ratio"]))
    row("socketpair ping-pong, best (round trips/s)", v["pingpong_aco_best_rt_per_s"],
        v["pingpong_classic_best_rt_per_s"], "",
        sprintf("%.2f", v["pingpong_aco_best_rt_per_s"] / v["pingpong_classic_best_rt_per_s"]))
    row("2 threads: cycle, 41 pairs: CPU, wall", "", "", "",
        sprintf("%.2f %.2f", v["mt_cycle_pairs_cpu_ratio"], v["mt_cycle_pairs_wall_ratio"]))
    row("2 threads: ping-pong, 41 pairs: CPU, wall", "", "", "",
        sprintf("%.2f %.2f", v["mt_pingpong_pairs_cpu_ratio"], v["mt_pingpong_pairs_wall_ratio"]))
    row("create + run + end, median (ns)", v["create_return_ns"], "-", "", "-")
    row("  bare libaco: create, resume, exit, destroy (ns)", "-", v["create_bare_ns"], "",
        sprintf("%.2f", v["create_return_ns"] / v["create_bare_ns"]))
    row("create + run + end, CPU median (ns)", v["create_return_cpu_ns"], v["create_bare_cpu_ns"], "",
        sprintf("%.2f", v["create_return_cpu_ns"] / v["create_bare_cpu_ns"]))
    row("create + park + wake + end, median (ns)", v["create_park_ns"], "-", "", "-")
    row("create + park + wake + end, CPU median (ns)", v["create_park_cpu_ns"], "-", "", "-")
    for (k = 0; k < 2; k++) {
      t = k ? "mem_timeout" : "mem"
      printf "  %d coroutines parked on a semaphore%s:\n", v[t "_parked"],
             k ? " with a timeout (as a sleep)" : ""
      printf "    resident %.1f MiB, %.1f B each; saved stack %.1f B (capacity %.1f B);\n",
             v[t "_rss_mib"], v[t "_bytes_per_coroutine"], v[t "_saved_stack_bytes"],
             v[t "_save_stack_capacity_bytes"]
      printf "    beyond the saved stack %.1f B (goal < 300); start+park %.0f ns, wake+end %.0f ns\n",
             v[t "_beyond_saved_stack_bytes"], v[t "_start_park_ns"], v[t "_wake_end_ns"]
    }
  }' "$run/results.txt"
