package eventer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/acoeventer/eventer/cgo"
)

// This file is the Go side of the HTTP engine's REST routing (C's
// mtev_rest.h): Go handlers are rules in the same routing table as C rules,
// served by the same C engine.  A goroutine (by default) or a Go coroutine
// on the loop (SetAco) runs the handler; the request reaches it by one of
// two paths (restglue.h):
//
//   - direct: a request without a body (on a plain or a TLS connection:
//     what TLS negotiated travels in the head) is handed to
//     the loop's Go driver as a step; the handler builds the whole
//     response in Go, and it goes to C in one call on the loop thread at
//     End.  No C coroutine, no call from C into Go.
//   - relay: a request with a body (or of a rule whose
//     handler streams: the first Flush moves a rule to the relay for good)
//     runs a small C relay in a coroutine of its own: the relay hands the
//     request to Go, and what waits on the connection (reading the body,
//     Flush, End) the handler asks of the relay, which does it where the
//     engine's calls may wait without blocking the loop, then reports back.
//
// So a Go handler that blocks in any way (database/sql, channels, mutexes)
// never stalls a loop; on an aco rule it runs on the loop and must block
// only through its Co.

// RestInit names the HTTP engine's listener types "http_rest_api" and
// "control_dispatch" (mtev_http_rest_init) and reads the <rest><acl> of
// the loaded configuration; the error says what is wrong with that ACL
// (the previous one stays in effect).  Call it before starting listeners
// of those types.  Idempotent.
func RestInit() error {
	setupRest()
	if err := cgo.RestInitACL(); err != nil {
		return &OpError{Op: "RestInit", Err: err}
	}
	return nil
}

// RestHandler serves a request of a NewRule rule.  Returning ends the
// response if the handler did not.  A handler that fails -- returns a
// non-nil error, panics, or calls runtime.Goexit -- is logged; before
// anything was sent its response becomes a 500 (Connection: close), after
// a Flush (the head and some of the body are out) the connection is
// broken off without completing the response (no final chunk), as
// net/http does, so the client sees an incomplete body instead of a
// whole one.
type RestHandler func(rc *RestClosure) error

// Rule is a REST route (mtev_rest_mountpoint_t) served by a Go handler.
type Rule struct {
	id         uint64
	mp         unsafe.Pointer
	crule      uintptr     // C's record of the rule (ev_go_rest_rule)
	relay      atomic.Bool // every request takes the relay (its handler streams)
	method     string
	base, expr string
	aco        atomic.Bool
	closed     atomic.Bool
	rest       RestHandler
	http       http.Handler
}

var restRules struct {
	mu   sync.RWMutex
	byID map[uint64]*Rule
	next uint64
	// the rules by id, copied on each change (read per request without a
	// lock)
	live atomic.Pointer[[]*Rule]
}

// restRuleByID is the live rule with id, or nil.
func restRuleByID(id uint64) *Rule {
	if t := restRules.live.Load(); t != nil && id < uint64(len(*t)) {
		return (*t)[id]
	}
	return nil
}

// restRulesPublish copies the table for restRuleByID (under mu).
func restRulesPublish() {
	t := make([]*Rule, restRules.next+1)
	for id, r := range restRules.byID {
		t[id] = r
	}
	restRules.live.Store(&t)
}

var restSetup sync.Once

func setupRest() {
	restSetup.Do(func() {
		cgo.RestStart = restStart
		cgo.RestOpDone = restOpDone
		cgo.RestCancel = restCancel
		cgo.RestInit()
	})
}

// NewRule routes method requests whose path starts with base (which
// starts and ends with '/') and whose rest matches the PCRE2 expression
// expr to h (mtev_http_rest_new_rule).  The expression's captures are
// RestClosure.Pats.  By default h runs in a goroutine of its own, so it
// may block as it likes; see SetAco.  Rules are tried in the order they
// were made, C and Go alike (mtev_rest.h says how routing works).
func NewRule(method, base, expr string, h RestHandler) (*Rule, error) {
	if h == nil {
		return nil, &OpError{Op: "NewRule", Err: errors.New("nil handler")}
	}
	return newRule("NewRule", method, base, expr, h, nil)
}

// HandleHTTP serves the requests NewRule would route to h, a net/http
// handler (a router, middleware, anything), on the C engine.  h gets an
// http.ResponseWriter that is also an http.Flusher, the request body, and
// r.Context(), which is cancelled when the client goes away.  By default h
// runs in a goroutine of its own; on an aco rule (SetAco) it runs as a Go
// coroutine on the loop (CoFromRequest).
//
// A handler sees its client leave (r.Context() is cancelled) at once on a
// request with a body, within about 200 ms on one without.
//
// Differences from net/http's server: Content-Length and
// Transfer-Encoding are the engine's (it sends a length when the handler
// ends without flushing, else chunks); Hijack is not supported.  A
// Content-Length the handler declares bounds its body as in net/http:
// bytes past it are not sent (Write returns http.ErrContentLength), and a
// handler that returns having written fewer has its response broken off
// after them, so the client sees the body is incomplete.  As
// net/http says, the ResponseWriter is not to be used once ServeHTTP
// returned: here its header map is then reused (Header returns nil).  A
// panic (or runtime.Goexit) is logged; before anything was sent the
// client gets a 500, after a Flush the connection is broken off without
// completing the response, as net/http does.
func HandleHTTP(method, base, expr string, h http.Handler) (*Rule, error) {
	if h == nil {
		return nil, &OpError{Op: "HandleHTTP", Err: errors.New("nil handler")}
	}
	return newRule("HandleHTTP", method, base, expr, nil, h)
}

func newRule(op, method, base, expr string, rh RestHandler, hh http.Handler) (*Rule, error) {
	// (C would take "^e\x00$" as "^e": every path starting with e)
	for _, err := range []error{nulErr("method", method), nulErr("base", base), nulErr("expression", expr)} {
		if err != nil {
			return nil, &OpError{Op: op, Err: err}
		}
	}
	setupRest()
	restRules.mu.Lock()
	defer restRules.mu.Unlock()
	restRules.next++
	r := &Rule{id: restRules.next, method: method, base: base, expr: expr, rest: rh, http: hh}
	mp, crule, err := cgo.RestRule(method, base, expr, r.id)
	if err != nil {
		return nil, &OpError{Op: op, Err: fmt.Errorf("%s %s%s: %w", method, base, expr, err)}
	}
	r.mp, r.crule = mp, crule
	if restRules.byID == nil {
		restRules.byID = map[uint64]*Rule{}
	}
	restRules.byID[r.id] = r
	restRulesPublish()
	return r, nil
}

// SetAco chooses where the rule's handler runs, for requests routed from
// now on: on (mtev_rest_mountpoint_set_aco) in a Go coroutine on the loop
// serving the connection (RestClosure.Co, CoFromRequest), for handlers
// that block only through the Co (and the request and response calls);
// off (the default) in a goroutine of its own.
func (r *Rule) SetAco(on bool) {
	r.aco.Store(on)
	cgo.RestRuleAco(r.crule, on) // (its requests join a loop pass's batch)
}

// Close takes the rule out of service: its requests get 404 from now on
// (C rules cannot be removed from the routing table; the rule stays there
// and answers 404).  A second Close returns ErrClosed.
func (r *Rule) Close() error {
	if r == nil || r.closed.Swap(true) {
		return &OpError{Op: "Rule.Close", Err: ErrClosed}
	}
	cgo.RestRuleClose(r.mp)
	restRules.mu.Lock()
	delete(restRules.byID, r.id)
	restRulesPublish()
	restRules.mu.Unlock()
	return nil
}

// String is "METHOD base expr".
func (r *Rule) String() string { return r.method + " " + r.base + r.expr }

// ---- requests ------------------------------------------------------------------

