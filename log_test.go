package eventer

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
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
