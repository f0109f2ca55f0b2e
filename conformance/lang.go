package conformance

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Scenario is a parsed scenario file (docs/conformance.md).
type Scenario struct {
	Name    string // the file's base name without .scn
	File    string // the path it was read from
	Loops   int    // loops it runs on (default 1)
	Order   string // "loop" (default) or "coroutine": how traces are compared
	Lang    string // "both" (default), "c" or "go": the languages it is meant for
	Differs string // a known difference of the Go trace from C's, and why ("": none)
	Timeout time.Duration
	Cos     []*Coroutine
	Objects []string // object names, by slot
	Lines   []*Line  // the steps, in file order
}

// Coroutine is a named coroutine of a scenario.
type Coroutine struct {
	Name   string
	Loop   int
	Manual bool // started by a `start` step, not at the beginning
	Line   int  // where it was declared (0: the implicit "main")
}

// Line is one step of a scenario.
type Line struct {
	Num    int    // line number in the file
	Co     int    // index of the coroutine that runs it
	Step   string // the step's name
	Text   string // the step as the trace shows it: name and arguments
	Args   []Arg
	Opts   []Opt
	Expect string // the expected result, normalized; "*" matches any
	Within *Range // bounds on how long the step takes, if given
	At     *Range // bounds on when it ends (from the scenario's start), if given
	Sig    string // the step's signature
}

// Arg is a positional argument: its value as the step gets it (a dur in
// microseconds, text unquoted) and what it refers to.
type Arg struct {
	Kind  string // signature kind: obj, new, co, int, dur, text, or a|b words
	Value string
	Ref   int // obj, new: object slot; co: coroutine index, -1 for self; else -1
}

// Opt is an option key=value.
type Opt struct {
	Key string
	Arg
}

// Range is a time window, both ends included.
type Range struct{ Min, Max time.Duration }

func (r *Range) String() string { return fmtDur(r.Min) + ".." + fmtDur(r.Max) }

func (r *Range) contains(d time.Duration) bool { return d >= r.Min && d <= r.Max }

// SyntaxError is an error in a scenario file, with where it is.
type SyntaxError struct {
	File string
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// directives, which no step may be named
var reserved = []string{"loops", "co", "order", "timeout", "lang", "differs"}

// Load reads and parses a scenario file; sigs gives the signature of each
// step name (false: no such step).
func Load(path string, sigs func(step string) (string, bool)) (*Scenario, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, src, sigs)
}

// Parse parses scenario text; file names it in errors.
func Parse(file string, src []byte, sigs func(step string) (string, bool)) (*Scenario, error) {
	p := &parser{
		sc: &Scenario{
			Name:    strings.TrimSuffix(filepath.Base(file), ".scn"),
			File:    file,
			Loops:   1,
			Order:   "loop",
			Lang:    "both",
			Timeout: 10 * time.Second,
		},
		sigs:  sigs,
		cos:   map[string]int{},
		objs:  map[string]int{},
		made:  map[string]bool{},
		where: map[string]int{},
	}
	if err := p.parse(src); err != nil {
		return nil, err
	}
	return p.sc, nil
}

type parser struct {
	sc    *Scenario
	sigs  func(string) (string, bool)
	num   int
	cos   map[string]int
	objs  map[string]int
	made  map[string]bool // objects some step creates (new)
	where map[string]int  // first line that names each object
	steps bool            // a step came already
}

func (p *parser) errf(format string, a ...any) error {
	return &SyntaxError{File: p.sc.File, Line: p.num, Msg: fmt.Sprintf(format, a...)}
}

func (p *parser) parse(src []byte) error {
	for i, raw := range bytes.Split(src, []byte("\n")) {
		p.num = i + 1
		toks, err := tokenize(string(raw))
		if err != nil {
			return p.errf("%v", err)
		}
		if len(toks) == 0 {
			continue
		}
		if !toks[0].quoted && slices.Contains(reserved, toks[0].s) {
			if err := p.directive(toks); err != nil {
				return err
			}
			continue
		}
		if err := p.step(toks); err != nil {
			return err
		}
	}
	if len(p.sc.Lines) == 0 {
		p.num = 0
		return &SyntaxError{File: p.sc.File, Line: 1, Msg: "no steps"}
	}
	for _, name := range p.sc.Objects { // in order of first use
		if !p.made[name] {
			p.num = p.where[name]
			return p.errf("object %s is used but no step creates it", name)
		}
	}
	for _, co := range p.sc.Cos {
		if co.Manual {
			started := false
			for _, l := range p.sc.Lines {
				if l.Step == "start" && len(l.Args) == 1 && l.Args[0].Ref >= 0 && p.sc.Cos[l.Args[0].Ref] == co {
					started = true
				}
			}
			if !started {
				p.num = co.Line
				return p.errf("coroutine %s is manual but no step starts it", co.Name)
			}
		}
	}
	return nil
}

