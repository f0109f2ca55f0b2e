//go:build eventer_testhooks

package eventer

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/acoeventer/eventer/cgo"
)

// 5,000 Go coroutines in socketpair ping-pong, mixed with C coroutines
// (C-C pairs and C-Go pairs) on the same loops, while other goroutines
// force garbage collections.  Run at GOMAXPROCS 1 and 2, under -race and
// cgocheck2 (scripts/test-go.sh).
func TestStressMixedPingPong(t *testing.T) {
	goPairs, cPairs, mixedPairs, rounds := 2500, 250, 250, 20
	if testing.Short() {
		goPairs, cPairs, mixedPairs = 250, 25, 25
	}
	for _, procs := range []int{1, 2} {
		t.Run(fmt.Sprintf("GOMAXPROCS=%d", procs), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			setup(t, 2)
			stopGC := make(chan struct{})
			var gcs atomic.Int32
			go func() {
				for {
					select {
					case <-stopGC:
						return
					default:
						runtime.GC()
						gcs.Add(1)
						time.Sleep(2 * time.Millisecond)
					}
				}
			}()
			defer close(stopGC)

			var goDone, goFail atomic.Int32
			var steps atomic.Int64 // Go rounds done
			cDone := cgo.NewCounter()
			defer cDone.Free()
			goSide := func(fd int, initiator bool) func(co *Co) {
				return func(co *Co) {
					ae := acoEvent(t, co, fd)
					defer ae.Close()
					buf := make([]byte, 4)
					for i := 0; i < rounds; i++ {
						var err error
						if initiator {
							if _, err = ae.Write([]byte("ping"), time.Minute); err == nil {
								_, err = ae.Read(buf, time.Minute)
							}
						} else {
							if _, err = ae.Read(buf, time.Minute); err == nil {
								_, err = ae.Write([]byte("pong"), time.Minute)
							}
						}
						if err != nil {
							t.Errorf("go coroutine: %v", err)
							goFail.Add(1)
							break
						}
						steps.Add(1)
						if i%5 == 0 {
							co.Yield()
						}
					}
					goDone.Add(1)
				}
			}
			var cFds []int // the C side frees its events but leaves the fds
			pair := func() (int, int) { return socketpair(t) }
			for i := 0; i < goPairs; i++ {
				a, b := pair()
				AcoStartOn(i%2, goSide(a, true), nil)
				AcoStartOn(i%2, goSide(b, false), nil)
			}
			// C coroutines start on a loop thread: from a Go coroutine
			for l := 0; l < 2; l++ {
				l := l
				inCo(t, l, func(co *Co) error {
					for i := l; i < cPairs; i += 2 {
						a, b := pair()
						cFds = append(cFds, a, b)
						cgo.CPingPong(a, rounds, true, cDone)
						cgo.CPingPong(b, rounds, false, cDone)
					}
					for i := l; i < mixedPairs; i += 2 {
						a, b := pair()
						cFds = append(cFds, a)
						cgo.CPingPong(a, rounds, i%4 < 2, cDone)
						co.Start(goSide(b, i%4 >= 2), nil)
					}
					return nil
				})
			}
			wantGo := int32(2*goPairs + mixedPairs)
			wantC := 2*cPairs + mixedPairs
			// each side of a pair counts once it is done; the rounds in
			// between are progress too (a whole-run deadline of 20 s
			// failed at GOMAXPROCS 1 under -race beside CPU hogs)
			waitProgress(t, "all ping-pongs", time.Minute, func() int64 {
				return int64(goDone.Load()) + int64(cDone.Load()) + steps.Load()
			}, func() bool {
				return goDone.Load() == wantGo && cDone.Load() >= wantC
			})
			if goFail.Load() != 0 || cDone.Load() != wantC {
				t.Fatalf("failures: go %d, C counter %d (want %d)", goFail.Load(), cDone.Load(), wantC)
			}
			for _, fd := range cFds {
				unix.Close(fd)
			}
			t.Logf("%d Go and %d C coroutines, %d forced GCs", wantGo, wantC, gcs.Load())
		})
	}
}
