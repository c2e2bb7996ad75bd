package proxy

import (
	"context"
	"io"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluiceproxy/sluice/pool"
	"github.com/sluiceproxy/sluice/scheduler"
)

// How a request body is sent to backends.
const (
	bodyNone     = iota // no body
	bodyBuffered        // small, known length, held in exchange.body: replayable
	bodyStreamed        // read from the client while written to the backend: sent once
)

// staleRetries bounds re-sends on fresh connections after pooled ones
// turned out to be closed by the origin.
const staleRetries = 2

// clientWriteBuffer is the front end's per-connection write buffer.
const clientWriteBuffer = 16 << 10

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
)

// exchange is the state of one proxied request. It is pooled: everything
// the hot path needs, including the backend request and response and the
// body readers handed to fasthttp, lives here and is reused, so a request
// allocates nothing in steady state.
//
// It is owned by the handler goroutine, and after the handler returns by
// the fasthttp connection goroutine writing the response (which calls
// respBody's Read and CloseWithError). finish returns it to the pool.
type exchange struct {
	s *Server

	ctx     *fasthttp.RequestCtx
	svc     *service
	backend *pool.Backend
	conn    *pool.Conn
	req     fasthttp.Request
	resp    fasthttp.Response
	sreq    scheduler.Request
	ticket  scheduler.Ticket

	admitted   bool
	idempotent bool
	isHead     bool
	bodyMode   uint8
	clientCL   int       // client's Content-Length, -1 chunked
	clientBody io.Reader // fasthttp's request body stream
	reqBody    reqBodyReader
	respBody   respBodyReader

	body        []byte // bodyBuffered contents
	bodyIn      int64  // bytes taken from the client's body
	clientErr   error
	tooLarge    bool
	respCL      int
	respBytes   int64
	bodyDone    bool
	bodyErr     error
	backendDrop bool // backend said Connection: close

	arrival   time.Time
	admitted0 time.Time
	sentAt    time.Time
	latency   time.Duration
	status    int
	shed      string

	reqID   []byte
	ip      []byte
	method  []byte
	path    []byte
	scratch []byte
}

type reqBodyReader struct{ x *exchange }
type respBodyReader struct{ x *exchange }

func newExchange(s *Server) *exchange {
	x := &exchange{s: s}
	x.reqBody.x = x
	x.respBody.x = x
	return x
}

func (s *Server) acquireExchange(ctx *fasthttp.RequestCtx) *exchange {
	x := s.exchanges.Get().(*exchange)
	x.ctx = ctx
	x.arrival = ctx.Time()
	return x
}

func (s *Server) releaseExchange(x *exchange) {
	x.ctx = nil
	x.svc = nil
	x.backend = nil
	x.conn = nil
	x.req.Reset()
	x.resp.Reset()
	x.admitted = false
	x.clientBody = nil
	x.body = x.body[:0]
	x.bodyIn = 0
	x.clientErr = nil
	x.tooLarge = false
	x.respBytes = 0
	x.bodyDone = false
	x.bodyErr = nil
	x.backendDrop = false
	x.admitted0 = time.Time{}
	x.sentAt = time.Time{}
	x.latency = 0
	x.status = 0
	x.shed = ""
	x.reqID = x.reqID[:0]
	x.ip = x.ip[:0]
	x.method = x.method[:0]
	x.path = x.path[:0]
	if cap(x.body) > 64<<10 {
		x.body = nil // do not pin an unusually large buffer in the pool
	}
	s.exchanges.Put(x)
}

// handle is the fasthttp handler: every request passes here exactly once
// and leaves with a response.
func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	x := s.acquireExchange(ctx)
	if err := x.run(); err != nil {
		x.fail(err)
	}
}

