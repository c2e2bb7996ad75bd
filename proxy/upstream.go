package proxy

import (
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/sluiceproxy/sluice/pool"
	"github.com/sluiceproxy/sluice/scheduler"
	"github.com/valyala/fasthttp"
)

// The upstream stage: send the request to the ticket's backend and read
// the response headers, moving to another connection or backend where that
// is safe.

// deadlineSlackDiv sets how early a backend timeout may fire: a deadline
// armed on a pooled connection is kept while it is at most 1/64 of the
// timeout earlier than the one wanted (pool.Conn.ArmDeadline), which saves
// the timer update on nearly every request.
const deadlineSlackDiv = 64

// An attempt's failure, in the terms that decide what happens next.
type failKind uint8

const (
	failNone failKind = iota
	// failNotSent: nothing reached the backend (dial refused or timed out,
	// pool full). Any request may go to another backend.
	failNotSent
	// failBeforeResponse: the request (or part of it) was sent and the
	// connection broke before any response byte. Only safe requests may be
	// re-sent.
	failBeforeResponse
	// failBadResponse: the backend answered with something that is not HTTP.
	failBadResponse
	// failTimeout: no response headers in time.
	failTimeout
	// failClient: reading the client's body failed; the client is gone
	// or broken.
	failClient
	// failTooLarge: the client's chunked body passed MaxBodyBytes.
	failTooLarge
	// failClientGone: the client went away while its request was at the
	// backend.
	failClientGone
	// failHedged: the request's hedge answered first; this attempt was
	// cut off (hedge.go).
	failHedged
)

// forward admits the request, sends it to the chosen backend and sets up
// the response. Failures before a response, and a 502 or 503 from a
// backend, lead to another backend when that is safe (see attempt and
// retryable) and the service's retry budget allows; otherwise the client
// gets 502/504, or the backend's own answer.
func (x *exchange) forward() error {
	var lastErr error
	retried := false
	x.svc.retries.deposit()
	for {
		if err := x.admit(); err != nil {
			if lastErr != nil && err == scheduler.ErrNoBackend {
				return lastErr // every backend failed this request
			}
			return err
		}
		x.up = upstreamOf(x.ticket)
		b := x.up.pool.Load()
		x.backend = b
		x.fault = false
		if x.hg == nil && !retried && len(x.sreq.Exclude) == 0 && x.hedgeable() {
			x.armHedge() // hedge.go
		}
		kind := x.attempt(b)
		if x.hg != nil {
			var sent bool
			kind, sent = x.resolveHedge(kind)
			// A hedge is the one second send: no retry follows it.
			retried = retried || sent
		}
		if kind == failNone && x.switching {
			return x.respondSwitching() // a 101: a tunnel (upgrade.go)
		}
		if kind == failNone {
			if !retried && x.retryable() {
				// The backend said it cannot serve this now; another
				// one may. Its answer is dropped with its connection.
				x.attempts = append(x.attempts, attemptResult{up: x.up, failed: true})
				_ = x.resp.CloseBodyStream()
				if x.unwatch() {
					// The client left while the backend answered.
					x.backend.Release(x.conn, false)
					x.conn = nil
					x.done(scheduler.Ignore, time.Now())
					return errClientGone
				}
				x.backend.Release(x.conn, false)
				x.conn = nil
				x.resp.Reset()
				x.done(scheduler.Failure, time.Now())
				retried = true
				x.sreq.Exclude = append(x.sreq.Exclude, x.ticket.Backend)
				lastErr = errBadGateway
				continue
			}
			return x.respond()
		}
		// The attempt failed: tell the monitor if the backend is at fault,
		// give the slot back, then decide.
		if x.fault || kind == failBeforeResponse || kind == failBadResponse || kind == failTimeout {
			x.attempts = append(x.attempts, attemptResult{up: x.up, failed: true})
		}
		tried := x.ticket.Backend
		switch kind {
		case failNotSent:
			// Connection refused or pool full: nothing was sent, so the
			// limiter learns nothing and any request may move on.
			x.done(scheduler.Ignore, time.Now())
			x.sreq.Exclude = append(x.sreq.Exclude, tried)
			lastErr = errBadGateway
			continue
		case failClient:
			x.done(scheduler.Ignore, time.Now())
			return errClientBody
		case failClientGone:
			x.done(scheduler.Ignore, time.Now())
			return errClientGone
		case failTooLarge:
			x.done(scheduler.Ignore, time.Now())
			return errBodyTooLarge
		case failTimeout:
			// Not retried: the backend may still be working on it, and
			// a timeout under load is the moment not to double the work.
			x.done(scheduler.Failure, time.Now())
			return errGatewayTimeout
		}
		x.done(scheduler.Failure, time.Now())
		// The request reached a backend that failed before answering.
		// Idempotent requests whose body we still hold may be sent once
		// more, elsewhere; a non-idempotent one is never sent twice,
		// and a streamed body cannot be replayed.
		if retried || !x.idempotent || x.bodyMode == bodyStreamed || !x.svc.retries.withdraw() {
			return errBadGateway
		}
		retried = true
		x.sreq.Exclude = append(x.sreq.Exclude, tried)
		lastErr = errBadGateway
	}
}

