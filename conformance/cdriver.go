package conformance

/*
#cgo CFLAGS: -std=gnu11 -D_GNU_SOURCE -O2 -fstack-clash-protection
#cgo CFLAGS: -I${SRCDIR}/../csrc/libaco -I${SRCDIR}/../csrc/eventer
#cgo CFLAGS: -I${SRCDIR}/../csrc/conf -I${SRCDIR}/../csrc/listener
#cgo CFLAGS: -I${SRCDIR}/../csrc/http -I${SRCDIR}/../csrc/conformance
#cgo CFLAGS: -I/usr/include/libxml2
#include <stdlib.h>
#include "eventer_conformance.h"

static int ev_cfg_foreach_cb(const char *name, const char *sig, void *closure);
static int ev_cfg_list(void *closure) {
  return eventer_conformance_foreach(ev_cfg_foreach_cb, closure);
}
// collects the registry into one string: "name\tsig\n..."
typedef struct { char *buf; size_t len, cap; } ev_cfg_str_t;
static int ev_cfg_foreach_cb(const char *name, const char *sig, void *closure) {
  ev_cfg_str_t *s = closure;
  size_t need = strlen(name) + strlen(sig) + 3;
  if (s->len + need >= s->cap) {
    size_t cap = (s->cap + need) * 2;
    char *nb = realloc(s->buf, cap);
    if (!nb) return -1;
    s->buf = nb;
    s->cap = cap;
  }
  s->len += (size_t)sprintf(s->buf + s->len, "%s\t%s\n", name, sig);
  return 0;
}
static char *ev_cfg_registry(void) {
  ev_cfg_str_t s = {NULL, 0, 0};
  if (ev_cfg_list(&s) != 0 || !s.buf) {
    free(s.buf);
    return NULL;
  }
  return s.buf;
}
static int ev_cfg_loops(void) {
  eventer_pool_t *p = eventer_pool("default");
  return p ? (int)eventer_pool_concurrency(p) : 0;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// cSteps is the C registry: step name -> signature.
func cSteps() map[string]string {
	out := map[string]string{}
	p := C.ev_cfg_registry()
	if p == nil {
		return out
	}
	defer C.free(unsafe.Pointer(p))
	for _, ln := range strings.Split(C.GoString(p), "\n") {
		if name, sig, ok := strings.Cut(ln, "\t"); ok {
			out[name] = sig
		}
	}
	return out
}

// cLoops is the number of loops of the running eventer's default pool (0:
// none).
func cLoops() int { return int(C.ev_cfg_loops()) }

// ErrnoName is the C name of errno e ("ETIMEDOUT"), as both drivers write
// results (C: eventer_conformance_errname).
func ErrnoName(e syscall.Errno) string {
	return C.GoString(C.eventer_conformance_errname(C.int(e)))
}

// cQuote is eventer_conformance_quote (the tests hold Quote to it).
func cQuote(p []byte) string {
	var src unsafe.Pointer
	if len(p) > 0 {
		src = C.CBytes(p)
		defer C.free(src)
	}
	n := C.eventer_conformance_quote(nil, 0, src, C.size_t(len(p)))
	buf := (*C.char)(C.malloc(n + 1))
	defer C.free(unsafe.Pointer(buf))
	C.eventer_conformance_quote(buf, n+1, src, C.size_t(len(p)))
	return C.GoStringN(buf, C.int(n))
}

// cstrings is a C array of C strings, freed by free.
type cstrings struct {
	arr **C.char
	n   int
}

func newCstrings(ss []string) cstrings {
	c := cstrings{n: len(ss)}
	c.arr = (**C.char)(C.calloc(C.size_t(len(ss)+1), C.size_t(unsafe.Sizeof(uintptr(0)))))
	a := unsafe.Slice(c.arr, len(ss)+1)
	for i, s := range ss {
		a[i] = C.CString(s)
	}
	return c
}

func (c cstrings) free() {
	for _, p := range unsafe.Slice(c.arr, c.n+1) {
		C.free(unsafe.Pointer(p))
	}
	C.free(unsafe.Pointer(c.arr))
}

func cints(v []int) *C.int {
	p := (*C.int)(C.calloc(C.size_t(len(v)+1), C.size_t(unsafe.Sizeof(C.int(0)))))
	a := unsafe.Slice(p, len(v)+1)
	for i, x := range v {
		a[i] = C.int(x)
	}
	return p
}

// runC runs sc with C coroutines: the C driver, through its public API.
func runC(sc *Scenario) ([]Entry, error) {
	r, err := C.eventer_conformance_run_new(C.int(sc.Loops), C.int(len(sc.Objects)))
	if r == nil {
		return nil, fmt.Errorf("C run on %d loops: %w", sc.Loops, err)
	}
	started := false
	defer func() {
		if !started {
			C.eventer_conformance_run_free(r)
		}
	}()
	for _, co := range sc.Cos {
		name := C.CString(co.Name)
		manual := C.int(0)
		if co.Manual {
			manual = 1
		}
		rc, err := C.eventer_conformance_run_co(r, name, C.int(co.Loop), manual)
		C.free(unsafe.Pointer(name))
		if rc < 0 {
			return nil, fmt.Errorf("C run: coroutine %s: %w", co.Name, err)
		}
	}
	for i, l := range sc.Lines {
		args := make([]string, len(l.Args))
		refs := make([]int, len(l.Args))
		for k, a := range l.Args {
			args[k], refs[k] = a.Value, a.Ref
		}
		keys := make([]string, len(l.Opts))
		vals := make([]string, len(l.Opts))
		orefs := make([]int, len(l.Opts))
		for k, o := range l.Opts {
			keys[k], vals[k], orefs[k] = o.Key, o.Value, o.Ref
		}
		ca, ck, cv := newCstrings(args), newCstrings(keys), newCstrings(vals)
		cr, cor := cints(refs), cints(orefs)
		step := C.CString(l.Step)
		rc, err := C.eventer_conformance_run_step(r, C.int(l.Co), step, C.int(len(args)), ca.arr, cr,
			C.int(len(keys)), ck.arr, cv.arr, cor)
		C.free(unsafe.Pointer(step))
		ca.free()
		ck.free()
		cv.free()
		C.free(unsafe.Pointer(cr))
		C.free(unsafe.Pointer(cor))
		if rc < 0 {
			if errors.Is(err, syscall.ENOENT) {
				return nil, fmt.Errorf("%s:%d: step %s has no C implementation", sc.File, l.Num, l.Step)
			}
			return nil, fmt.Errorf("%s:%d: C run: %w", sc.File, l.Num, err)
		}
		if int(rc) != i {
			return nil, fmt.Errorf("C run: step %d got index %d", i, rc)
		}
	}
	if rc, err := C.eventer_conformance_run_start(r); rc != 0 {
		return nil, fmt.Errorf("C run: start: %w", err)
	}
	started = true
	var runErr error
	inTime, ended := waitDone(sc.Timeout, func() bool { return C.eventer_conformance_run_done(r) != 0 },
		func() { C.eventer_conformance_run_abort(r) })
	if !ended {
		// its coroutines still run: the run stays theirs (freed by the last)
		C.eventer_conformance_run_free(r)
		return nil, errStuck
	}
	if !inTime {
		runErr = errTimeout
	}
	var out []Entry
	for i := 0; ; i++ {
		var e C.eventer_conformance_entry_t
		if C.eventer_conformance_run_entry(r, C.int(i), &e) != 0 {
			break
		}
		out = append(out, Entry{
			Line:   sc.Lines[int(e.step)],
			Result: C.GoString(e.result),
			Start:  time.Duration(e.start_ns),
			End:    time.Duration(e.end_ns),
		})
	}
	if rc, err := C.eventer_conformance_run_cleanup(r); rc != 0 {
		C.eventer_conformance_run_free(r)
		return out, fmt.Errorf("C run: cleanup: %w", err)
	}
	C.eventer_conformance_run_free(r)
	return out, runErr
}
