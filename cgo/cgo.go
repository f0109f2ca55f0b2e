// Package cgo is the seam between the C core (csrc/) and package eventer:
// the only package of the module with `import "C"`.  Users never import
// it: its API is for package eventer, deals in integers, unsafe.Pointers to
// C memory and Go values (never in C types), and may change at any time.
//
// It compiles the C sources through small unity files (cgo builds only
// this directory's files), holds every //export trampoline (exports.go),
// and the loop driver (driver.go).  The C scenarios that the tests and
// benchmarks run next to Go code (testhooks.go) are built only with the
// build tag eventer_testhooks, which scripts/test-go.sh and
// bench/gobench/run.sh pass, so a user's binary carries none of them.
// (The conformance kit's C driver is compiled by package conformance.)
//
// The boundary rules (DESIGN.md section 4) are kept here:
//   - C memory never holds Go pointers: Go functions are registered by
//     integer id (the closure of a Go event is a C box holding the id);
//   - Go never runs on a coroutine's share stack: the loop hands Go work
//     back to the driver, and C code that calls a Go callback directly goes
//     through ev_go_trampoline, which switches to the thread's stack;
//   - no panic or Goexit crosses C: every export recovers, and Go asynch
//     work runs in a goroutine of its own.
package cgo

/*
// On arm64 the C build also passes --param
// stack-clash-protection-guard-size=12, which cgo refuses; this library's
// own frames that run on coroutine stacks stay below a page (the 4 KiB
// guard), so gcc's default probing (every 64 KiB) does not skip it.
// cgo compiles C as position-independent code, where gcc must assume that a
// global function may be interposed and does not inline it: hidden
// visibility (nothing outside the binary uses these symbols) lets it inline
// a unit's small functions, as the Makefile's build does.
#cgo CFLAGS: -std=gnu11 -D_GNU_SOURCE -O2 -fstack-clash-protection -fvisibility=hidden
#cgo CFLAGS: -I${SRCDIR}/../csrc/libaco -I${SRCDIR}/../csrc/eventer
#cgo CFLAGS: -I${SRCDIR}/../csrc/conf -I${SRCDIR}/../csrc/listener -I${SRCDIR}/../csrc/http
// csrc/conf reads XML with Debian's libxml2 (libxml2-dev); the TLS opset
// uses OpenSSL 3 (libssl-dev); the HTTP engine PCRE2 and zlib
#cgo CFLAGS: -I/usr/include/libxml2
#cgo LDFLAGS: -lm -pthread -lxml2 -lssl -lcrypto -lpcre2-8 -lz
#include "glue.h"
*/
import "C"