// attempt sends the request to b and reads the response headers. Pooled
// connections the origin has closed meanwhile are detected here: such a
// failure, before any response byte, is re-tried on another connection
// when re-sending is safe.
func (x *exchange) attempt(b *pool.Backend) failKind {
	b.StartRequest()
	for try := 0; ; try++ {
		var conn *pool.Conn
		var err error
		if try == 0 {
			conn, err = b.AcquireAt(x.now, x.sreq.Deadline)
		} else {
			// A pooled connection was found dead: the origin has likely
			// closed the others parked beside it as well (a restart, its
			// keep-alive timeout), so the re-send goes on a new one.
			conn, err = b.AcquireFresh(x.sreq.Deadline)
		}
		if err != nil {
			// A dial that failed is the backend's doing; a full or
			// closed pool is not.
			var de *pool.DialError
			x.fault = errors.As(err, &de)
			return failNotSent
		}
		if !conn.Reused() {
			// A fresh dial took real time: the backend's latency starts
			// after it, as the limiter expects.
			x.now = time.Now()
		}
		x.conn = conn
		kind := x.exchangeOn(conn)
		if kind == failNone {
			return failNone
		}
		if kind == failHedged {
			// The hedge answered first: nothing more for this backend.
			b.Release(conn, false)
			x.conn = nil
			return kind
		}
		// Safe to re-send: nothing of the client's body was consumed
		// from the wire (bodies we still hold may go again), and either
		// the method is idempotent or not one byte reached the socket.
		safe := x.bodyMode != bodyStreamed || x.bodyIn == 0
		safe = safe && (x.idempotent || conn.Written() == 0)
		stale := conn.Reused() && kind == failBeforeResponse && safe
		if kind == failBeforeResponse && conn.Written() == 0 && safe {
			// A new connection closed before it took a byte is the
			// backend's fault; a pooled one is only stale.
			x.fault = !conn.Reused()
			kind = failNotSent
		}
		b.Release(conn, false)
		x.conn = nil
		// At most one re-send: it goes out on a fresh connection, which
		// is never stale.
		if !stale {
			return kind
		}
		x.now = time.Now()
	}
}

// exchangeOn writes the request on conn and reads the response headers,
// watched for the client leaving meanwhile: then the backend connection is
// closed under the exchange's feet and the attempt ends as failClientGone.
// On success the watch goes on until the response is over (finish).
func (x *exchange) exchangeOn(conn *pool.Conn) failKind {
	if x.hg != nil && !x.hedgePrimary(conn.NetConn()) {
		return failHedged
	}
	x.watchBackend(conn)
	kind := x.exchangeOnWatched(conn)
	if x.hg != nil && x.hedgePrimaryDone() && kind != failNone {
		// The hedge won and closed this connection under the attempt.
		x.unwatch()
		return failHedged
	}
	if kind != failNone && x.unwatch() {
		return failClientGone
	}
	return kind
}

// watchBackend registers the exchange in the server's watch with conn as
// the connection to close should its client leave.
func (x *exchange) watchBackend(conn *pool.Conn) {
	x.wait.backend = conn.NetConn()
	x.watched = x.s.watch.add(&x.wait, x.ctx.Conn(), x.arrival)
	if !x.watched {
		x.wait.backend = nil
	}
}

