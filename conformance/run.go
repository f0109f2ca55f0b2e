package conformance

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/acoeventer/eventer"
)

// Lang names the languages a run uses.
type Lang string

const (
	LangBoth Lang = "both" // C and Go, compared (the default)
	LangC    Lang = "c"
	LangGo   Lang = "go"
)

// Config is how scenarios run: in which languages, with which Go steps
// besides the built-in ones.  (C steps are whatever the C registry holds:
// eventer_conformance_register, from C code linked into the program.)
type Config struct {
	Lang  Lang  // "" is LangBoth
	Steps Steps // your Go steps; a name here replaces a built-in one
}

// Entry is a step that ended, in the order steps ended.
type Entry struct {
	Line   *Line
	Result string
	Start  time.Duration // since the scenario's start
	End    time.Duration
}

// Result is what running a scenario gave.
type Result struct {
	Scenario *Scenario
	Langs    []Lang  // the languages that ran
	C, Go    []Entry // their traces
	Err      error   // a language could not run it, or ran out of time
	Diffs    []Diff  // empty when the traces are equal and as expected
	// Known is the difference of the Go trace from C's that the scenario
	// declares (differs), when the run showed it: C's trace is then
	// checked against the expected one, and Go's must differ from C's.
	Known *Diff
}

// Diff is one disagreement: C against Go, or a language against the
// scenario's expected trace.
type Diff struct {
	What  string // "C and Go differ", "C differs from the expected trace", ...
	First string // the first differing step: which one, where, both values
	Diff  string // the whole difference (go-cmp), "-" one side, "+" the other
}

// OK reports whether the scenario ran and every trace was as expected.
func (r *Result) OK() bool { return r.Err == nil && len(r.Diffs) == 0 }

// Report is a readable account of a failed result ("" when OK).
func (r *Result) Report() string {
	if r.OK() {
		return ""
	}
	var b strings.Builder
	if r.Err != nil {
		fmt.Fprintf(&b, "%s: %v\n", r.Scenario.File, r.Err)
	}
	for _, d := range r.Diffs {
		fmt.Fprintf(&b, "%s\n%s\n", d.First, indent(d.Diff))
	}
	return b.String()
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = "    " + lines[i]
	}
	return strings.Join(lines, "\n")
}

func (cfg Config) lang() Lang {
	if cfg.Lang == "" {
		return LangBoth
	}
	return cfg.Lang
}

// table is the Go table in use: the built-ins and cfg.Steps.
func (cfg Config) table() Steps {
	t := BuiltinSteps()
	for k, v := range cfg.Steps {
		t[k] = v
	}
	return t
}

// Signatures checks the two tables against each other and returns the
// signature lookup the parser uses: a step is known if either language
// has it; where both do, their signatures must be the same.
func (cfg Config) Signatures() (func(string) (string, bool), error) {
	goT, cT := cfg.table(), cSteps()
	var bad []string
	for name, st := range goT {
		if slices.Contains(reserved, name) || !isIdent(name) {
			bad = append(bad, fmt.Sprintf("Go step %q: not a valid step name", name))
			continue
		}
		if cs, ok := cT[name]; ok && cs != st.Sig {
			bad = append(bad, fmt.Sprintf("step %s: C signature %q, Go signature %q", name, cs, st.Sig))
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return nil, errors.New("conformance: the C and Go step tables disagree:\n  " + strings.Join(bad, "\n  "))
	}
	return func(name string) (string, bool) {
		if st, ok := goT[name]; ok {
			return st.Sig, true
		}
		s, ok := cT[name]
		return s, ok
	}, nil
}

// Load parses the scenario files that patterns (paths or globs) name, in
// order: every malformed one is an error naming its file and line.
func (cfg Config) Load(patterns ...string) ([]*Scenario, error) {
	sigs, err := cfg.Signatures()
	if err != nil {
		return nil, err
	}
	files, err := expand(patterns)
	if err != nil {
		return nil, err
	}
	var out []*Scenario
	var errs []error
	for _, f := range files {
		sc, err := Load(f, sigs)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, sc)
	}
	return out, errors.Join(errs...)
}

