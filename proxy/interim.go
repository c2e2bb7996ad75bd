package proxy

import (
	"bufio"
	"bytes"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// Interim responses: the 1xx answers a backend may send before its final
// one (RFC 9110 15.2). fasthttp's Response.Read consumes and drops every
// 1xx but 101, so the upstream stage reads them itself, one header block
// at a time, before handing the connection to Response.Read for the final
// response.

// maxInterim bounds the 1xx responses accepted before a final one, as
// fasthttp does: a backend that sends them forever is broken.
const maxInterim = 100

// interimPrefix is how much of a status line tells a 1xx from a final
// response: "HTTP/1.1 103".
const interimPrefix = len("HTTP/1.1 103")

// relayInterim reads the 1xx responses waiting on br, if any, and forwards
// each to the client at once, ahead of the final response: 103 Early Hints
// is useful only then. 101 is not one of them: it is a final answer for
// this connection (an upgrade), which Response.Read takes. 100 Continue is
// not forwarded: the front end answered the client's Expect itself and
// does not send Expect on, so a backend's 100 is unsolicited. An HTTP/1.0
// client gets none (RFC 9110 15.2: a server must not send it a 1xx).
//
// The 1xx is written straight to the client connection while the
// handler runs, as fasthttp's own EarlyHints does. One case orders it
// wrongly: a pipelining client whose previous response fasthttp still
// holds in its write buffer (it batches pipelined responses) sees the 1xx
// before that response, and takes it for that response's. A 1xx carries
// no body and clients must accept unexpected ones, so the framing stays
// intact; at worst hints go with the wrong response.
func (x *exchange) relayInterim(br *bufio.Reader) failKind {
	for n := 0; ; n++ {
		b, err := br.Peek(interimPrefix)
		if err != nil || !isInterim(b) {
			return failNone // a final response, or an error Response.Read reports
		}
		if n == maxInterim {
			return failBadResponse
		}
		h := &x.interim
		h.SetNoDefaultContentType(true)
		if err := h.Read(br); err != nil {
			if isTimeout(err) {
				return failTimeout
			}
			return failBadResponse
		}
		if h.StatusCode() == fasthttp.StatusContinue || !x.ctx.Request.Header.IsHTTP11() {
			continue
		}
		x.head = appendInterim(x.head[:0], h)
		c := x.ctx.Conn()
		_ = c.SetWriteDeadline(time.Now().Add(x.rt.cfg.Timeouts.ClientWrite))
		_, err = c.Write(x.head)
		_ = c.SetWriteDeadline(time.Time{})
		if err != nil {
			return failClientGone
		}
	}
}

// isInterim reports whether a status line starting with b is a 1xx other
// than 101.
func isInterim(b []byte) bool {
	return len(b) >= interimPrefix && bytes.HasPrefix(b, strHTTPSlash) && b[8] == ' ' &&
		b[9] == '1' && !(b[10] == '0' && b[11] == '1')
}

var (
	strHTTPSlash = []byte("HTTP/")
	strHTTP11SP  = []byte("HTTP/1.1 ")
	strColonSP   = []byte(": ")
	strCRLF      = []byte("\r\n")
)

// appendInterim serialises a 1xx for the client: the proxy's version, the
// backend's status and reason, its fields without the hop-by-hop ones and
// those its Connection names (as for any response), and Via.
func appendInterim(dst []byte, h *fasthttp.ResponseHeader) []byte {
	st := h.StatusCode()
	dst = append(dst, strHTTP11SP...)
	dst = strconv.AppendInt(dst, int64(st), 10)
	dst = append(dst, ' ')
	if msg := h.StatusMessage(); len(msg) > 0 {
		dst = append(dst, msg...)
	} else {
		dst = append(dst, fasthttp.StatusMessage(st)...)
	}
	dst = append(dst, strCRLF...)
	conn := h.PeekAll(fasthttp.HeaderConnection)
	for k, v := range h.All() {
		if headerBit(k)&(setHops|setContentLength) != 0 || bytes.EqualFold(k, hdrTrailer) ||
			bytes.EqualFold(k, hdrVia) || namedIn(conn, k) {
			continue
		}
		dst = append(dst, k...)
		dst = append(dst, strColonSP...)
		dst = append(dst, v...)
		dst = append(dst, strCRLF...)
	}
	dst = append(dst, hdrVia...)
	dst = append(dst, strColonSP...)
	dst = appendVia(dst, h.PeekBytes(hdrVia), h.IsHTTP11())
	dst = append(dst, strCRLF...)
	return append(dst, strCRLF...)
}

// namedIn reports whether any of the Connection values lists name.
func namedIn(values [][]byte, name []byte) bool {
	for _, v := range values {
		if hasToken(v, name) {
			return true
		}
	}
	return false
}