// run takes the request from arrival to the moment the backend's response
// headers are set on ctx. A nil return means the response is set and the
// exchange finishes itself; an error is answered by fail.
func (x *exchange) run() error {
	ctx, s := x.ctx, x.s
	h := &ctx.Request.Header

	if id := h.PeekBytes(hdrRequestID); validRequestID(id) {
		x.reqID = append(x.reqID[:0], id...)
	} else {
		x.reqID = newRequestID(x.reqID[:0])
	}
	uri := h.RequestURI()
	target := originForm(uri)
	x.method = append(x.method[:0], h.Method()...)
	x.path = append(x.path[:0], target...)
	x.ip = appendIP(x.ip[:0], ctx.RemoteIP())

	if s.maxURL > 0 && len(uri) > s.maxURL {
		return errURITooLong
	}
	if err := checkRawHeaders(h.RawHeaders()); err != nil {
		return err
	}
	svc, rt := s.pick(h, pathOf(target))
	if svc == nil {
		return errNoRoute
	}
	x.svc = svc
	s.classify.classify(&x.sreq, h, rt, x.ip, x.arrival)
	x.isHead = h.IsHead()
	x.idempotent = isIdempotent(h)
	if err := x.prepareBody(); err != nil {
		return err
	}
	x.prepareRequest(target)
	return x.forward()
}

// isIdempotent: RFC 9110 9.2.2, minus the ones a client marks otherwise
// by sending a body we cannot replay (checked separately).
func isIdempotent(h *fasthttp.RequestHeader) bool {
	return h.IsGet() || h.IsHead() || h.IsOptions() || h.IsPut() || h.IsDelete() || h.IsTrace()
}

// prepareBody decides how the body travels. Small bodies of known length
// are read whole now (fasthttp has them in memory already), which makes
// them replayable; anything else is streamed once.
func (x *exchange) prepareBody() error {
	h := &x.ctx.Request.Header
	cl := h.ContentLength()
	x.clientCL = cl
	x.clientBody = x.ctx.RequestBodyStream()
	switch {
	case cl == 0 || cl == -2 || x.clientBody == nil:
		x.bodyMode = bodyNone
		return nil
	case cl > 0 && x.s.maxBody > 0 && int64(cl) > x.s.maxBody:
		return errBodyTooLarge
	case cl > 0 && cl <= prefetchBytes:
		if cap(x.body) < cl {
			x.body = make([]byte, cl, prefetchBytes)
		}
		x.body = x.body[:cl]
		n, err := io.ReadFull(&x.reqBody, x.body)
		if err != nil || n != cl {
			return errClientBody
		}
		x.bodyMode = bodyBuffered
		return nil
	}
	x.bodyMode = bodyStreamed
	return nil
}

// prepareRequest builds the backend request's headers, once for all
// attempts: the client's headers as they came (including the raw request
// target), minus hop-by-hop ones, plus the forwarding headers.
func (x *exchange) prepareRequest(target []byte) {
	in := &x.ctx.Request.Header
	out := &x.req.Header
	in.CopyTo(out)
	stripRequestHops(out, in)
	out.SetRequestURIBytes(target)
	out.SetProtocolBytes(strHTTP11)
	if x.svc.hostRewrite != nil {
		out.SetHostBytes(x.svc.hostRewrite)
	}
	// X-Forwarded-For: the client's list, then the client.
	x.scratch = x.scratch[:0]
	if prior := in.PeekBytes(hdrXForwardedFor); len(prior) > 0 {
		x.scratch = append(x.scratch, prior...)
		x.scratch = append(x.scratch, strCommaSP...)
	}
	x.scratch = append(x.scratch, x.ip...)
	out.SetBytesKV(hdrXForwardedFor, x.scratch)
	if x.ctx.IsTLS() {
		out.SetBytesKV(hdrXForwardedProto, strHTTPS)
	} else {
		out.SetBytesKV(hdrXForwardedProto, strHTTP)
	}
	if host := in.Host(); len(host) > 0 {
		out.SetBytesKV(hdrXForwardedHost, host)
	}
	x.scratch = appendVia(x.scratch[:0], in.PeekBytes(hdrVia), in.IsHTTP11())
	out.SetBytesKV(hdrVia, x.scratch)
	out.SetBytesKV(hdrRequestID, x.reqID)
}

func appendVia(dst, prior []byte, http11 bool) []byte {
	if len(prior) > 0 {
		dst = append(dst, prior...)
		dst = append(dst, strCommaSP...)
	}
	if http11 {
		return append(dst, strVia11...)
	}
	return append(dst, strVia10...)
}