// unwatch ends watchBackend's watch, before the backend connection is
// released (after it, the watch can no longer close the connection), and
// reports whether the client left meanwhile.
func (x *exchange) unwatch() bool {
	if x.watched {
		x.s.watch.remove(&x.wait)
		x.watched = false
		x.gone = x.gone || x.wait.canceled.Load()
		x.wait.reset()
	}
	return x.gone
}

func (x *exchange) exchangeOnWatched(conn *pool.Conn) failKind {
	rht := x.backend.Config().ResponseHeaderTimeout
	slack := rht / deadlineSlackDiv
	start := x.now
	deadline := start.Add(rht)
	if d := x.sreq.Deadline; !d.IsZero() && d.Before(deadline) {
		deadline = d
	}
	// Each deadline change is a runtime timer update: arm both directions
	// at once when the request is written at once (no body, or a buffered
	// one, which fits the socket buffer), and leave them be when the
	// connection's armed ones are close enough (pool.Conn.ArmDeadline). A
	// streamed body may take as long as the client needs, so then the write
	// deadline is renewed per body read and the header wait starts once the
	// body is sent.
	if x.bodyMode == bodyStreamed {
		_ = conn.ArmWriteDeadline(start.Add(rht), slack)
	} else {
		_ = conn.ArmDeadline(deadline, slack)
	}
	switch x.bodyMode {
	case bodyBuffered:
		x.req.SetBodyRaw(x.body)
	case bodyStreamed:
		x.req.SetBodyStream(&x.reqBody, x.clientCL)
	}
	if len(x.req.Header.Host()) == 0 {
		// An HTTP/1.0 client may send no Host; HTTP/1.1 requires one.
		x.req.Header.SetHost(x.backend.Addr())
	}
	bw := conn.Writer()
	err := x.req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		bw.Reset(&nopWriter{}) // drop what is buffered; the connection is closed
		switch {
		case x.tooLarge:
			return failTooLarge
		case x.clientErr != nil && clientLeft(x.clientErr):
			return failClientGone
		case x.clientErr != nil:
			return failClient
		case isTimeout(err):
			return failTimeout
		}
		return failBeforeResponse
	}
	if x.bodyMode == bodyStreamed {
		deadline = time.Now().Add(rht)
		if d := x.sreq.Deadline; !d.IsZero() && d.Before(deadline) {
			deadline = d
		}
		_ = conn.ArmReadDeadline(deadline, slack)
	}
	br := conn.Reader()
	if _, err := br.Peek(1); err != nil {
		if isTimeout(err) {
			return failTimeout
		}
		return failBeforeResponse
	}
	if kind := x.relayInterim(br); kind != failNone {
		return kind
	}
	if x.upgrade && isSwitching(br) {
		return x.readSwitching(br, start) // upgrade.go
	}
	x.resp.SkipBody = x.isHead
	x.resp.StreamBody = true
	if err := x.resp.Read(br); err != nil {
		if isTimeout(err) {
			return failTimeout
		}
		return failBadResponse
	}
	x.now = time.Now()
	x.latency = x.now.Sub(start)
	return failNone
}

// clientLeft reports whether a client body read failed because the client
// closed or reset its connection, rather than sending something invalid or
// nothing in time.
func clientLeft(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}

type nopWriter struct{}

func (*nopWriter) Write(p []byte) (int, error) { return len(p), nil }

// retryable reports whether a backend's answer is a 502 or 503 that
// another backend should get the chance to replace: the request may be
// sent again (idempotent, its body still held), another backend is up, and
// the retry budget allows it. Anything else, including every other 5xx,
// goes to the client as the backend sent it.
func (x *exchange) retryable() bool {
	st := x.resp.StatusCode()
	if st != fasthttp.StatusBadGateway && st != fasthttp.StatusServiceUnavailable {
		return false
	}
	if !x.idempotent || x.bodyMode == bodyStreamed {
		return false
	}
	if !x.svc.sched.HasOther(x.sreq.Exclude, x.ticket.Backend) {
		return false
	}
	return x.svc.retries.withdraw()
}
