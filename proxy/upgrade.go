package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluiceproxy/sluice/scheduler"
)

// Upgrade: a request with "Connection: upgrade" and Upgrade (WebSocket,
// mostly) is forwarded with those two fields, which are otherwise
// hop-by-hop. A 101 from the backend is relayed and the two connections
// become a tunnel: bytes flow both ways until either side closes or
// nothing moves for Timeouts.TunnelIdle. Any other answer is relayed as a
// normal response, and the connections stay HTTP.
//
// A tunnel is long-lived, and it is not a request the backend is working
// on: counted against the backend's concurrency limit, a few hundred idle
// WebSockets would shut out every ordinary request. So the admission
// ticket ends at the 101, as a success with the latency to it, and the
// tunnel lives on outside the scheduler: its backend connection is taken
// out of the pool for good (pool.Detach) and its client connection is
// hijacked from fasthttp. The server keeps the open tunnels in a relaySet
// of their own, which Shutdown waits for until its context ends and then
// closes.
//
// RFC 9110 7.8: an Upgrade in an HTTP/1.0 request is ignored, and so is
// one in a request whose body is streamed (chunked, or longer than what
// the front end reads ahead): the protocol may switch only after the
// whole request, and a streamed body is still on its way when the 101
// comes. Such a request is forwarded as an ordinary one, without Upgrade.

var (
	strUpgrade      = []byte("upgrade")
	strUpgradeTitle = []byte("Upgrade")
)

// prepareUpgrade puts Connection: Upgrade and the client's Upgrade back on
// the backend request when the client asks for an upgrade that may be
// honoured; set is what the client's header block holds.
func (x *exchange) prepareUpgrade(set headerSet) {
	in := &x.ctx.Request.Header
	if set&setConnection == 0 || !in.IsHTTP11() || x.bodyMode == bodyStreamed ||
		!namedIn(in.PeekAll(fasthttp.HeaderConnection), strUpgrade) {
		return
	}
	x.scratch = x.scratch[:0]
	for i, v := range in.PeekAll(fasthttp.HeaderUpgrade) {
		if i > 0 {
			x.scratch = append(x.scratch, strCommaSP...)
		}
		x.scratch = append(x.scratch, v...)
	}
	if len(bytes.TrimSpace(x.scratch)) == 0 {
		return
	}
	out := &x.req.Header
	out.SetCanonical(hdrUpgrade, x.scratch)
	out.SetCanonical(hdrConnection, strUpgradeTitle)
	x.upgrade = true
}

// isSwitching reports whether the response waiting on br is a 101.
func isSwitching(br *bufio.Reader) bool {
	b, err := br.Peek(interimPrefix)
	return err == nil && bytes.HasPrefix(b, strHTTPSlash) && b[8] == ' ' && b[9] == '1' && b[10] == '0' && b[11] == '1'
}

// readSwitching reads the backend's 101 header block; what follows it on
// the connection is the new protocol's. start is when the request was
// sent: the latency the scheduler learns is to the 101.
func (x *exchange) readSwitching(br *bufio.Reader, start time.Time) failKind {
	h := &x.interim
	h.SetNoDefaultContentType(true)
	if err := h.Read(br); err != nil {
		if isTimeout(err) {
			return failTimeout
		}
		return failBadResponse
	}
	x.switching = true
	x.now = time.Now()
	x.latency = x.now.Sub(start)
	return failNone
}

// respondSwitching relays the backend's 101 and turns the two connections
// into a tunnel. The exchange ends here: the ticket as a success, the
// report with status 101.
func (x *exchange) respondSwitching() error {
	h := &x.interim
	if len(h.Peek(fasthttp.HeaderUpgrade)) == 0 || !namedIn(h.PeekAll(fasthttp.HeaderConnection), strUpgrade) {
		// A backend that says it switched without saying to what has
		// left the connection in an unknown state: fail closes it.
		x.attempts = append(x.attempts, attemptResult{up: x.up, failed: true})
		x.done(scheduler.Failure, time.Now())
		return errBadGateway
	}
	// The tunnel takes the backend connection: the client watch, which
	// would close it should the client leave, ends first.
	x.unwatch()
	t := &tunnel{s: x.s, client: x.ctx.Conn(), idle: x.rt.cfg.Timeouts.TunnelIdle}
	t.head = appendSwitching(nil, h, x.reqID)
	t.backend, t.pending = x.backend.Detach(x.conn)
	x.conn = nil
	x.s.tunnels.wg.Add(1)
	x.ctx.HijackSetNoResponse(true)
	x.ctx.Hijack(t.run)
	x.status = fasthttp.StatusSwitchingProtocols
	x.bodyDone = true
	x.finish(nil)
	return nil
}

