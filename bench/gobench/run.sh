#!/usr/bin/env bash
# The Go binding next to its peers, in one run: see bench/README.md.
#   bash bench/gobench/run.sh [-quick] [-runs N]
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/cgo-stamp.sh
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
# the C coroutine peers are test hooks: built only with this tag
go build -tags eventer_testhooks -o "$bin/gobench" ./bench/gobench
go build -o "$bin/acod" ./cmd/acod
"$bin/gobench" -acod "$bin/acod" "$@"
