//go:build eventer_testhooks

package cgo

/*
#include <stdlib.h>
#include "testhooks.h"
*/
import "C"

import "unsafe"

// Counter is an int in C memory that C coroutines of the test scenarios
// add to.
type Counter struct{ p *C.int }

// NewCounter allocates a zeroed counter; Free it when done.
func NewCounter() Counter { return Counter{(*C.int)(C.calloc(1, C.size_t(unsafe.Sizeof(C.int(0)))))} }

// Load reads the counter atomically.
func (c Counter) Load() int { return int(C.ev_ct_load(c.p)) }

// Free releases the counter.
func (c Counter) Free() { C.free(unsafe.Pointer(c.p)) }

// CPingPong starts a C coroutine (on the calling loop thread, or queued to
// loop 0) that ping-pongs rounds messages on fd and then adds 1 to done
// (1000 on failure).
func CPingPong(fd, rounds int, initiator bool, done Counter) {
	init := C.int(0)
	if initiator {
		init = 1
	}
	C.ev_ct_pingpong(C.int(fd), C.int(rounds), init, done.p)
}

// CCallInCoroutine starts a C coroutine that calls e's callback directly
// (through the Go trampoline), stores its result in rv and adds 1 to done.
func CCallInCoroutine(e unsafe.Pointer, rv, done Counter) {
	C.ev_ct_call_in_coroutine(C.eventer_t(e), rv.p, done.p)
}

// CCallDirect calls e's callback directly from C, outside any coroutine.
func CCallDirect(e unsafe.Pointer) int { return int(C.ev_ct_call_direct(C.eventer_t(e))) }

// CChanRelay starts a C coroutine that relays n elements from chan in to
// chan out, adding 1 to every byte (C pointers from ChanNew).
func CChanRelay(in, out unsafe.Pointer, n int, done Counter) {
	C.ev_ct_chan_relay(in, out, C.int(n), done.p)
}

// CSemRelay starts a C coroutine that n times waits on sem wait and posts
// sem post.
func CSemRelay(wait, post unsafe.Pointer, n int, done Counter) {
	C.ev_ct_sem_relay(wait, post, C.int(n), done.p)
}

// Log is a dispatch log in C memory that C and Go callbacks append to.
type Log struct{ p *C.ev_ct_log_t }

// NewLog allocates an empty log; Free it when done.
func NewLog() Log {
	return Log{(*C.ev_ct_log_t)(C.calloc(1, C.size_t(unsafe.Sizeof(C.ev_ct_log_t{}))))}
}

// Append adds tag (from a Go callback, on the loop thread).
func (l Log) Append(tag int) { C.ev_ct_log_append(l.p, C.int(tag)) }

// Tags is the log's content.
func (l Log) Tags() []int {
	out := make([]int, int(l.p.n))
	for i := range out {
		out[i] = int(l.p.tags[i])
	}
	return out
}

// Free releases the log.
func (l Log) Free() { C.free(unsafe.Pointer(l.p)) }

// CTriggerLog triggers a C event whose callback appends tag to log.
func CTriggerLog(l Log, tag int) { C.ev_ct_trigger_log(l.p, C.int(tag)) }

// CLog logs msg to the C log stream named stream (mtevL); false if there
// is no such stream.
func CLog(stream, msg string) bool {
	cs, cm := C.CString(stream), C.CString(msg)
	defer C.free(unsafe.Pointer(cs))
	defer C.free(unsafe.Pointer(cm))
	return C.ev_ct_log(cs, cm) == 0
}

// JobqStopping reports whether JobqDestroy has begun on q (its workers take
// no new job); q must still be alive (a destroy that waits for a running
// job keeps it).
func JobqStopping(q unsafe.Pointer) bool { return C.ev_ct_jobq_stopping(q) != 0 }
