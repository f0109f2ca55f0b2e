//go:build eventer_testhooks

package cgo

/*
#include <stdlib.h>
#include "listenhooks.h"
*/
import "C"

import "unsafe"

// RegisterCAcoFunction registers a C aco function as listener type name:
// it answers each read with "c:" and its listener's <config> "greeting"
// (or "-") and a newline, and ends at EOF.
func RegisterCAcoFunction(name string) {
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	C.ev_lh_register_c_aco(cn)
}
