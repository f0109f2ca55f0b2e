package cgo

/*
#include "glue.h"
*/
import "C"

import "unsafe"

// Kinds of the sync calls a proxy makes for its Go coroutine.
const (
	SemWait      = int(C.EVENTER_PROXY_SEM_WAIT)
	MutexLock    = int(C.EVENTER_PROXY_MUTEX_LOCK)
	MutexTryLock = int(C.EVENTER_PROXY_MUTEX_TRYLOCK)
	MutexUnlock  = int(C.EVENTER_PROXY_MUTEX_UNLOCK)
	WgWait       = int(C.EVENTER_PROXY_WG_WAIT)
	ChanSend     = int(C.EVENTER_PROXY_CHAN_SEND)
	ChanRecv     = int(C.EVENTER_PROXY_CHAN_RECV)
)

// SemValueMax is the largest value a semaphore holds.
const SemValueMax = int(C.EVENTER_ACO_SEM_VALUE_MAX)

// Sync runs a sync call of kind on obj with proxy p as the waiter (and a
// mutex's owner).  elem is C memory (a channel element), nil otherwise.
func Sync(p unsafe.Pointer, kind int, obj, elem unsafe.Pointer, timeoutNs int64) Res {
	return res(C.ev_go_sync(iv(p), C.int(kind), iv(obj), iv(elem), C.int64_t(timeoutNs)))
}

// SyncOwner is the index of the loop obj is bound to, -1 while unbound.
func SyncOwner(obj unsafe.Pointer) int { return int(C.ev_go_sync_owner(iv(obj))) }

func ret(rc C.int, err error) error {
	if rc < 0 {
		return err
	}
	return nil
}

// The constructors, and the calls that never wait (usable outside
// coroutines, on the object's loop thread).  Errors are syscall.Errno.

func SemNew(initial int) (unsafe.Pointer, error) {
	s, err := C.eventer_aco_sem_new(C.uint(initial))
	return unsafe.Pointer(s), nilIf(s != nil, err)
}
func SemPost(s unsafe.Pointer) error {
	rc, err := C.eventer_aco_sem_post((*C.eventer_aco_sem_t)(s))
	return ret(rc, err)
}
func SemTryWait(s unsafe.Pointer) error {
	rc, err := C.eventer_aco_sem_trywait((*C.eventer_aco_sem_t)(s))
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
func ChanTrySend(c, elem unsafe.Pointer) error {
	rc, err := C.eventer_aco_chan_trysend((*C.eventer_aco_chan_t)(c), elem)
	return ret(rc, err)
}
func ChanTryRecv(c, elem unsafe.Pointer) error {
	rc, err := C.eventer_aco_chan_tryrecv((*C.eventer_aco_chan_t)(c), elem)
	return ret(rc, err)
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