// restReq is one request of a Go rule: Go's side of the C relay, or of a
// direct request's session.
type restReq struct {
	restReqState
	restReqOff
	info cgo.RestInfo // (a reused record's: set when read, inf)
	own  restView     // what the handler holds (a reused record's is v)
	// the first body bytes and the spec: no Go pointers in it (it goes to
	// C); the spare room of the request's copied head, or (a reused
	// record's) the record's own, made when first needed and kept from
	// request to request (C has copied what a request put there once its
	// response ended)
	small []byte
}

// restReqState is a request record's state that a reused record starts
// again from zero (restDirectReq): all of it but the head it reads when
// asked for, the view it never uses and restReqOff (zero in such a
// record: only relays' and goroutines' requests set it).
type restReqState struct {
	sess   uintptr     // direct: the session (a reference until the response ends)
	l      *loop       // direct: the loop
	pool   *restCoPool // direct: the loop's
	direct bool
	onLoop bool // the handler runs in a coroutine on the loop (aco)
	rule   *Rule
	loop   int
	epoch  uint64
	co     *Co // aco: the coroutine (set when it starts)
	// what the handler holds of the request: own, or (a record its loop
	// reuses: pooled) a view of its own per request
	v      *restView
	pooled bool
	gen    uint64 // pooled: times the record was reused (driver only)
	// pooled: info is not read from the flat head (v.head) yet (inf)
	unparsed bool

	// the handler's side (one goroutine or coroutine at a time)
	ended    bool   // End (or the final operation) went to C
	status   bool   // a status was set
	appended bool   // body bytes went to C
	wbuf     []byte // body bytes not yet handed to C
	bodyEOF  bool
	released bool

	// direct: the response head, kept in Go until it goes to C
	code    int
	reason  string
	hdrs    []string // name, value, ...
	opts    uint32
	headOut bool // the head went to C (a Flush)

	// what a request needs anyway, in one allocation with it
	hdrsIn [4]string
	// the loop's watch list (driver only)
	wprev, wnext   *restReq
	watched, wseen bool
}

// restReqOff is a request record's state that only a relay's request or
// a goroutine's sets: a reused record's (a direct request's of a NewRule
// aco rule) stays zero, so its reset (restDirectReq) skips it.
type restReqOff struct {
	r        uintptr         // relay: C ev_go_req_t (Go's reference)
	id       uint64          // relay
	stop     <-chan struct{} // relay: closed when the eventer is gone
	done     chan struct{}   // relay, a goroutine: the relay finished an operation
	sessGone bool            // the session was let go (a goroutine's request)
	goWork   *atomic.Int32   // counted as its loop's Go work (countGoWork)
	// a goroutine's end, for the loop to send (postEnd)
	endCode  int
	endOpts  uint32
	endSpec  []byte
	endBody  []byte
	endAbort bool // the end is an abort (the handler failed after a Flush)
}

const restSmall = 64 // body bytes, then spec bytes, in small

// restView is what a handler holds of its request: its closure, response
// and context.  A record its loop reuses (restCoPool.free: the direct
// requests of NewRule aco rules) gets a new view per request, so that a
// handler that keeps any of them after it returned sees its own request
// ended (the response refuses with ErrClosed, the context is done, Pats
// and Request read its own head), never the next request's state.
type restView struct {
	rc   RestClosure
	res  RestResponse
	ctx  reqCtx
	head []byte // pooled: the request's flat head (read again once stale)
}

func (q *restReq) smallBuf() []byte {
	if q.small == nil {
		q.small = make([]byte, 2*restSmall)
	}
	return q.small
}

// restWbufMax is how much body a relay handler writes before it goes to C
// (one cgo call for many small writes; a failure before that is a clean
// 500).  A direct handler keeps its body in Go until Flush or End.
const restWbufMax = 32 << 10

var restReqs struct {
	sync.Map // id -> *restReq (relay requests)
	next     atomic.Uint64
	live     atomic.Int64
}

// reqCtx is a request's context.Context: cancelled when the client goes
// away (relay) and when the handler returns.  Part of the request record,
// and its Done channel is made only when asked for.  Cancelling one whose
// Done was never asked for (nearly every request) takes no lock: Done
// records that it made a channel before it looks at canceled, cancel sets
// canceled before it looks at made (sequentially consistent atomics), so
// at least one of them sees the other and the channel is closed.
type reqCtx struct {
	canceled atomic.Bool
	made     atomic.Bool // Done was asked for
	mu       sync.Mutex  // done, closed
	done     chan struct{}
	closed   bool
	co       *Co // CoFromRequest's
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c *reqCtx) Deadline() (time.Time, bool) { return time.Time{}, false }

func (c *reqCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.made.Store(true)
		if c.canceled.Load() {
			c.done, c.closed = closedChan, true
		} else {
			c.done = make(chan struct{})
		}
	}
	return c.done
}

func (c *reqCtx) Err() error {
	if !c.canceled.Load() {
		return nil
	}
	if c.made.Load() {
		// a Done channel is there: Err is nil until the cancel has closed
		// it (context.Context's contract); no lock when Done was never
		// asked for (nearly every request)
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if !closed {
			return nil
		}
	}
	return context.Canceled
}

func (c *reqCtx) Value(key any) any {
	if _, ok := key.(coKey); ok && c.co != nil {
		return c.co
	}
	return nil
}

func (c *reqCtx) String() string { return "eventer.request" }

func (c *reqCtx) cancel() {
	if c.canceled.Swap(true) || !c.made.Load() {
		return
	}
	c.mu.Lock()
	if c.done != nil && !c.closed {
		close(c.done)
		c.closed = true
	}
	c.mu.Unlock()
}

// restStart: the relay of a request of rule ruleID (on its loop, inside
// run_once: nothing here may block or resume a coroutine).
func restStart(ruleID uint64, r uintptr, loop int) uint64 {
	rule := restRuleByID(ruleID)
	rt.mu.Lock()
	stop := rt.done
	rt.mu.Unlock()
	if rule == nil || stop == nil {
		return 0
	}
	q := &restReq{info: cgo.RestRequestInfo(r)}
	q.r, q.rule, q.loop, q.epoch, q.stop = r, rule, loop, sessionNow(), stop
	q.v = &q.own
	q.id = restReqs.next.Add(1)
	restReqs.Store(q.id, q)
	restReqs.live.Add(1)
	if rule.aco.Load() {
		q.onLoop = true
		if !restCoServe(loop, q) {
			q.forget()
			return 0
		}
	} else {
		q.done = make(chan struct{}, 1)
		if l := loopAt(loop); l != nil {
			q.countGoWork(l)
		}
		restGoServe(q)
	}
	return q.id
}

// RestDirect serves a request on the direct path (driver of loop l, between
// steps: a coroutine may be resumed here).
func (l *loop) RestDirect(d cgo.RestDirect) {
	q := l.restDirectReq(d, restRuleByID(d.Rule))
	if q == nil {
		return
	}
	if q.onLoop {
		gen := q.gen
		l.restCoDirect(q)
		if q.gen == gen && !q.ended && !q.watched {
			q.watchStart() // it waits
		}
		return
	}
	q.watchStart() // (its end, posted to this loop, comes after this)
	q.countGoWork(l)
	restGoServe(q)
}

// RestDirectBatch serves the direct requests of a loop pass (driver,
// between steps).  They join the requests that responses' ends handed
// over (restCoPool.next), first in the order they came: a worker
// coroutine serves one after another without a switch back to the driver
// while its handlers return without waiting, and when one waits the
// driver hands the rest to other workers (restAfterRun), so a slow
// handler holds back no other connection's response.
func (l *loop) RestDirectBatch(b cgo.RestBatch) {
	if l.restPool == nil {
		l.restPool = restCoPoolOf(l)
	}
	p := l.restPool
	p.batches++
	p.nbatched += int64(b.Len())
	p.next = b.PushOnto(p.next) // (next is served from its end)
	l.restAfterRun()
}

