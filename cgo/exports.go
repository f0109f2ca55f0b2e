package cgo

// Every //export of the module lives in this file (STYLE.md 7).  Each one
// recovers: a panic or Goexit must never unwind into C frames.

/*
#include "glue.h"
*/
import "C"

import (
	"fmt"
	"runtime/debug"
	"unsafe"
)

// Direct receives the calls that C code makes to a Go callback through
// ev_go_trampoline (not the ones the loop hands to the driver).  Set by
// package eventer before the first event exists.
var Direct func(e unsafe.Pointer, id uint64, mask int, nowUs int64) int

// AsynchWork runs Go asynch work id on a job-queue thread.  It must
// return (package eventer runs the work in a goroutine of its own, so that
// a runtime.Goexit in it ends that goroutine, not the job thread's).
var AsynchWork func(id uint64)

// LogLine receives the lines C logs (mtev_log), with their slog level
// (-4 debug, 0 info, 4 warn, 8 error) and stream name, once LogToGo(true)
// was called.
var LogLine func(level int, stream, line string)

// Panicked receives a panic that was stopped at an export; package
// eventer re-raises it on a driver goroutine, outside C.
var Panicked func(v any, stack []byte)

// stopAtExport ends a panic at an export and hands it to Panicked.  A
// runtime.Goexit can't be stopped (the C frames below would be unwound
// too; Go refuses and crashes): it is reported before that happens.
func stopAtExport(what string, returned *bool) {
	if v := recover(); v != nil {
		if Panicked != nil {
			Panicked(fmt.Errorf("eventer: panic in %s: %v", what, v), debug.Stack())
		}
	} else if !*returned && Panicked != nil {
		Panicked(fmt.Errorf("eventer: runtime.Goexit in %s", what), debug.Stack())
	}
}

//export goEventerCallback
func goEventerCallback(e C.eventer_t, mask C.int, id C.uint64_t, nowUs C.int64_t) (rv C.int) {
	returned := false
	defer stopAtExport("a Go callback called from C", &returned)
	if Direct != nil {
		rv = C.int(Direct(unsafe.Pointer(e), uint64(id), int(mask), int64(nowUs)))
	}
	returned = true
	return rv
}

//export goAsynchWork
func goAsynchWork(id C.uint64_t) {
	returned := false
	defer stopAtExport("asynch work", &returned)
	if AsynchWork != nil {
		AsynchWork(uint64(id))
	}
	returned = true
}

//export goLogLine
func goLogLine(level C.int, stream *C.char, line *C.char, n C.int) {
	returned := false
	defer stopAtExport("the log writer", &returned)
	if LogLine != nil {
		LogLine(int(level), C.GoString(stream), C.GoStringN(line, n))
	}
	returned = true
}

//export goRestStart
func goRestStart(rule C.uint64_t, r C.uintptr_t, loop C.int) (id C.uint64_t) {
	returned := false
	defer stopAtExport("a REST request's start", &returned)
	if RestStart != nil {
		id = C.uint64_t(RestStart(uint64(rule), uintptr(r), int(loop)))
	}
	returned = true
	return id
}

//export goRestOpDone
func goRestOpDone(id C.uint64_t) {
	returned := false
	defer stopAtExport("a REST operation's end", &returned)
	if RestOpDone != nil {
		RestOpDone(uint64(id))
	}
	returned = true
}

//export goRestCancel
func goRestCancel(id C.uint64_t) {
	returned := false
	defer stopAtExport("a REST client's departure", &returned)
	if RestCancel != nil {
		RestCancel(uint64(id))
	}
	returned = true
}
