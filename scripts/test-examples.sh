#!/usr/bin/env bash
# Builds the C examples against the installed library with pkg-config, as
# a user would, and checks them.  Each examples/c/<name>.c has a checker
# examples/c/<name>.check that runs the built program ($1) and exits 0 on
# success.
set -euo pipefail
cd "$(dirname "$0")/.."
export PKG_CONFIG_PATH=$PWD/build/lib/pkgconfig
flags=$(pkg-config --cflags --libs --static acoeventer)
out=build/examples
mkdir -p "$out"
n=0
for src in examples/c/*.c; do
  [ -e "$src" ] || continue
  name=$(basename "$src" .c)
  cc -std=gnu11 -Wall -Wextra -Werror -O2 "$src" $flags -o "$out/$name"
  bash "examples/c/$name.check" "$out/$name"
  echo "ok   [example] $name"
  n=$((n+1))
done
echo "all $n C examples passed"
# the Go examples that have a checker
for chk in examples/go/*/check.sh; do
  [ -e "$chk" ] || continue
  bash "$chk"
  echo "ok   [example] $(basename "$(dirname "$chk")") (Go)"
done
