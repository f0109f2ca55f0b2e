#!/usr/bin/env bash
# The Go build cache keys a cgo package on the files in its directory, not
# on the csrc files its unity files #include.  Writing a hash of csrc into
# a Go file of package cgo (and of package conformance, which compiles the
# conformance kit's C driver) makes any csrc edit rebuild it.  Also checks
# that every C source of the library has its unity file.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=0
for c in csrc/libaco/*.c csrc/eventer/*.c csrc/conf/*.c csrc/listener/*.c csrc/http/*.c \
         csrc/conformance/*.c; do
  base=$(basename "$c" .c)
  case $c in
    csrc/libaco/*) u=cgo/unity_libaco_$base.c ;;
    csrc/conformance/*) u=conformance/unity_$base.c ;;
    *) u=cgo/unity_$base.c ;;
  esac
  if [ ! -f "$u" ]; then
    echo "cgo: $c has no unity file $u" >&2; missing=1
  fi
done
[ $missing = 0 ] || exit 1
hash=$(cat $(find csrc -type f \( -name '*.c' -o -name '*.h' -o -name '*.S' \) | sort) | sha256sum | cut -c1-16)
for pkg in cgo conformance; do
  f=$pkg/zz_csrc_stamp.go
  want="package $pkg

// csrcStamp changes whenever csrc changes (scripts/cgo-stamp.sh).
const csrcStamp = \"$hash\"
"
  if [ ! -f $f ] || [ "$(cat $f)" != "$want" ]; then printf '%s' "$want" > $f; fi
done
