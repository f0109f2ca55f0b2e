//go:build eventer_http

package conformance

import "testing"

// The REST scenarios need the HTTP engine in the Go build (the
// eventer_http tag, for now).
func TestRestScenarios(t *testing.T) {
	Test(t, "../testdata/conformance/rest/*.scn")
}
