package cgo

/*
#include "glue.h"
*/
import "C"

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Step kinds handed to a driver.
const (
	StepCallback = int(C.EVENTER_STEP_CALLBACK)
	StepProxy    = int(C.EVENTER_STEP_ACO_PROXY)
	StepWake     = int(C.EVENTER_STEP_FOREIGN_WAKE)
	StepData     = int(C.EVENTER_STEP_ACO_PROXY_DATA)
)

// Handler is the Go side of one loop: the driver calls it for the work the
// loop hands back, in the loop's dispatch order.
type Handler interface {
	// Callback runs Go callback id for event e (dispatched as kind, one of
	// the Dispatch* constants) and returns its result.
	Callback(e unsafe.Pointer, id uint64, mask, kind int, nowUs int64) int
	// ProxyDone resumes Go coroutine id with its operation's result.
	// data, if not nil, holds bytes read for it; it is valid only until
	// the handler returns (the coroutine must copy it before it waits).
	ProxyDone(id uint64, result int64, errno int, data []byte)
	// Wake handles work queued for this loop by other goroutines.
	Wake()
	// ListenStart starts a new connection of a Go aco function
	// (StepListen).
	ListenStart(c ListenConn)
	// RestDirect serves a request of a Go rule on the direct path
	// (StepRest).
	RestDirect(r RestDirect)
	// RestDirectBatch serves the direct requests of a loop pass
	// (StepRestBatch); b is valid only until it returns.
	RestDirectBatch(b RestBatch)
}

// Driver drives loop Index of the default pool from one goroutine locked
// to its OS thread (DESIGN.md section 4, the step design).
type Driver struct {
	Index int
	d     *C.ev_go_driver_t // C memory: the step buffer

	heads       HeadArena    // the steps' copied heads
	goWork      atomic.Int32 // driverwait.go
	sleep       sleeper
	nowaitPolls atomic.Uint64
	goSleeps    atomic.Uint64

	schedNs uint64 // the loop's monotonic ns when Run last yielded (Gosched)
	yields  atomic.Uint64
}

// yieldEveryNs: how often a busy driver goes through Go's scheduler.
// sysmon retakes the P of a thread inside a cgo call at once, on every
// one of its ticks, when the P's goroutine has not been scheduled for
// 10 ms (it would preempt a goroutine running Go code instead; one in a
// cgo call it cannot), and a coroutine switch or a return from cgo is
// no scheduling.  The driver is hardly ever rescheduled on its own and
// spends most of its time in C, so a busy loop's P was taken on run
// after run of sysmon's ticks, each time waking a spare thread, and
// each retake kept sysmon ticking every 20 us.  A Gosched every few
// milliseconds (its locked thread hands the P to a spare thread and
// back: two thread wake-ups) keeps the driver inside its time slice.
const yieldEveryNs = 5_000_000

// NewDriver allocates the driver state of loop idx.
func NewDriver(idx int) *Driver {
	d := (*C.ev_go_driver_t)(C.calloc(1, C.size_t(unsafe.Sizeof(C.ev_go_driver_t{}))))
	d.index = C.int(idx)
	return &Driver{Index: idx, d: d}
}

// Attach binds the calling thread to the loop.  The caller must hold
// runtime.LockOSThread for as long as it drives the loop.
func (d *Driver) Attach() error {
	if rc, err := C.eventer_loop_attach(C.int(d.Index)); rc != 0 {
		return err
	}
	return nil
}

