package eventer

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestSmokePingPong(t *testing.T) {
	if err := Init(WithConcurrency(1)); err != nil {
		t.Fatal(err)
	}
	defer Shutdown()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 2)
	AcoStart(func(co *Co) {
		ev, _ := plainFdEvent(fds[1])
		ae := co.SetEventerAco(ev)
		buf := make([]byte, 4)
		for i := 0; i < 1000; i++ {
			if _, err := ae.Read(buf, time.Second); err != nil {
				done <- "pong read: " + err.Error()
				return
			}
			if _, err := ae.Write([]byte("pong"), time.Second); err != nil {
				done <- "pong write: " + err.Error()
				return
			}
		}
		ae.Close()
		ae.Free()
		done <- "pong ok"
	}, nil)
	AcoStart(func(co *Co) {
		ev, _ := plainFdEvent(fds[0])
		ae := co.SetEventerAco(ev)
		buf := make([]byte, 4)
		for i := 0; i < 1000; i++ {
			if _, err := ae.Write([]byte("ping"), time.Second); err != nil {
				done <- "ping write: " + err.Error()
				return
			}
			if _, err := ae.Read(buf, time.Second); err != nil {
				done <- "ping read: " + err.Error()
				return
			}
		}
		co.Sleep(10 * time.Millisecond)
		ae.Close()
		ae.Free()
		done <- "ping ok"
	}, nil)
	for i := 0; i < 2; i++ {
		select {
		case s := <-done:
			t.Log(s)
			if s != "pong ok" && s != "ping ok" {
				t.Fatal(s)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("timeout")
		}
	}
}
