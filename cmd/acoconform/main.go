// Command acoconform runs conformance scenarios (docs/conformance.md) with
// C coroutines and with Go coroutines and compares their traces:
//
//	go run ./cmd/acoconform [-lang c|go|both] [-v] FILE...
//	go run ./cmd/acoconform -list
//
// It exits 0 when every trace is as expected, 1 when any differs (it
// prints the first differing step and a diff of the traces), 2 on a usage
// error or a malformed scenario file.  It knows the built-in steps; a
// runner with your own steps is conformance.Main with your table.
package main

import "github.com/acoeventer/eventer/conformance"

func main() { conformance.Main(conformance.Config{}) }
