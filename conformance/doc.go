// Package conformance runs conformance scenarios: the same steps with C
// coroutines and with Go coroutines on the eventer's loops, their traces
// compared with each other and with the scenario's expected trace.  The
// scenario language, the built-in steps and how to plug in your own C and
// Go steps are in docs/conformance.md.
//
// In a test:
//
//	func TestConformance(t *testing.T) {
//		conformance.Config{Steps: mySteps}.Test(t, "testdata/*.scn")
//	}
//
// As a command: cmd/acoconform (conformance.Main).
//
// The package compiles the C driver (csrc/conformance) into the program
// that imports it; a program that does not import it carries none of it.
// C steps are registered with eventer_conformance_register by C code
// linked into the same program (a cgo file of yours).
package conformance