// Run drives the loop until eventer_shutdown: each call of run_once does
// C work itself and returns Go work as a step, which Run hands to h.  The
// OS thread must be locked and attached.  Returns nil when the loop
// stopped, or run_once's error.
func (d *Driver) Run(h Handler) error {
	step := &d.d.step
	for {
		// One cgo call per step: ev_go_run finishes the iteration the last
		// step paused (handing back the callback's rv) and runs new ones,
		// waiting in epoll when there is nothing to do, until the loop
		// hands Go work back.
		// (driverwait.go: in Go's netpoller while goroutines serve work
		// of the loop)
		rc, err := d.run()
		switch rc {
		case C.EVENTER_RUN_STOPPED:
			return nil
		case C.EV_GO_RUN_SLEEP:
			continue
		case C.EVENTER_RUN_STEP:
		default:
			return err
		}
		if now := uint64(d.d.pass_ns); now-d.schedNs >= yieldEveryNs {
			d.schedNs = now
			d.yields.Add(1)
			runtime.Gosched()
		}
		switch int(step.kind) {
		case StepCallback:
			rv := h.Callback(unsafe.Pointer(step.e), uint64(step.u64[0]), int(step.mask),
				int(step.u64[2]), int64(step.u64[1]))
			step.rv = C.int(rv) // kind stays CALLBACK: run_once applies rv
		case StepProxy:
			step.kind = C.EVENTER_STEP_NONE
			h.ProxyDone(uint64(step.u64[0]), int64(step.u64[1]), int(int64(step.u64[2])), nil)
		case StepData:
			step.kind = C.EVENTER_STEP_NONE
			n := int64(step.u64[1])
			data := []byte{}
			if n > 0 {
				data = unsafe.Slice((*byte)(step.closure), n)
			}
			h.ProxyDone(uint64(step.u64[0]), n, int(int64(step.u64[2])), data)
		case StepWake:
			step.kind = C.EVENTER_STEP_NONE
			h.Wake()
		case StepListen:
			step.kind = C.EVENTER_STEP_NONE
			h.ListenStart(d.listenStep())
		case StepRest:
			step.kind = C.EVENTER_STEP_NONE
			h.RestDirect(d.restStep())
		case StepRestBatch:
			step.kind = C.EVENTER_STEP_NONE
			h.RestDirectBatch(RestBatch{d})
		default:
			step.kind = C.EVENTER_STEP_NONE
		}
	}
}

// Yields is how many times Run went through Go's scheduler to keep its
// goroutine inside its time slice (yieldEveryNs).
func (d *Driver) Yields() uint64 { return d.yields.Load() }

// SetCallbackResult hands back the result of the CALLBACK step being
// handled when its Go callback did not return (runtime.Goexit): the next
// Run applies it.
func (d *Driver) SetCallbackResult(rv int) { d.d.step.rv = C.int(rv) }

// RequestWait records the readiness wait of the Go coroutine that is
// about to park (it writes C memory; no cgo call): the next Run iteration
// sets it up before anything else.  Driver thread only.
// It returns false (and records nothing) if a wait is already recorded:
// several coroutines can park before the driver runs again (a Wake step
// starts many); the caller then sets its wait up itself (Wait).
func (d *Driver) RequestWait(p, e unsafe.Pointer, mask, readLen int, timeoutNs int64, id uint64) bool {
	w := &d.d.wait
	if w.valid != 0 {
		return false
	}
	w.p = (*C.eventer_aco_proxy_t)(p)
	w.e = C.eventer_t(e)
	w.mask = C.int(mask)
	w.read_len = C.size_t(readLen)
	w.timeout_ns = C.int64_t(timeoutNs)
	w.foreign_id = C.uint64_t(id)
	w.valid = 1
	return true
}

// WaitPendingOn reports whether a wait RequestWait recorded, which the
// next Run sets up, is on event e: such a request holds no reference on
// e, so e must stay alive until then.  Driver thread only.
func (d *Driver) WaitPendingOn(e unsafe.Pointer) bool {
	w := &d.d.wait
	return w.valid != 0 && unsafe.Pointer(w.e) == e
}

// TakeWait drops the readiness wait RequestWait recorded for proxy p if
// it is still only recorded (the next Run would set it up): true if it
// was p's.  The caller then resumes p's coroutine itself.  Driver thread
// only.
func (d *Driver) TakeWait(p unsafe.Pointer) bool {
	w := &d.d.wait
	if w.valid == 0 || unsafe.Pointer(w.p) != p {
		return false
	}
	w.valid = 0
	return true
}

// Detach unbinds the calling thread and frees the driver state.
func (d *Driver) Detach() {
	d.sleep.close()
	C.eventer_loop_detach()
	C.free(unsafe.Pointer(d.d))
	d.d = nil
}