// restDirectReq makes the record of a direct request of rule (d.Rule's,
// nil if it went away) (driver, or a worker coroutine of l), or answers
// it 500 and returns nil.
func (l *loop) restDirectReq(d cgo.RestDirect, rule *Rule) *restReq {
	if l.restPool == nil {
		l.restPool = restCoPoolOf(l)
	}
	p := l.restPool
	// the record of a NewRule aco rule's request is the loop's to reuse
	// (restCoWorkerBody gives it back): the handler holds a view of its own
	var q *restReq
	aco := rule != nil && rule.aco.Load()
	if aco && rule.http == nil {
		if n := len(p.free); n > 0 {
			q = p.free[n-1]
			p.free[n-1] = nil
			p.free = p.free[:n-1]
			// (not info: inf reads it anew; not own: a reused record's
			// handler holds views of its own)
			gen := q.gen + 1
			q.restReqState = restReqState{}
			q.gen = gen
			p.reused++
		} else {
			q = new(restReq)
		}
		q.pooled = true
		q.v = p.newView()
		q.v.head = d.Head
	} else {
		q = new(restReq)
		q.v = &q.own
	}
	q.sess, q.direct, q.rule, q.loop, q.l, q.epoch = d.Ctx, true, rule, l.idx, l, sessionNow()
	// the head of a reused record's request is read when asked for (a
	// handler that never looks at its request does not pay for it)
	parsed := false
	if q.pooled {
		q.unparsed = len(d.Head) >= cgo.HeadMin
	} else {
		parsed = cgo.ParseHead(d.Head, &q.info)
	}
	if rule == nil || !(parsed || q.unparsed) || l.closed {
		// the rule went away meanwhile (or a head C did not write whole)
		cgo.RestRespond(d.Ctx, 500, []byte("Internal Server Error\x00Connection\x00close\x00"), 0,
			[]byte("Internal Server Error\n"), cgo.RespondEnd)
		return nil
	}
	if !q.pooled {
		if spare := d.Head[len(d.Head):cap(d.Head)]; len(spare) >= 2*restSmall {
			q.small = spare[: 2*restSmall : 2*restSmall] // (the head's own allocation)
		}
	}
	q.pool = p
	q.pool.live.Add(1)
	q.pool.ndirect++
	q.onLoop = aco
	return q
}

// inf is the request's head (a reused record's is read from its flat
// head on the first call; one C did not write whole reads as empty).
// The handler's coroutine or the loop's driver.
func (q *restReq) inf() *cgo.RestInfo {
	if q.unparsed {
		q.unparsed = false
		q.info = cgo.RestInfo{} // (the record's last request's, if reused)
		if !cgo.ParseHead(q.v.head, &q.info) {
			q.info = cgo.RestInfo{}
		}
	}
	return &q.info
}

// restAfterRun: a coroutine of l ran (driver).  The request it serves
// without a step (restCoPool.inline) is watched if it waits; the direct
// requests that responses' ends handed over (restCoPool.next) and the
// coroutine left for the driver are served.
func (l *loop) restAfterRun() {
	p := l.restPool
	if q := p.inline; q != nil {
		p.inline = nil
		if !q.ended && !q.watched {
			q.watchStart()
		}
	}
	if len(p.next) == 0 || p.serving {
		return // (the loop below serves what comes in meanwhile)
	}
	p.serving = true
	for n := len(p.next); n > 0; n = len(p.next) {
		d := p.next[n-1] // (each is another session's: any order)
		p.next[n-1] = cgo.RestDirect{}
		p.next = p.next[:n-1]
		l.RestDirect(d)
	}
	p.serving = false
}

// countGoWork counts q as Go work of loop l served by a goroutine: while
// there is some, l's driver sleeps in Go, not in epoll_wait inside C, so
// the goroutines get the P at once (cgo/driverwait.go).  Loop l's thread.
func (q *restReq) countGoWork(l *loop) {
	q.goWork = l.drv.GoWork()
	q.goWork.Add(1)
	l.drv.WorkHanded()
}

// uncountGoWork ends what countGoWork began (once; q's goroutine).
func (q *restReq) uncountGoWork() {
	if w := q.goWork; w != nil {
		q.goWork = nil
		w.Add(-1)
	}
}

// Handlers run on workers that serve one request after another: a
// goroutine or a coroutine made per request would grow its stack anew each
// time (measured: a sixth of a Go rule's CPU went to stack copying).

// restGoIdle hands a request to a worker goroutine waiting for one (nil:
// the worker ends).
var restGoIdle = make(chan *restReq)

// Idle worker goroutines block on restGoIdle without a timer each (a timer
// reset per request cost more than the handler): a janitor that ticks
// every restWorkerIdle ends the ones a quiet period left over.
const restWorkerIdle = 30 * time.Second

var restGoWorkers struct {
	idle    atomic.Int64 // workers waiting on restGoIdle
	handed  atomic.Int64 // requests handed to a waiting worker
	janitor sync.Once
}

func restGoWorker(q *restReq) {
	restGoWorkers.janitor.Do(func() { go restGoJanitor() })
	for q != nil {
		q.serve(nil)
		restGoWorkers.idle.Add(1)
		q = <-restGoIdle
		restGoWorkers.idle.Add(-1)
	}
}

// restGoJanitor ends half the idle workers each period in which fewer
// requests were handed to waiting workers than there are idle ones.
func restGoJanitor() {
	last := restGoWorkers.handed.Load()
	for range time.Tick(restWorkerIdle) {
		now := restGoWorkers.handed.Load()
		idle := restGoWorkers.idle.Load()
		if now-last < idle {
			for n := (idle + 1) / 2; n > 0; n-- {
				select {
				case restGoIdle <- nil:
				default:
					n = 0
				}
			}
		}
		last = now
	}
}

// restGoServe has q served by a worker goroutine: one waiting, or a new one.
func restGoServe(q *restReq) {
	select {
	case restGoIdle <- q:
		restGoWorkers.handed.Add(1)
	default:
		go restGoWorker(q)
	}
}

// restCoPool is a loop's idle worker coroutines (driver only).
type restCoPool struct {
	idle []*restCoWorker
	live atomic.Int64 // direct requests of the loop being served

	// the pipelined requests a response's end dispatched (RestRespondNext)
	// and whose record is not made yet: the worker coroutine that ended
	// the response serves them once its handler returns, else the driver
	// does after the coroutine ran (restAfterRun)
	slot    cgo.RestSlot
	heads   cgo.HeadArena // next's heads (RestRespondNext)
	next    []cgo.RestDirect
	serving bool
	inline  *restReq // the one a worker serves from next (driver only)
	// direct requests served, and how many of them a response's end
	// handed over (the others came as steps of the loop); the batches of
	// a loop pass and the requests they held (RestDirectBatch)
	ndirect, nchained int64
	batches, nbatched int64

	// direct requests whose handler did not finish in its step, watched
	// for their client leaving (driver only, but the counts)
	watch   restReq // the list's head (wprev, wnext)
	nwatch  atomic.Int32
	ticking atomic.Bool

	ends restEnds // responses goroutines ended, for the loop to send

	specs  restSpecCache // the last head of an aco handler's response (driver only)
	okType string        // the last Content-Type an aco handler's Ok took (okType)

	// records of finished requests of NewRule aco rules, to reuse
	// (restDirectReq; driver and the loop's coroutines), and how many
	// times one was
	free   []*restReq
	reused int64

	views []restView // newView's slab (driver and the loop's coroutines)
}

// restViewSlab is how many views newView allocates at once.
const restViewSlab = 16

// newView is a new view for a reused record's request: views are never
// reused (a handler may keep its own), so they are handed out one by one
// from a slab of restViewSlab, allocated when the last one is used up,
// which saves a request its own allocation; a view kept alive keeps its
// slab (restViewSlab views).
func (p *restCoPool) newView() *restView {
	if len(p.views) == 0 {
		p.views = make([]restView, restViewSlab)
	}
	v := &p.views[0]
	p.views = p.views[1:]
	return v
}