func expand(patterns []string) ([]string, error) {
	var files []string
	for _, p := range patterns {
		m, err := filepath.Glob(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", p, err)
		}
		if len(m) == 0 {
			if _, err := os.Stat(p); err != nil {
				return nil, fmt.Errorf("no scenario file %s", p)
			}
			m = []string{p}
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		return nil, errors.New("no scenario files")
	}
	return files, nil
}

// Start makes sure an eventer with at least loops loops runs: it starts
// one (and stop stops it) unless one runs already (stop does nothing).
func Start(loops int) (stop func(), err error) {
	if n := cLoops(); n > 0 {
		if n < loops {
			return nil, fmt.Errorf("conformance: the running eventer has %d loops, a scenario needs %d", n, loops)
		}
		return func() {}, nil
	}
	if err := eventer.Init(eventer.WithConcurrency(max(loops, 1))); err != nil {
		return nil, err
	}
	return func() {
		eventer.Shutdown()
		_ = eventer.Loop()
	}, nil
}

// Run runs one scenario in the configured languages (an eventer must run:
// Start) and compares the traces.
func (cfg Config) Run(sc *Scenario) *Result {
	res := &Result{Scenario: sc}
	want := cfg.lang()
	runs := func(l Lang) bool {
		return (want == LangBoth || want == l) && (sc.Lang == string(LangBoth) || sc.Lang == string(l))
	}
	var errs []error
	if runs(LangC) {
		res.Langs = append(res.Langs, LangC)
		tr, err := runC(sc)
		res.C = tr
		if err != nil {
			errs = append(errs, fmt.Errorf("C: %w", err))
		}
	}
	if runs(LangGo) {
		res.Langs = append(res.Langs, LangGo)
		tr, err := runGo(sc, cfg.table())
		res.Go = tr
		if err != nil {
			errs = append(errs, fmt.Errorf("Go: %w", err))
		}
	}
	res.Err = errors.Join(errs...)
	if len(res.Langs) == 0 {
		res.Err = fmt.Errorf("the scenario is for %s only (lang %s), and the run is for %s", sc.Lang, sc.Lang, want)
		return res
	}
	if len(res.Langs) == 2 {
		res.compare("C and Go differ", "C", "Go", res.C, res.Go, false)
	}
	if sc.Differs != "" && res.Err == nil {
		// a known difference: C is held to the expected trace, and Go's
		// trace must still differ from C's (or the mark must go)
		if len(res.Langs) == 2 {
			if len(res.Diffs) == 0 {
				res.Diffs = append(res.Diffs, Diff{What: "no longer differs",
					First: fmt.Sprintf("%s: the scenario says C and Go differ (%s), but their traces are "+
						"equal now: remove its `differs` line", sc.File, sc.Differs)})
				return res
			}
			res.Known = &res.Diffs[0]
			res.Diffs = nil
		}
		if slices.Contains(res.Langs, LangC) {
			res.compareExpected("C", res.C)
		}
		return res
	}
	for _, l := range res.Langs {
		tr, name := res.C, "C"
		if l == LangGo {
			tr, name = res.Go, "Go"
		}
		res.compareExpected(name, tr)
	}
	return res
}

// a rendered trace row and the step it shows (nil for a group heading)
type row struct {
	text string
	line *Line
}

func (sc *Scenario) group(l *Line) (int, string) {
	co := sc.Cos[l.Co]
	if sc.Order == "coroutine" {
		return l.Co, "coroutine " + co.Name
	}
	return co.Loop, fmt.Sprintf("loop %d", co.Loop)
}

// rows renders lines with their results, grouped (by loop, or by
// coroutine under `order coroutine`) in the order given.
func (sc *Scenario) rows(lines []*Line, result func(i int) string) []row {
	groups := map[int][]row{}
	names := map[int]string{}
	var keys []int
	for i, l := range lines {
		g, name := sc.group(l)
		if _, ok := groups[g]; !ok {
			keys = append(keys, g)
			names[g] = name
		}
		groups[g] = append(groups[g], row{sc.Cos[l.Co].Name + ": " + l.Text + " => " + result(i), l})
	}
	sort.Ints(keys)
	multi := len(keys) > 1 || (sc.Order == "loop" && sc.Loops > 1) || (sc.Order == "coroutine" && len(sc.Cos) > 1)
	var out []row
	for _, g := range keys {
		if multi {
			out = append(out, row{"-- " + names[g] + " --", nil})
		}
		out = append(out, groups[g]...)
	}
	return out
}

// shown is an entry's result as a trace shows it: with a note when it
// ended outside its time window (with the time it took when against the
// expected trace); "*" for a step whose expectation is "*" then.
func shown(e Entry, expected bool) string {
	r := e.Result
	if expected && e.Line.Expect == "*" {
		r = "*"
	}
	if w := e.Line.Within; w != nil && !w.contains(e.End-e.Start) {
		if expected {
			r += fmt.Sprintf(" (took %v, not within %v)", (e.End - e.Start).Round(100*time.Microsecond), w)
		} else {
			r += fmt.Sprintf(" (not within %v)", w)
		}
	}
	if a := e.Line.At; a != nil && !a.contains(e.End) {
		if expected {
			r += fmt.Sprintf(" (ended at %v, not at %v)", e.End.Round(100*time.Microsecond), a)
		} else {
			r += fmt.Sprintf(" (not at %v)", a)
		}
	}
	return r
}

func (sc *Scenario) traceRows(tr []Entry, expected bool) []row {
	lines := make([]*Line, len(tr))
	for i, e := range tr {
		lines[i] = e.Line
	}
	return sc.rows(lines, func(i int) string { return shown(tr[i], expected) })
}

func (sc *Scenario) expectedRows() []row {
	return sc.rows(sc.Lines, func(i int) string { return sc.Lines[i].Expect })
}

func texts(rs []row) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.text
	}
	return out
}

