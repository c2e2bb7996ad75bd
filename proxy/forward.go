package proxy

import (
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

// deadlineSlackDiv sets how early a backend timeout may fire: a deadline
// armed on a pooled connection is kept while it is at most 1/64 of the
// timeout earlier than the one wanted (pool.Conn.ArmDeadline), which saves
// the timer update on nearly every request.
const deadlineSlackDiv = 64

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
	rt      *liveConfig // the configuration this request lives under
	route   *route
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

	wait waitCtx // the context a queued request waits with

	body        []byte // bodyBuffered contents
	bodyIn      int64  // bytes taken from the client's body
	clientErr   error
	tooLarge    bool
	respCL      int
	respBytes   int64
	bodyDone    bool
	bodyErr     error
	backendDrop bool // backend said Connection: close
	// streaming: the response does not fit the client write buffer, so
	// fasthttp writes to the client while it reads the body, and each body
	// read renews the client write deadline. A small response goes out in
	// the one write after the handler, and needs none of that.
	streaming bool

	// The clock is read once per phase, not in every call that needs it:
	// arrival (fasthttp's), admission, response headers, finish. now is
	// the latest reading.
	arrival   time.Time
	admitted0 time.Time
	now       time.Time
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
	x := &exchange{s: s, wait: newWaitCtx()}
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
	x.rt = nil
	x.route = nil
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
	x.streaming = false
	x.admitted0 = time.Time{}
	x.now = time.Time{}
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
	ctx := x.ctx
	x.rt = x.s.rt.Load()
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

	if maxURL := x.rt.cfg.Limits.MaxURLBytes; maxURL > 0 && len(uri) > maxURL {
		return errURITooLong
	}
	set, err := scanRawHeaders(h.RawHeaders())
	if err != nil {
		return err
	}
	rt := x.rt.pick(h, pathOf(target))
	if rt == nil {
		return errNoRoute
	}
	x.route, x.svc = rt, rt.svc
	x.rt.classify.classify(&x.sreq, h, rt, x.ip, x.arrival)
	x.isHead = h.IsHead()
	x.idempotent = isIdempotent(h)
	if err := x.prepareBody(); err != nil {
		return err
	}
	x.prepareRequest(target, set)
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
	case cl > 0 && x.rt.cfg.Limits.MaxBodyBytes > 0 && int64(cl) > x.rt.cfg.Limits.MaxBodyBytes:
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
func (x *exchange) prepareRequest(target []byte, set headerSet) {
	in := &x.ctx.Request.Header
	out := &x.req.Header
	in.CopyTo(out)
	stripRequestHops(out, in, set)
	out.SetRequestURIBytes(target)
	out.SetProtocolBytes(strHTTP11)
	if x.route.hostRewrite != nil {
		out.SetHostBytes(x.route.hostRewrite)
	}
	// X-Forwarded-For: the client's list, then the client.
	x.scratch = x.scratch[:0]
	if prior := in.PeekBytes(hdrXForwardedFor); len(prior) > 0 {
		x.scratch = append(x.scratch, prior...)
		x.scratch = append(x.scratch, strCommaSP...)
	}
	x.scratch = append(x.scratch, x.ip...)
	// SetCanonical: these names are constants in canonical form
	// (TestCanonicalHeaderNames), so fasthttp need not copy and normalise
	// them on every request as SetBytesKV does.
	out.SetCanonical(hdrXForwardedFor, x.scratch)
	if x.ctx.IsTLS() {
		out.SetCanonical(hdrXForwardedProto, strHTTPS)
	} else {
		out.SetCanonical(hdrXForwardedProto, strHTTP)
	}
	if host := in.Host(); len(host) > 0 {
		out.SetCanonical(hdrXForwardedHost, host)
	}
	x.scratch = appendVia(x.scratch[:0], in.PeekBytes(hdrVia), in.IsHTTP11())
	out.SetCanonical(hdrVia, x.scratch)
	out.SetCanonical(hdrRequestID, x.reqID)
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
		b := upstreamOf(x.ticket).pool.Load()
		x.backend = b
		kind := x.attempt(b)
		if kind == failNone {
			return x.respond()
		}
		// The attempt failed: give the slot back, then decide.
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
		if retried || !x.idempotent || x.bodyMode == bodyStreamed {
			return errBadGateway
		}
		retried = true
		x.sreq.Exclude = append(x.sreq.Exclude, tried)
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
		now = time.Now()
	}
	x.ticket = t
	x.admitted = true
	x.now = now
	if x.admitted0.IsZero() {
		x.admitted0 = now
	}
	return nil
}