// restFreeMax is how many finished records a loop keeps for reuse.
const restFreeMax = 64

// recycle gives q's record back to its loop once its handler returned
// and nothing of the loop's refers to it any more (a worker coroutine of
// q's loop, right after serveCo).  The handler's view stays its own.
func (q *restReq) recycle() {
	p := q.pool
	if !q.pooled || !q.released || !q.ended || q.watched || q.co != nil || p == nil ||
		len(p.free) >= restFreeMax {
		return
	}
	q.gen++ // (RestDirect: the record it handed over is another's now)
	p.free = append(p.free, q)
}

// restWatchEvery is how often the loop looks at the clients of direct
// requests still being served: a handler sees its client leave (its
// context, a pending call of its coroutine) within about two of these.
const restWatchEvery = 100 * time.Millisecond

// watchStart puts q on its loop's watch list (driver).
func (q *restReq) watchStart() {
	p := q.pool
	if p.watch.wnext == nil {
		p.watch.wnext, p.watch.wprev = &p.watch, &p.watch
	}
	q.watched, q.wseen = true, false
	q.wprev, q.wnext = p.watch.wprev, &p.watch
	p.watch.wprev.wnext = q
	p.watch.wprev = q
	p.nwatch.Add(1)
	if p.ticking.CompareAndSwap(false, true) {
		go restWatchTicker(q.l, p)
	}
}

// watchEnd takes q off the watch list (driver).
func (q *restReq) watchEnd() {
	if !q.watched {
		return
	}
	q.watched = false
	q.wprev.wnext, q.wnext.wprev = q.wnext, q.wprev
	q.wprev, q.wnext = nil, nil
	q.pool.nwatch.Add(-1)
}

// restWatchTicker has loop l look at its watched requests while there are
// some.
func restWatchTicker(l *loop, p *restCoPool) {
	t := time.NewTicker(restWatchEvery)
	defer t.Stop()
	for range t.C {
		if p.nwatch.Load() == 0 {
			p.ticking.Store(false)
			if p.nwatch.Load() == 0 || !p.ticking.CompareAndSwap(false, true) {
				return
			}
		}
		if l.post(func() { l.restWatchSweep(p) }) != nil {
			p.ticking.Store(false)
			return
		}
	}
}

// restStopped answers the direct requests of a stopping loop that
// goroutines still serve (driver, C still up): 503 unless their head went
// out, and the sessions let go.  Their handlers go on; what they send then
// fails (the loop refuses posts).
func (l *loop) restStopped() {
	v, ok := restCoPools.Load(l)
	if !ok {
		return
	}
	p := v.(*restCoPool)
	spec := []byte("Service Unavailable\x00Connection\x00close\x00")
	// requests handed over by an end and not served yet
	for _, d := range p.next {
		cgo.RestRespond(d.Ctx, 503, spec, 0, nil, cgo.RespondEnd)
	}
	p.next = nil
	if p.watch.wnext == nil {
		return
	}
	for q := p.watch.wnext; q != &p.watch; {
		next := q.wnext
		if !q.onLoop {
			q.watchEnd()
			q.sessGone = true
			q.v.ctx.cancel()
			cgo.RestRespond(q.sess, 503, spec, 0, nil, cgo.RespondEnd)
		}
		q = next
	}
}

// restWatchSweep cancels the watched requests whose client has gone
// (driver): each is looked at from the second sweep it is on the list.
// A goroutine's request stays on the list once cancelled: the list is
// how its end (restDrainEnds) or a stopping loop (restStopped) finds it
// to let its session go.
func (l *loop) restWatchSweep(p *restCoPool) {
	if p.watch.wnext == nil {
		return
	}
	for q := p.watch.wnext; q != &p.watch; {
		next := q.wnext
		if !q.wseen {
			q.wseen = true
		} else if !q.onLoop {
			if !q.v.ctx.canceled.Load() && cgo.RestClientGone(q.sess) {
				q.v.ctx.cancel()
			}
		} else if cgo.RestClientGone(q.sess) {
			q.watchEnd()
			q.v.ctx.cancel()
			if co := q.co; co != nil && co.state.Load() == coLive {
				l.cancelLocal(co) // its pending call returns ErrCanceled
			}
		}
		q = next
	}
}

type restCoWorker struct {
	pool *restCoPool
	q    *restReq // the next request (driver only)
	co   *Co      // under restCoMu
}

const restMaxIdleCo = 64 // per loop

var restCoPools sync.Map // *loop -> *restCoPool

func restCoPoolOf(l *loop) *restCoPool {
	v, ok := restCoPools.Load(l)
	if !ok {
		v, _ = restCoPools.LoadOrStore(l, &restCoPool{slot: cgo.NewRestSlot(), ends: restEnds{l: l}})
	}
	return v.(*restCoPool)
}

// restDropPools forgets the stopped loops' pools and frees their slots'
// C memory (reap: every driver is done, and only a loop's driver uses its
// pool's slot).  Requests that goroutines still serve keep their pool as
// Go memory; none of them reaches its slot.
func restDropPools() {
	restCoPools.Range(func(k, v any) bool {
		restCoPools.Delete(k)
		p := v.(*restCoPool)
		cgo.FreeRestSlot(p.slot)
		p.slot = nil
		p.specs = restSpecCache{}
		return true
	})
}

// restCoServe has q served by a worker coroutine of loop i (relay: inside
// the relay's call, so it only queues: an idle worker is woken, or a new
// one started).
func restCoServe(i int, q *restReq) bool {
	l := loopAt(i)
	if l == nil {
		return false
	}
	p := restCoPoolOf(l)
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle = p.idle[:n-1]
		w.q = q
		if co := w.coroutine(); co != nil && co.Wake() == nil {
			return true
		}
		w.q = nil
	}
	_, err := AcoStartOn(i, restCoWorkerBody, &restCoWorker{pool: p, q: q})
	return err == nil
}

// restCoDirect has q served by a worker coroutine of l at once (driver,
// outside C: an idle worker is resumed, or a new one started here).
func (l *loop) restCoDirect(q *restReq) {
	p := q.pool
	for n := len(p.idle); n > 0; n = len(p.idle) {
		w := p.idle[n-1]
		p.idle = p.idle[:n-1]
		// (w.co without restCoMu: an idle worker of the pool set it on
		// this loop's thread before it went idle)
		if co := w.co; co != nil && co.state.Load() == coLive && co.wait == waitGoPark {
			w.q = q
			l.resumeWith(co, 0, 0)
			return
		}
	}
	co := newCo(restCoWorkerBody, &restCoWorker{pool: p, q: q})
	co.l = l
	l.startCo(co)
}

func (w *restCoWorker) coroutine() *Co {
	restCoMu.Lock()
	defer restCoMu.Unlock()
	return w.co
}

func restCoWorkerBody(co *Co) {
	w := co.Arg().(*restCoWorker)
	restCoMu.Lock()
	w.co = co
	restCoMu.Unlock()
	for {
		if q := w.q; q != nil {
			w.q = nil
			co.flags &^= coCancel // a cancel meant for the previous request
			q.serveCo(co)
			q.recycle()
			// the pipelined requests its end dispatched, served here
			// (no switch to the driver and back): those of aco rules
			for p := w.pool; len(p.next) > 0; {
				n := len(p.next)
				rule := restRuleByID(p.next[n-1].Rule)
				if rule == nil || !rule.aco.Load() {
					break // the driver serves it (restAfterRun)
				}
				d := p.next[n-1]
				p.next[n-1] = cgo.RestDirect{}
				p.next = p.next[:n-1]
				if q := co.l.restDirectReq(d, rule); q != nil {
					co.flags &^= coCancel
					p.inline = q // (watched if it waits: restAfterRun)
					q.serveCo(co)
					p.inline = nil
					q.recycle()
				}
			}
			if len(w.pool.idle) >= restMaxIdleCo {
				return
			}
			w.pool.idle = append(w.pool.idle, w)
		}
		_ = co.Park(0) // until the next request (a stray wake or cancel: look again)
	}
}

