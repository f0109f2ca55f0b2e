package cgo

/*
#cgo noescape ev_go_try
#cgo noescape eventer_foreign_dead_ids
#cgo nocallback eventer_foreign_dead_ids
#include "glue.h"
#include <errno.h>
#include <string.h>
*/
import "C"

import (
	"syscall"
	"unsafe"
)

// Masks, as eventer.h defines them.
const (
	MaskRead      = int(C.EVENTER_READ)
	MaskWrite     = int(C.EVENTER_WRITE)
	MaskException = int(C.EVENTER_EXCEPTION)
	MaskTimer     = int(C.EVENTER_TIMER)
	MaskRecurrent = int(C.EVENTER_RECURRENT)
)

// The proxy result protocol (eventer_aco_proxy.h): every call that may
// wait for a Go coroutine returns one of these.
const (
	Done   = int(C.EVENTER_PROXY_DONE)   // over: Res holds the result
	Parked = int(C.EVENTER_PROXY_PARKED) // a completion step follows
	Misuse = int(C.EVENTER_PROXY_MISUSE) // refused: Err says why
)

// Res is the result of a proxy call: RC is Done, Parked or Misuse; Val and
// Err the call's result when Done (Err is the reason when Misuse).
type Res struct {
	RC  int
	Val int64
	Err syscall.Errno
}

func res(r C.ev_go_res_t) Res {
	return Res{RC: int(r.rc), Val: int64(r.res), Err: syscall.Errno(r.err)}
}

// SetProp is eventer_impl_propset (before InitExternal).
func SetProp(key, value string) error {
	ck, cv := C.CString(key), C.CString(value)
	defer C.free(unsafe.Pointer(ck))
	defer C.free(unsafe.Pointer(cv))
	if rc, err := C.eventer_impl_propset_ex(ck, cv); rc != 0 {
		return err
	}
	return nil
}

// InitExternal creates the loops without threads (eventer_init_external),
// sets up their wake-ups and registers the Go trampoline as a foreign
// callback.
func InitExternal() error {
	if rc, err := C.eventer_init_external(); rc != 0 {
		return err
	}
	if rc, err := C.ev_go_setup(); rc != 0 {
		return err
	}
	return nil
}

// Shutdown is eventer_shutdown: every loop stops at its next iteration
// boundary.  Thread-safe.
func Shutdown() { C.eventer_shutdown() }

// Fini is eventer_fini: frees everything once every driver has stopped.
func Fini() { C.eventer_fini() }

// InLoop reports whether the calling thread drives a loop.
func InLoop() bool { return C.eventer_in_loop() != 0 }

// Concurrency is the number of loops of the default pool.
func Concurrency() int { return int(C.eventer_loop_concurrency()) }

// LiveEvents is eventer_allocations_current.
func LiveEvents() int64 { return int64(C.eventer_allocations_current()) }

// ---- events ----------------------------------------------------------------

// Kinds of Go events.
const (
	KindFd        = int(C.EV_GO_FD)
	KindTimer     = int(C.EV_GO_TIMER)
	KindRecurrent = int(C.EV_GO_RECURRENT)
)

// Dispatch kinds of a CALLBACK step (what the callback's result means).
const (
	DispatchFd       = int(C.EV_GO_DK_FD)
	DispatchTimer    = int(C.EV_GO_DK_TIMER)
	DispatchRecur    = int(C.EV_GO_DK_RECUR)
	DispatchTrigger  = int(C.EV_GO_DK_TRIGGER)
	DispatchComplete = int(C.EV_GO_DK_COMPLETE)
)

// Alloc makes a C event whose callback is the Go trampoline and whose
// closure boxes id (id 0, KindFd: an fd event with no callback, to be
// converted to an aco event).  whenUs is the wall-clock time of a timer.
func Alloc(kind, fd, mask int, id uint64, whenUs int64) (unsafe.Pointer, error) {
	e, err := C.ev_go_alloc(C.int(kind), C.int(fd), C.int(mask), C.uint64_t(id), C.int64_t(whenUs))
	if e == nil {
		return nil, err
	}
	return unsafe.Pointer(e), nil
}

func ev(e unsafe.Pointer) C.eventer_t { return C.eventer_t(e) }
func iv(p unsafe.Pointer) C.uintptr_t { return C.uintptr_t(uintptr(p)) }

// Add is eventer_add: it takes over a reference the caller holds.
func Add(e unsafe.Pointer) error {
	if rc, err := C.eventer_add_ex(ev(e)); rc != 0 {
		return err
	}
	return nil
}

// Remove is eventer_remove: true if the eventer handed its reference back
// (the caller then owns it), false with the errno otherwise (EINPROGRESS:
// queued to the owner, which drops the reference itself).
func Remove(e unsafe.Pointer) (bool, error) {
	r, err := C.eventer_remove(ev(e))
	if r == nil {
		return false, err
	}
	return true, nil
}

// Update is eventer_update.
func Update(e unsafe.Pointer, mask int) error {
	if rc, err := C.eventer_update_ex(ev(e), C.int(mask)); rc != 0 {
		return err
	}
	return nil
}