// admitQueued waits in the scheduler's queue, watched for the client
// hanging up. With an adaptive limit below the number of client
// connections nearly every request comes here, so it allocates nothing and
// starts no goroutine: the context is the exchange's own and one watch
// goroutine serves the whole server (see queueWatch).
func (x *exchange) admitQueued() (scheduler.Ticket, error) {
	w := &x.s.watch
	watched := w.add(&x.wait, x.ctx.Conn(), x.arrival)
	t, err := x.svc.sched.Admit(&x.wait, &x.sreq)
	if watched {
		w.remove(&x.wait)
	}
	x.wait.reset()
	return t, err
}

// done returns the ticket's slot with an outcome.
func (x *exchange) done(o scheduler.Outcome, now time.Time) {
	if !x.admitted {
		return
	}
	x.admitted = false
	x.svc.sched.Done(x.ticket, o, x.latency, now)
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
		conn, err := b.AcquireAt(x.now, x.sreq.Deadline)
		if err != nil {
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
		x.now = time.Now()
	}
}

// exchangeOn writes the request on conn and reads the response headers.
func (x *exchange) exchangeOn(conn *pool.Conn) failKind {
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

type nopWriter struct{}

func (*nopWriter) Write(p []byte) (int, error) { return len(p), nil }

// respond hands the backend's response to fasthttp: headers now, the body
// as a stream that fasthttp pulls while writing to the client.
func (x *exchange) respond() error {
	ctx := x.ctx
	out := &ctx.Response.Header
	x.resp.Header.CopyTo(out)
	stripResponseHops(out, &x.resp.Header, responseHeaderSet(&x.resp.Header))
	out.SetNoDefaultContentType(true)
	x.status = x.resp.StatusCode()
	x.respCL = x.resp.Header.ContentLength()
	// A body delimited by the connection's end leaves nothing to reuse.
	x.backendDrop = x.resp.Header.ConnectionClose() || x.respCL == -2
	x.scratch = appendVia(x.scratch[:0], x.resp.Header.PeekBytes(hdrVia), x.resp.Header.IsHTTP11())
	out.SetCanonical(hdrVia, x.scratch)
	out.SetCanonical(hdrRequestID, x.reqID)

	if x.resp.BodyStream() == nil || x.respCL == 0 {
		// HEAD, 1xx, 204, 304 or an empty body: the exchange is over.
		x.bodyDone = true
		_ = x.resp.CloseBodyStream()
		x.finish(nil)
		return nil
	}
	cl := x.respCL
	if cl > 0 && cl <= inlineBodyMax && x.conn.Reader().Buffered() >= cl {
		return x.respondInline(cl)
	}
	if cl < 0 {
		cl = -1 // chunked, or until close: the client gets chunked
	}
	// The response is small when the backend's header block (what was
	// read minus what is left of the body in the buffer, a bound on what
	// goes to the client) plus the body fit the client write buffer with
	// room for the headers added here: fasthttp then sends it whole in one
	// write after the handler, with no write while the body is read.
	hdrBytes := int(x.conn.Read()) - x.conn.Reader().Buffered()
	x.streaming = cl < 0 || hdrBytes+cl+addedHeaderRoom > clientWriteBuffer
	ctx.Response.SetBodyStream(&x.respBody, cl)
	// A body that does not fit the write buffer goes out in pieces anyway;
	// sending the headers at once lets the client start, and makes a
	// backend failure mid-body a truncated response rather than none.
	ctx.Response.ImmediateHeaderFlush = cl < 0 || cl > clientWriteBuffer
	return nil
}

// inlineBodyMax bounds the bodies respondInline copies.
const inlineBodyMax = 4 << 10

// respondInline answers with a small body that arrived whole with the
// headers: it is copied into the client response and the exchange ends
// here, before fasthttp writes to the client. This skips the body-stream
// machinery (a copy buffer, the length-limited reader and its overrun
// probe, the close callback) for the most common response, and gives the
// backend connection and the scheduler slot back a client write earlier.
// The backend's part is complete either way, so the outcome is the
// backend's: a client that then fails to read its answer no longer turns
// it into Ignore.
func (x *exchange) respondInline(cl int) error {
	if cap(x.scratch) < cl {
		x.scratch = make([]byte, 0, inlineBodyMax) // once per pooled exchange
	}
	b := x.scratch[:cl]
	if _, err := io.ReadFull(x.resp.BodyStream(), b); err != nil {
		// Cannot happen with the bytes buffered; if it does, the
		// connection's state is unknown and fail closes it.
		x.bodyErr = err
		_ = x.resp.CloseBodyStream()
		x.done(scheduler.Failure, time.Now())
		return errBadGateway
	}
	x.ctx.Response.SetBody(b) // copied: the exchange is recycled before the write
	x.respBytes = int64(cl)
	x.bodyDone = true
	_ = x.resp.CloseBodyStream()
	x.finish(nil)
	return nil
}

// addedHeaderRoom bounds what respond adds to the backend's header block
// (Via, X-Request-Id) when deciding whether a response is small.
const addedHeaderRoom = 256

// Read streams the backend's body to fasthttp. Deadlines bound each step
// of a long transfer, not the total: the backend read deadline is renewed
// before every read that has to go to the socket, and while streaming the
// client write deadline before every read (each is followed by a write).
// A read served from the buffer needs neither, and the usual small
// response, read along with its headers, thus costs no timer update.
func (r *respBodyReader) Read(p []byte) (int, error) {
	x := r.x
	if x.respCL >= 0 && x.respBytes >= int64(x.respCL) {
		// fasthttp reads once more after the announced length to catch an
		// overlong body; the backend's stream says EOF there without
		// touching the socket, and so do we, without a deadline.
		return 0, io.EOF
	}
	// A chunked body may need the socket for a chunk header or CRLF even
	// with bytes buffered; it is always streaming, so it always renews.
	if x.streaming || x.conn.Reader().Buffered() == 0 {
		now := time.Now()
		rht := x.backend.Config().ResponseHeaderTimeout
		_ = x.conn.ArmReadDeadline(now.Add(rht), rht/deadlineSlackDiv)
		if x.streaming {
			_ = x.ctx.Conn().SetWriteDeadline(now.Add(x.rt.cfg.Timeouts.ClientWrite))
		}
	}
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
	if x.streaming {
		// fasthttp manages the client's deadlines only when it sets them
		// itself; lift ours so the next request on this connection is not
		// cut short by it.
		_ = x.ctx.Conn().SetWriteDeadline(time.Time{})
	}
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
	_ = x.ctx.Conn().SetReadDeadline(now.Add(x.rt.cfg.Timeouts.ClientBody))
	if x.conn != nil {
		rht := x.backend.Config().ResponseHeaderTimeout
		_ = x.conn.ArmWriteDeadline(now.Add(rht), rht/deadlineSlackDiv)
	}
	n, err := x.clientBody.Read(p)
	x.bodyIn += int64(n)
	if max := x.rt.cfg.Limits.MaxBodyBytes; max > 0 && x.bodyIn > max {
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
	now := time.Now()
	if x.conn != nil {
		x.backend.ReleaseAt(x.conn, x.bodyDone && x.bodyErr == nil && !x.backendDrop, now)
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
	x.done(o, now)
	x.logAccess(now)
	x.s.releaseExchange(x)
}

// fail answers a request that got no backend response.
func (x *exchange) fail(err error) {
	if x.conn != nil {
		x.backend.Release(x.conn, false)
		x.conn = nil
	}
	now := time.Now()
	x.done(scheduler.Ignore, now)
	var sched *scheduler.Scheduler
	if x.svc != nil {
		sched = x.svc.sched
	}
	if len(x.reqID) == 0 {
		x.reqID = newRequestID(x.reqID[:0])
	}
	x.status, x.shed, x.scratch = writeError(x.ctx, err, sched, x.reqID, now, x.scratch)
	x.logAccess(now)
	x.s.releaseExchange(x)
}

// logAccess writes the access-log line: zerolog appends into its pooled
// buffer and the accessWriter copies it, so this neither allocates nor
// makes a syscall.
func (x *exchange) logAccess(now time.Time) {
	if !x.s.accessOn {
		return
	}
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
		Dur("backend_latency", x.latency).
		Dur("total", now.Sub(x.arrival)).
		Bytes("request_id", x.reqID).
		Str("shed", x.shed).
		Send()
}