func restOpDone(id uint64) {
	v, ok := restReqs.Load(id)
	if !ok {
		return
	}
	q := v.(*restReq)
	if q.done != nil {
		select {
		case q.done <- struct{}{}:
		default:
		}
		return
	}
	if co := q.coroutine(); co != nil {
		_ = co.Wake()
	}
}

func restCancel(id uint64) {
	v, ok := restReqs.Load(id)
	if !ok {
		return
	}
	q := v.(*restReq)
	q.v.ctx.cancel()
	if co := q.coroutine(); co != nil {
		// its pending call returns ErrCanceled, as in C; checked when it
		// applies, since the worker may serve another request by then
		_ = co.l.post(func() {
			if q.coroutine() == co && !q.released && co.state.Load() != coEnded {
				co.l.cancelLocal(co)
			}
		})
	}
}

// coroutine is q.co once the coroutine has started (any goroutine).
func (q *restReq) coroutine() *Co {
	restCoMu.Lock()
	defer restCoMu.Unlock()
	return q.co
}

var restCoMu sync.Mutex

func (q *restReq) serveCo(co *Co) {
	q.v.ctx.co = co
	if q.direct { // nothing else looks at q.co: no lock
		q.co = co
		q.serve(co)
		q.co = nil
		return
	}
	restCoMu.Lock()
	q.co = co
	restCoMu.Unlock()
	if q.v.ctx.Err() != nil { // the client left before we started
		co.flags |= coCancel
	}
	q.serve(co)
	restCoMu.Lock()
	q.co = nil
	restCoMu.Unlock()
}

// forget drops Go's side of the request.
func (q *restReq) forget() {
	if q.released {
		return
	}
	q.released = true
	q.v.ctx.cancel()
	q.uncountGoWork()
	if q.direct {
		q.pool.live.Add(-1)
		return // the response's end dropped the session's reference
	}
	restReqs.live.Add(-1)
	restReqs.Delete(q.id)
	cgo.RestRelease(q.r)
}

// serve runs the handler and settles the response, whatever the handler
// did: a panic or an error before anything was sent is a 500.
func (q *restReq) serve(co *Co) {
	var rc *RestClosure
	var herr error // HandleHTTP's handler broke its response (serveHTTP)
	returned := false
	defer func() {
		if returned && (rc == nil || rc.err == nil) && herr == nil {
			// the handler returned without an error: no panic is on its
			// way through here (recover would return nil), nothing to log
			q.finish(false)
			return
		}
		v := recover()
		if _, stop := v.(stopUnwind); stop {
			// the loop is stopping: let the coroutine unwind (a direct
			// request's session is answered and let go: C is up until
			// every driver is done; a relay's parks until the end)
			if q.direct {
				q.finish(true)
			} else {
				q.forget()
			}
			panic(v)
		}
		var why string
		switch {
		case v != nil:
			why = fmt.Sprintf("panic: %v\n%s", v, debug.Stack())
		case !returned:
			// runtime.Goexit (t.FailNow, ...): the handler did not finish,
			// whatever it set up; it goes on unwinding after this
			why = "the handler called runtime.Goexit"
		case rc != nil && rc.err != nil:
			why = rc.err.Error()
		case herr != nil:
			why = herr.Error()
		}
		if why != "" {
			restLogger().Error("eventer: REST handler failed", "rule", q.rule.String(),
				"method", q.inf().Method, "uri", q.inf().URI, "error", why)
		}
		q.finish(why != "")
	}()
	if q.rule.http != nil {
		herr = q.serveHTTP(co)
		returned = true
		return
	}
	rc = &q.v.rc
	*rc = RestClosure{q: q, co: co}
	rc.err = q.rule.rest(rc)
	returned = true
}

var restErrorHead = []string{"Content-Type", "text/plain; charset=utf-8", "Connection", "close"}

// finish ends the response if the handler did not (500 if failed and
// nothing was sent; broken off, as net/http does, if failed after a
// Flush), and lets the relay (or the session) go.
func (q *restReq) finish(failed bool) {
	if failed && !q.ended && q.headersSent() {
		q.abort()
		q.forget()
		return
	}
	if q.direct {
		if !q.ended {
			if failed && !q.headOut {
				q.code, q.reason, q.opts = 500, "Internal Server Error", 0
				q.hdrs = restErrorHead
				q.wbuf = append(q.wbuf[:0], "Internal Server Error\n"...)
			}
			q.ended = true
			_ = q.respond("RestResponse.End", cgo.RespondEnd)
		}
		q.forget()
		return
	}
	if !q.ended {
		if failed && !q.headersSent() {
			q.wbuf = q.wbuf[:0]
			_ = withSession(q.epoch, func() error {
				// what the handler built (its head, and the body it
				// already handed to C) is not the error page's
				cgo.RestDiscard(q.r)
				cgo.RestStatus(q.r, 500, "Internal Server Error")
				cgo.RestHeader(q.r, "Content-Type", "text/plain; charset=utf-8")
				cgo.RestHeader(q.r, "Connection", "close")
				cgo.RestAppend(q.r, []byte("Internal Server Error\n"))
				return nil
			})
		} else if !q.status {
			_ = withSession(q.epoch, func() error {
				cgo.RestStatus(q.r, 200, "OK")
				return nil
			})
		}
		_ = q.push("RestResponse.End")
		_ = q.submit(cgo.RestEnd, 0)
		q.ended = true
	}
	q.forget()
}

// abort gives up a response whose head went out (mtev_http_response_abort):
// nothing more of it is sent, and the connection closes without
// completing it (no final chunk), so the client sees it is cut short.
func (q *restReq) abort() {
	q.ended = true
	q.wbuf = nil
	if !q.direct {
		_ = q.submit(cgo.RestAbort, 0)
		return
	}
	if q.onLoop {
		// the handler runs on the loop (its driver is in Run): C is up
		q.watchEnd()
		cgo.RestRespond(q.sess, 0, nil, 0, nil, cgo.RespondAbort)
		return
	}
	q.endAbort = true
	_ = q.postEnd()
}

func (q *restReq) headersSent() bool {
	if q.direct {
		return q.headOut
	}
	sent := true
	_ = withSession(q.epoch, func() error {
		sent = cgo.RestHeadersSent(q.r)
		return nil
	})
	return sent
}

// ---- the direct path's response ----------------------------------------------------

// spec is the head of a direct response as ev_go_rest_respond takes it:
// the reason, then the header fields, each string ended by a NUL.
func (q *restReq) spec() []byte {
	n := len(q.reason) + 1
	for _, s := range q.hdrs {
		n += len(s) + 1
	}
	var b []byte
	if n <= restSmall {
		b = q.smallBuf()[restSmall:restSmall]
	} else {
		b = make([]byte, 0, n)
	}
	b = append(b, q.reason...)
	b = append(b, 0)
	for _, s := range q.hdrs {
		b = append(b, s...)
		b = append(b, 0)
	}
	return b
}

// restSpecCache is a loop's last response head spec (an aco handler
// answers the same head request after request): reused while the reason
// and header strings are the same ones, the same bytes at the same
// addresses, so nothing is compared byte by byte.  Its bytes (in the
// loop's C memory when they fit, cgo.RestSpecRoom) change only when
// another spec replaces it: each spec get returns goes to C (which copies
// it) before the handler goes on.
type restSpecCache struct {
	reason string
	hdrs   [4]string
	n      int
	b      []byte
}

func sameString(a, b string) bool {
	return len(a) == len(b) && unsafe.StringData(a) == unsafe.StringData(b)
}

