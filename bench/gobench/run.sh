#!/usr/bin/env bash
# The Go binding next to its peers, in one run: see bench/README.md.
#   bash bench/gobench/run.sh [-quick] [-runs N]
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/cgo-stamp.sh
go run ./bench/gobench "$@"
