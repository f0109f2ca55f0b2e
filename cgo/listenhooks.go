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

// Registration reports whether event e is registered with its loop for
// its fd, and that registration's number (a removal and a new
// registration give a new one).  Loop thread only.
func Registration(e unsafe.Pointer) (bool, uint32) {
	var reg C.uint32_t
	ok := C.ev_lh_registration(C.uintptr_t(uintptr(e)), &reg) != 0
	return ok, uint32(reg)
}
