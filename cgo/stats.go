package cgo

/*
#include <stdlib.h>
#include "stats.h"
#include "mtev_http.h"
*/
import "C"

import "unsafe"

// LoopStats is the calling loop's count of live C coroutines and its name
// (call on the loop's driver).
func LoopStats() (cCoroutines int64, name string) {
	var n C.int64_t
	var buf [64]C.char
	C.ev_go_loop_stats(&n, &buf[0], C.size_t(len(buf)))
	return int64(n), C.GoString(&buf[0])
}

// JobqStat is one job queue's figures.
type JobqStat struct {
	Name                          string
	Concurrency, Backlog, MaxBack uint32
}

// JobqStats lists the job queues (eventer_jobq_process_each).
func JobqStats() []JobqStat {
	const nameLen = 64
	n := 16
	for {
		names := make([]C.char, n*nameLen)
		conc := make([]C.uint32_t, n)
		back := make([]C.uint32_t, n)
		maxb := make([]C.uint32_t, n)
		got := int(C.ev_go_jobq_stats(C.int(n), &names[0], nameLen, &conc[0], &back[0], &maxb[0]))
		if got > n { // queues were made meanwhile: again, with room
			n = got + 8
			continue
		}
		out := make([]JobqStat, got)
		for i := range out {
			out[i] = JobqStat{
				Name:        C.GoString((*C.char)(unsafe.Pointer(&names[i*nameLen]))),
				Concurrency: uint32(conc[i]), Backlog: uint32(back[i]), MaxBack: uint32(maxb[i]),
			}
		}
		return out
	}
}

// HTTPSessionsLive is mtev_http_session_count: HTTP connections the
// engine serves now.
func HTTPSessionsLive() int64 { return int64(C.mtev_http_session_count()) }