func (r *Result) compare(what, an, bn string, a, b []Entry, star bool) {
	r.diff(what, an, bn, r.Scenario.traceRows(a, star), r.Scenario.traceRows(b, star))
}

func (r *Result) compareExpected(name string, tr []Entry) {
	r.diff(name+" differs from the expected trace", "want", name, r.Scenario.expectedRows(),
		r.Scenario.traceRows(tr, true))
}

// diff records a Diff if the rows differ, naming the first step that does.
func (r *Result) diff(what, an, bn string, a, b []row) {
	ta, tb := texts(a), texts(b)
	d := cmp.Diff(ta, tb)
	if d == "" {
		return
	}
	i := 0
	for i < len(a) && i < len(b) && ta[i] == tb[i] {
		i++
	}
	var l *Line
	switch {
	case i < len(a) && a[i].line != nil:
		l = a[i].line
	case i < len(b) && b[i].line != nil:
		l = b[i].line
	}
	sc := r.Scenario
	at := func(rs []row) string {
		if i < len(rs) {
			return rs[i].text
		}
		return "(nothing: the trace ends here)"
	}
	first := fmt.Sprintf("%s: %s", sc.File, what)
	if l != nil {
		n := 0
		for _, x := range sc.Lines {
			if x.Co == l.Co {
				n++
			}
			if x == l {
				break
			}
		}
		first = fmt.Sprintf("%s:%d: %s at step %d of coroutine %s, %q:", sc.File, l.Num, what, n,
			sc.Cos[l.Co].Name, l.Text)
	}
	w := max(len(an), len(bn)) + 1
	first += fmt.Sprintf("\n  %-*s %s\n  %-*s %s", w, an+":", at(a), w, bn+":", at(b))
	r.Diffs = append(r.Diffs, Diff{What: what, First: first,
		Diff: fmt.Sprintf("traces (-%s +%s):\n%s", an, bn, d)})
}

// ---- in go test ---------------------------------------------------------------------

// Test runs the scenario files that patterns name (paths or globs), each
// as a subtest named after its file, in C and in Go with the built-in
// steps, and fails a subtest whose traces differ (its report names the
// first step that does).  It starts an eventer if none runs, and stops it
// at the end.
func Test(t *testing.T, patterns ...string) { Config{}.Test(t, patterns...) }

// Test is the package's Test with cfg's languages and Go steps.
func (cfg Config) Test(t *testing.T, patterns ...string) {
	t.Helper()
	scs, err := cfg.Load(patterns...)
	if err != nil {
		t.Fatal(err)
	}
	loops := 1
	for _, sc := range scs {
		loops = max(loops, sc.Loops)
	}
	stop, err := Start(loops)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for _, sc := range scs {
		t.Run(sc.Name, func(t *testing.T) {
			res := cfg.Run(sc)
			if !res.OK() {
				t.Error("\n" + res.Report())
			}
			if res.Known != nil {
				t.Logf("known difference (%s):\n%s", sc.Differs, res.Known.First)
			}
		})
	}
}