// get is q's spec: the cached one when q's head is made of the same
// strings, else q.spec(), cached when it fits.
func (c *restSpecCache) get(q *restReq) []byte {
	if c.b != nil && c.n == len(q.hdrs) && sameString(c.reason, q.reason) {
		same := true
		for i, h := range q.hdrs {
			if !sameString(c.hdrs[i], h) {
				same = false
				break
			}
		}
		if same {
			return c.b
		}
	}
	b := q.spec()
	if len(q.hdrs) <= len(c.hdrs) {
		c.reason, c.n = q.reason, len(q.hdrs)
		copy(c.hdrs[:], q.hdrs)
		// (q's may be its own small buffer) in the loop's C memory when it
		// fits: RestRespondNext then hands it to C without a copy; the last
		// cached spec is no one's once replaced (each spec get returns goes
		// to C before the handler goes on)
		if slot := q.pool.slot; slot != nil && len(b) <= len(cgo.RestSpecRoom(slot)) {
			c.b = cgo.RestSpecRoom(slot)[:len(b)]
			copy(c.b, b)
		} else {
			c.b = append([]byte(nil), b...)
		}
	}
	return b
}

// respond hands what the handler built to C (ev_go_rest_respond) with
// `then`: on the loop thread, at once from a coroutine, else posted to
// the loop (waited for unless it is the end).
func (q *restReq) respond(name string, then int) error {
	code := 0
	var spec []byte
	if !q.headOut {
		code = q.code
		if code == 0 {
			code, q.reason = 200, "OK"
		}
		if q.onLoop {
			spec = q.pool.specs.get(q) // (the loop thread's: no lock)
		} else {
			spec = q.spec()
		}
		q.headOut = true
	}
	body, opts, sess, epoch := q.wbuf, q.opts, q.sess, q.epoch
	q.wbuf = nil // C has it now (or the loop will)
	if len(body) > 0 {
		q.appended = true
	}
	var ok bool
	if q.onLoop {
		// the handler runs on the loop (its driver is in Run): C is up
		if then == cgo.RespondEnd && (q.co == nil || q.co.flags&coStopping == 0) {
			// (not while the loop unwinds its coroutines: nothing would
			// serve what the drive hands over)
			q.watchEnd()
			p := q.pool
			var next cgo.RestDirect
			ok = cgo.RestRespondNext(sess, code, spec, opts, body, p.slot, &p.heads, &next)
			if next.Ctx != 0 {
				p.next = append(p.next, next)
				p.nchained++
			}
		} else {
			ok = cgo.RestRespond(sess, code, spec, opts, body, then)
			if then == cgo.RespondEnd {
				q.watchEnd()
			}
		}
	} else if then == cgo.RespondEnd {
		// the rest is the loop's (rest_handler.go: one post per batch)
		q.endCode, q.endSpec, q.endOpts, q.endBody = code, spec, opts, body
		if err := q.postEnd(); err != nil {
			return &OpError{Op: name, Err: err}
		}
		return nil
	} else {
		// (made here only: a closure is an allocation)
		apply := func() bool { // (on the loop)
			if q.sessGone {
				return false
			}
			ok := false
			_ = withSession(epoch, func() error {
				ok = cgo.RestRespond(sess, code, spec, opts, body, then)
				return nil
			})
			return ok
		}
		res := make(chan bool, 1)
		if err := q.l.post(func() { res <- apply() }); err != nil {
			return &OpError{Op: name, Err: err}
		}
		ok = <-res
	}
	if !ok {
		return &OpError{Op: name, Err: errors.New("refused (a bad value, or the connection is gone)")}
	}
	return nil
}

// onLoopDo runs fn for a direct request on its loop thread, and waits.
func (q *restReq) onLoopDo(name string, fn func()) error {
	apply := func() {
		if !q.sessGone {
			_ = withSession(q.epoch, func() error { fn(); return nil })
		}
	}
	if q.onLoop {
		apply()
		return nil
	}
	done := make(chan struct{})
	if err := q.l.post(func() { apply(); close(done) }); err != nil {
		return &OpError{Op: name, Err: err}
	}
	<-done
	return nil
}

// setStatus, setHeader and setOption build the head: in Go (direct), or
// in C (relay).
func (q *restReq) setStatus(name string, code int, reason string) error {
	if code < 200 || code > 999 {
		// (a 1xx is not a final status: the client would take the next
		// response for this one's)
		return &OpError{Op: name, Err: fmt.Errorf("status %d: not a final status", code)}
	}
	for i := 0; i < len(reason); i++ {
		if c := reason[i]; c < 0x20 && c != '\t' {
			return &OpError{Op: name, Err: fmt.Errorf("reason %q", reason)}
		}
	}
	if !q.direct {
		err := q.call(name, func() bool { return cgo.RestStatus(q.r, code, reason) })
		if err == nil {
			q.status = true
		}
		return err
	}
	if q.ended {
		return &OpError{Op: name, Err: ErrClosed}
	}
	if q.headOut {
		return &OpError{Op: name, Err: errors.New("refused (headers already sent)")}
	}
	q.code, q.reason, q.status = code, reason, true
	return nil
}

func (q *restReq) setHeader(name, key, value string) error {
	if !validHeaderField(key, value) {
		return &OpError{Op: name, Err: fmt.Errorf("header %q: refused (not a token, a CR, LF or NUL in the value, or a field the engine sets)", key)}
	}
	if !q.direct {
		return q.call(name, func() bool { return cgo.RestHeader(q.r, key, value) })
	}
	if q.ended {
		return &OpError{Op: name, Err: ErrClosed}
	}
	if q.headOut {
		return &OpError{Op: name, Err: errors.New("refused (headers already sent)")}
	}
	q.putHeader(key, value)
	return nil
}

// putHeader sets a checked field of a direct request's head (replacing
// one of the same name).
func (q *restReq) putHeader(key, value string) {
	for i := 0; i < len(q.hdrs); i += 2 {
		if strings.EqualFold(q.hdrs[i], key) {
			q.hdrs[i+1] = value
			return
		}
	}
	if q.hdrs == nil {
		q.hdrs = q.hdrsIn[:0]
	}
	q.hdrs = append(q.hdrs, key, value)
}

// validHeaderField is what mtev_http_response_header_set accepts: a
// token name, a value without CR, LF (or NUL), and neither
// Content-Length nor Transfer-Encoding (the engine's).
func validHeaderField(k, v string) bool {
	switch len(k) {
	case 0:
		return false
	case len("Content-Length"):
		if strings.EqualFold(k, "Content-Length") {
			return false
		}
	case len("Transfer-Encoding"):
		if strings.EqualFold(k, "Transfer-Encoding") {
			return false
		}
	}
	for i := 0; i < len(k); i++ {
		if !restTchar[k[i]] {
			return false
		}
	}
	return validHeaderValue(v)
}

// validHeaderValue: a field value without CR, LF or NUL.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= '\r' && (c == '\r' || c == '\n' || c == 0) {
			return false
		}
	}
	return true
}

// restTchar: the token characters (RFC 9110 tchar).
var restTchar = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", byte(c)) >= 0
	}
	return t
}()

// ---- the relay's operations --------------------------------------------------------

func (q *restReq) submit(op, n int) error {
	return withSession(q.epoch, func() error { return cgo.RestSubmit(q.r, op, n) })
}

// wait is the result of the operation submitted last: the goroutine waits
// for the relay's word, a coroutine parks (a Cancel meanwhile is kept for
// its next call).
func (q *restReq) wait() (int64, syscall.Errno, error) {
	canceled := false
	defer func() {
		if canceled && q.co != nil {
			_ = q.co.Cancel()
		}
	}()
	for {
		if res, errno, ok := cgo.RestResult(q.r); ok {
			return res, errno, nil
		}
		if q.co != nil {
			if err := q.co.Park(0); errors.Is(err, ErrCanceled) {
				canceled = true
			} else if err != nil {
				return -1, 0, err
			}
			continue
		}
		select {
		case <-q.done:
		case <-q.stop:
			return -1, 0, ErrStopped
		}
	}
}

