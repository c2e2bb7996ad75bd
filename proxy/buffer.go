package proxy

import (
	"bytes"
	"io"
	"time"

	"github.com/sluiceproxy/sluice/scheduler"
)

// Response buffering: the glue between an exchange and its spool.
//
// A response that does not fit the client write buffer is spooled unless
// its route turns buffering off, the backend asks for none
// (X-Accel-Buffering: no) or it is a server-sent event stream. A goroutine
// of its own (fill) reads the backend's body into the spool as fast as the
// backend sends it, while fasthttp relays it from the spool at the
// client's pace. When the backend's body has ended the backend connection
// goes back to its pool and the scheduler's slot ends (settle), however
// much the client still has to read. A body that outgrows the spool's
// limits is relayed at the client's pace from there on, and then the slot
// lasts until the backend has sent the last of it.

var (
	hdrAccelBuffering = []byte("X-Accel-Buffering")
	strEventStream    = []byte("text/event-stream")
)

// maybeSpool starts spooling the response when it should be.
func (x *exchange) maybeSpool() {
	if !x.route.bufferResponses || x.s.spools == nil {
		return
	}
	h := &x.resp.Header
	if bytes.EqualFold(h.PeekBytes(hdrAccelBuffering), strNo) || bytes.HasPrefix(h.ContentType(), strEventStream) {
		return
	}
	b := &x.rt.cfg.Buffering
	x.sp.start(x.s.spools, b.MemoryPerRequest, max(b.FilePerRequest, 0), x.conn.NetConn())
	x.spooled = true
	x.left.Store(2)
	// Shutdown waits for the response and, once its context ends, cuts
	// the client off, which ends both halves.
	x.spConn = x.ctx.Conn()
	x.s.relays.wg.Add(1)
	x.s.relays.start(x.spConn)
	go x.fill()
}

var strNo = []byte("no")

// fill is the spool's writer: the backend's body into the spool, then the
// backend's half of the exchange.
func (x *exchange) fill() {
	for !x.bodyDone {
		buf, ok := x.sp.room()
		if !ok {
			break // the client is gone
		}
		n, err := x.readBackend(buf)
		x.sp.commit(n)
		if err != nil {
			break
		}
	}
	werr := error(io.EOF)
	if x.bodyErr != nil {
		werr = x.bodyErr
	} else if !x.bodyDone {
		werr = errClientGone
	}
	clientErr := x.sp.closeWrite(werr)
	if clientErr != nil && !x.bodyDone {
		// The read failed because the client's leaving closed the
		// connection under it: not the backend's failure.
		x.bodyErr = nil
	}
	_ = x.resp.CloseBodyStream()
	x.spOutcome, x.spFillErr = x.settle(clientErr, time.Now())
	if x.left.Add(-1) == 0 {
		x.finishSpooled()
	}
}

// readSpool is fasthttp's read of a spooled body.
func (x *exchange) readSpool(p []byte) (int, error) {
	if x.streaming {
		_ = x.ctx.Conn().SetWriteDeadline(time.Now().Add(x.rt.cfg.Timeouts.ClientWrite))
	}
	n, err := x.sp.Read(p)
	x.sent += int64(n)
	if err == io.EOF {
		// The writer read the trailers before it closed the spool.
		x.copyResponseTrailers()
	}
	return n, err
}

// closeSpoolReader is the client's half of the end: a client that did not
// get the whole body stops the writer, and the backend connection is
// closed under it if it is still reading.
func (x *exchange) closeSpoolReader(err error) {
	x.spClientErr = err
	x.sp.closeRead(err)
	if x.left.Add(-1) == 0 {
		x.finishSpooled()
	}
}

// finishSpooled reports and recycles the exchange once both sides ended.
func (x *exchange) finishSpooled() {
	now := time.Now()
	err := x.spClientErr
	if x.spFillErr != nil && (err != nil || x.spOutcome == scheduler.Ignore) {
		err = x.spFillErr
	}
	x.sp.free()
	if x.cache != nil {
		x.cacheFinish() // the body was teed as the spool read it (cache.go)
	}
	x.record(now, x.spOutcome, err)
	x.s.relays.end(x.spConn)
	x.spConn = nil
	x.s.releaseExchange(x)
}

// bytesOut is the body bytes that went to the client.
func (x *exchange) bytesOut() int64 {
	if x.spooled {
		return x.sent
	}
	return x.respBytes
}
