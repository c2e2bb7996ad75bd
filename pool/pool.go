package pool

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by Acquire. A caller may always try another backend after
// one of them: nothing of its request has been sent.
var (
	// ErrClosed: the backend was closed (shutdown or reconfiguration).
	ErrClosed = errors.New("pool: backend closed")
	// ErrPoolFull: MaxConns connections were busy until the deadline.
	ErrPoolFull = errors.New("pool: all connections busy")
)

// DialError wraps a failure to open a connection to a backend.
type DialError struct {
	Addr string
	Err  error
}

func (e *DialError) Error() string { return "pool: dial " + e.Addr + ": " + e.Err.Error() }
func (e *DialError) Unwrap() error { return e.Err }

// Stats is a snapshot of a backend's counters.
type Stats struct {
	InFlight int64  // requests between StartRequest and FinishRequest
	Requests uint64 // requests started
	Failures uint64 // requests finished as failed
	BytesOut uint64 // bytes written to the backend
	BytesIn  uint64 // bytes read from the backend
	Dials    uint64 // connections opened
	// DialFailures counts dials that failed (refused, timed out): a
	// backend that is down shows here before any request fails on it.
	DialFailures uint64
	Open         int // connections open or being dialed
	Idle         int // connections parked in the pool
}

// Backend is one origin server and the persistent channels to it.
type Backend struct {
	// Immutable after NewBackend.
	addr  string
	cfg   Config
	dial  func(addr string, timeout time.Duration) (net.Conn, error)
	tls   *tls.Config   // nil: plain TCP; else every connection is TLS (tls.go)
	slots chan struct{} // one token per open (or dialing) connection: the MaxConns bound
	avail chan struct{} // poked when a connection is parked while someone waits
	stop  chan struct{}
	done  chan struct{}

	// Counters, updated without locks on the request path.
	inflight atomic.Int64
	requests atomic.Uint64
	failures atomic.Uint64
	bytesOut atomic.Uint64
	bytesIn  atomic.Uint64
	dials    atomic.Uint64
	dialFail atomic.Uint64
	waiters  atomic.Int32 // Acquire calls waiting for a connection

	// Protected by mu.
	mu     sync.Mutex
	idle   []*Conn // a stack: the most recently used connection is last
	closed bool
}

// NewBackend returns the pool for the backend at addr ("host:port"). It
// starts the goroutine that reaps idle connections and keeps WarmConns
// open; call Warm to dial them now and Close to stop.
func NewBackend(addr string, cfg Config) (*Backend, error) {
	return newBackend(addr, cfg, nil)
}

// newBackend is NewBackend with the TLS client configuration of an
// https:// backend (NewTLSBackend), nil for a plain one.
func newBackend(addr string, cfg Config, tc *tls.Config) (*Backend, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("pool: backend address %q: %w", addr, err)
	}
	b := &Backend{
		addr:  addr,
		cfg:   cfg,
		dial:  cfg.Dial,
		slots: make(chan struct{}, cfg.MaxConns),
		avail: make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		idle:  make([]*Conn, 0, cfg.MaxConns),
	}
	if b.dial == nil {
		b.dial = dialTCP
	}
	if tc != nil {
		b.tls = tc
		b.dial = dialTLS(b.dial, tc)
	}
	go b.reapLoop()
	return b, nil
}

func dialTCP(addr string, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, timeout)
}

// Addr is the backend's "host:port".
func (b *Backend) Addr() string { return b.addr }

// Config is the backend's channel policy, defaults applied.
func (b *Backend) Config() Config { return b.cfg }

// Warm dials connections until WarmConns are open. It returns the first dial
// error; the reaper keeps trying later.
func (b *Backend) Warm() error {
	for b.openConns() < b.cfg.WarmConns {
		select {
		case b.slots <- struct{}{}:
		default:
			return nil
		}
		c, err := b.dialConn()
		if err != nil {
			return err
		}
		b.Release(c, true)
	}
	return nil
}

func (b *Backend) openConns() int { return len(b.slots) }

