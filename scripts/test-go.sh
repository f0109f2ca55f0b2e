#!/usr/bin/env bash
# Go checks: vet, tests with -race, and again under cgocheck2, at
# GOMAXPROCS 1 and 2 for the stress tests (they read GOMAXPROCS).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/cgo-stamp.sh
go vet ./...
go test -race -count=1 ./...
GOEXPERIMENT=cgocheck2 go test -count=1 ./...
GOMAXPROCS=1 go test -race -count=1 -run 'Stress' .