// forward admits the request, sends it to the chosen backend and sets up
// the response. Failures before a response lead to another backend when
// that is safe (see attempt), to 502/504 otherwise.
func (x *exchange) forward() error {
	var lastErr error
	retried := false
	for {
		if err := x.admit(); err != nil {
			if lastErr != nil && err == scheduler.ErrNoBackend {
				return lastErr // every backend failed this request
			}
			return err
		}
		b := x.svc.backends[x.ticket.Backend]
		x.backend = b
		kind := x.attempt(b)
		if kind == failNone {
			return x.respond()
		}
		// The attempt failed: give the slot back, then decide.
		bit := uint64(1) << uint(x.ticket.Backend)
		switch kind {
		case failNotSent:
			// Connection refused or pool full: nothing was sent, so the
			// limiter learns nothing and any request may move on.
			x.done(scheduler.Ignore)
			x.sreq.Exclude |= bit
			lastErr = errBadGateway
			continue
		case failClient:
			x.done(scheduler.Ignore)
			return errClientBody
		case failTooLarge:
			x.done(scheduler.Ignore)
			return errBodyTooLarge
		case failTimeout:
			// Not retried: the backend may still be working on it, and
			// a timeout under load is the moment not to double the work.
			x.done(scheduler.Failure)
			return errGatewayTimeout
		}
		x.done(scheduler.Failure)
		// The request reached a backend that failed before answering.
		// Idempotent requests whose body we still hold may be sent once
		// more, elsewhere; a non-idempotent one is never sent twice,
		// and a streamed body cannot be replayed.
		if retried || !x.idempotent || x.bodyMode == bodyStreamed {
			return errBadGateway
		}
		retried = true
		x.sreq.Exclude |= bit
		lastErr = errBadGateway
	}
}

// admit gets a ticket: at once if the scheduler has room, else by waiting
// in its queue, watched for the client hanging up.
func (x *exchange) admit() error {
	now := time.Now()
	t, ok := x.svc.sched.TryAdmit(&x.sreq, now)
	if !ok {
		var err error
		t, err = x.admitQueued()
		if err != nil {
			return err
		}
	}
	x.ticket = t
	x.admitted = true
	if x.admitted0.IsZero() {
		x.admitted0 = time.Now()
	}
	return nil
}

// admitQueued is the slow path; its allocations (context, watcher) are
// paid only by requests that have to wait anyway.
func (x *exchange) admitQueued() (scheduler.Ticket, error) {
	c, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := startClientWatch(x.ctx.Conn(), cancel)
	t, err := x.svc.sched.Admit(c, &x.sreq)
	w.Stop()
	return t, err
}

// done returns the ticket's slot with an outcome.
func (x *exchange) done(o scheduler.Outcome) {
	if !x.admitted {
		return
	}
	x.admitted = false
	x.svc.sched.Done(x.ticket, o, x.latency, time.Now())
	if x.backend != nil {
		x.backend.FinishRequest(o == scheduler.Failure)
	}
}

// attempt sends the request to b and reads the response headers. Pooled
// connections the origin has closed meanwhile are detected here: such a
// failure, before any response byte, is re-tried on another connection
// when re-sending is safe.
func (x *exchange) attempt(b *pool.Backend) failKind {
	b.StartRequest()
	for try := 0; ; try++ {
		conn, err := b.Acquire(x.sreq.Deadline)
		if err != nil {
			return failNotSent
		}
		x.conn = conn
		kind := x.exchangeOn(conn)
		if kind == failNone {
			return failNone
		}
		// Safe to re-send: nothing of the client's body was consumed
		// from the wire (bodies we still hold may go again), and either
		// the method is idempotent or not one byte reached the socket.
		safe := x.bodyMode != bodyStreamed || x.bodyIn == 0
		safe = safe && (x.idempotent || conn.Written() == 0)
		stale := conn.Reused() && kind == failBeforeResponse && safe
		if kind == failBeforeResponse && conn.Written() == 0 && safe {
			kind = failNotSent
		}
		b.Release(conn, false)
		x.conn = nil
		if !stale || try >= staleRetries {
			return kind
		}
	}
}

