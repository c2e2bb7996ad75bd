package proxy

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluiceproxy/sluice/pool"
	"github.com/sluiceproxy/sluice/scheduler"
)

// Hedged requests, as Finagle's backup requests and Envoy's hedge policy:
// on a route that enables it, an idempotent request whose backend has not
// sent its response headers by a percentile of that backend's recent
// latency (latency.go) is sent to a second backend of the service as
// well; the first response headers win and the other request's backend
// connection is closed, so that its origin sees the client of that
// request leave and can stop.
//
// Which requests: GET, HEAD and OPTIONS without a body, no Upgrade, on
// their first attempt. A body, even a small held one, may have effects a
// second copy would double; an upgrade is a tunnel to one backend; a
// retry already is the second send.
//
// A hedge needs capacity like any request: it asks the service's
// scheduler for a slot on another backend with TryAdmit, which refuses
// when nothing has room at once or anything is queued. A hedge thus never
// waits and never goes ahead of queued work: when the service is
// overloaded there are no hedges. It also spends the route's budget
// (hedgeBudget), so hedges add at most that fraction to the origins' load
// even when every backend is slow.
//
// The race. The primary attempt runs on the handler goroutine as any
// other; the hedge on the goroutine of a timer armed when the primary
// is about to be sent (time.AfterFunc, made once per pooled hedge and
// Reset per request). The state, under hedge.mu, decides once who won:
// the hedge, on its headers while the primary still waits, closes the
// primary's connection, which wakes the handler; the handler, on the
// primary's headers, closes the hedge's. A hedge that lost ends Ignore
// (neither the backend's failure nor a fast success the limiter would
// learn from); a primary its hedge beat ends as a success at the hedge's
// delay plus the hedge's own answer, a lower bound of its latency, so
// that the scheduler still sees a stalling backend as slow. The winner's response is the exchange's from then on:
// its ticket, connection and fasthttp.Response move into the exchange,
// which relays and settles it as it would its own, so exactly one
// response reaches the client.
//
// A primary that fails (a 5xx, a broken connection, a timeout) while
// its hedge is in flight waits for the hedge, which then is the second
// send the retry rules allow (there is no third); with no hedge in
// flight the retry rules apply as without hedging.
//
// A hedge outlives neither its exchange's decision nor Shutdown: the
// exchange and the timer each hold a reference, and the last to leave
// puts the hedge back in its pool; Server.hedges counts the timers'
// references for Shutdown.
type hedge struct {
	// Immutable.
	s     *Server
	timer *time.Timer
	ready chan struct{} // the sent hedge has ended (won or failed); buffered 1

	// Set by the exchange before the timer is armed, then read-only until
	// the hedge is released.
	svc    *service
	pol    *hedgePolicy
	req    fasthttp.Request
	sreq   scheduler.Request
	excl   [1]*scheduler.Backend // sreq.Exclude: the primary's backend
	isHead bool
	delay  time.Duration // the wait the timer was armed with

	// Written by the hedge's goroutine while state is hedgeSent; read by
	// the exchange once state has left it (hedgeWon), under mu.
	resp    *fasthttp.Response
	ticket  scheduler.Ticket
	up      *upstream
	backend *pool.Backend
	latency time.Duration

	// Protected by mu. Lock order: mu, then the scheduler's (fire admits
	// under mu, so that the exchange sees a hedge either not sent or
	// holding its ticket).
	mu      sync.Mutex
	state   hedgeState
	primary net.Conn   // the primary's backend connection while it waits
	conn    *pool.Conn // the hedge's connection while it waits
	refs    int
}

type hedgeState uint8

const (
	hedgeArmed  hedgeState = iota // the timer runs
	hedgeOff                      // no hedge: stopped, denied or no capacity
	hedgeSent                     // admitted on another backend, waiting for its headers
	hedgeWon                      // its headers came first; the exchange takes it over
	hedgeFailed                   // it got no response
	hedgeLost                     // the primary won; the hedge's goroutine cleans up
)

// hedgePolicy is a route's HedgeConfig, compiled, with its budget. nil on
// routes that do not hedge.
type hedgePolicy struct {
	percentile         float64
	minDelay, maxDelay time.Duration
	deposit            int64 // budget tokens an eligible request earns
	budget             hedgeBudget
}

