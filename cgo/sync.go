package cgo

/*
#include "glue.h"
*/
import "C"

import (
	"syscall"
	"unsafe"
)

// Kinds of ev_go_sync calls.
const (
	SemWait      = int(C.EV_GO_SEM_WAIT)
	SemTryWait   = int(C.EV_GO_SEM_TRYWAIT)
	MutexLock    = int(C.EV_GO_MUTEX_LOCK)
	MutexTryLock = int(C.EV_GO_MUTEX_TRYLOCK)
	MutexUnlock  = int(C.EV_GO_MUTEX_UNLOCK)
	WgWait       = int(C.EV_GO_WG_WAIT)
	ChanSend     = int(C.EV_GO_CHAN_SEND)
	ChanRecv     = int(C.EV_GO_CHAN_RECV)
	ChanTrySend  = int(C.EV_GO_CHAN_TRYSEND)
	ChanTryRecv  = int(C.EV_GO_CHAN_TRYRECV)
)

// Sync runs a sync-object call in proxy p (as its coroutine): rc 1 done
// (res, errno), 0 parked (a ProxyDone step follows), -1 misuse.  cbuf is
// C memory (channel elements), nil otherwise.
func Sync(p unsafe.Pointer, kind int, obj unsafe.Pointer, cbuf unsafe.Pointer, timeoutNs int64) (rc int, res int64, errno syscall.Errno) {
	r := C.ev_go_sync(C.uintptr_t(uintptr(p)), C.int(kind), C.uintptr_t(uintptr(obj)), C.uintptr_t(uintptr(cbuf)), C.int64_t(timeoutNs))
	return int(r.rc), int64(r.res), syscall.Errno(r.err)
}

func ret(rc C.int, err error) error {
	if rc < 0 {
		return err
	}
	return nil
}

// Constructors and the calls that never block (usable outside coroutines,
// on the object's loop thread).
func SemNew(initial uint) (unsafe.Pointer, error) {
	s, err := C.eventer_aco_sem_new(C.uint(initial))
	return unsafe.Pointer(s), nilIf(s != nil, err)
}
func SemPost(s unsafe.Pointer) error {
	rc, err := C.eventer_aco_sem_post((*C.eventer_aco_sem_t)(s))
	return ret(rc, err)
}
func SemValue(s unsafe.Pointer) int {
	return int(C.eventer_aco_sem_value((*C.eventer_aco_sem_t)(s)))
}
func SemFree(s unsafe.Pointer) error {
	rc, err := C.eventer_aco_sem_free((*C.eventer_aco_sem_t)(s))
	return ret(rc, err)
}

func MutexNew() (unsafe.Pointer, error) {
	m, err := C.eventer_aco_mutex_new()
	return unsafe.Pointer(m), nilIf(m != nil, err)
}
func MutexLocked(m unsafe.Pointer) bool {
	return C.eventer_aco_mutex_locked((*C.eventer_aco_mutex_t)(m)) > 0
}
func MutexFree(m unsafe.Pointer) error {
	rc, err := C.eventer_aco_mutex_free((*C.eventer_aco_mutex_t)(m))
	return ret(rc, err)
}

func WgNew() (unsafe.Pointer, error) {
	w, err := C.eventer_aco_wg_new()
	return unsafe.Pointer(w), nilIf(w != nil, err)
}
func WgAdd(w unsafe.Pointer, n int) error {
	rc, err := C.eventer_aco_wg_add((*C.eventer_aco_wg_t)(w), C.int(n))
	return ret(rc, err)
}
func WgDone(w unsafe.Pointer) error {
	rc, err := C.eventer_aco_wg_done((*C.eventer_aco_wg_t)(w))
	return ret(rc, err)
}
func WgCount(w unsafe.Pointer) int {
	return int(C.eventer_aco_wg_count((*C.eventer_aco_wg_t)(w)))
}
func WgFree(w unsafe.Pointer) error {
	rc, err := C.eventer_aco_wg_free((*C.eventer_aco_wg_t)(w))
	return ret(rc, err)
}

func ChanNew(elemSize, capacity int) (unsafe.Pointer, error) {
	c, err := C.eventer_aco_chan_new(C.size_t(elemSize), C.size_t(capacity))
	return unsafe.Pointer(c), nilIf(c != nil, err)
}
func ChanClose(c unsafe.Pointer) error {
	rc, err := C.eventer_aco_chan_close((*C.eventer_aco_chan_t)(c))
	return ret(rc, err)
}
func ChanLen(c unsafe.Pointer) int { return int(C.eventer_aco_chan_len((*C.eventer_aco_chan_t)(c))) }
func ChanCap(c unsafe.Pointer) int { return int(C.eventer_aco_chan_cap((*C.eventer_aco_chan_t)(c))) }
func ChanFree(c unsafe.Pointer) error {
	rc, err := C.eventer_aco_chan_free((*C.eventer_aco_chan_t)(c))
	return ret(rc, err)
}

// CMalloc / CFree: C memory for channel elements in flight.
func CMalloc(n int) unsafe.Pointer { return C.malloc(C.size_t(n)) }
func CFree(p unsafe.Pointer)       { C.free(p) }

func nilIf(ok bool, err error) error {
	if ok {
		return nil
	}
	return err
}