// Acquire returns a connection to the backend: a pooled one when there is
// one, else a fresh one if fewer than MaxConns are open, else it waits for
// one until deadline (zero: ConnectTimeout from now). The caller owns the
// connection until Release.
func (b *Backend) Acquire(deadline time.Time) (*Conn, error) {
	return b.AcquireAt(time.Now(), deadline)
}

// AcquireAt is Acquire with the current time given: the proxy reads the
// clock once per phase of a request rather than in every call it makes.
func (b *Backend) AcquireAt(now, deadline time.Time) (*Conn, error) {
	c, err := b.popIdle(now)
	if c != nil || err != nil {
		return c, err
	}
	select {
	case b.slots <- struct{}{}:
		return b.dialConn()
	default:
	}
	return b.acquireSlow(deadline)
}

// AcquireFresh is Acquire without the parked connections: it dials a new
// one, waiting until deadline (zero: ConnectTimeout from now) for room
// under MaxConns. A caller whose pooled connection turned out dead uses
// it, since the ones parked beside it are likely dead too.
func (b *Backend) AcquireFresh(deadline time.Time) (*Conn, error) {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	for {
		select {
		case b.slots <- struct{}{}:
			return b.dialConn()
		default:
		}
		// Full: a parked connection gives up its slot, the oldest first.
		if !b.closeOldestIdle() {
			break
		}
	}
	d := b.cfg.ConnectTimeout
	if !deadline.IsZero() {
		d = time.Until(deadline)
	}
	if d <= 0 {
		return nil, ErrPoolFull
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case b.slots <- struct{}{}:
		return b.dialConn()
	case <-timer.C:
		return nil, ErrPoolFull
	case <-b.stop:
		return nil, ErrClosed
	}
}

// acquireSlow waits for a connection while every channel is busy. This is
// the slow path: the scheduler normally keeps in-flight requests below
// MaxConns.
func (b *Backend) acquireSlow(deadline time.Time) (*Conn, error) {
	d := b.cfg.ConnectTimeout
	if !deadline.IsZero() {
		d = time.Until(deadline)
	}
	if d <= 0 {
		return nil, ErrPoolFull
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	// Announce the wait before looking again: Release pokes only when
	// someone waits, and a connection parked before it could see us is
	// found by this second look.
	b.waiters.Add(1)
	defer b.waiters.Add(-1)
	for {
		c, err := b.popIdle(time.Now())
		if c != nil || err != nil {
			return c, err
		}
		select {
		case <-b.avail:
		case b.slots <- struct{}{}: // a slot freed up: no poke needed
			return b.dialConn()
		case <-timer.C:
			return nil, ErrPoolFull
		case <-b.stop:
			return nil, ErrClosed
		}
	}
}

// popIdle takes the most recently used parked connection, closing those
// that sat idle too long on the way.
//
// Most-recently-used first is deliberate: at moderate load the same few
// connections carry every request and stay warm (in the origin's worker, in
// the kernel, in its keep-alive timer), while the ones at the bottom of the
// stack stay untouched, pass IdleTimeout and are reaped. The pool thus
// shrinks to the working set by itself. FIFO would rotate through every
// connection, keep all of them alive at the high-water mark, and make each
// one more likely to be the one the origin has just timed out.
func (b *Backend) popIdle(now time.Time) (*Conn, error) {
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return nil, ErrClosed
		}
		n := len(b.idle)
		if n == 0 {
			b.mu.Unlock()
			return nil, nil
		}
		c := b.idle[n-1]
		b.idle[n-1] = nil
		b.idle = b.idle[:n-1]
		b.mu.Unlock()
		if now.Sub(c.lastUsed) < b.cfg.IdleTimeout {
			return c, nil
		}
		b.closeConn(c)
	}
}

// closeOldestIdle closes the least recently used parked connection,
// freeing its slot; false if none is parked.
func (b *Backend) closeOldestIdle() bool {
	b.mu.Lock()
	if len(b.idle) == 0 {
		b.mu.Unlock()
		return false
	}
	c := b.idle[0]
	n := copy(b.idle, b.idle[1:])
	b.idle[n] = nil
	b.idle = b.idle[:n]
	b.mu.Unlock()
	b.closeConn(c)
	return true
}

