#!/usr/bin/env bash
# bench/http/sysmonprobes.sh - what the Go runtime's sysmon does a second
# in a Go server under wrk, and why: perf uprobes on the server binary's
# runtime, recorded with frame-pointer call chains over the middle of the
# load and counted by caller, a second:
#   ticks       sysmon's usleep (one a tick), and how many of each length
#               asked (20 us after a tick that retook; doubling after 50
#               ticks that did not, up to 10 ms)
#   P retaken   handoffp from sysmon's retake (a P taken from a thread in
#               a system or cgo call it found at two ticks in a row)
#   deep sleeps sysmon's notetsleep (it found every P idle), ended by a
#               note (a thread leaving a system or cgo call found an idle
#               P and woke it: its ticks go back to 20 us) or by timeout
#   woken from  the notewakeup calls on sysmon's note, by the function
#               two frames up (exitsyscall.func3: exitsyscall's slow path,
#               the P lost), and entersyscall's wake (entersyscallWakeSysmon)
# Servers as in goprobes.sh (gnet, the Go aco rule, BASE=another build's).
# wrk (Debian's) with one thread on one CPU, the server pinned to the
# other; a 1 s warm-up at 50 connections, then LOAD for SECS + 1 s,
# recorded over SECS - 1 s from 1 s in.  The probes cost a few
# microseconds each (the counts are what this gives, not the CPU).
# Needs root and a kernel with uprobes.  Timed load: run it under the
# benchmark lock.
#
#   flock /tmp/bench.lock bash bench/http/sysmonprobes.sh [secs] [load]   (default 4 c50)
#   BASE=path/to/goserver ...     adds go-aco-base
#   SERVERS="go-aco" ...          a subset
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/http/ab_lib.sh
secs=${1:-4}
load=${2:-c50}
out=build/bench/http/sysmonprobes
mkdir -p "$out"
command -v wrk >/dev/null || { echo "bench/http/sysmonprobes.sh: needs wrk" >&2; exit 1; }
command -v perf >/dev/null || { echo "bench/http/sysmonprobes.sh: needs perf (linux-perf)" >&2; exit 1; }
srv_cpu=${SERVER_CPU:-1}
wrk_cpu=${WRK_CPU:-0}
ab_probe_build "$out"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  perf probe -q -d 'smp:*' >/dev/null 2>&1
  true
}
trap cleanup EXIT
port=${PORT:-19300}
# the probes' events with their call chains over the middle of the load
measure() { perf record -q -e 'smp:*' --call-graph fp -o "$out/$s.data" -p "$1" -- sleep "$((secs - 1))" >/dev/null 2>&1; }
for s in "${AB_SERVERS[@]}"; do
  b=${BIN[$s]}
  perf probe -q -d 'smp:*' >/dev/null 2>&1 || true
  usleep=runtime.usleep
  syms=$(go tool nm "$b")
  case $syms in *" runtime.usleep.abi0"*) usleep=runtime.usleep.abi0 ;; esac
  # usleep is ABI0 (assembly): its argument is on the stack above the
  # return address; notetsleep (ABIInternal) returns its bool in AX.
  perf probe -q -x "$b" -a "smp:usleep=$usleep usec=+8(%sp):u32" >/dev/null 2>&1 &&
    perf probe -q -x "$b" -a 'smp:handoffp=runtime.handoffp' >/dev/null 2>&1 &&
    perf probe -q -x "$b" -a 'smp:notetsleep=runtime.notetsleep n=%ax:x64' >/dev/null 2>&1 &&
    perf probe -q -x "$b" -a 'smp:notetsleepret=runtime.notetsleep%return ok=%ax:u8' >/dev/null 2>&1 &&
    perf probe -q -x "$b" -a 'smp:notewakeup=runtime.notewakeup n=%ax:x64' >/dev/null 2>&1 &&
    perf probe -q -x "$b" -a 'smp:wakesysmon=runtime.entersyscallWakeSysmon' >/dev/null 2>&1 ||
    { echo "bench/http/sysmonprobes.sh: cannot probe the runtime of $b" >&2; exit 1; }
  port=$((port + 1))
  ab_probe_run "$s" "$port" "$out" measure
  # One event a block: its header line (the probe, its fields), then its
  # call chain, innermost first.
  perf script -i "$out/$s.data" -F event,trace,ip,sym 2>/dev/null >"$out/$s.txt"
  # perf unwinds by frame pointers: at a probed function's entry the
  # chain is the function, then its caller's caller (the direct caller
  # has not pushed a frame for it yet); at a return probe, the caller.
  awk -v s="$s" -v l="$load" -v r="$AB_RATE" -v w="$((secs - 1))" '
    function flush() {
      if (ev == "") return
      if (ev == "usleep" && (c[2] == "runtime.sysmon" || c[3] == "runtime.sysmon")) { tick++; len[arg]++ }
      else if (ev == "handoffp") { if (c[2] == "runtime.sysmon") retake++; else hother++ }
      else if (ev == "notetsleep" && c[2] == "runtime.mstart1") snote = arg
      else if (ev == "notetsleepret" && c[1] == "runtime.sysmon") { if (arg + 0) dn++; else dt++ }
      else if (ev == "wakesysmon") we++
      else if (ev == "notewakeup") { nw++; wn[nw] = arg; wc[nw] = c[2] }
      ev = ""; depth = 0; delete c
    }
    /^ *smp:/ {
      flush()
      match($0, /smp:[a-z]+/); ev = substr($0, RSTART + 4, RLENGTH - 4)
      arg = ""
      if (match($0, /(usec|ok|n)=[0-9a-fx]+/)) { arg = substr($0, RSTART, RLENGTH); sub(/^[a-z]+=/, "", arg) }
      if (ev == "usleep" || ev == "notetsleepret") arg += 0
      next
    }
    NF >= 2 { depth++; c[depth] = $2 }
    END {
      flush()
      for (i = 1; i <= nw; i++) if (wn[i] == snote) { sw++; by[wc[i]]++ }
      printf "%-12s %-7s req/s %.0f; a second: sysmon ticks %.0f, P retaken %.0f (other hand-offs %.0f), deep sleeps ended by a note %.0f / by timeout %.0f, sysmon woken %.0f (entersyscall %.0f)\n",
        s, l, r, tick / w, retake / w, hother / w, dn / w, dt / w, sw / w, we / w
      printf "  woken from (caller of the waker):"
      for (k in by) printf " %s %.0f;", k, by[k] / w
      printf "\n  ticks by sleep asked (us: a second):"
      n = 0
      for (u in len) keys[++n] = u + 0
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (keys[j] < keys[i]) { t = keys[i]; keys[i] = keys[j]; keys[j] = t }
      for (i = 1; i <= n; i++) if (len[keys[i]] / w >= 0.5) printf " %d:%.0f", keys[i], len[keys[i]] / w
      printf "\n"
    }' "$out/$s.txt"
done
