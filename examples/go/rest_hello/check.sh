#!/usr/bin/env bash
# check.sh - the seed's REST example in Go (examples/go/rest_hello), checked
# as the C one is (examples/rest_hello_check.sh): curl and Go's net/http
# client get 200 text/plain "Hello world.\n" after >= 1 s while /fast
# answers in < 100 ms.
set -euo pipefail
cd "$(dirname "$0")/../../.."
source examples/rest_hello_check.sh
scripts/cgo-stamp.sh
go build -tags eventer_testhooks -o "$tmp/rest_hello_go" ./examples/go/rest_hello
start() { # conf: the port from the configuration the C example uses
  local port
  port=$(sed -n 's/.*port="\([0-9]*\)".*/\1/p' "$1")
  "$tmp/rest_hello_go" -addr "127.0.0.1:$port" 2>"$tmp/err" &
  pid=$!
}
rest_hello_check "rest_hello (Go)" examples/c/rest_hello.conf
echo "rest_hello (Go): $summary"
