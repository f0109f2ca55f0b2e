#!/usr/bin/env bash
# Go checks: vet, tests with -race, and again under cgocheck2 (the stress
# tests set GOMAXPROCS 1 and 2 themselves).  The eventer_testhooks tag
# builds the test-only C hooks in cgo/ (the mixed C/Go and stress tests
# need them); a build without the tag, as users get it, is vetted and
# tested too.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/cgo-stamp.sh
tags=eventer_testhooks
go vet -tags "$tags" ./...
go vet ./...
go test -tags "$tags" -race -count=1 ./...
GOEXPERIMENT=cgocheck2 go test -tags "$tags" -count=1 ./...
go test -count=1 ./...
# the conformance kit's runner on every scenario, as a user runs it (each
# in C and in Go, compared; the go test runs above ran them as tests too)
go run ./cmd/acoconform testdata/conformance/*.scn
go run -tags eventer_http ./cmd/acoconform testdata/conformance/rest/*.scn
# the C HTTP request parser, differentially against net/http (a short run)
go test -tags eventer_testhooks -run '^$' -fuzz '^FuzzHTTPRequestParser$' -fuzztime 15s .
