package conformance

import "testing"

// The REST scenarios (testdata/conformance/rest).
func TestRestScenarios(t *testing.T) {
	Test(t, "../testdata/conformance/rest/*.scn")
}
