#!/usr/bin/env bash
# Go checks: vet, tests with -race, and again under cgocheck2.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ls ./*.go cgo/*.go >/dev/null 2>&1; then
  echo "go: no Go packages yet"; exit 0
fi
go vet ./...
go test -race -count=1 ./...
GOEXPERIMENT=cgocheck2 go test -count=1 ./...
