package proxy

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluiceproxy/sluice/internal/peek"
)

// watchInterval is how often a queued request's client socket is checked.
const watchInterval = 25 * time.Millisecond

// idleTicks is how many ticks the watch goroutine waits with nothing to
// watch before it stops.
const idleTicks = 40

// queueWatch cancels queued requests whose clients hang up. fasthttp does
// not notice a disconnect while the handler runs, and a request waiting in
// the queue would otherwise hold its place (and later a backend slot) for
// nobody. It watches requests at a backend too, from the request sent to
// the end of the response: a client that leaves then has its backend
// connection closed within a tick or two, so that the origin, seeing its
// connection end, can stop working for nobody (the exchange then ends as
// errClientGone, outcome Ignore). It peeks at each socket without consuming anything, so pipelined
// bytes stay for fasthttp.
//
// Under a steady load with an adaptive limit below the number of client
// connections, every request waits in the queue for a moment, so this sits
// on the hot path. One goroutine per Server therefore watches all queued
// requests, instead of a goroutine, a ticker and a context per request
// (measured: about a tenth of the CPU per request, plus garbage). Entering
// and leaving the watch is a short critical section and a slice swap; the
// goroutine runs only while something is watched and stops once the set
// has been empty for idleTicks ticks (stopping at the first empty tick
// would, under light load, start a goroutine for nearly every request).
type queueWatch struct {
	// Protected by mu.
	mu      sync.Mutex
	waiting []*waitCtx // each knows its index in waiting
	running bool       // the loop goroutine exists
	closed  bool
	done    chan struct{} // closed when the loop goroutine exits; valid while running
}

// waitCtx is the context a queued request waits with. It lives in its
// exchange and is reused: its Done channel is made once and replaced only
// after it was closed by a cancel, which is rare, so waiting allocates
// nothing in steady state.
//
// Owned by the exchange, except that while it is registered in a
// queueWatch, cancel may be called by the watch under queueWatch.mu.
type waitCtx struct {
	done     chan struct{}
	canceled atomic.Bool
	conn     net.Conn  // the client connection to peek at
	since    time.Time // the request's arrival
	idx      int       // position in queueWatch.waiting, -1 when not registered
	// backend, while the request is at a backend, is that connection:
	// cancel closes it, so the origin sees its client leave and can stop.
	backend net.Conn
}

func newWaitCtx() waitCtx { return waitCtx{done: make(chan struct{}), idx: -1} }

// context.Context. The queue never reads a deadline or values from it: the
// request's deadline travels in scheduler.Request.
func (c *waitCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *waitCtx) Done() <-chan struct{}       { return c.done }
func (c *waitCtx) Value(any) any               { return nil }
func (c *waitCtx) Err() error {
	if c.canceled.Load() {
		return context.Canceled
	}
	return nil
}

// cancel is called with queueWatch.mu held, at most once per registration.
// The exchange removes c from the watch before it releases its backend
// connection, so the connection closed here is still the request's.
func (c *waitCtx) cancel() {
	if c.canceled.CompareAndSwap(false, true) {
		close(c.done)
		if c.backend != nil {
			_ = c.backend.Close()
		}
	}
}

// reset readies c for the next request; it is unregistered, so nothing
// else refers to it.
func (c *waitCtx) reset() {
	c.conn = nil
	c.backend = nil
	if c.canceled.Load() {
		c.done = make(chan struct{})
		c.canceled.Store(false)
	}
}

// add starts watching c's client; it returns false (and watches nothing)
// once the watch is closed.
func (q *queueWatch) add(c *waitCtx, conn net.Conn, since time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	c.conn, c.since = conn, since
	c.idx = len(q.waiting)
	q.waiting = append(q.waiting, c)
	if !q.running {
		q.running = true
		q.done = make(chan struct{})
		go q.loop(q.done)
	}
	return true
}

// remove stops watching c. After it returns the watch no longer touches c:
// no cancel can come later.
func (q *queueWatch) remove(c *waitCtx) {
	q.mu.Lock()
	if i := c.idx; i >= 0 {
		last := len(q.waiting) - 1
		q.waiting[i] = q.waiting[last]
		q.waiting[i].idx = i
		q.waiting[last] = nil
		q.waiting = q.waiting[:last]
		c.idx = -1
	}
	q.mu.Unlock()
}

func (q *queueWatch) loop(done chan struct{}) {
	defer close(done)
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	idle := 0
	for range t.C {
		q.mu.Lock()
		if len(q.waiting) == 0 {
			idle++
		} else {
			idle = 0
		}
		if idle >= idleTicks || q.closed {
			q.running = false
			q.mu.Unlock()
			return
		}
		// Peeking is a non-blocking syscall per queued request; holding
		// mu over it keeps remove's promise simple, and the set is small
		// (bounded by the queue). Requests that arrived within the last
		// interval are skipped: their clients were there a moment ago, and
		// under a steady load nearly every request leaves the queue long
		// before it would be peeked at.
		now := time.Now()
		for _, c := range q.waiting {
			if now.Sub(c.since) >= watchInterval && !c.canceled.Load() && peek.Gone(c.conn) {
				c.cancel()
			}
		}
		q.mu.Unlock()
	}
}

// close stops the goroutine and refuses later registrations; requests
// still queued then wait without a watch.
func (q *queueWatch) close() {
	q.mu.Lock()
	q.closed = true
	running, done := q.running, q.done
	q.mu.Unlock()
	if running {
		<-done
	}
}
