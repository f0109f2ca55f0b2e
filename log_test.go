package eventer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type captureHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r)
	h.mu.Unlock()
	return nil
}
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *captureHandler) WithGroup(string) slog.Handler      { return h }

// The C library's log lines reach the Go logger; the eventer's debug
// stream reports, on resume, the stack bytes copied for a coroutine.
func TestCLogsGoToSlog(t *testing.T) {
	h := &captureHandler{}
	setup(t, 1, WithLogger(slog.New(h)))
	SetDebug(true)
	defer SetDebug(false)
	if err := inCo(t, 0, func(co *Co) error { return co.Sleep(time.Millisecond) }); err != nil {
		t.Fatal(err)
	}
	// reads and writes that wait, through every proxy call, log as well
	a, b := socketpair(t)
	defer unix.Close(b)
	AddIn(5*time.Millisecond, func(*Event, Mask, time.Time) Mask { unix.Write(b, []byte("x")); return 0 })
	err := inCo(t, 0, func(co *Co) error {
		ae := acoEvent(t, co, a)
		defer ae.Close()
		buf := make([]byte, 4)
		if _, err := ae.Read(buf, time.Second); err != nil {
			return err
		}
		if _, err := ae.Write([]byte("y"), time.Second); err != nil {
			return err
		}
		_, err := ae.Read(buf, 5*time.Millisecond) // times out
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("want a timeout, got %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(5 * time.Millisecond)
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			c.Close()
		}
	}()
	err = inCo(t, 0, func(co *Co) error {
		lae, err := co.SetEventerAco(ln)
		if err != nil {
			return err
		}
		defer lae.Close()
		c, err := lae.Accept(time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	SetDebug(false)
	h.mu.Lock()
	defer h.mu.Unlock()
	found := false
	for _, r := range h.recs {
		if r.Level == slog.LevelDebug && strings.Contains(r.Message, "stack bytes copied") {
			found = true
		}
	}
	if !found {
		var msgs []string
		for _, r := range h.recs {
			msgs = append(msgs, r.Message)
		}
		t.Fatalf("no resume debug line among %d records: %q", len(h.recs), msgs)
	}
}
