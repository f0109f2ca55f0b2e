package conformance

import (
	"fmt"
	"go/ast"
	goparser "go/parser"
	gotoken "go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// The coverage check: every public eventer_*aco* call of the C headers
// and every method of the Go aco API is used by at least one scenario in
// testdata/conformance (in a language that runs it), or is listed here as
// not applicable with the reason.  The tables below say how each one is
// reached; the test checks each claim against the scenarios and the step
// sources, and fails on a public name the tables do not know (a new
// call needs a scenario) and on a table entry that names no public call.
//
// A use is one of:
//
//	"STEP [+opt] [-opt]"  a scenario the C run runs has a STEP line with
//	                      option opt (+) or without it (-); the C step
//	                      sources call the name
//	"go: STEP ..."        the same for a scenario the Go run runs; the Go
//	                      binding (cgo/) calls the name
//	"driver: why"         the C driver calls it in every C run
//	"n/a: why"            not applicable
var cCoverage = map[string]string{
	// coroutines
	"eventer_aco_start":       "driver: starts every coroutine that is not `manual` (each scenario's first steps run in it)",
	"eventer_aco_start_stack": "start +stack",
	"eventer_aco_spawn":       "start -stack",
	"eventer_aco_self":        "arg",
	"eventer_aco_arg":         "arg",
	"eventer_in_aco":          "arg",
	"eventer_aco_co_ref":      "driver: each coroutine takes a reference on its own handle (the steps that name a coroutine use it)",
	"eventer_aco_co_release":  "driver: releases the handles when the run ends",
	"eventer_aco_co_done":     "done",
	"eventer_aco_join":        "join",
	"eventer_aco_cancel":      "cancel",
	"eventer_aco_park":        "park",
	"eventer_aco_wake":        "wake",
	"eventer_aco_sleep":       "sleep",
	"eventer_aco_yield":       "yield",
	"eventer_aco_get_stats":   "stats",
	// aco events
	"eventer_set_eventer_aco":        "aco",
	"eventer_set_eventer_aco_co":     "aco_classic",
	"eventer_is_aco":                 "is_aco",
	"eventer_aco_free":               "driver: drops the run's reference on every aco event object when the run ends",
	"eventer_aco_accept":             "accept",
	"eventer_aco_connect":            "connect",
	"eventer_aco_read":               "read",
	"eventer_aco_write":              "write",
	"eventer_aco_wait_ready":         "wait",
	"eventer_aco_close":              "close",
	"eventer_aco_set_accept_timeout": "accept_deadline",
	"eventer_aco_set_read_timeout":   "conn_read",
	"eventer_aco_set_write_timeout":  "conn_write",
	"eventer_aco_get_closure":        "closure",
	"eventer_aco_set_closure":        "closure",
	"eventer_aco_ssl_accept":         "tls +server",
	"eventer_aco_ssl_connect":        "tls +client",
	// asynch work: each form by the options that pick it
	"eventer_aco_simple_asynch":                        "asynch -queue -subqueue",
	"eventer_aco_simple_asynch_queue":                  "asynch +queue -subqueue",
	"eventer_aco_simple_asynch_queue_subqueue":         "asynch +subqueue",
	"eventer_aco_simple_asynch_gated":                  "asynch_gated -queue -subqueue",
	"eventer_aco_simple_asynch_queue_gated":            "asynch_gated +queue -subqueue",
	"eventer_aco_simple_asynch_queue_subqueue_gated":   "asynch_gated +subqueue",
	"eventer_aco_asynch":                               "asynch_deadline -queue -subqueue -deadline -gate",
	"eventer_aco_asynch_queue":                         "asynch_deadline +queue -subqueue -deadline -gate",
	"eventer_aco_asynch_queue_subqueue":                "asynch_deadline +subqueue -deadline -gate",
	"eventer_aco_asynch_queue_subqueue_deadline":       "asynch_deadline +deadline -gate",
	"eventer_aco_asynch_gated":                         "asynch_deadline -queue -subqueue -deadline +gate",
	"eventer_aco_asynch_queue_gated":                   "asynch_deadline +queue -subqueue -deadline +gate",
	"eventer_aco_asynch_queue_subqueue_gated":          "asynch_deadline +subqueue -deadline +gate",
	"eventer_aco_asynch_queue_subqueue_deadline_gated": "asynch_deadline +deadline +gate",
	"eventer_aco_run_asynch":                           "run_asynch -queue -subqueue",
	"eventer_aco_run_asynch_queue":                     "run_asynch +queue -subqueue",
	"eventer_aco_run_asynch_queue_subqueue":            "run_asynch +subqueue",
	"eventer_aco_run_asynch_gated":                     "run_asynch_gated -queue -subqueue",
	"eventer_aco_run_asynch_queue_gated":               "run_asynch_gated +queue -subqueue",
	"eventer_aco_run_asynch_queue_subqueue_gated":      "run_asynch_gated +subqueue",
	"eventer_aco_try_run_asynch":                       "try_run_asynch -queue -subqueue -gate",
	"eventer_aco_try_run_asynch_queue":                 "try_run_asynch +queue -subqueue -gate",
	"eventer_aco_try_run_asynch_queue_subqueue":        "try_run_asynch +subqueue -gate",
	"eventer_aco_try_run_asynch_gated":                 "try_run_asynch -queue -subqueue +gate",
	"eventer_aco_try_run_asynch_queue_gated":           "try_run_asynch +queue -subqueue +gate",
	"eventer_aco_try_run_asynch_queue_subqueue_gated":  "try_run_asynch +subqueue +gate",
	"eventer_aco_gate":                                 "gate",
	"eventer_aco_gate_wait":                            "gate_wait",
	// sync objects
	"eventer_aco_sem_new":        "sem",
	"eventer_aco_sem_wait":       "sem_wait",
	"eventer_aco_sem_trywait":    "sem_trywait",
	"eventer_aco_sem_post":       "sem_post",
	"eventer_aco_sem_value":      "sem_value",
	"eventer_aco_sem_free":       "sem_free",
	"eventer_aco_mutex_new":      "mutex",
	"eventer_aco_mutex_lock":     "lock",
	"eventer_aco_mutex_trylock":  "trylock",
	"eventer_aco_mutex_unlock":   "unlock",
	"eventer_aco_mutex_locked":   "locked",
	"eventer_aco_mutex_free":     "mutex_free",
	"eventer_aco_wg_new":         "wg",
	"eventer_aco_wg_add":         "wg_add",
	"eventer_aco_wg_done":        "wg_done",
	"eventer_aco_wg_wait":        "wg_wait",
	"eventer_aco_wg_count":       "wg_count",
	"eventer_aco_wg_free":        "wg_free",
	"eventer_aco_chan_new":       "chan",
	"eventer_aco_chan_send":      "send",
	"eventer_aco_chan_recv":      "recv",
	"eventer_aco_chan_trysend":   "trysend",
	"eventer_aco_chan_tryrecv":   "tryrecv",
	"eventer_aco_chan_close":     "chan_close",
	"eventer_aco_chan_closed":    "chan_closed",
	"eventer_aco_chan_len":       "chan_len",
	"eventer_aco_chan_cap":       "chan_cap",
	"eventer_aco_chan_elem_size": "send",
	"eventer_aco_chan_free":      "chan_free",
	// the proxies: the C side of foreign (Go) coroutines, which the Go run
	// of these steps goes through
	"eventer_aco_proxy_new":    "go: sleep",
	"eventer_aco_proxy_free":   "go: sleep",
	"eventer_aco_proxy_result": "go: read",
	"eventer_aco_proxy_wait":   "go: read",
	"eventer_aco_proxy_sleep":  "go: sleep",
	"eventer_aco_proxy_yield":  "go: yield",
	"eventer_aco_proxy_park":   "go: park",
	"eventer_aco_proxy_wake":   "go: wake",
	"eventer_aco_proxy_cancel": "go: cancel",
	"eventer_aco_proxy_sync":   "go: sem_wait",
	"eventer_aco_proxy_asynch": "go: asynch",
	"eventer_aco_proxy_abort":  "n/a: ends a proxy's wait when its Go coroutine is unwound (a listener's connection outliving its grace, or Shutdown), which ends the scenario's run",
	"eventer_aco_proxy_busy":   "n/a: a check the Go binding makes before it reuses a proxy; no call of the API blocks on it",
	// opsets
	"eventer_aco_opset_set_unbuffered": "n/a: a declaration about a custom opset, made once before its events are converted; it changes which syscalls a read makes (a read after a write waits first), never a result, so no scenario can see it (test_eventer_aco_fd counts the reads)",
}

// goCoverage: every exported method of the Go aco API's types, and every
// exported function whose signature mentions them, as cCoverage (every
// use is a Go one: "STEP ..." is a scenario the Go run runs).
var goCoverage = map[string]string{
	"AcoStart":                  "n/a: starts on a loop chosen round-robin; a scenario places each coroutine on its loop (AcoStartOn, Co.Start)",
	"AcoStartOn":                "driver: starts each loop's coroutines that are not `manual`, and `start` of one on another loop",
	"Co.Start":                  "driver: starts each coroutine that is not `manual`, and `start` of one on the same loop",
	"Co.Arg":                    "arg",
	"Co.Done":                   "done",
	"Co.Sleep":                  "sleep",
	"Co.Yield":                  "yield",
	"Co.Park":                   "park",
	"Co.Wake":                   "wake",
	"Co.Cancel":                 "cancel",
	"Co.CancelOn":               "n/a: a context's cancellation as a Cancel; C has no contexts (Co.Cancel is checked)",
	"Co.Join":                   "join",
	"Co.SimpleAsynch":           "asynch -queue -subqueue",
	"Co.RunAsynch":              "run_asynch",
	"Co.SetEventerAco":          "aco",
	"Co.Connect":                "connect",
	"AcoEvent.Fd":               "n/a: an accessor (sys_* steps use the fd)",
	"AcoEvent.Read":             "read",
	"AcoEvent.Write":            "write",
	"AcoEvent.Wait":             "wait",
	"AcoEvent.Accept":           "accept",
	"AcoEvent.Close":            "close",
	"AcoEvent.Conn":             "conn_read",
	"AcoEvent.Acceptor":         "n/a: a listener connection's peer address and configuration, not a call of the C aco API",
	"Acceptor.RemoteAddr":       "n/a: an accessor",
	"Acceptor.Config":           "n/a: an accessor",
	"NewSem":                    "sem",
	"Sem.Wait":                  "sem_wait",
	"Sem.TryWait":               "sem_trywait",
	"Sem.Post":                  "sem_post",
	"Sem.Value":                 "sem_value",
	"Sem.Close":                 "sem_free",
	"NewMutex":                  "mutex",
	"Mutex.Lock":                "lock",
	"Mutex.TryLock":             "trylock",
	"Mutex.Unlock":              "unlock",
	"Mutex.Locked":              "locked",
	"Mutex.Close":               "mutex_free",
	"NewWaitGroup":              "wg",
	"WaitGroup.Add":             "wg_add",
	"WaitGroup.Done":            "wg_done",
	"WaitGroup.Wait":            "wg_wait",
	"WaitGroup.Count":           "wg_count",
	"WaitGroup.Close":           "wg_free",
	"NewChan":                   "chan",
	"Chan.Send":                 "send",
	"Chan.Recv":                 "recv",
	"Chan.TrySend":              "trysend",
	"Chan.TryRecv":              "tryrecv",
	"Chan.CloseSend":            "chan_close",
	"Chan.Len":                  "chan_len",
	"Chan.Cap":                  "chan_cap",
	"Chan.Close":                "chan_free",
	"NewJobQueue":               "jobq",
	"JobQueue.Subqueue":         "asynch +subqueue",
	"JobQueue.Concurrency":      "n/a: an accessor",
	"JobQueue.Backlog":          "n/a: an accessor",
	"JobQueue.Close":            "jobq",
	"RegisterAcoFunction":       "n/a: names a Go aco function for a listener configuration (ListenAco is checked)",
	"ListenAco":                 "listener",
	"Listener.Addr":             "listener",
	"Listener.Type":             "n/a: an accessor",
	"Listener.Stats":            "listener_stats",
	"Listener.Close":            "listener_stop",
	"Listeners":                 "n/a: lists the running listeners; a scenario's listeners are its own objects",
	"CoFromRequest":             "n/a: the coroutine of an aco HTTP rule's request (the REST engine's tests check it), not a call of the C aco API",
	"Acceptor.RemoteCN":         "n/a: an accessor (the TLS peer's CN; tls_test.go checks it)",
	"AcoEvent.TLSState":         "n/a: an accessor of the C TLS layer's state (tls_test.go checks it against crypto/tls and openssl)",
	"AcoEvent.PeerCertificates": "n/a: an accessor (TLSState's chain)",
	// the REST steps' Go handlers (the rest scenarios)
	"NewRule":                  "go: rest_rule",
	"HandleHTTP":               "n/a: NewRule's routing for a net/http handler (rest_test.go checks it); the steps mount RestHandlers, the C handlers' form",
	"Rule.SetAco":              "go: rest_rule +aco",
	"Rule.Close":               "n/a: takes a rule out of service; a scenario's rules live as long as the process, as C's do (rest_test.go checks Close)",
	"Rule.String":              "n/a: an accessor",
	"RestClosure.Co":           "go: rest_rule +aco",
	"RestClosure.Pats":         "go: rest_rule",
	"RestClosure.Context":      "n/a: cancelled when the client goes away (rest_test.go checks it); C has no contexts",
	"RestClosure.Request":      "go: rest_rule",
	"RestClosure.Response":     "go: rest_rule",
	"RestResponse.Ok":          "go: rest_rule",
	"RestResponse.Status":      "go: rest_rule",
	"RestResponse.Header":      "go: rest_rule",
	"RestResponse.Write":       "go: rest_rule",
	"RestResponse.WriteString": "go: rest_rule",
	"RestResponse.End":         "go: rest_rule",
	"RestResponse.Compress":    "n/a: gzip/deflate on request; the http step's client sends no Accept-Encoding",
	"RestResponse.Flush":       "n/a: streaming (chunked) responses; the handlers end unflushed, as C's, so both send a length",
}

// goAPITypes are the types whose methods goCoverage must list.
var goAPITypes = []string{"Co", "AcoEvent", "Acceptor", "Sem", "Mutex", "WaitGroup", "Chan", "JobQueue", "Listener",
	"Rule", "RestClosure", "RestResponse"}

// publicHeaders reads the installed headers' list from the areas'
// build.mk files (the *_HEADERS variables).
func publicHeaders(t *testing.T) []string {
	mks, _ := filepath.Glob("../csrc/*/build.mk")
	var out []string
	for _, mk := range mks {
		b, err := os.ReadFile(mk)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), "\\\n", " ")
		for _, ln := range strings.Split(text, "\n") {
			name, val, ok := strings.Cut(ln, ":=")
			if !ok || !strings.HasSuffix(strings.TrimSpace(name), "_HEADERS") {
				continue
			}
			for _, f := range strings.Fields(val) {
				out = append(out, "../"+f)
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no public headers found in csrc/*/build.mk")
	}
	return out
}

var cComment = regexp.MustCompile(`(?s)/\*.*?\*/|//[^\n]*`)

// publicCNames: the eventer_*aco* functions and function-like macros the
// public headers declare.
func publicCNames(t *testing.T) []string {
	re := regexp.MustCompile(`\b(eventer_[a-z0-9_]*aco[a-z0-9_]*)\s*\(`)
	kit := "eventer_conformance_" // the kit's own calls
	seen := map[string]bool{}
	for _, h := range publicHeaders(t) {
		b, err := os.ReadFile(h)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(cComment.ReplaceAllString(string(b), " "), -1) {
			if !strings.HasPrefix(m[1], kit) {
				seen[m[1]] = true
			}
		}
	}
	return slices.Sorted(func(yield func(string) bool) {
		for k := range seen {
			if !yield(k) {
				return
			}
		}
	})
}

// goAPINames: Type.Method for the exported methods of goAPITypes, and the
// exported functions whose signature names one of them.
func goAPINames(t *testing.T) []string {
	fset := gotoken.NewFileSet()
	files, _ := filepath.Glob("../*.go")
	isAPI := func(e ast.Expr) bool {
		found := false
		ast.Inspect(e, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok && slices.Contains(goAPITypes, id.Name) {
				found = true
			}
			return !found
		})
		return found
	}
	var out []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := goparser.ParseFile(fset, f, nil, goparser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || !fd.Name.IsExported() {
				continue
			}
			if fd.Recv == nil {
				if isAPI(fd.Type) {
					out = append(out, fd.Name.Name)
				}
				continue
			}
			rt := fd.Recv.List[0].Type
			if s, ok := rt.(*ast.StarExpr); ok {
				rt = s.X
			}
			if id, ok := rt.(*ast.Ident); ok && slices.Contains(goAPITypes, id.Name) {
				out = append(out, id.Name+"."+fd.Name.Name)
			}
		}
	}
	sort.Strings(out)
	return out
}

// use is a parsed coverage entry.
type use struct {
	lang          Lang // the run that must use the step
	step          string
	with, without []string
	note          string // driver: / n/a: reason
	kind          string // "step", "driver", "n/a"
}

func parseUse(s string, lang Lang) use {
	for _, k := range []string{"driver", "n/a"} {
		if r, ok := strings.CutPrefix(s, k+": "); ok {
			return use{kind: k, note: r}
		}
	}
	if r, ok := strings.CutPrefix(s, "go: "); ok {
		s, lang = r, LangGo
	}
	f := strings.Fields(s)
	u := use{kind: "step", lang: lang, step: f[0]}
	for _, o := range f[1:] {
		if k, ok := strings.CutPrefix(o, "+"); ok {
			u.with = append(u.with, k)
		} else {
			u.without = append(u.without, strings.TrimPrefix(o, "-"))
		}
	}
	return u
}

func runsIn(sc *Scenario, l Lang) bool {
	return sc.Lang == "both" || sc.Lang == string(l)
}

// find is the first scenario line the use matches ("" if none).
func (u use) find(scs []*Scenario) string {
	for _, sc := range scs {
		if !runsIn(sc, u.lang) {
			continue
		}
	lines:
		for _, l := range sc.Lines {
			if l.Step != u.step {
				continue
			}
			has := func(k string) bool {
				return slices.ContainsFunc(l.Opts, func(o Opt) bool { return o.Key == k }) ||
					slices.ContainsFunc(l.Args, func(a Arg) bool { return a.Value == k && strings.Contains(a.Kind, "|") })
			}
			for _, k := range u.with {
				if !has(k) {
					continue lines
				}
			}
			for _, k := range u.without {
				if has(k) {
					continue lines
				}
			}
			return fmt.Sprintf("%s:%d", filepath.Base(sc.File), l.Num)
		}
	}
	return ""
}

func readAll(t *testing.T, globs ...string) string {
	var sb strings.Builder
	for _, g := range globs {
		fs, _ := filepath.Glob(g)
		for _, f := range fs {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			sb.WriteString(cComment.ReplaceAllString(string(b), " ") + "\n")
		}
	}
	return sb.String()
}

// coverageScenarios loads every scenario of the repository this build can
// parse (the REST ones need the HTTP engine).
func coverageScenarios(t *testing.T) []*Scenario {
	scs, err := Config{}.Load("../testdata/conformance/*.scn")
	if err != nil {
		t.Fatal(err)
	}
	if rest, err := (Config{}).Load("../testdata/conformance/rest/*.scn"); err == nil {
		scs = append(scs, rest...)
	}
	return scs
}

func wordIn(src, name string) bool {
	return regexp.MustCompile(`\b` + regexp.QuoteMeta(name) + `\b`).MatchString(src)
}

func TestCoverage(t *testing.T) {
	scs := coverageScenarios(t)
	cSteps := readAll(t, "../csrc/conformance/eventer_conformance_*.c")
	cDriver := readAll(t, "../csrc/conformance/eventer_conformance.c")
	binding := readAll(t, "../cgo/*.c", "../cgo/*.h", "../cgo/*.go")
	goSteps := readAll(t, "steps.go", "http.go", "tls.go", "listener.go")
	goDriver := readAll(t, "gorun.go")

	check := func(what string, names []string, table map[string]string, lang Lang, src func(u use, name string) bool) {
		var lines []string
		covered, na := 0, 0
		for _, name := range names {
			entry, ok := table[name]
			if !ok {
				t.Errorf("%s %s: no scenario uses it (add one, or a coverage entry saying why it does not apply)", what, name)
				continue
			}
			u := parseUse(entry, lang)
			switch u.kind {
			case "n/a":
				na++
				lines = append(lines, fmt.Sprintf("  %-50s n/a: %s", name, u.note))
				continue
			case "driver":
				if lang == LangC && !wordIn(cDriver, name) || lang == LangGo && !strings.Contains(goDriver, name+"(") {
					t.Errorf("%s %s: the %s driver does not call it", what, name, lang)
				}
				covered++
				lines = append(lines, fmt.Sprintf("  %-50s every %s run (driver)", name, lang))
				continue
			}
			if !src(u, name) {
				t.Errorf("%s %s: %q claims it, but the step's source does not call it", what, name, entry)
			}
			at := u.find(scs)
			if at == "" {
				t.Errorf("%s %s: no scenario the %s run runs has a line %q", what, name, u.lang, entry)
				continue
			}
			covered++
			lines = append(lines, fmt.Sprintf("  %-50s %-45s %s", name, strings.TrimPrefix(entry, "go: "), at))
		}
		for name := range table {
			if !slices.Contains(names, name) {
				t.Errorf("%s coverage lists %s, which is not public", what, name)
			}
		}
		t.Logf("%s: %d public, %d used by scenarios, %d not applicable\n%s", what, len(names), covered, na, strings.Join(lines, "\n"))
	}

	check("C", publicCNames(t), cCoverage, LangC, func(u use, name string) bool {
		if u.lang == LangGo {
			return wordIn(binding, name)
		}
		return wordIn(cSteps, name) || wordIn(cDriver, name)
	})
	check("Go", goAPINames(t), goCoverage, LangGo, func(u use, name string) bool {
		m := name + "("
		if _, after, ok := strings.Cut(name, "."); ok {
			m = "." + after + "("
		}
		return strings.Contains(goSteps, m)
	})
	t.Logf("%d scenarios", len(scs))
}