// dialConn opens a connection; the caller holds a slot for it, which is
// given back on failure.
func (b *Backend) dialConn() (*Conn, error) {
	nc, err := b.dial(b.addr, b.cfg.ConnectTimeout)
	if err != nil {
		b.dialFail.Add(1)
		<-b.slots
		return nil, &DialError{Addr: b.addr, Err: err}
	}
	b.dials.Add(1)
	c := &Conn{b: b, nc: nc}
	c.io.c = c
	c.br = bufio.NewReaderSize(&c.io, b.cfg.ReadBufferSize)
	c.bw = bufio.NewWriterSize(&c.io, b.cfg.WriteBufferSize)
	return c, nil
}

// Release gives a connection back. reuse says the exchange on it ended
// cleanly (request written, response read to its end, no Connection:
// close); otherwise the connection is closed, since its framing state is
// unknown.
func (b *Backend) Release(c *Conn, reuse bool) { b.ReleaseAt(c, reuse, time.Now()) }

// ReleaseAt is Release with the current time given (the connection's idle
// time counts from now).
func (b *Backend) ReleaseAt(c *Conn, reuse bool, now time.Time) {
	b.bytesOut.Add(uint64(c.written))
	b.bytesIn.Add(uint64(c.read))
	c.written, c.read = 0, 0
	if reuse && c.br.Buffered() == 0 {
		c.lastUsed = now
		c.uses++
		b.mu.Lock()
		if !b.closed {
			b.idle = append(b.idle, c)
			b.mu.Unlock()
			// Only a waiting Acquire needs to hear of it: skipping the
			// channel operation keeps the common release to one lock.
			if b.waiters.Load() > 0 {
				b.poke()
			}
			return
		}
		b.mu.Unlock()
	}
	b.closeConn(c)
}

func (b *Backend) closeConn(c *Conn) {
	_ = c.nc.Close()
	// A waiter selects on the slot channel itself, so the freed slot
	// needs no poke.
	<-b.slots
}

func (b *Backend) poke() {
	select {
	case b.avail <- struct{}{}:
	default:
	}
}

// StartRequest and FinishRequest bracket one request for the counters.
func (b *Backend) StartRequest() {
	b.inflight.Add(1)
	b.requests.Add(1)
}

// FinishRequest ends a request started with StartRequest.
func (b *Backend) FinishRequest(failed bool) {
	b.inflight.Add(-1)
	if failed {
		b.failures.Add(1)
	}
}

// Stats returns the backend's counters.
func (b *Backend) Stats() Stats {
	b.mu.Lock()
	idle := len(b.idle)
	b.mu.Unlock()
	return Stats{
		InFlight:     b.inflight.Load(),
		Requests:     b.requests.Load(),
		Failures:     b.failures.Load(),
		BytesOut:     b.bytesOut.Load(),
		BytesIn:      b.bytesIn.Load(),
		Dials:        b.dials.Load(),
		DialFailures: b.dialFail.Load(),
		Open:         b.openConns(),
		Idle:         idle,
	}
}

// Close closes the parked connections and stops the reaper. Connections in
// use are closed when they are released.
func (b *Backend) Close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	idle := b.idle
	b.idle = nil
	b.mu.Unlock()
	close(b.stop)
	<-b.done
	for _, c := range idle {
		b.closeConn(c)
	}
}

// reapLoop closes connections idle for longer than IdleTimeout, oldest
// first, and re-dials up to WarmConns so that the warm set is always fresh
// rather than kept past the origin's own keep-alive.
func (b *Backend) reapLoop() {
	defer close(b.done)
	period := b.cfg.IdleTimeout / 4
	if period < 10*time.Millisecond {
		period = 10 * time.Millisecond
	}
	t := time.NewTicker(period)
	defer t.Stop()
	var expired []*Conn
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		b.mu.Lock()
		n := 0
		for n < len(b.idle) && now.Sub(b.idle[n].lastUsed) >= b.cfg.IdleTimeout {
			n++
		}
		expired = append(expired[:0], b.idle[:n]...)
		rest := copy(b.idle, b.idle[n:])
		clear(b.idle[rest:])
		b.idle = b.idle[:rest]
		b.mu.Unlock()
		for i, c := range expired {
			b.closeConn(c)
			expired[i] = nil
		}
		_ = b.Warm() // a backend that is down now is retried at the next tick
	}
}