func newHedgePolicy(c *HedgeConfig) *hedgePolicy {
	if c == nil || !c.Enabled {
		return nil
	}
	p := &hedgePolicy{percentile: c.Percentile, minDelay: c.MinDelay, maxDelay: c.MaxDelay,
		deposit: int64(c.Budget * hedgeCost)}
	p.budget.tokens.Store(hedgeCost) // the first stall of a fresh route may be hedged
	return p
}

// delay is how long the primary on a backend with latencies q, of a
// service with latencies all, may take before a hedge. A backend with too
// few samples to say (new, or hardly ever chosen: the scheduler sends a
// backend that was slow only what the others cannot take, and now and
// then one request to see whether it still is) is judged by its
// service's; with too few of those too, it is waited on for maxDelay, or
// not hedged when there is none.
func (p *hedgePolicy) delay(q, all *latencyQuantiles) (time.Duration, bool) {
	d, ok := q.quantile(p.percentile)
	if !ok {
		d, ok = all.quantile(p.percentile)
	}
	if !ok {
		return p.maxDelay, p.maxDelay > 0
	}
	d = max(d, p.minDelay)
	if p.maxDelay > 0 {
		d = min(d, p.maxDelay)
	}
	return d, true
}

// hedgeBudget is a token bucket in thousandths of a hedge: every eligible
// request deposits its route's budget (50 for 0.05), a hedge withdraws
// hedgeCost. It is capped at hedgeSaved hedges, so that a quiet spell
// cannot save up for a burst of hedges against a backend that just
// turned slow.
type hedgeBudget struct {
	tokens atomic.Int64
}

const (
	hedgeCost  = 1000
	hedgeSaved = 10 * hedgeCost
)

func (b *hedgeBudget) deposit(n int64) {
	if b.tokens.Load() < hedgeSaved {
		b.tokens.Add(n)
	}
}

func (b *hedgeBudget) withdraw() bool {
	for {
		t := b.tokens.Load()
		if t < hedgeCost {
			return false
		}
		if b.tokens.CompareAndSwap(t, t-hedgeCost) {
			return true
		}
	}
}

func (b *hedgeBudget) refund() { b.tokens.Add(hedgeCost) }

// hedgeCounters are a service's hedging figures, for /metrics.
type hedgeCounters struct {
	sent, won, denied, noCapacity atomic.Uint64
}

// HedgeStats is a service's hedging so far.
type HedgeStats struct {
	Sent         uint64 // hedges sent to a second backend
	Won          uint64 // of those, answered first
	BudgetDenied uint64 // not sent: the route's budget was spent
	NoCapacity   uint64 // not sent: no other backend had room at once, or requests were queued
}

func (c *hedgeCounters) stats() HedgeStats {
	return HedgeStats{Sent: c.sent.Load(), Won: c.won.Load(), BudgetDenied: c.denied.Load(), NoCapacity: c.noCapacity.Load()}
}

// Access-log values of Record.Hedge.
const (
	HedgeNone = ""
	HedgeSent = "sent" // a hedge was sent and the first backend answered first
	HedgeWon  = "won"  // the hedge answered first
)

func newHedge(s *Server) *hedge {
	h := &hedge{s: s, ready: make(chan struct{}, 1), resp: &fasthttp.Response{}}
	h.timer = time.AfterFunc(time.Hour, h.fire)
	h.timer.Stop()
	return h
}

// leave drops one reference; the last one recycles the hedge.
func (h *hedge) leave(timer bool) {
	h.mu.Lock()
	h.refs--
	last := h.refs == 0
	h.mu.Unlock()
	if timer {
		h.s.hedgeTimers.Add(-1)
	}
	if !last {
		return
	}
	h.svc, h.pol, h.up, h.backend = nil, nil, nil, nil
	h.ticket = scheduler.Ticket{}
	h.excl[0] = nil
	h.sreq = scheduler.Request{}
	h.req.Reset()
	h.resp.Reset()
	select {
	case <-h.ready:
	default:
	}
	h.s.hedgePool.Put(h)
}

// hedgeable reports whether x may be hedged: see the type's comment.
func (x *exchange) hedgeable() bool {
	if x.route.hedge == nil || x.upgrade || x.bodyMode != bodyNone {
		return false
	}
	h := &x.ctx.Request.Header
	return h.IsGet() || h.IsHead() || h.IsOptions()
}

