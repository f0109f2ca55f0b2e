package greet_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/acoeventer/eventer/conformance"
	"github.com/acoeventer/eventer/examples/conformance"
)

// The C and the Go greet_serve give the same trace, the expected one.
func TestGreet(t *testing.T) {
	conformance.Config{Steps: greet.Steps}.Test(t, "testdata/*.scn")
}

// A Go greet_serve that is wrong (it greets with an exclamation mark):
// the run fails, and its report names the step that differs, where it is
// in the scenario, both results, and a diff of the two traces.
func TestWrongStepIsNamed(t *testing.T) {
	wrong := conformance.Steps{"greet_serve": {Sig: "obj timeout=dur", Fn: func(c *conformance.Call) (string, error) {
		ae, err := c.AcoEvent(0)
		if err != nil {
			return "", err
		}
		buf := make([]byte, 64)
		n, err := ae.Read(buf, c.Timeout())
		if err != nil {
			return "", err
		}
		n, err = ae.Write(append([]byte("hello, "), append(buf[:n-1], "!\n"...)...), 0)
		return fmt.Sprintf("n=%d", n), err
	}}}
	cfg := conformance.Config{Steps: wrong}
	scs, err := cfg.Load("testdata/greet.scn")
	if err != nil {
		t.Fatal(err)
	}
	stop, err := conformance.Start(1)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	res := cfg.Run(scs[0])
	if res.OK() {
		t.Fatal("the wrong Go step gave the same trace as the C one")
	}
	rep := res.Report()
	t.Logf("the report:\n%s", rep)
	for _, want := range []string{
		`testdata/greet.scn:9: C and Go differ at step 3 of coroutine server, "greet_serve S timeout=1s":`,
		"C:  server: greet_serve S timeout=1s => n=13",
		"Go: server: greet_serve S timeout=1s => n=14",
		"traces (-C +Go):",
		`-`, `+`,
		`Go differs from the expected trace at step 3 of coroutine server`,
	} {
		if !strings.Contains(rep, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if strings.Contains(rep, "C differs from the expected trace") {
		t.Error("the report blames C, which is right")
	}
}