// appendSwitching serialises the 101 for the client: as any 1xx
// (appendInterim: hop-by-hop fields removed, Via added), then the two
// fields that make it an upgrade, and the request ID.
func appendSwitching(dst []byte, h *fasthttp.ResponseHeader, reqID []byte) []byte {
	dst = appendInterim(dst, h)
	dst = dst[:len(dst)-len(strCRLF)] // reopen the header block
	dst = appendField(dst, hdrUpgrade, h.Peek(fasthttp.HeaderUpgrade))
	dst = appendField(dst, hdrConnection, strUpgradeTitle)
	dst = appendField(dst, hdrRequestID, reqID)
	return append(dst, strCRLF...)
}

func appendField(dst, k, v []byte) []byte {
	dst = append(dst, k...)
	dst = append(dst, strColonSP...)
	dst = append(dst, v...)
	return append(dst, strCRLF...)
}

// DefaultTunnelIdle is Timeouts.TunnelIdle's default.
const DefaultTunnelIdle = 10 * time.Minute

// tunnel is one upgraded connection: the client's, hijacked from
// fasthttp, and the backend's, detached from its pool.
type tunnel struct {
	s       *Server
	client  net.Conn // the connection itself: closing the hijacked wrapper does nothing
	backend net.Conn
	head    []byte // the 101 for the client
	pending []byte // what the backend sent after its 101, already read
	idle    time.Duration
	last    atomic.Int64 // unix nanoseconds of the last byte moved, either way
}

// run is the hijack handler, on its own goroutine with c, the client
// connection (reads first yield what fasthttp had buffered). It returns
// when the tunnel is over; fasthttp then closes the client connection.
func (t *tunnel) run(c net.Conn) {
	set := &t.s.tunnels
	defer set.end(t.client)
	defer t.backend.Close()
	if !set.start(t.client) {
		return
	}
	t.touch()
	_ = c.SetWriteDeadline(time.Now().Add(t.idle))
	if _, err := c.Write(t.head); err != nil {
		return
	}
	if len(t.pending) > 0 {
		if _, err := c.Write(t.pending); err != nil {
			return
		}
	}
	t.head, t.pending = nil, nil
	done := make(chan struct{})
	go func() {
		defer close(done)
		t.pipe(t.backend, c)
		t.close()
	}()
	t.pipe(c, t.backend)
	t.close()
	<-done
}

// close ends both directions: the first one to end ends the tunnel, as in
// net/http/httputil. A WebSocket closes both ways together anyway, and a
// half-open tunnel would only wait for the idle timeout.
func (t *tunnel) close() {
	_ = t.client.Close()
	_ = t.backend.Close()
}

func (t *tunnel) touch() { t.last.Store(time.Now().UnixNano()) }

// pipe copies src to dst until either fails or the tunnel has been idle,
// both ways, for t.idle. Each direction waits for at most t.idle after the
// last byte that moved in either, so a tunnel busy one way only is not
// cut off.
func (t *tunnel) pipe(dst, src net.Conn) {
	bp := copyBuffers.Get().(*[copyBufferSize]byte)
	defer copyBuffers.Put(bp)
	for {
		last := time.Unix(0, t.last.Load())
		_ = src.SetReadDeadline(last.Add(t.idle))
		n, err := src.Read(bp[:])
		if n > 0 {
			t.touch()
			_ = dst.SetWriteDeadline(time.Now().Add(t.idle))
			if _, werr := dst.Write(bp[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if isTimeout(err) && time.Since(time.Unix(0, t.last.Load())) < t.idle {
				continue // the other direction moved meanwhile
			}
			if err != io.EOF {
				t.s.log.Debug().Err(err).Msg("tunnel ended")
			}
			return
		}
	}
}

// Tunnels is the number of upgraded connections open now.
func (s *Server) Tunnels() int { return s.tunnels.open() }

// open is the number of connections registered.
func (r *relaySet) open() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}