// armHedge prepares a hedge for the primary attempt about to start on
// x.up and arms its timer; the request earns its share of the route's
// budget either way. It arms nothing when there is no delay to wait
// (policy.delay). The hedge is unshared until the timer runs, so it is
// filled in without its lock.
func (x *exchange) armHedge() {
	pol := x.route.hedge
	pol.budget.deposit(pol.deposit)
	d, ok := pol.delay(&x.up.lat, &x.svc.lat)
	if !ok {
		return
	}
	h := x.s.hedgePool.Get().(*hedge)
	h.svc, h.pol, h.isHead = x.svc, pol, x.isHead
	x.req.CopyTo(&h.req)
	h.sreq = x.sreq
	h.excl[0] = x.ticket.Backend
	h.sreq.Exclude = h.excl[:]
	h.state, h.refs, h.primary = hedgeArmed, 2, nil
	h.delay = d
	x.s.hedgeTimers.Add(1)
	x.hg = h
	h.timer.Reset(d)
}

// hedgePrimary tells the hedge which connection the primary is about to
// wait on; false when the hedge has already won, and the primary should
// not be sent.
func (x *exchange) hedgePrimary(c net.Conn) bool {
	h := x.hg
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state == hedgeWon {
		return false
	}
	h.primary = c
	return true
}

// hedgePrimaryDone says the primary no longer waits on its connection,
// which the exchange may now release (so the hedge must not close it),
// and whether the hedge won meanwhile.
func (x *exchange) hedgePrimaryDone() bool {
	h := x.hg
	h.mu.Lock()
	defer h.mu.Unlock()
	h.primary = nil
	return h.state == hedgeWon
}

// fire runs on the timer's goroutine: it sends the hedge, unless the
// primary has answered, the budget is spent or no other backend has room.
func (h *hedge) fire() {
	defer h.leave(true)
	h.mu.Lock()
	if h.state != hedgeArmed {
		h.mu.Unlock()
		return
	}
	now := time.Now()
	if !h.pol.budget.withdraw() {
		h.state = hedgeOff
		h.mu.Unlock()
		h.svc.hedges.denied.Add(1)
		return
	}
	t, ok := h.svc.sched.TryAdmit(&h.sreq, now)
	if !ok {
		h.pol.budget.refund()
		h.state = hedgeOff
		h.mu.Unlock()
		h.svc.hedges.noCapacity.Add(1)
		return
	}
	h.state, h.ticket = hedgeSent, t
	h.up = upstreamOf(t)
	h.svc.hedges.sent.Add(1)
	h.mu.Unlock()

	kind := h.send(now)
	h.mu.Lock()
	won := kind == failNone && h.state == hedgeSent
	lost := h.state == hedgeLost
	conn := h.conn
	h.conn = nil
	if won {
		// Counted before the exchange can see it won and answer, so that
		// a client that has its answer finds it counted.
		h.svc.hedges.won.Add(1)
		h.state = hedgeWon
		// Wakes the handler waiting for the primary's headers; after its
		// wait, hedgePrimary(nil), the primary's connection is no longer
		// ours to close.
		if h.primary != nil {
			_ = h.primary.Close()
		}
		h.conn = conn
	} else if !lost {
		h.state = hedgeFailed
	}
	h.mu.Unlock()
	if won {
		h.ready <- struct{}{}
		return
	}
	// Lost, or failed: give back what the hedge holds.
	if kind == failNone {
		_ = h.resp.CloseBodyStream()
	}
	if conn != nil {
		h.backend.Release(conn, false)
	}
	o := scheduler.Ignore
	if !lost && kind != failNotSent {
		o = scheduler.Failure // the second backend failed on its own
	}
	end := time.Now()
	h.svc.sched.Done(h.ticket, o, end.Sub(now), end)
	h.backend.FinishRequest(o == scheduler.Failure)
	if !lost {
		h.ready <- struct{}{}
	}
}