// exchangeOn writes the request on conn and reads the response headers.
func (x *exchange) exchangeOn(conn *pool.Conn) failKind {
	nc := conn.NetConn()
	cfg := x.backend.Config()
	start := time.Now()
	_ = nc.SetWriteDeadline(start.Add(cfg.ResponseHeaderTimeout))
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
		case x.clientErr != nil:
			return failClient
		case isTimeout(err):
			return failTimeout
		}
		return failBeforeResponse
	}
	x.sentAt = time.Now()
	deadline := x.sentAt.Add(cfg.ResponseHeaderTimeout)
	if d := x.sreq.Deadline; !d.IsZero() && d.Before(deadline) {
		deadline = d
	}
	_ = nc.SetReadDeadline(deadline)
	br := conn.Reader()
	if _, err := br.Peek(1); err != nil {
		if isTimeout(err) {
			return failTimeout
		}
		return failBeforeResponse
	}
	x.resp.SkipBody = x.isHead
	x.resp.StreamBody = true
	if err := x.resp.Read(br); err != nil {
		if isTimeout(err) {
			return failTimeout
		}
		return failBadResponse
	}
	x.latency = time.Since(start)
	return failNone
}

type nopWriter struct{}

func (*nopWriter) Write(p []byte) (int, error) { return len(p), nil }

// respond hands the backend's response to fasthttp: headers now, the body
// as a stream that fasthttp pulls while writing to the client.
func (x *exchange) respond() error {
	ctx := x.ctx
	out := &ctx.Response.Header
	x.resp.Header.CopyTo(out)
	stripResponseHops(out, &x.resp.Header)
	out.SetNoDefaultContentType(true)
	x.status = x.resp.StatusCode()
	x.respCL = x.resp.Header.ContentLength()
	// A body delimited by the connection's end leaves nothing to reuse.
	x.backendDrop = x.resp.Header.ConnectionClose() || x.respCL == -2
	x.scratch = appendVia(x.scratch[:0], x.resp.Header.PeekBytes(hdrVia), x.resp.Header.IsHTTP11())
	out.SetBytesKV(hdrVia, x.scratch)
	out.SetBytesKV(hdrRequestID, x.reqID)

	if x.resp.BodyStream() == nil || x.respCL == 0 {
		// HEAD, 1xx, 204, 304 or an empty body: the exchange is over.
		x.bodyDone = true
		_ = x.resp.CloseBodyStream()
		x.finish(nil)
		return nil
	}
	cl := x.respCL
	if cl < 0 {
		cl = -1 // chunked, or until close: the client gets chunked
	}
	_ = x.backendConnDeadline()
	ctx.Response.SetBodyStream(&x.respBody, cl)
	// A body that does not fit the write buffer goes out in pieces anyway;
	// sending the headers at once lets the client start, and makes a
	// backend failure mid-body a truncated response rather than none.
	ctx.Response.ImmediateHeaderFlush = cl < 0 || cl > clientWriteBuffer
	return nil
}

func (x *exchange) backendConnDeadline() error {
	return x.conn.NetConn().SetReadDeadline(time.Now().Add(x.backend.Config().ResponseHeaderTimeout))
}

// Read streams the backend's body to fasthttp. Each read renews the
// backend read deadline and the client write deadline, so a long transfer
// is bounded per step, not in total.
func (r *respBodyReader) Read(p []byte) (int, error) {
	x := r.x
	now := time.Now()
	_ = x.conn.NetConn().SetReadDeadline(now.Add(x.backend.Config().ResponseHeaderTimeout))
	_ = x.ctx.Conn().SetWriteDeadline(now.Add(x.s.cfg.Timeouts.ClientWrite))
	n, err := x.resp.BodyStream().Read(p)
	x.respBytes += int64(n)
	switch {
	case err == io.EOF:
		x.bodyDone = true
		x.copyResponseTrailers()
	case err != nil:
		x.bodyErr = err
	case x.respCL >= 0 && x.respBytes >= int64(x.respCL):
		x.bodyDone = true
	}
	return n, err
}

// CloseWithError is called by fasthttp once the response is written (err
// nil) or abandoned (err says why); it ends the exchange.
func (r *respBodyReader) CloseWithError(err error) error {
	x := r.x
	_ = x.resp.CloseBodyStream()
	// fasthttp manages the client's deadlines only when it sets them
	// itself; lift ours so the next request on this connection is not
	// cut short by it.
	_ = x.ctx.Conn().SetWriteDeadline(time.Time{})
	x.finish(err)
	return nil
}

