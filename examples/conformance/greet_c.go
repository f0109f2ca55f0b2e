package greet

// The C steps live in greet.c, compiled with this package; the include
// paths are the library's headers (outside this repository: the
// build/include directory `make lib` installs).

// #cgo CFLAGS: -I${SRCDIR}/../../csrc/conformance -I${SRCDIR}/../../csrc/eventer
// #cgo CFLAGS: -I${SRCDIR}/../../csrc/libaco
// void greet_register(void);
import "C"

// The C table: registered when the package is loaded.
func init() { C.greet_register() }