// send writes the hedge on a connection to its backend and reads the
// response headers, as exchangeOnWatched does for a request without a
// body.
func (h *hedge) send(now time.Time) failKind {
	b := h.up.pool.Load()
	h.backend = b
	b.StartRequest()
	conn, err := b.AcquireAt(now, h.sreq.Deadline)
	if err != nil {
		return failNotSent
	}
	h.mu.Lock()
	if h.state == hedgeLost {
		h.mu.Unlock()
		b.Release(conn, true) // untouched: it may serve another request
		return failNotSent
	}
	h.conn = conn
	h.mu.Unlock()
	start := time.Now()
	rht := b.Config().ResponseHeaderTimeout
	deadline := start.Add(rht)
	if d := h.sreq.Deadline; !d.IsZero() && d.Before(deadline) {
		deadline = d
	}
	_ = conn.ArmDeadline(deadline, rht/deadlineSlackDiv)
	if len(h.req.Header.Host()) == 0 {
		h.req.Header.SetHost(b.Addr())
	}
	bw := conn.Writer()
	err = h.req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		bw.Reset(&nopWriter{})
		return failBeforeResponse
	}
	h.resp.SkipBody = h.isHead
	h.resp.StreamBody = true
	if err := h.resp.Read(conn.Reader()); err != nil {
		if isTimeout(err) {
			return failTimeout
		}
		return failBeforeResponse
	}
	h.latency = time.Since(start)
	return failNone
}

// resolveHedge settles the race once the primary attempt has ended with
// kind: it cancels a hedge the primary beat, waits for one in flight when
// the primary failed, and takes over a hedge that won. It returns the
// kind the request goes on with and whether a hedge was sent (the second
// send: no retry follows).
func (x *exchange) resolveHedge(kind failKind) (failKind, bool) {
	h := x.hg
	x.hg = nil
	defer h.leave(false)
	primaryOK := kind == failNone && x.resp.StatusCode() < 500
	wantHedge := kind == failHedged || kind == failBeforeResponse || kind == failBadResponse ||
		kind == failTimeout || (kind == failNone && !primaryOK)
	h.mu.Lock()
	st := h.state
	switch st {
	case hedgeArmed:
		if h.timer.Stop() {
			h.refs-- // the timer will not run: its reference goes with it
			h.s.hedgeTimers.Add(-1)
		}
		h.state = hedgeOff
		h.mu.Unlock()
		return kind, false
	case hedgeOff:
		h.mu.Unlock()
		return kind, false
	case hedgeSent:
		if !wantHedge {
			h.state = hedgeLost
			if h.conn != nil {
				// The origin sees this connection end and can stop.
				_ = h.conn.NetConn().Close()
			}
			h.mu.Unlock()
			x.hedgeLog = HedgeSent
			return kind, true
		}
		h.mu.Unlock()
		<-h.ready // bounded by the hedge's own header timeout
		h.mu.Lock()
		st = h.state
		h.mu.Unlock()
	default: // hedgeWon, hedgeFailed: the hedge's goroutine says so last
		h.mu.Unlock()
		<-h.ready
	}
	x.hedgeLog = HedgeSent
	if st != hedgeWon {
		return kind, true // the hedge failed: the primary's result stands
	}
	if kind == failClientGone {
		// Nobody to answer: the hedge ends as a client that left.
		_ = h.resp.CloseBodyStream()
		h.backend.Release(h.conn, false)
		h.conn = nil
		h.svc.sched.Done(h.ticket, scheduler.Ignore, 0, time.Now())
		h.backend.FinishRequest(false)
		return kind, true
	}
	// The hedge won: the primary ends as Ignore, recorded as a sample
	// censored at the hedge's delay unless it failed on its own. The
	// delay, not the time it was cut off: that includes the hedge's own
	// latency, and a backend whose slow share sits at the percentile would
	// see its delay grow by a hedge's latency with every generation.
	if kind == failNone {
		_ = x.resp.CloseBodyStream()
		x.unwatch()
		x.backend.Release(x.conn, false)
		x.conn = nil
	}
	switch {
	case kind == failHedged:
		x.recordLatency(h.delay)
	case kind == failNone && primaryOK:
		x.recordLatency(x.latency) // it did answer, a moment too late
	}
	if kind == failHedged {
		// The scheduler learns the backend was slow: at least the hedge's
		// delay plus its answer slower than another backend, which is what
		// steers the next requests away from it, as the stall itself would
		// have without hedging. Ignore would hide it, and a backend that
		// stalls would then be chosen as often as the others.
		x.latency = h.delay + h.latency
		x.done(scheduler.Success, time.Now())
	} else {
		x.done(scheduler.Ignore, time.Now())
	}
	x.ticket, x.up, x.backend = h.ticket, h.up, h.backend
	x.resp, h.resp = h.resp, x.resp
	x.conn, h.conn = h.conn, nil
	x.latency = h.latency
	x.now = time.Now()
	x.admitted = true
	x.fault = false
	x.hedgeLog = HedgeWon
	x.watchBackend(x.conn)
	return failNone, true
}
