//go:build eventer_testhooks

package cgo

/*
#include <stdlib.h>
#include "httphooks.h"
*/
import "C"

import "unsafe"

// HTTPRequest is what the C request parser made of one message: Status 0
// when it accepted it, -1 when it was incomplete, else the HTTP status it
// answers.
type HTTPRequest struct {
	Status       int
	Method       string
	Target       string
	Major, Minor int
	Headers      [][2]string // name, value, in order
	Body         []byte
	Consumed     int // bytes of the message, body framing included
}

// HTTPSIMDImpls lists the C parser's scanners this CPU can run (0
// scalar, 1 SSE4.2, 2 AVX2).
func HTTPSIMDImpls() []int {
	var out []int
	for i := 0; i < 3; i++ {
		if C.ev_hh_simd_available(C.int(i)) != 0 {
			out = append(out, i)
		}
	}
	return out
}

// ParseHTTPRequest runs the C parser on data with scanner impl.  Not for
// concurrent use with different impls.
func ParseHTTPRequest(data []byte, impl int) HTTPRequest {
	C.ev_hh_simd_set(C.int(impl))
	p := C.malloc(C.size_t(len(data) + 1))
	defer C.free(p)
	if len(data) > 0 {
		copy(unsafe.Slice((*byte)(p), len(data)), data)
	}
	r := (*C.ev_hh_result_t)(C.calloc(1, C.size_t(unsafe.Sizeof(C.ev_hh_result_t{}))))
	defer C.free(unsafe.Pointer(r))
	C.ev_hh_parse((*C.char)(p), C.size_t(len(data)), r)
	defer C.ev_hh_free(r)
	out := HTTPRequest{Status: int(r.status)}
	if out.Status != 0 {
		return out
	}
	s := func(off, n C.uint32_t) string { return string(data[off : off+n]) }
	out.Method = s(r.method_off, r.method_len)
	out.Target = s(r.target_off, r.target_len)
	out.Major, out.Minor = int(r.major), int(r.minor)
	for i := 0; i < int(r.nhdr); i++ {
		out.Headers = append(out.Headers, [2]string{
			s(r.name_off[i], r.name_len[i]), s(r.value_off[i], r.value_len[i])})
	}
	out.Body = C.GoBytes(unsafe.Pointer(r.body), C.int(r.body_len))
	out.Consumed = int(r.consumed)
	return out
}