// ---- the command ----------------------------------------------------------------------

// Main is cmd/acoconform: it runs the scenario files named on the command
// line in C and in Go and exits 0 when every trace is as expected, 1 when
// any differs (printing the first difference and a diff of the traces),
// 2 on a usage error or a malformed file (file:line: what is wrong).
// Your own runner, with your Go steps (and your C steps linked in), is
//
//	func main() { conformance.Main(conformance.Config{Steps: mySteps}) }
func Main(cfg Config) {
	os.Exit(cfg.Main(os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs the command with args and returns its exit code.
func (cfg Config) Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("acoconform", flag.ContinueOnError)
	fs.SetOutput(stderr)
	lang := fs.String("lang", string(cfg.lang()), "run the scenarios with `c`, go or both (compared)")
	verbose := fs.Bool("v", false, "print every trace")
	list := fs.Bool("list", false, "list the steps (name, signature, languages) and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: acoconform [-lang c|go|both] [-v] FILE...\n"+
			"       acoconform -list\n"+
			"Runs each scenario with C coroutines and with Go coroutines and compares their\n"+
			"traces with each other and with the expected one (docs/conformance.md).\n"+
			"Exit status: 0 all as expected, 1 a difference, 2 usage or a malformed file.\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch Lang(*lang) {
	case LangBoth, LangC, LangGo:
		cfg.Lang = Lang(*lang)
	default:
		fmt.Fprintf(stderr, "acoconform: -lang %s: want c, go or both\n", *lang)
		return 2
	}
	if *list {
		return cfg.listSteps(stdout, stderr)
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	scs, err := cfg.Load(fs.Args()...)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	loops := 1
	for _, sc := range scs {
		loops = max(loops, sc.Loops)
	}
	stop, err := Start(loops)
	if err != nil {
		fmt.Fprintln(stderr, "acoconform:", err)
		return 2
	}
	defer stop()
	failed := 0
	for _, sc := range scs {
		start := time.Now()
		res := cfg.Run(sc)
		took := time.Since(start).Round(time.Millisecond)
		if res.OK() {
			fmt.Fprintf(stdout, "ok   %s (%s, %v)\n", sc.File, langList(res.Langs), took)
			if res.Known != nil {
				fmt.Fprintf(stdout, "     known difference: %s\n", sc.Differs)
				if *verbose {
					fmt.Fprintf(stdout, "%s\n%s\n", res.Known.First, indent(res.Known.Diff))
				}
			}
		} else {
			failed++
			fmt.Fprintf(stdout, "FAIL %s (%s, %v)\n%s", sc.File, langList(res.Langs), took, res.Report())
		}
		if *verbose {
			for _, l := range res.Langs {
				tr := res.C
				if l == LangGo {
					tr = res.Go
				}
				fmt.Fprintf(stdout, "  %s trace:\n", strings.ToUpper(string(l)))
				for _, r := range sc.traceRows(tr, false) {
					fmt.Fprintf(stdout, "    %s\n", r.text)
				}
			}
		}
	}
	if failed > 0 {
		fmt.Fprintf(stdout, "%d of %d scenarios differ\n", failed, len(scs))
		return 1
	}
	fmt.Fprintf(stdout, "all %d scenarios as expected\n", len(scs))
	return 0
}

func langList(ls []Lang) string {
	var s []string
	for _, l := range ls {
		s = append(s, map[Lang]string{LangC: "C", LangGo: "Go"}[l])
	}
	return strings.Join(s, "+")
}

func (cfg Config) listSteps(stdout, stderr io.Writer) int {
	if _, err := cfg.Signatures(); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	goT, cT := cfg.table(), cSteps()
	names := map[string]bool{}
	for n := range goT {
		names[n] = true
	}
	for n := range cT {
		names[n] = true
	}
	var sorted []string
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, n := range sorted {
		sig, langs := cT[n], ""
		if _, ok := cT[n]; ok {
			langs = "C"
		}
		if st, ok := goT[n]; ok {
			sig = st.Sig
			langs = strings.TrimPrefix(langs+"+Go", "+")
		}
		fmt.Fprintf(stdout, "%-18s %-8s %s\n", n, langs, sig)
	}
	return 0
}