// Conn is one channel to a backend: a connection and its buffers.
type Conn struct {
	// Immutable after dial.
	b  *Backend
	nc net.Conn
	br *bufio.Reader
	bw *bufio.Writer
	io countingIO

	// Owned by whoever holds the connection.
	rd, wd   time.Time // deadlines armed on nc through the Arm methods
	lastUsed time.Time
	uses     uint64 // exchanges completed before this one
	written  int64  // bytes written to the socket since Acquire
	read     int64  // bytes read from the socket since Acquire
}

// countingIO sits between the buffers and the socket so that the proxy can
// tell whether any byte of a request reached the backend (which decides if
// it may be re-sent) and so that byte counters cost nothing extra.
type countingIO struct{ c *Conn }

func (w *countingIO) Write(p []byte) (int, error) {
	n, err := w.c.nc.Write(p)
	w.c.written += int64(n)
	return n, err
}

func (w *countingIO) Read(p []byte) (int, error) {
	n, err := w.c.nc.Read(p)
	w.c.read += int64(n)
	return n, err
}

// Reader is the buffered reader for responses.
func (c *Conn) Reader() *bufio.Reader { return c.br }

// Writer is the buffered writer for requests.
func (c *Conn) Writer() *bufio.Writer { return c.bw }

// NetConn is the underlying connection. Set its deadlines through the Arm
// methods, which remember what is armed.
func (c *Conn) NetConn() net.Conn { return c.nc }

// ArmDeadline sets the read and write deadlines to t, unless both are
// already armed no later than t and at most slack before it.
//
// Each deadline change is a runtime timer update (a lock and a heap
// operation), and a connection reused every few hundred microseconds would
// otherwise move its timers on every request by as much. With a slack of a
// small fraction of the timeout, a deadline is re-armed about once per
// slack per connection instead, and a timeout may fire up to slack early,
// never late.
func (c *Conn) ArmDeadline(t time.Time, slack time.Duration) error {
	if armedFor(c.rd, t, slack) && armedFor(c.wd, t, slack) {
		return nil
	}
	if err := c.nc.SetDeadline(t); err != nil {
		return err
	}
	c.rd, c.wd = t, t
	return nil
}

// ArmReadDeadline is ArmDeadline for the read deadline alone.
func (c *Conn) ArmReadDeadline(t time.Time, slack time.Duration) error {
	if armedFor(c.rd, t, slack) {
		return nil
	}
	if err := c.nc.SetReadDeadline(t); err != nil {
		return err
	}
	c.rd = t
	return nil
}

// ArmWriteDeadline is ArmDeadline for the write deadline alone.
func (c *Conn) ArmWriteDeadline(t time.Time, slack time.Duration) error {
	if armedFor(c.wd, t, slack) {
		return nil
	}
	if err := c.nc.SetWriteDeadline(t); err != nil {
		return err
	}
	c.wd = t
	return nil
}

// armedFor reports whether the armed deadline a may stand for t: a is set,
// not later than t, and at most slack earlier.
func armedFor(a, t time.Time, slack time.Duration) bool {
	return !a.IsZero() && !t.IsZero() && !a.After(t) && t.Sub(a) <= slack
}

// Backend is the backend this connection leads to.
func (c *Conn) Backend() *Backend { return c.b }

// Reused reports whether the connection carried an exchange before: if so,
// the origin may have closed it meanwhile, and a failure before the first
// response byte is the stale-connection case, not an origin failure.
func (c *Conn) Reused() bool { return c.uses > 0 }

// Written is the number of bytes written to the socket since Acquire.
func (c *Conn) Written() int64 { return c.written }

// Read is the number of bytes read from the socket since Acquire.
func (c *Conn) Read() int64 { return c.read }
