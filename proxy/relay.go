package proxy

import (
	"io"
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
