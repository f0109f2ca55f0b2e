package eventer

import (
	"runtime"
	"sync"
	"unsafe"
)

// Goroutine identity and thread-lock state, for the misuse checks of
// DESIGN.md section 4.
//
// A Go coroutine is an iter.Pull goroutine that the loop's driver switches
// to on the driver's locked OS thread.  The runtime checks at every switch
// that the thread's LockOSThread count is the one it had when the
// coroutine was created, and kills the process otherwise ("coro: OS
// thread locking must match locking at coroutine creation").  Go has no
// API to read that count, so it is read from the runtime's m structure:
// the current g's m (at a fixed offset of g, one the runtime's linker
// relies on too), and m's external lock count, whose offset is found at
// start-up by locking the thread and watching which counter moves.  If
// the probe does not find exactly one such counter (another Go version),
// the thread-lock check is off and the rest works as before.

// getg returns the running goroutine's g (threadlock_*.s).
func getg() unsafe.Pointer

// gMOffset is the offset of g.m: stack (2 words), stackguard0,
// stackguard1, _panic, _defer, then m.
const gMOffset = 6 * unsafe.Sizeof(uintptr(0))

// mProbeLimit bounds the bytes of m the probe reads (m is far larger; the
// counters sit well inside this).
const mProbeLimit = 1024

var lockProbe struct {
	once   sync.Once
	offset uintptr // of m.lockedExt; 0: unknown, the check is off
}

func curM() unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Add(getg(), gMOffset)) }

// probeLockCount finds m.lockedExt: the one 32-bit counter of the current
// m that goes 1, 2, 3, 2, 1 as this goroutine locks its thread three
// times and unlocks it twice.
func probeLockCount() {
	done := make(chan uintptr)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		m := curM()
		snap := func() []uint32 {
			s := make([]uint32, mProbeLimit/4)
			for i := range s {
				s[i] = *(*uint32)(unsafe.Add(m, i*4))
			}
			return s
		}
		var seen [5][]uint32
		seen[0] = snap()
		runtime.LockOSThread()
		seen[1] = snap()
		runtime.LockOSThread()
		seen[2] = snap()
		runtime.UnlockOSThread()
		seen[3] = snap()
		runtime.UnlockOSThread()
		seen[4] = snap()
		want := [5]uint32{1, 2, 3, 2, 1}
		found, n := uintptr(0), 0
		for i := range seen[0] {
			ok := true
			for k := range want {
				ok = ok && seen[k][i] == want[k]
			}
			if ok {
				found, n = uintptr(i*4), n+1
			}
		}
		if n != 1 || curM() != m {
			found = 0
		}
		done <- found
	}()
	lockProbe.offset = <-done
}

// threadLocks is the calling thread's external LockOSThread count, and
// whether it is known.
func threadLocks() (uint32, bool) {
	lockProbe.once.Do(probeLockCount)
	if lockProbe.offset == 0 {
		return 0, false
	}
	return *(*uint32)(unsafe.Add(curM(), lockProbe.offset)), true
}