// copyResponseTrailers moves the backend's trailer values, read at the end
// of its chunked body, into the client response, whose announced trailers
// fasthttp writes after the last chunk.
func (x *exchange) copyResponseTrailers() {
	for _, k := range x.resp.Header.PeekTrailerKeys() {
		if v := x.resp.Header.PeekBytes(k); len(v) > 0 {
			x.ctx.Response.Header.SetBytesKV(k, v)
		}
	}
}

// Read feeds the client's body to the backend request, enforcing
// MaxBodyBytes and the per-read client timeout.
func (r *reqBodyReader) Read(p []byte) (int, error) {
	x := r.x
	now := time.Now()
	_ = x.ctx.Conn().SetReadDeadline(now.Add(x.s.cfg.Timeouts.ClientBody))
	if x.conn != nil {
		_ = x.conn.NetConn().SetWriteDeadline(now.Add(x.backend.Config().ResponseHeaderTimeout))
	}
	n, err := x.clientBody.Read(p)
	x.bodyIn += int64(n)
	if x.s.maxBody > 0 && x.bodyIn > x.s.maxBody {
		x.tooLarge = true
		return 0, errBodyTooLarge
	}
	switch {
	case err == io.EOF:
		for _, k := range x.ctx.Request.Header.PeekTrailerKeys() {
			if v := x.ctx.Request.Header.PeekBytes(k); len(v) > 0 {
				x.req.Header.SetBytesKV(k, v)
			}
		}
	case err != nil:
		x.clientErr = err
	}
	return n, err
}

// finish ends an exchange that got a backend response: it gives the
// connection back (kept only if the body was read to its end), reports
// the outcome, logs, and recycles the exchange. clientErr is why writing
// to the client stopped, if it did.
func (x *exchange) finish(clientErr error) {
	if x.conn != nil {
		x.backend.Release(x.conn, x.bodyDone && x.bodyErr == nil && !x.backendDrop)
		x.conn = nil
	}
	var o scheduler.Outcome
	switch {
	case x.bodyErr != nil:
		o = scheduler.Failure // the backend broke off its body
	case !x.bodyDone || clientErr != nil:
		o = scheduler.Ignore // the client went away
	case x.status >= 500:
		o = scheduler.Failure
	default:
		o = scheduler.Success
	}
	x.done(o)
	x.logAccess()
	x.s.releaseExchange(x)
}

// fail answers a request that got no backend response.
func (x *exchange) fail(err error) {
	if x.conn != nil {
		x.backend.Release(x.conn, false)
		x.conn = nil
	}
	x.done(scheduler.Ignore)
	var sched *scheduler.Scheduler
	if x.svc != nil {
		sched = x.svc.sched
	}
	if len(x.reqID) == 0 {
		x.reqID = newRequestID(x.reqID[:0])
	}
	x.status, x.shed, x.scratch = writeError(x.ctx, err, sched, x.reqID, time.Now(), x.scratch)
	x.logAccess()
	x.s.releaseExchange(x)
}

// logAccess writes the access-log line: zerolog appends into its pooled
// buffer and the accessWriter copies it, so this neither allocates nor
// makes a syscall.
func (x *exchange) logAccess() {
	if !x.s.accessOn {
		return
	}
	now := time.Now()
	e := x.s.access.Log()
	if x.svc != nil {
		e = e.Str("service", x.svc.name)
	}
	if x.backend != nil {
		e = e.Str("backend", x.backend.Addr())
	}
	var queued time.Duration
	if !x.admitted0.IsZero() {
		queued = x.admitted0.Sub(x.arrival)
	}
	e.Bytes("method", x.method).
		Bytes("path", x.path).
		Int("status", x.status).
		Int64("bytes_in", x.bodyIn).
		Int64("bytes_out", x.respBytes).
		Dur("queue", queued).
		Dur("backend", x.latency).
		Dur("total", now.Sub(x.arrival)).
		Bytes("request_id", x.reqID).
		Str("shed", x.shed).
		Send()
}
