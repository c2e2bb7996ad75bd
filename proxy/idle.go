package proxy

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// Idle client connections off their goroutines. fasthttp serves each
// connection on a goroutine of its own, and a keep-alive connection that
// waits for its next request keeps that goroutine (8 KiB of stack), its
// read buffer and its request context: about 17 KiB per idle connection
// (docs/benchmarks.md, "Idle keep-alive connections"). nginx keeps an idle
// connection as an entry in an epoll set; so does the idle parker. A plain
// TCP client connection that has waited parkAfter for its next request,
// or for its first, leaves fasthttp's loop, and its descriptor waits in
// the parker's epoll set (idle_linux.go) holding no goroutine and no
// buffer. When bytes or a hang-up arrive, it is served again by
// fasthttp's ServeConn on a new goroutine. A parked connection keeps the
// deadline fasthttp had set for the wait (the idle timeout, or the header
// timeout before a first request) and is closed silently when it passes,
// as fasthttp closes one.
//
// A connection that sends its next request within parkAfter never parks,
// and pays nothing beyond the wrapper: the park deadline takes the place
// of the idle deadline fasthttp sets for each wait anyway. TLS
// connections are not parked (their reads are the TLS layer's).

// parkAfter is how long a connection waits for a request on its
// goroutine before it parks. Short, so that a crowd of clients that each
// send one request and stay does not hold a goroutine each for long;
// long enough that keep-alive traffic at a few requests a second per
// connection never pays for a park and a wake-up.
const parkAfter = 100 * time.Millisecond

// errParked ends fasthttp's wait for a request on a connection that parks:
// it reads as a keep-alive connection closing down, which fasthttp ends
// silently, and the Close that follows parks instead of closing.
var errParked = errors.New("proxy: idle connection parked")

// idleConn wraps an accepted plain TCP connection for the parker. What
// fasthttp calls on it comes from the goroutine serving it, one at a time;
// only Close may also come from Shutdown's goroutine.
type idleConn struct {
	net.Conn // the accepted connection, as the listeners below made it
	raw      syscall.RawConn
	p        *idleParker

	// Touched only by the goroutine serving the connection, and while it
	// is parked by the parker under its lock.
	state connWait
	// deadline is the read deadline fasthttp asked for while armed: a
	// parked connection is closed when it passes; zero: never.
	deadline time.Time

	// park is set by the Read that gives up waiting; the Close after it
	// parks the connection instead of closing it.
	park atomic.Bool

	// Protected by p.mu while parked.
	id uint64
}

// connWait tracks where fasthttp's loop is on the connection.
type connWait uint8

const (
	// waitActive: a request is being read or served; reads pass through.
	waitActive connWait = iota
	// waitNext: a request was answered (or none has come yet); the next
	// read deadline fasthttp sets is the one for the wait for a request.
	waitNext
	// waitArmed: fasthttp waits for a request under the park deadline;
	// a read that times out before fasthttp's own deadline parks. The
	// next read deadline (set once a byte has come) disarms.
	waitArmed
)

func (c *idleConn) SetReadDeadline(t time.Time) error {
	switch c.state {
	case waitNext:
		if t.IsZero() {
			break // a handler's deadline being cleared, not a wait
		}
		c.state = waitArmed
		c.deadline = t
		if park := time.Now().Add(parkAfter); park.Before(t) {
			t = park
		}
	case waitArmed:
		c.state = waitActive
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *idleConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if c.state == waitArmed && n == 0 && errors.Is(err, os.ErrDeadlineExceeded) && time.Now().Before(c.deadline) {
		c.park.Store(true)
		return 0, errParked
	}
	return n, err
}

func (c *idleConn) Close() error {
	if c.park.CompareAndSwap(true, false) {
		c.p.park(c)
		return nil
	}
	return c.Conn.Close()
}

// SyscallConn keeps the client watch's peek (watch.go) working through
// the wrapper.
func (c *idleConn) SyscallConn() (syscall.RawConn, error) { return c.raw, nil }

// served is called around each request fasthttp hands the handler: reads
// while it runs pass through (the handler sets read deadlines of its own
// for request bodies), and once it has answered without taking the
// connection over, the next wait may park.
func served(ctx *fasthttp.RequestCtx, handle fasthttp.RequestHandler) {
	ic, _ := ctx.Conn().(*idleConn)
	if ic == nil {
		handle(ctx)
		return
	}
	ic.state = waitActive
	handle(ctx)
	if !ctx.Hijacked() {
		ic.state = waitNext
	}
}

// idleListener wraps the plain TCP connections a listener accepts for the
// parker; others (TLS) pass as they are.
type idleListener struct {
	net.Listener
	p *idleParker
}

func (l idleListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.p.wrap(c), nil
}

func (p *idleParker) wrap(c net.Conn) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	return &idleConn{Conn: c, raw: raw, p: p, state: waitNext}
}
