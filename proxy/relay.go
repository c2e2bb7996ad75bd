package proxy

import (
	"context"
	"io"
	"net"
	"sync"
	"time"

	"github.com/sluiceproxy/sluice/scheduler"
)

// The relay stage: the response streamed to the client, and the client's
// body streamed to the backend.

type reqBodyReader struct{ x *exchange }

type respBodyReader struct{ x *exchange }

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
	if !x.resp.Header.IsHTTP11() {
		// The version is the hop's (RFC 9110 6.2): an HTTP/1.0 backend's
		// answer goes out as the proxy's HTTP/1.1.
		out.SetProtocol(strHTTP11)
	}

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
	if cl < 0 && !ctx.Request.Header.IsHTTP11() {
		x.streaming = true
		x.maybeSpool()
		return x.respondUntilClose()
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
	if x.streaming {
		x.maybeSpool()
	}
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
	if x.spooled {
		return x.readSpool(p)
	}
	if x.streaming {
		_ = x.ctx.Conn().SetWriteDeadline(time.Now().Add(x.rt.cfg.Timeouts.ClientWrite))
	}
	n, err := x.readBackend(p)
	if err == io.EOF {
		x.copyResponseTrailers()
	}
	return n, err
}

// readBackend reads the backend's body, for the client directly or for
// the spool's writer.
func (x *exchange) readBackend(p []byte) (int, error) {
	if x.respCL >= 0 && x.respBytes >= int64(x.respCL) {
		// fasthttp reads once more after the announced length to catch an
		// overlong body; the backend's stream says EOF there without
		// touching the socket, and so do we, without a deadline.
		return 0, io.EOF
	}
	// A chunked body may need the socket for a chunk header or CRLF even
	// with bytes buffered; it is always streaming, so it always renews.
	if x.streaming || x.conn.Reader().Buffered() == 0 {
		rht := x.backend.Config().ResponseHeaderTimeout
		_ = x.conn.ArmReadDeadline(time.Now().Add(rht), rht/deadlineSlackDiv)
	}
	n, err := x.resp.BodyStream().Read(p)
	if x.cache != nil {
		x.cache.tee(p[:n])
	}
	x.respBytes += int64(n)
	switch {
	case err == io.EOF:
		x.bodyDone = true
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
	if x.streaming {
		// fasthttp manages the client's deadlines only when it sets them
		// itself; lift ours so the next request on this connection is not
		// cut short by it.
		_ = x.ctx.Conn().SetWriteDeadline(time.Time{})
	}
	if x.spooled {
		x.closeSpoolReader(err)
		return nil
	}
	_ = x.resp.CloseBodyStream()
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

// Read feeds the client's body to the backend request: what was spooled
// first (spoolRequest), then the client's stream, enforcing MaxBodyBytes
// and the per-read client timeout.
func (r *reqBodyReader) Read(p []byte) (int, error) {
	x := r.x
	now := time.Now()
	if x.conn != nil {
		rht := x.backend.Config().ResponseHeaderTimeout
		_ = x.conn.ArmWriteDeadline(now.Add(rht), rht/deadlineSlackDiv)
	}
	if x.reqSpooled {
		n, err := x.rsp.Read(p)
		if err != io.EOF {
			return n, err
		}
		x.reqSpooled = false
		if x.reqComplete {
			x.copyRequestTrailers()
			return 0, io.EOF
		}
	}
	return x.readClient(p)
}

// readClient reads the client's body, enforcing MaxBodyBytes and the
// per-read client timeout.
func (x *exchange) readClient(p []byte) (int, error) {
	_ = x.ctx.Conn().SetReadDeadline(time.Now().Add(x.rt.cfg.Timeouts.ClientBody))
	n, err := x.clientBody.Read(p)
	x.bodyIn += int64(n)
	if max := x.rt.cfg.Limits.MaxBodyBytes; max > 0 && x.bodyIn > max {
		x.tooLarge = true
		return 0, errBodyTooLarge
	}
	switch {
	case err == io.EOF && !x.reqSpooled:
		x.copyRequestTrailers()
	case err == io.EOF:
	case err != nil:
		x.clientErr = err
	}
	return n, err
}

// copyRequestTrailers moves the client's trailer values, read at the end
// of its chunked body, into the backend request.
func (x *exchange) copyRequestTrailers() {
	for _, k := range x.ctx.Request.Header.PeekTrailerKeys() {
		if v := x.ctx.Request.Header.PeekBytes(k); len(v) > 0 {
			x.req.Header.SetBytesKV(k, v)
		}
	}
}

// respondUntilClose answers an HTTP/1.0 client whose response has no
// known length (the backend sent it chunked, or until it closed). Such a
// client cannot read chunked coding and must never see Transfer-Encoding
// (RFC 9112 6.1), and fasthttp streams a body of unknown length chunked
// whatever the client's version. So the response goes out delimited by
// the connection's end: the header block is serialised now, without
// Content-Length or Transfer-Encoding and with Connection: close, and the
// connection is hijacked without a response from fasthttp (which flushes
// whatever it still holds for the connection first, so nothing is sent out
// of order); relayUntilClose then streams the body on it and fasthttp
// closes it when that returns, which is where the body ends for the
// client. A keep-alive the client asked for is thus declined, as it must
// be for a close-delimited body. The caller has set streaming (and
// started a spool, if the body is to be buffered).
func (x *exchange) respondUntilClose() error {
	out := &x.ctx.Response.Header
	out.SetContentLength(-2) // no length: also sets Connection: close
	out.DelBytes(hdrTransferEncoding)
	out.DelBytes(hdrTrailer) // no chunked coding, so no trailers
	x.head = out.AppendBytes(x.head[:0])
	x.s.relays.wg.Add(1)
	x.ctx.HijackSetNoResponse(true)
	x.ctx.Hijack(x.untilClose)
	return nil
}

// relayUntilClose runs on the hijacked client connection c: the head, then
// the body until the backend's end, then the exchange finishes; fasthttp
// closes c once this returns.
func (x *exchange) relayUntilClose(c net.Conn) {
	// The connection itself, not c: closing a hijacked connection's
	// wrapper is a no-op, and Shutdown may have to cut this one off.
	nc := x.ctx.Conn()
	relays := &x.s.relays
	defer relays.end(nc)
	bp := copyBuffers.Get().(*[copyBufferSize]byte)
	defer copyBuffers.Put(bp)
	var err error = net.ErrClosed
	if relays.start(nc) {
		_ = c.SetWriteDeadline(time.Now().Add(x.rt.cfg.Timeouts.ClientWrite))
		_, err = c.Write(x.head)
	}
	for err == nil {
		n, rerr := x.respBody.Read(bp[:])
		if n > 0 {
			_, err = c.Write(bp[:n])
		}
		if rerr != nil {
			if rerr != io.EOF && err == nil {
				err = rerr
			}
			break
		}
	}
	_ = x.respBody.CloseWithError(err)
}

// copyBufferSize is the piece relayUntilClose moves at a time, the client
// write buffer's size.
const copyBufferSize = clientWriteBuffer

var copyBuffers = sync.Pool{New: func() any { return new([copyBufferSize]byte) }}

// relaySet keeps the responses streamed on hijacked client connections,
// which fasthttp's Shutdown no longer knows of, and the spooled ones, whose
// backend half may still run after fasthttp's Shutdown gave up, so that
// Shutdown can wait for them and, once its context ends, cut them off.
type relaySet struct {
	wg sync.WaitGroup // one per relay, from the handler on

	// Protected by mu.
	mu     sync.Mutex
	conns  map[net.Conn]int // relays on each connection (a spooled body relayed until close is two)
	closed bool             // Shutdown gave up waiting: a relay starting now is cut off
}

// start registers a relay's connection; false means Shutdown has cut the
// relays off, and c is closed.
func (r *relaySet) start(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		_ = c.Close()
		return false
	}
	if r.conns == nil {
		r.conns = make(map[net.Conn]int)
	}
	r.conns[c]++
	return true
}

func (r *relaySet) end(c net.Conn) {
	r.mu.Lock()
	if n := r.conns[c] - 1; n > 0 {
		r.conns[c] = n
	} else {
		delete(r.conns, c)
	}
	r.mu.Unlock()
	r.wg.Done()
}

// wait waits for every relay to end, or until ctx ends; then it closes the
// connections of those still running, which ends them, and waits for that.
func (r *relaySet) wait(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		_ = c.Close()
	}
	r.mu.Unlock()
	<-done
}