// write takes body bytes (into wbuf; a relay's go to C when it fills up).
func (q *restReq) write(name string, p []byte) (int, error) {
	if q.ended {
		return 0, &OpError{Op: name, Err: ErrClosed}
	}
	if !q.direct && len(q.wbuf)+len(p) > restWbufMax {
		if err := q.push(name); err != nil {
			return 0, err
		}
		if len(p) > restWbufMax {
			if err := q.call(name, func() bool { return cgo.RestAppend(q.r, p) }); err != nil {
				return 0, err
			}
			q.appended = true
			return len(p), nil
		}
	}
	q.appendBody(p)
	return len(p), nil
}

// appendBody adds to wbuf (a direct request's first bytes go to an array
// of the request's own).
func (q *restReq) appendBody(p []byte) {
	if q.wbuf == nil && q.direct && !q.headOut && len(p) <= restSmall {
		q.wbuf = q.smallBuf()[:0:restSmall]
	}
	q.wbuf = append(q.wbuf, p...)
}

// push hands wbuf to C (mtev_http_response_append; relay).
func (q *restReq) push(name string) error {
	if len(q.wbuf) == 0 {
		return nil
	}
	err := q.call(name, func() bool { return cgo.RestAppend(q.r, q.wbuf) })
	q.wbuf = q.wbuf[:0]
	q.appended = true
	return err
}

// flush is Flush: the head and the body so far go out.  A direct request
// hands them to the loop, which writes what the socket takes and the rest
// as it drains, and moves its rule to the relay for its later requests
// (where Flush waits until the client took the bytes).
func (q *restReq) flush(name string) error {
	if !q.direct {
		_, err := q.op(name, cgo.RestFlush, 0)
		return err
	}
	if q.ended {
		return &OpError{Op: name, Err: ErrClosed}
	}
	if !q.rule.relay.Swap(true) {
		_ = withSession(q.epoch, func() error { cgo.RestRuleRelay(q.rule.crule, true); return nil })
	}
	err := q.respond(name, cgo.RespondFlush)
	if err == nil && q.co != nil {
		// let the loop write before the handler goes on
		if yerr := q.co.Yield(); yerr != nil && !errors.Is(yerr, ErrCanceled) {
			return yerr
		}
	}
	return err
}

// end is End: what is left goes out; nothing waits.
func (q *restReq) end(name string) error {
	if q.ended {
		return &OpError{Op: name, Err: ErrClosed}
	}
	if q.direct {
		q.ended = true
		return q.respond(name, cgo.RespondEnd)
	}
	if !q.status {
		if err := q.setStatus(name, 200, "OK"); err != nil {
			return err
		}
	}
	if err := q.push(name); err != nil {
		return err
	}
	q.ended = true
	if err := q.submit(cgo.RestEnd, 0); err != nil {
		return &OpError{Op: name, Err: err}
	}
	return nil
}

// op asks the relay for op and waits for its result.
func (q *restReq) op(name string, op, n int) (int64, error) {
	if q.ended {
		return -1, &OpError{Op: name, Err: ErrClosed}
	}
	if q.co != nil {
		// an aco rule's call from another goroutine panics (MisuseError)
		// here, before anything goes to C: submitted, the operation's
		// result would wait for a Park that never came, and the response
		// (ended later by the coroutine) never went out
		if err := q.co.enter(name); err != nil {
			return -1, err
		}
	}
	if op == cgo.RestFlush || op == cgo.RestEnd {
		if err := q.push(name); err != nil {
			return -1, err
		}
	}
	if err := q.submit(op, n); err != nil {
		if errors.Is(err, syscall.EPIPE) {
			q.ended = true
			err = ErrClosed
		}
		return -1, &OpError{Op: name, Err: err}
	}
	if op == cgo.RestEnd {
		q.ended = true
	}
	res, errno, err := q.wait()
	if err != nil {
		return -1, &OpError{Op: name, Err: err}
	}
	if errno != 0 {
		return res, errnoError(name, errno)
	}
	return res, nil
}

