#!/usr/bin/env bash
# Installs the Debian packages the checks need, when they are missing.
set -eu
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have gcc                    || need+=(gcc)
have make                   || need+=(make)
have pkg-config             || need+=(pkg-config)
[ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)  # the TLS opset (cgo too)
# libxml2 (csrc/conf): headers, library and its pkg-config file
[ -f /usr/include/libxml2/libxml/parser.h ] || need+=(libxml2-dev)
# the HTTP engine: PCRE2 (REST expressions) and zlib (gzip/deflate)
[ -f /usr/include/pcre2.h ] || need+=(libpcre2-dev)
[ -f /usr/include/zlib.h ]  || need+=(zlib1g-dev)
# `deps.sh run`: only what building and running acod needs (cgo: gcc)
if [ "${1:-}" != run ]; then
  have aarch64-linux-gnu-gcc  || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
  have qemu-aarch64-static    || need+=(qemu-user-static)
  have valgrind               || need+=(valgrind)
  [ -f /usr/include/valgrind/valgrind.h ] || need+=(valgrind)
  have timeout                || need+=(coreutils)
  have openssl                || need+=(openssl)  # the TLS tests' peers, certificates
  have curl                   || need+=(curl)     # an HTTPS client of the TLS listener tests
  # the arm64 build of the TLS and XML tests links Debian's arm64 OpenSSL
  # and libxml2 (multiarch)
  [ -f /usr/lib/aarch64-linux-gnu/libssl.so ] || { need+=(libssl-dev:arm64); arm64=1; }
  [ -f /usr/lib/aarch64-linux-gnu/libxml2.so ] || { need+=(libxml2-dev:arm64); arm64=1; }
  have curl                   || need+=(curl)
  # ... and PCRE2 and zlib (the HTTP engine)
  [ -f /usr/lib/aarch64-linux-gnu/libpcre2-8.a ] || { need+=(libpcre2-dev:arm64); arm64=1; }
  [ -f /usr/lib/aarch64-linux-gnu/libz.a ] || { need+=(zlib1g-dev:arm64); arm64=1; }
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  if [ -n "${arm64:-}" ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $sudo dpkg --add-architecture arm64
  fi
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! have go; then
  echo "deps: Go 1.26 is required (https://go.dev/dl/)" >&2; exit 1
fi
