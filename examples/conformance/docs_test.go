package greet_test

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/acoeventer/eventer/conformance"
	"github.com/acoeventer/eventer/examples/conformance"
)

// The example in docs/conformance.md is this package: each block marked
// with a file name is that file, and the scenario as the page shows it
// runs green in C and in Go.
func TestDocsExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/conformance.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- file: ([^ ]+) -->\n```[a-z]*\n(.*?)```\n")
	blocks := re.FindAllSubmatch(doc, -1)
	if len(blocks) != 3 {
		t.Fatalf("%d file blocks in the page, want 3", len(blocks))
	}
	var scn []byte
	for _, b := range blocks {
		path, text := string(b[1]), b[2]
		file, err := os.ReadFile(filepath.Join("../..", path))
		if err != nil {
			t.Fatal(err)
		}
		if string(file) != string(text) {
			t.Errorf("the page's %s is not the file", path)
		}
		if filepath.Ext(path) == ".scn" {
			scn = text
		}
	}
	cfg := conformance.Config{Steps: greet.Steps}
	sigs, err := cfg.Signatures()
	if err != nil {
		t.Fatal(err)
	}
	sc, err := conformance.Parse("docs/conformance.md", scn, sigs)
	if err != nil {
		t.Fatal(err)
	}
	stop, err := conformance.Start(sc.Loops)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if res := cfg.Run(sc); !res.OK() {
		t.Fatal(res.Report())
	}
}
