#!/usr/bin/env bash
# Builds the C examples against the installed library with pkg-config, as
# a user would, and checks them; then the Go examples that have a check.  Each examples/c/<name>.c has a checker
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
# The Go examples that have a checker examples/go/<name>/<name>.check,
# built with go build and checked the same way.
scripts/cgo-stamp.sh
g=0
for dir in examples/go/*/; do
  name=$(basename "$dir")
  [ -e "$dir$name.check" ] || continue
  go build -o "$out/go_$name" "./$dir"
  bash "$dir$name.check" "$out/go_$name"
  echo "ok   [example] go/$name"
  g=$((g+1))
done
echo "all $g Go examples with a check passed"
