// Package greet is the conformance kit's example (docs/conformance.md):
// one service step, greet_serve, implemented in C (greet.c) and in Go
// (here), checked against the same scenarios (testdata/*.scn).
package greet

import (
	"bytes"
	"fmt"
	"io"
	"syscall"

	"github.com/acoeventer/eventer/conformance"
)

// Steps is the Go table: the same name and signature as the C step.
var Steps = conformance.Steps{
	"greet_serve": {Sig: "obj timeout=dur", Fn: serve},
}

// serve reads one line ("NAME\n") and answers "hello, NAME\n".
func serve(c *conformance.Call) (string, error) {
	ae, err := c.AcoEvent(0)
	if err != nil {
		return "", err
	}
	name := make([]byte, 0, 64)
	for len(name) == 0 || name[len(name)-1] != '\n' {
		if len(name) == cap(name) {
			return "", syscall.EMSGSIZE // no line within 64 bytes
		}
		n, err := ae.Read(name[len(name):cap(name)], c.Timeout())
		if err == io.EOF {
			return "eof", nil
		}
		if err != nil {
			return "", err // os.ErrDeadlineExceeded is "ETIMEDOUT", ...
		}
		name = name[:len(name)+n]
	}
	n, err := ae.Write(fmt.Appendf(nil, "hello, %s\n", bytes.TrimSuffix(name, []byte("\n"))), c.Timeout())
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("n=%d", n), nil
}
