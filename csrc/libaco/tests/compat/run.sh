#!/usr/bin/env bash
# csrc/libaco/tests/compat/run.sh - programs written the way libaco 1.2's
# own test and tutorial programs are, built against the installed headers
# (build/include, `make lib`) as a user builds them (-Wall -Wextra
# -Werror), at -O0 and -O2, against the plain library, the ASan library
# (build/asan-O2) with the program itself under ASan, and for aarch64
# under qemu.  Each program checks what libaco documents and exits 0.
#
# With LIBACO_DIR=/path/to/libaco-1.2.4 (aco.c, acosw.S, aco.h,
# aco_assert_override.h) compat_copy_sizes.c, which uses only libaco's
# API, is also built against libaco at -O0 and -O2, and the copy sizes
# both print must be equal.  (Not under ASan: libaco copies stacks bigger
# than 136 B with memcpy, which ASan checks and rejects when the stack
# holds another frame's redzones.)
set -uo pipefail
cd "$(dirname "$0")/../../../.."
src=csrc/libaco/tests/compat
out=build/compat
mkdir -p "$out"
cc=${HOSTCC:-gcc}
armcc=${ARM64CC:-aarch64-linux-gnu-gcc}
qemu=${QEMU:-qemu-aarch64-static}
warn="-Wall -Wextra -Werror"
san="-fsanitize=address,undefined -fno-sanitize-recover=all"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

fail=0
n=0
# build_run TAG PROG CC CFLAGS LIB [RUNNER]
build_run() {
  local tag=$1 prog=$2 c=$3 flags=$4 lib=$5 runner=${6:-}
  local bin="$out/$prog.$tag"
  n=$((n + 1))
  if ! $c -g $flags $warn -Ibuild/include "$src/$prog.c" "$lib" -pthread -lm \
       -o "$bin" 2>"$bin.log"; then
    echo "FAIL [compat $tag] $prog: does not build"
    sed 's/^/    /' "$bin.log"
    fail=$((fail + 1))
    return
  fi
  if ! timeout -k 10 300 $runner "$bin" >"$bin.out" 2>&1; then
    echo "FAIL [compat $tag] $prog"
    tail -n 40 "$bin.out" | sed 's/^/    /'
    fail=$((fail + 1))
    return
  fi
  echo "ok   [compat $tag] $prog"
}

progs=$(cd "$src" && ls compat_*.c | sed 's/\.c$//')
for p in $progs; do
  build_run O0 "$p" "$cc" "-O0" build/lib/libacoeventer.a
  build_run O2 "$p" "$cc" "-O2" build/lib/libacoeventer.a
  build_run asan-O0 "$p" "$cc" "-O0 $san" build/asan-O2/libacoeventer.a
  build_run asan-O2 "$p" "$cc" "-O2 $san" build/asan-O2/libacoeventer.a
  if [ -f build/arm64/libacoeventer.a ]; then
    build_run arm64-O0 "$p" "$armcc" "-O0 -static" build/arm64/libacoeventer.a "$qemu"
    build_run arm64-O2 "$p" "$armcc" "-O2 -static" build/arm64/libacoeventer.a "$qemu"
  fi
done

if [ -n "${LIBACO_DIR:-}" ]; then
  for f in aco.c acosw.S aco.h aco_assert_override.h; do
    [ -f "$LIBACO_DIR/$f" ] || { echo "LIBACO_DIR=$LIBACO_DIR has no $f" >&2; exit 2; }
  done
  for v in "O0:-O0" "O2:-O2"; do
    tag=${v%%:*} flags=${v#*:}
    bin="$out/compat_copy_sizes.libaco.$tag"
    n=$((n + 1))
    $cc -g $flags -I"$LIBACO_DIR" "$LIBACO_DIR/acosw.S" "$LIBACO_DIR/aco.c" \
      "$src/compat_copy_sizes.c" -Wl,-z,noexecstack -o "$bin" 2>"$bin.log" &&
      timeout -k 10 60 "$bin" >"$bin.out" 2>&1
    if [ $? -ne 0 ]; then
      echo "FAIL [libaco $tag] compat_copy_sizes against libaco"
      sed 's/^/    /' "$bin.log" "$bin.out" | tail -n 20
      fail=$((fail + 1))
      continue
    fi
    ours=$(grep -E '^(copies|max_cpsz):' "$out/compat_copy_sizes.$tag.out")
    theirs=$(grep -E '^(copies|max_cpsz):' "$bin.out")
    if [ "$ours" != "$theirs" ]; then
      echo "FAIL [libaco $tag] copy sizes differ"
      echo "    ours:   $ours" | tr '\n' ' '; echo
      echo "    libaco: $theirs" | tr '\n' ' '; echo
      fail=$((fail + 1))
    else
      echo "ok   [libaco $tag] copy sizes equal libaco's: $(echo "$ours" | tr '\n' ' ')"
    fi
  done
fi

if [ $fail -ne 0 ]; then echo "$fail of $n compat builds failed"; exit 1; fi
echo "all $n compat builds passed"