// read is one body read: up to len(p) bytes, 0 and io.EOF at the end (a
// direct request has no body).
func (q *restReq) read(name string, p []byte) (int, error) {
	if q.bodyEOF || q.direct || !q.info.Payload {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	n := min(len(p), cgo.RestBufSize)
	res, err := q.op(name, cgo.RestRead, n)
	if err != nil {
		return 0, err
	}
	if res == 0 {
		q.bodyEOF = true
		return 0, io.EOF
	}
	return copy(p, cgo.RestBuf(q.r, int(res))), nil
}

// call runs a response call, while the response is open (relay).
func (q *restReq) call(name string, fn func() bool) error {
	if q.ended {
		return &OpError{Op: name, Err: ErrClosed}
	}
	ok := false
	if err := withSession(q.epoch, func() error { ok = fn(); return nil }); err != nil {
		return &OpError{Op: name, Err: err}
	}
	if !ok {
		return &OpError{Op: name, Err: errors.New("refused (headers already sent, a bad value, or the connection is gone)")}
	}
	return nil
}

// remote is the peer's address ("ip:port").
func (q *restReq) remote() string {
	in := q.inf()
	if in.Remote == "" && in.RemoteRaw != "" {
		in.Remote = cgo.FormatRemote(in.RemoteRaw)
	}
	return in.Remote
}

func restLogger() *slog.Logger {
	if c := rt.cfg.Load(); c != nil && c.logger != nil {
		return c.logger
	}
	return slog.Default()
}

// ---- RestHandler's view -----------------------------------------------------------

// RestClosure is a request of a NewRule rule, as its handler sees it
// (C's mtev_http_rest_closure_t).  Its methods are for the handler's own
// goroutine or coroutine: another goroutine must not call them, during
// the handler or after it (an aco rule's loop reuses the request's record
// once the handler returned).  Kept and used later on the handler's own
// loop, it shows its own request, ended.
type RestClosure struct {
	q   *restReq
	co  *Co
	req *RestRequest
	res *RestResponse
	err error
}

// Co is the coroutine the handler runs in on an aco rule; nil otherwise.
func (rc *RestClosure) Co() *Co { return rc.co }

// view is the closure's view (it is the view's first field).
func (rc *RestClosure) view() *restView { return (*restView)(unsafe.Pointer(rc)) }

// live is the closure's request record, or nil when the record serves
// another request now (the handler returned, the loop reused it).
func (rc *RestClosure) live() *restReq {
	if q := rc.q; q.v == rc.view() {
		return q
	}
	return nil
}

// info is the request's head: the record's, or read again from the
// request's own flat head once the record serves another request.
func (rc *RestClosure) info() (*cgo.RestInfo, *restReq) {
	if q := rc.live(); q != nil {
		return q.inf(), q
	}
	in := new(cgo.RestInfo)
	cgo.ParseHead(rc.view().head, in)
	return in, nil
}

// Pats are the captures of the rule's expression (unset groups are "").
func (rc *RestClosure) Pats() []string {
	in, _ := rc.info()
	return in.Pats
}

// Context is cancelled when the client goes away (at once on a request
// with a body, within about 200 ms on one without), and when the handler
// returns.
func (rc *RestClosure) Context() context.Context { return &rc.view().ctx }

// Request is the request.
func (rc *RestClosure) Request() *RestRequest {
	if rc.req == nil {
		in, q := rc.info()
		remote := ""
		if q != nil {
			remote = q.remote()
		} else {
			remote = cgo.FormatRemote(in.RemoteRaw)
		}
		rc.req = &RestRequest{Method: in.Method, URI: in.URI, Proto: in.Proto,
			RawQuery: in.Query, RemoteAddr: remote, ContentLength: in.ContentLength,
			Header: restHeader(in.Headers()), Body: http.NoBody, TLS: connState(in.TLS)}
		if in.TLS != nil {
			rc.req.RemoteCN = in.TLS.RemoteCN
		}
		if in.Payload && q != nil {
			// (a record that is reused serves no request with a body)
			rc.req.Body = &restBody{q: q, op: "RestRequest.Body.Read"}
		}
	}
	return rc.req
}

// Response is the response being built.
func (rc *RestClosure) Response() *RestResponse {
	if rc.res == nil {
		v := rc.view()
		v.res = RestResponse{q: rc.q}
		rc.res = &v.res
	}
	return rc.res
}

// RestRequest is a request's head and body (mtev_http_request).
type RestRequest struct {
	Method string
	// URI is the path as sent (not percent-decoded), without the query.
	URI, Proto string
	RawQuery   string
	// Header has canonical keys (http.CanonicalHeaderKey).
	Header     http.Header
	RemoteAddr string
	// ContentLength is -1 for a chunked body, else its length (0: none).
	ContentLength int64
	// Body reads the request body (mtev_http_session_req_consume); io.EOF
	// at its end.  A body the handler does not read is discarded.
	Body io.ReadCloser
	// TLS is what the connection negotiated (nil: not TLS), as net/http's
	// Request.TLS: version, cipher suite, ALPN protocol, SNI name, and the
	// client's certificates (verified against the listener's ca_chain
	// unless optional_no_ca said otherwise).
	TLS *tls.ConnectionState
	// RemoteCN is the client certificate's CN ("" without one): what the
	// ACL's cn rules match (mtev_http_rest_closure_t.remote_cn).
	RemoteCN string
}

// connState is crypto/tls's form of what the C TLS layer negotiated.
func connState(t *cgo.RestTLS) *tls.ConnectionState {
	if t == nil {
		return nil
	}
	cs := &tls.ConnectionState{Version: t.Version, HandshakeComplete: true,
		DidResume: t.Resumed, CipherSuite: t.Cipher, NegotiatedProtocol: t.ALPN,
		ServerName: t.SNI}
	if len(t.PeerDER) > 0 {
		if certs, err := x509.ParseCertificates(t.PeerDER); err == nil {
			cs.PeerCertificates = certs
		}
	}
	return cs
}

// Query is the parsed query string (keys and values percent-decoded).
func (r *RestRequest) Query() url.Values {
	v, _ := url.ParseQuery(r.RawQuery)
	return v
}

type restBody struct {
	q  *restReq
	op string
}

func (b *restBody) Read(p []byte) (int, error) { return b.q.read(b.op, p) }
func (b *restBody) Close() error               { return nil }

func restHeader(kv [][2]string) http.Header {
	h := make(http.Header, len(kv))
	for _, p := range kv {
		k := http.CanonicalHeaderKey(p[0])
		h[k] = append(h[k], p[1])
	}
	return h
}

// RestResponse builds a response (the mtev_http_response_* family).
// Status, Header and the options must come before the first Flush;
// nothing may be called after End (ErrClosed).
type RestResponse struct{ q *restReq }

// live is the response's request record, or nil when the record serves
// another request now: the response ended with its handler.
func (r *RestResponse) live() *restReq {
	if q := r.q; &q.v.res == r {
		return q
	}
	return nil
}

func restOver(name string) error { return &OpError{Op: name, Err: ErrClosed} }

// Ok is mtev_http_response_ok: status 200, Content-Type, may stream.
func (r *RestResponse) Ok(contentType string) error {
	q := r.live()
	if q == nil {
		return restOver("RestResponse.Ok")
	}
	if q.direct && !q.ended && !q.headOut && q.okType(contentType) {
		// (what the calls below do, without checking our own values)
		q.code, q.reason, q.status = 200, "OK", true
		q.putHeader("Content-Type", contentType)
		q.opts |= cgo.OptStream
		return nil
	}
	if err := r.Status(200, "OK"); err != nil {
		return err
	}
	if err := r.Header("Content-Type", contentType); err != nil {
		return err
	}
	return q.stream("RestResponse.Ok")
}

// okType: contentType is a valid header value.  A loop keeps the last one
// its aco handlers' Ok took (its thread's: no lock): the same string (the
// same bytes at the same address, which never change) is not looked at
// again.
func (q *restReq) okType(contentType string) bool {
	if !q.onLoop || q.pool == nil {
		return validHeaderValue(contentType)
	}
	if sameString(q.pool.okType, contentType) {
		return true
	}
	if !validHeaderValue(contentType) {
		return false
	}
	q.pool.okType = contentType
	return true
}

// stream sets the CHUNKED option, or CLOSE where chunked is not possible.
func (q *restReq) stream(name string) error {
	if q.direct {
		if q.ended {
			return &OpError{Op: name, Err: ErrClosed}
		}
		q.opts |= cgo.OptStream
		return nil
	}
	return q.call(name, func() bool {
		return cgo.RestOption(q.r, cgo.HTTPChunked) || cgo.RestOption(q.r, cgo.HTTPClose)
	})
}

// Status sets the status line (mtev_http_response_status_set); reason ""
// is the standard one.  code is a final status, 200 to 999 (the engine
// answers Expect: 100-continue itself).
func (r *RestResponse) Status(code int, reason string) error {
	if reason == "" {
		reason = http.StatusText(code)
	}
	q := r.live()
	if q == nil {
		return restOver("RestResponse.Status")
	}
	return q.setStatus("RestResponse.Status", code, reason)
}

// Header sets (replaces) a header field (mtev_http_response_header_set).
func (r *RestResponse) Header(name, value string) error {
	q := r.live()
	if q == nil {
		return restOver("RestResponse.Header")
	}
	return q.setHeader("RestResponse.Header", name, value)
}

// Compress asks for gzip (deflate false) or deflate (true) when the
// request's Accept-Encoding allows it; false when it does not, or when
// the body has started.
func (r *RestResponse) Compress(deflate bool) bool {
	opt := cgo.HTTPGzip
	if deflate {
		opt = cgo.HTTPDeflate
	}
	q := r.live()
	if q == nil {
		return false
	}
	if !q.direct {
		return q.call("RestResponse.Compress", func() bool { return cgo.RestOption(q.r, opt) }) == nil
	}
	if q.ended || q.headOut || len(q.wbuf) > 0 || q.appended {
		return false
	}
	ok := false
	if q.onLoopDo("RestResponse.Compress", func() { ok = cgo.RestOptionCtx(q.sess, opt) }) != nil {
		return false
	}
	return ok
}

// Write appends p to the body (mtev_http_response_append); nothing goes
// out before Flush or End.
func (r *RestResponse) Write(p []byte) (int, error) {
	q := r.live()
	if q == nil {
		return 0, restOver("RestResponse.Write")
	}
	return q.write("RestResponse.Write", p)
}

// WriteString is Write of a string.
func (r *RestResponse) WriteString(s string) (int, error) {
	q := r.live()
	if q == nil || q.ended {
		return 0, restOver("RestResponse.Write")
	}
	if q.direct {
		q.appendBody(unsafe.Slice(unsafe.StringData(s), len(s)))
		return len(s), nil
	}
	return r.Write([]byte(s))
}

// Flush sends the headers and what was written so far, and waits until
// the connection took them (mtev_http_response_flush).  (The first Flush
// of a rule's handler does not wait: it moves the rule to the path where
// Flush waits, for the rule's later requests.)
func (r *RestResponse) Flush() error {
	q := r.live()
	if q == nil {
		return restOver("RestResponse.Flush")
	}
	return q.flush("RestResponse.Flush")
}

// End ends the response (mtev_http_response_end): what is left goes out
// (with a Content-Length if nothing was flushed before).  It does not wait
// for the bytes to be written.
func (r *RestResponse) End() error {
	q := r.live()
	if q == nil {
		return restOver("RestResponse.End")
	}
	return q.end("RestResponse.End")
}

// restStats: requests of Go rules being served now.
func restLive() int64 {
	n := restReqs.live.Load()
	restCoPools.Range(func(_, v any) bool {
		n += v.(*restCoPool).live.Load()
		return true
	})
	return n
}