// Trigger is eventer_trigger: it takes over a reference the caller holds.
func Trigger(e unsafe.Pointer, mask int) error {
	if rc, err := C.eventer_trigger_ex(ev(e), C.int(mask)); rc != 0 {
		return err
	}
	return nil
}

// Ref and Deref are eventer_ref / eventer_deref.
func Ref(e unsafe.Pointer)   { C.eventer_ref(ev(e)) }
func Deref(e unsafe.Pointer) { C.eventer_deref(ev(e)) }

// Registered reports whether e is registered (or an add or trigger of it
// is queued).
func Registered(e unsafe.Pointer) bool { return C.ev_go_registered(ev(e)) != 0 }

// Fd is the event's fd.
func Fd(e unsafe.Pointer) int { return int(C.eventer_get_fd(ev(e))) }

// IsAco reports whether e is an aco event.
func IsAco(e unsafe.Pointer) bool { return C.eventer_is_aco(ev(e)) != 0 }

// SetOwnerLoop moves an unregistered event to loop idx of the default pool.
func SetOwnerLoop(e unsafe.Pointer, idx int) error {
	l := C.ev_go_loop(C.int(idx))
	if l == nil {
		return syscall.EINVAL
	}
	if rc, err := C.eventer_set_owner_loop(ev(e), l); rc != 0 {
		return err
	}
	return nil
}

// OwnerLoop is the index (in its pool) of e's owner loop.
func OwnerLoop(e unsafe.Pointer) int {
	return int(C.eventer_loop_index(C.eventer_get_owner_loop(ev(e))))
}

// DeadIDs moves ids of Go callbacks whose last event was freed into buf.
func DeadIDs(buf []uint64) int {
	if len(buf) == 0 {
		return 0
	}
	return int(C.eventer_foreign_dead_ids((*C.uint64_t)(unsafe.Pointer(&buf[0])), C.int(len(buf))))
}

// ForeignWake makes loop idx hand its driver a wake step (thread-safe).
func ForeignWake(idx int) error {
	if rc, err := C.ev_go_foreign_wake(C.int(idx)); rc != 0 {
		return err
	}
	return nil
}

// CurrentLoop is the index of the calling thread's loop (-1 off-loop).
func CurrentLoop() int {
	l := C.eventer_loop_current()
	if l == nil {
		return -1
	}
	return int(C.eventer_loop_index(l))
}

// ---- aco events ----------------------------------------------------------------

// Convert makes idle fd event e an aco event of the calling loop.
func Convert(e unsafe.Pointer) error {
	if rc := C.ev_go_convert(iv(e)); rc != 0 {
		return syscall.Errno(rc)
	}
	return nil
}

// AcoClose is eventer_aco_close (loop thread).
func AcoClose(e unsafe.Pointer) error {
	if rc := C.ev_go_aco_close(iv(e)); rc != 0 {
		return syscall.Errno(rc)
	}
	return nil
}

// AcoClosed reports whether aco event e was closed (eventer_aco_close,
// by Go or by C code).
func AcoClosed(e unsafe.Pointer) bool { return C.ev_go_aco_closed(iv(e)) == 1 }

// PosixClosedFlag is the address (C memory) of aco event e's closed flag
// when its opset is the POSIX one, else nil: the Go side may then do the
// event's reads and writes with its own syscalls.
func PosixClosedFlag(e unsafe.Pointer) *uint8 {
	return (*uint8)(unsafe.Pointer(C.ev_go_posix_closed_flag(ev(e))))
}

// Go coroutine I/O attempts (see ev_go_try).
const (
	IORead   = int(C.EV_GO_READ)
	IOWrite  = int(C.EV_GO_WRITE)
	IOAccept = int(C.EV_GO_ACCEPT)
)

// Try is one non-blocking attempt of op on aco event e through its opset:
// the result (or -1) and errno, and on EAGAIN the mask to wait for.  buf
// is used only during the call.
func Try(e unsafe.Pointer, op int, buf []byte) (int64, syscall.Errno, int) {
	var b *C.char // *C.char, not unsafe.Pointer: no pointer check needed
	if len(buf) > 0 {
		b = (*C.char)(unsafe.Pointer(&buf[0]))
	}
	r := C.ev_go_try(iv(e), C.int(op), b, C.size_t(len(buf)))
	return int64(r.res), syscall.Errno(r.err), int(r.mask)
}

// ---- proxies -------------------------------------------------------------------

// NewProxy makes the proxy of Go coroutine id on the calling loop thread.
func NewProxy(id uint64) (unsafe.Pointer, error) {
	p, err := C.eventer_aco_proxy_new(C.uint64_t(id))
	if p == nil {
		return nil, err
	}
	return unsafe.Pointer(p), nil
}

func px(p unsafe.Pointer) *C.eventer_aco_proxy_t { return (*C.eventer_aco_proxy_t)(p) }

