#!/usr/bin/env bash
# Go checks: vet, tests with -race, and again under cgocheck2, at
# the stress tests set GOMAXPROCS 1 and 2 themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/cgo-stamp.sh
go vet ./...
go test -race -count=1 ./...
GOEXPERIMENT=cgocheck2 go test -count=1 ./...
# the C HTTP request parser, differentially against net/http (a short run)
go test -tags eventer_testhooks -run '^$' -fuzz '^FuzzHTTPRequestParser$' -fuzztime 15s .
