package proxy

import (
	"io"
	"net"
	"sync/atomic"
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

// clientWriteBuffer is the front end's per-connection write buffer.
const clientWriteBuffer = 16 << 10

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
	up      *upstream     // the backend of the current attempt
	backend *pool.Backend // its pool, as loaded for this attempt
	conn    *pool.Conn
	req     fasthttp.Request
	// resp is the backend response; a pointer so that a hedge that
	// answers first can hand its own over (hedge.go).
	resp    *fasthttp.Response
	interim fasthttp.ResponseHeader // a 1xx being relayed (interim.go)
	sreq    scheduler.Request
	ticket  scheduler.Ticket

	admitted   bool
	idempotent bool
	isHead     bool
	// upgrade: the request asks for a protocol switch that may be
	// honoured, and goes out with Upgrade; switching: the backend answered
	// 101 (upgrade.go).
	upgrade    bool
	switching  bool
	bodyMode   uint8
	clientCL   int       // client's Content-Length, -1 chunked
	clientBody io.Reader // fasthttp's request body stream
	reqBody    reqBodyReader
	respBody   respBodyReader
	// untilClose is relayUntilClose bound to this exchange once, so that
	// hijacking a connection for it allocates no closure.
	untilClose func(net.Conn)

	wait waitCtx // the context a queued request waits with
	// watched: wait is registered in the server's watch for the time the
	// request is at a backend (watchBackend); gone: the watch found the
	// client gone meanwhile and closed the backend connection.
	watched bool
	gone    bool

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

	// The response spool (spool.go, buffer.go): spooled says the body
	// goes through sp, filled by a goroutine of its own. From then on the
	// writer side (fill) owns the backend side of the exchange, the
	// client side (fasthttp's Read and CloseWithError) owns ctx and sent,
	// and the last of the two to end (left) finishes the exchange.
	spooled bool
	sp      spool
	left    atomic.Int32
	sent    int64    // body bytes given to the client
	spConn  net.Conn // the client connection, registered in Server.relays
	// The request body's spool: reqSpooled while the backend request
	// still reads from it, rspUsed until the exchange is released,
	// reqComplete when it holds the whole body.
	rsp         spool
	reqSpooled  bool
	rspUsed     bool
	reqComplete bool
	// Written by one side before its end, read by the last one.
	spOutcome   scheduler.Outcome
	spFillErr   error // the backend side's verdict on the client (errClientGone)
	spClientErr error // why writing to the client stopped

	// The clock is read once per phase, not in every call that needs it:
	// arrival (fasthttp's), admission, response headers, finish. now is
	// the latest reading.
	arrival   time.Time
	admitted0 time.Time
	now       time.Time
	latency   time.Duration
	status    int
	shed      string

	// hg is the hedge armed for the primary attempt, until the race is
	// resolved (hedge.go); hedgeLog is the access log's word on it.
	hg       *hedge
	hedgeLog string

	// cache: the cache stage's view of a request that went to the origin
	// on a cached route (cache.go); nil on every other request.
	cache *cacheFlow

	rec      Record          // reported by record, once
	attempts []attemptResult // every attempt's result, for the monitor
	fault    bool            // the failed attempt was the backend's fault

	reqID   []byte
	ip      []byte
	method  []byte
	path    []byte
	scratch []byte
	head    []byte // a response header block serialised by the proxy itself
	// cacheKey: the request's cache key (cache.go), built here so that a
	// hit allocates nothing; a request that goes to the origin copies it.
	cacheKey []byte
}

func newExchange(s *Server) *exchange {
	x := &exchange{s: s, wait: newWaitCtx(), resp: &fasthttp.Response{}}
	x.reqBody.x = x
	x.respBody.x = x
	x.untilClose = x.relayUntilClose
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
	x.up = nil
	x.cache = nil
	x.rec = Record{}
	x.attempts = x.attempts[:0]
	x.backend = nil
	x.conn = nil
	x.req.Reset()
	x.resp.Reset()
	x.admitted = false
	x.upgrade, x.switching = false, false
	x.gone = false
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
	x.spooled = false
	if x.rspUsed {
		x.rsp.free()
		x.rspUsed, x.reqSpooled, x.reqComplete = false, false, false
	}
	x.sent = 0
	x.spFillErr, x.spClientErr = nil, nil
	x.admitted0 = time.Time{}
	x.now = time.Time{}
	x.latency = 0
	x.status = 0
	x.shed = ""
	x.hedgeLog = HedgeNone
	x.reqID = x.reqID[:0]
	x.ip = x.ip[:0]
	x.method = x.method[:0]
	x.path = x.path[:0]
	x.cacheKey = x.cacheKey[:0]
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