// ProxyFree frees proxy p (no call pending).
func ProxyFree(p unsafe.Pointer) error {
	if rc, err := C.eventer_aco_proxy_free(px(p)); rc != 0 {
		return err
	}
	return nil
}

// Wait starts proxy p waiting until aco event e is ready for mask (after
// an attempt would have blocked); readLen > 0 asks for a read-through.
func Wait(p, e unsafe.Pointer, mask int, readLen int, timeoutNs int64) Res {
	return res(C.ev_go_wait(iv(p), iv(e), C.int(mask), C.size_t(readLen), C.int64_t(timeoutNs)))
}

// Sleep is eventer_aco_sleep for p (ns > 0).
func Sleep(p unsafe.Pointer, ns int64) Res { return res(C.ev_go_sleep(iv(p), C.int64_t(ns))) }

// Yield is eventer_aco_yield for p.
func Yield(p unsafe.Pointer) Res { return res(C.ev_go_yield(iv(p))) }

// Park is eventer_aco_park for p, ended by ProxyWake.
func Park(p unsafe.Pointer, timeoutNs int64) Res {
	return res(C.ev_go_park(iv(p), C.int64_t(timeoutNs)))
}

// Asynch runs Go asynch work id on job queue q (nil: the default) through
// p: the proxy waits for the job's COMPLETE.
func Asynch(p, q unsafe.Pointer, subq, id uint64) Res {
	return res(C.ev_go_asynch(iv(p), iv(q), C.uint64_t(subq), C.uint64_t(id)))
}

// ProxyCancel ends p's pending cancellable call with ECANCELED (its
// completion step follows); EAGAIN if none is waiting.
func ProxyCancel(p unsafe.Pointer) error {
	if rc, err := C.eventer_aco_proxy_cancel(px(p)); rc != 0 {
		return err
	}
	return nil
}

// ProxyWake ends p's pending park with success; EAGAIN if not parked.
func ProxyWake(p unsafe.Pointer) error {
	if rc, err := C.eventer_aco_proxy_wake(px(p)); rc != 0 {
		return err
	}
	return nil
}

// ProxyAbort ends p's pending call without a completion (teardown);
// EBUSY for an asynch wait (leave p to Fini).
func ProxyAbort(p unsafe.Pointer) error {
	if rc, err := C.eventer_aco_proxy_abort(px(p)); rc != 0 {
		return err
	}
	return nil
}

// ---- job queues --------------------------------------------------------------

// JobqCreate is eventer_jobq_create (an existing queue of that name is
// returned as it is).
func JobqCreate(name string) (unsafe.Pointer, error) {
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	q, err := C.eventer_jobq_create(cn)
	if q == nil {
		return nil, err
	}
	return unsafe.Pointer(q), nil
}

// JobqDefault is the default job queue.
func JobqDefault() unsafe.Pointer { return unsafe.Pointer(C.eventer_default_jobq()) }

func jq(q unsafe.Pointer) *C.eventer_jobq_t { return (*C.eventer_jobq_t)(q) }

// JobqSet sets a queue's sizing (each < 0 is left alone).
func JobqSet(q unsafe.Pointer, concurrency, min, max, floor, backlog int) {
	if concurrency >= 0 {
		C.eventer_jobq_set_concurrency(jq(q), C.uint32_t(concurrency))
	}
	if min >= 0 || max >= 0 {
		var cmin, cmax C.uint32_t
		C.eventer_jobq_get_min_max(jq(q), &cmin, &cmax)
		if min >= 0 {
			cmin = C.uint32_t(min)
		}
		if max >= 0 {
			cmax = C.uint32_t(max)
		}
		C.eventer_jobq_set_min_max(jq(q), cmin, cmax)
	}
	if floor >= 0 {
		C.eventer_jobq_set_floor(jq(q), C.uint32_t(floor))
	}
	if backlog >= 0 {
		C.eventer_jobq_set_max_backlog(jq(q), C.uint32_t(backlog))
	}
}

// JobqConcurrency and JobqBacklog read a queue's state.
func JobqConcurrency(q unsafe.Pointer) int { return int(C.eventer_jobq_get_concurrency(jq(q))) }
func JobqBacklog(q unsafe.Pointer) int     { return int(C.eventer_jobq_get_backlog(jq(q))) }

// JobqDestroy is eventer_jobq_destroy: it waits for running jobs.
func JobqDestroy(q unsafe.Pointer) { C.eventer_jobq_destroy(jq(q)) }

// ---- logs ------------------------------------------------------------------------

// LogToGo sends the C library's log lines to LogLine (true) or to stderr.
func LogToGo(on bool) {
	v := C.int(0)
	if on {
		v = 1
	}
	C.ev_go_log_to_go(v)
}

// SetLogStream enables or disables a C log stream by name ("debug/eventer",
// "debug", ...); false if there is no such stream.
func SetLogStream(name string, on bool) bool {
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	ls := C.mtev_log_stream_find(cn)
	if ls == nil {
		return false
	}
	v := C.int(0)
	if on {
		v = 1
	}
	C.mtev_log_stream_set_enabled(ls, v)
	return true
}
