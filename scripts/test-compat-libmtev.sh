#!/usr/bin/env bash
# Builds the libmtev-style programs (csrc/eventer/tests/libmtev/*.c)
# against the installed headers and library with pkg-config, as a libmtev
# user would (#include <eventer/eventer.h>, -Wall -Werror), and runs each:
# a program exits 0 when everything libmtev documents held.
set -euo pipefail
cd "$(dirname "$0")/.."
export PKG_CONFIG_PATH=$PWD/build/lib/pkgconfig
flags=$(pkg-config --cflags --libs --static acoeventer)
out=build/compat-libmtev
mkdir -p "$out"
n=0
for src in csrc/eventer/tests/libmtev/*.c; do
  name=$(basename "$src" .c)
  cc -std=gnu11 -Wall -Wextra -Werror -O2 "$src" $flags -o "$out/$name"
  log=$(mktemp)
  if ! timeout 120 "$out/$name" >"$log" 2>&1; then
    echo "FAIL [libmtev] $name"
    sed 's/^/    /' "$log"
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
  echo "ok   [libmtev] $name"
  n=$((n+1))
done
echo "all $n libmtev-style programs passed"