type token struct {
	s      string
	quoted bool
}

// tokenize splits a line into words and quoted strings (Go's escapes); a
// # outside quotes starts a comment.
func tokenize(line string) ([]token, error) {
	var out []token
	i := 0
	for i < len(line) {
		c := line[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#':
			return out, nil
		case c == '"':
			j := i + 1
			for j < len(line) && line[j] != '"' {
				if line[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(line) {
				return nil, fmt.Errorf("unterminated string %s", line[i:])
			}
			s, err := strconv.Unquote(line[i : j+1])
			if err != nil {
				return nil, fmt.Errorf("bad string %s: %v", line[i:j+1], err)
			}
			out = append(out, token{s, true})
			i = j + 1
		default:
			j := i
			for j < len(line) && line[j] != ' ' && line[j] != '\t' && line[j] != '\r' {
				if line[j] == '"' { // key="quoted value"
					k := j + 1
					for k < len(line) && line[k] != '"' {
						if line[k] == '\\' {
							k++
						}
						k++
					}
					if k >= len(line) {
						return nil, fmt.Errorf("unterminated string %s", line[j:])
					}
					j = k
				}
				j++
			}
			out = append(out, token{line[i:j], false})
			i = j
		}
	}
	return out, nil
}

func isIdent(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func (p *parser) directive(t []token) error {
	if p.steps {
		return p.errf("%q must come before the first step", t[0].s)
	}
	arg := func() (string, error) {
		if len(t) != 2 {
			return "", p.errf("%s takes one argument", t[0].s)
		}
		return t[1].s, nil
	}
	switch t[0].s {
	case "loops":
		a, err := arg()
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(a)
		if err != nil || n < 1 || n > 64 {
			return p.errf("loops: want a number from 1 to 64, not %q", a)
		}
		p.sc.Loops = n
	case "order":
		a, err := arg()
		if err != nil {
			return err
		}
		if a != "loop" && a != "coroutine" {
			return p.errf("order: want loop or coroutine, not %q", a)
		}
		p.sc.Order = a
	case "lang":
		a, err := arg()
		if err != nil {
			return err
		}
		if a != "c" && a != "go" && a != "both" {
			return p.errf("lang: want c, go or both, not %q", a)
		}
		p.sc.Lang = a
	case "differs":
		if len(t) != 2 || !t[1].quoted || t[1].s == "" {
			return p.errf(`differs: want the reason as a quoted string (differs "Go's ... because ...")`)
		}
		p.sc.Differs = t[1].s
	case "timeout":
		a, err := arg()
		if err != nil {
			return err
		}
		d, err := parseDur(a)
		if err != nil || d <= 0 {
			return p.errf("timeout: want a positive duration, not %q", a)
		}
		p.sc.Timeout = d
	case "co":
		if len(t) < 2 || !isIdent(t[1].s) || t[1].s == "self" {
			return p.errf("co: want a coroutine name (letters, digits, _ . -; not self)")
		}
		name := t[1].s
		if _, dup := p.cos[name]; dup {
			return p.errf("coroutine %s declared twice", name)
		}
		co := &Coroutine{Name: name, Line: p.num}
		for _, a := range t[2:] {
			switch {
			case a.s == "manual":
				co.Manual = true
			case strings.HasPrefix(a.s, "loop="):
				n, err := strconv.Atoi(strings.TrimPrefix(a.s, "loop="))
				if err != nil || n < 0 {
					return p.errf("co %s: bad %s", name, a.s)
				}
				co.Loop = n
			default:
				return p.errf("co %s: unknown setting %q (loop=N, manual)", name, a.s)
			}
		}
		p.cos[name] = len(p.sc.Cos)
		p.sc.Cos = append(p.sc.Cos, co)
	}
	for _, co := range p.sc.Cos {
		if co.Loop >= p.sc.Loops && t[0].s != "co" {
			// a later `loops` that shrinks below a declared loop
			p.num = co.Line
			return p.errf("co %s: loop=%d, but the scenario has %d loops", co.Name, co.Loop, p.sc.Loops)
		}
	}
	if t[0].s == "co" {
		if co := p.sc.Cos[len(p.sc.Cos)-1]; co.Loop >= p.sc.Loops {
			return p.errf("co %s: loop=%d, but the scenario has %d loops (say `loops N` first)", co.Name, co.Loop, p.sc.Loops)
		}
	}
	return nil
}

// sigItem is one item of a signature.
type sigItem struct {
	kind     string
	key      string // options
	optional bool
}

func parseSig(sig string) []sigItem {
	var out []sigItem
	for _, f := range strings.Fields(sig) {
		it := sigItem{}
		if k, v, ok := strings.Cut(f, "="); ok {
			it.key, f = k, v
		}
		if strings.HasSuffix(f, "?") {
			it.optional, f = true, strings.TrimSuffix(f, "?")
		}
		it.kind = f
		out = append(out, it)
	}
	return out
}

func (p *parser) step(t []token) error {
	p.steps = true
	co := -1
	if !t[0].quoted && strings.HasSuffix(t[0].s, ":") {
		name := strings.TrimSuffix(t[0].s, ":")
		i, ok := p.cos[name]
		if !ok {
			return p.errf("no coroutine %s (declare it: co %s)", name, name)
		}
		co, t = i, t[1:]
		if len(t) == 0 {
			return p.errf("no step after %s:", name)
		}
	}
	if co < 0 {
		switch len(p.sc.Cos) {
		case 0:
			p.cos["main"] = 0
			p.sc.Cos = append(p.sc.Cos, &Coroutine{Name: "main"})
			co = 0
		case 1:
			co = 0
		default:
			return p.errf("which coroutine? prefix the step with its name (%s: %s)", p.sc.Cos[0].Name, t[0].s)
		}
	}
	// split off the expectation
	var exp []token
	for i, tk := range t {
		if !tk.quoted && tk.s == "=>" {
			t, exp = t[:i], t[i+1:]
			if len(exp) == 0 {
				return p.errf("nothing after =>")
			}
			break
		}
	}
	if len(t) == 0 {
		return p.errf("no step before =>")
	}
	name := t[0].s
	if t[0].quoted || !isIdent(name) {
		return p.errf("bad step name %q", t[0].s)
	}
	sig, ok := p.sigs(name)
	if !ok {
		return p.errf("unknown step %q", name)
	}
	l := &Line{Num: p.num, Co: co, Step: name, Sig: sig}
	items := parseSig(sig)
	var pos []sigItem
	opts := map[string]sigItem{}
	for _, it := range items {
		if it.key != "" {
			opts[it.key] = it
		} else {
			pos = append(pos, it)
		}
	}
	text := []string{name}
	seen := map[string]bool{}
	for _, tk := range t[1:] {
		if !tk.quoted {
			if k, v, ok := strings.Cut(tk.s, "="); ok {
				if it, isOpt := opts[k]; isOpt {
					if seen[k] {
						return p.errf("%s: option %s given twice", name, k)
					}
					seen[k] = true
					val := v
					if strings.HasPrefix(v, "\"") {
						s, err := strconv.Unquote(v)
						if err != nil {
							return p.errf("%s: bad string in %s", name, tk.s)
						}
						val = s
					}
					a, err := p.arg(name, it.kind, val, k)
					if err != nil {
						return err
					}
					l.Opts = append(l.Opts, Opt{Key: k, Arg: a})
					text = append(text, tk.s)
					continue
				}
			}
		}
		if len(l.Args) >= len(pos) {
			return p.errf("%s: too many arguments (signature: %s %s)", name, name, sig)
		}
		a, err := p.arg(name, pos[len(l.Args)].kind, tk.s, "")
		if err != nil {
			return err
		}
		l.Args = append(l.Args, a)
		if tk.quoted {
			text = append(text, Quote([]byte(tk.s)))
		} else {
			text = append(text, tk.s)
		}
	}
	for i := len(l.Args); i < len(pos); i++ {
		if !pos[i].optional {
			return p.errf("%s: missing argument %d (%s; signature: %s %s)", name, i+1, pos[i].kind, name, sig)
		}
	}
	l.Text = strings.Join(text, " ")
	if err := p.expect(l, exp); err != nil {
		return err
	}
	p.sc.Lines = append(p.sc.Lines, l)
	return nil
}

// arg checks value against kind and resolves names.
func (p *parser) arg(step, kind, value, key string) (Arg, error) {
	what := step
	if key != "" {
		what += " " + key + "="
	}
	a := Arg{Kind: kind, Value: value, Ref: -1}
	switch kind {
	case "int":
		if _, err := strconv.ParseInt(value, 10, 64); err != nil {
			return a, p.errf("%s: want an integer, not %q", what, value)
		}
	case "dur":
		d, err := parseDur(value)
		if err != nil || d < 0 {
			return a, p.errf("%s: want a duration (20ms, 1.5s, 250us, 0), not %q", what, value)
		}
		a.Value = strconv.FormatInt(d.Microseconds(), 10)
	case "text":
		if strings.IndexByte(value, 0) >= 0 {
			return a, p.errf("%s: text may not contain NUL", what)
		}
	case "obj", "new":
		if !isIdent(value) {
			return a, p.errf("%s: bad object name %q", what, value)
		}
		slot, ok := p.objs[value]
		if !ok {
			slot = len(p.sc.Objects)
			p.objs[value] = slot
			p.sc.Objects = append(p.sc.Objects, value)
			p.where[value] = p.num
		}
		if kind == "new" {
			p.made[value] = true
		}
		a.Ref = slot
	case "co":
		if value != "self" {
			i, ok := p.cos[value]
			if !ok {
				return a, p.errf("%s: no coroutine %s", what, value)
			}
			a.Ref = i
		}
	default: // a|b|c
		if !slices.Contains(strings.Split(kind, "|"), value) {
			return a, p.errf("%s: want one of %s, not %q", what, kind, value)
		}
	}
	return a, nil
}

func (p *parser) expect(l *Line, exp []token) error {
	if len(exp) == 0 {
		l.Expect = "ok"
		return nil
	}
	var res []string
	for i := 0; i < len(exp); i++ {
		tk := exp[i]
		if !tk.quoted && (tk.s == "within" || tk.s == "at") {
			if i+1 >= len(exp) {
				return p.errf("%s: want a range (20..60ms)", tk.s)
			}
			r, err := parseRange(exp[i+1].s)
			if err != nil {
				return p.errf("%s %s: %v", tk.s, exp[i+1].s, err)
			}
			if tk.s == "within" {
				l.Within = r
			} else {
				l.At = r
			}
			i++
			continue
		}
		if l.Within != nil || l.At != nil {
			return p.errf("the result comes before within/at")
		}
		if tk.quoted {
			res = append(res, Quote([]byte(tk.s)))
		} else {
			res = append(res, normalizeToken(tk.s))
		}
	}
	if len(res) == 0 {
		res = []string{"ok"}
	}
	l.Expect = strings.Join(res, " ")
	return nil
}

// errno names that are other names for one value: the trace uses the
// first of each (ETIME is ETIMEDOUT in this library's C headers)
var errnoAliases = map[string]string{
	"ETIME":       "ETIMEDOUT",
	"EWOULDBLOCK": "EAGAIN",
	"EDEADLOCK":   "EDEADLK",
	"ENOTSUP":     "EOPNOTSUPP",
}

// normalizeToken writes a result token as the drivers do: errno aliases
// by their trace name, key="..." values quoted the canonical way.
func normalizeToken(s string) string {
	if a, ok := errnoAliases[s]; ok {
		return a
	}
	if k, v, ok := strings.Cut(s, "="); ok && strings.HasPrefix(v, "\"") {
		if u, err := strconv.Unquote(v); err == nil {
			return k + "=" + Quote([]byte(u))
		}
	}
	return s
}

// parseDur reads 20ms, 1.5s, 250us, 0.
func parseDur(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	return time.ParseDuration(s)
}

// parseRange reads 20..60ms (the unit of the upper end applies to a bare
// lower end) or 20ms..1s.
func parseRange(s string) (*Range, error) {
	lo, hi, ok := strings.Cut(s, "..")
	if !ok {
		return nil, fmt.Errorf("want MIN..MAX, as in 20..60ms")
	}
	if _, err := strconv.ParseFloat(lo, 64); err == nil && lo != "0" {
		i := strings.IndexFunc(hi, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '.') })
		if i > 0 {
			lo += hi[i:]
		}
	}
	a, err := parseDur(lo)
	if err != nil {
		return nil, err
	}
	b, err := parseDur(hi)
	if err != nil {
		return nil, err
	}
	if a < 0 || b < a {
		return nil, fmt.Errorf("empty range")
	}
	return &Range{a, b}, nil
}

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	case d%time.Millisecond == 0:
		return fmt.Sprintf("%dms", d/time.Millisecond)
	}
	return d.String()
}

// Quote writes bytes as the scenario language and both drivers do: bare
// when they are printable ASCII with no space, quote or backslash; else a
// quoted string with \n \r \t \\ \" and \xNN for other bytes.  (C:
// eventer_conformance_quote.)
func Quote(p []byte) string {
	bare := len(p) > 0
	for _, c := range p {
		if c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			bare = false
			break
		}
	}
	if bare {
		return string(p)
	}
	const hex = "0123456789abcdef"
	b := make([]byte, 0, len(p)+2)
	b = append(b, '"')
	for _, c := range p {
		switch c {
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		case '\\':
			b = append(b, '\\', '\\')
		case '"':
			b = append(b, '\\', '"')
		default:
			if c < 0x20 || c >= 0x7f {
				b = append(b, '\\', 'x', hex[c>>4], hex[c&15])
			} else {
				b = append(b, c)
			}
		}
	}
	return string(append(b, '"'))
}
