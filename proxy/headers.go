package proxy

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// Header names the proxy reads or writes.
var (
	hdrConnection         = []byte("Connection")
	hdrKeepAlive          = []byte("Keep-Alive")
	hdrProxyConnection    = []byte("Proxy-Connection")
	hdrProxyAuthenticate  = []byte("Proxy-Authenticate")
	hdrProxyAuthorization = []byte("Proxy-Authorization")
	hdrTE                 = []byte("TE")
	hdrTransferEncoding   = []byte("Transfer-Encoding")
	hdrUpgrade            = []byte("Upgrade")
	hdrExpect             = []byte("Expect")
	hdrXForwardedFor      = []byte("X-Forwarded-For")
	hdrXForwardedProto    = []byte("X-Forwarded-Proto")
	hdrXForwardedHost     = []byte("X-Forwarded-Host")
	hdrVia                = []byte("Via")
	hdrRequestID          = []byte("X-Request-Id")
	hdrContentLength      = []byte("Content-Length")
	hdrHost               = []byte("Host")
	hdrTrailer            = []byte("Trailer")

	strTrailers = []byte("trailers")
	strHTTP11   = []byte("HTTP/1.1")
	strHTTP     = []byte("http")
	strHTTPS    = []byte("https")
	strCommaSP  = []byte(", ")
	strVia11    = []byte("1.1 sluice")
	strVia10    = []byte("1.0 sluice")
)

// hopHeaders are meaningful only for one connection and are never
// forwarded (RFC 9110 7.6.1), as in net/http/httputil. Trailer is not among
// them: the announced trailers travel with the chunked body, which the
// proxy forwards as such.
var hopHeaders = [...][]byte{
	hdrConnection, hdrKeepAlive, hdrProxyConnection, hdrProxyAuthenticate,
	hdrProxyAuthorization, hdrTE, hdrTransferEncoding, hdrUpgrade,
}

// headerSet records which of the headers the proxy cares about a header
// block holds, found in one pass over it, so that the hop-by-hop rules
// delete only what is there. Each DelBytes normalises its key and scans
// every header; doing ten of them on every request and response, when a
// typical one holds at most Connection, was a measurable part of the CPU
// per request.
type headerSet uint32

const (
	setConnection headerSet = 1 << iota
	setKeepAlive
	setProxyConnection
	setProxyAuthenticate
	setProxyAuthorization
	setTE
	setTransferEncoding
	setUpgrade
	setExpect
	setContentLength

	// setHops is every hop-by-hop header; bit i is hopHeaders[i].
	setHops = setConnection | setKeepAlive | setProxyConnection | setProxyAuthenticate |
		setProxyAuthorization | setTE | setTransferEncoding | setUpgrade
)

// headerBit is the bit for name (any case), or 0.
func headerBit(name []byte) headerSet {
	var want []byte
	var bit headerSet
	switch len(name) {
	case 2:
		want, bit = hdrTE, setTE
	case 6:
		want, bit = hdrExpect, setExpect
	case 7:
		want, bit = hdrUpgrade, setUpgrade
	case 10:
		if name[0]|0x20 == 'c' {
			want, bit = hdrConnection, setConnection
		} else {
			want, bit = hdrKeepAlive, setKeepAlive
		}
	case 14:
		want, bit = hdrContentLength, setContentLength
	case 16:
		want, bit = hdrProxyConnection, setProxyConnection
	case 17:
		want, bit = hdrTransferEncoding, setTransferEncoding
	case 18:
		want, bit = hdrProxyAuthenticate, setProxyAuthenticate
	case 19:
		want, bit = hdrProxyAuthorization, setProxyAuthorization
	default:
		return 0
	}
	if bytes.EqualFold(name, want) {
		return bit
	}
	return 0
}

// checkRawHeaders rejects ambiguous requests on the raw header block: both
// Content-Length and Transfer-Encoding, several Content-Length fields,
// obs-fold continuation lines, whitespace before the first header,
// non-token names and control characters in header lines. fasthttp 1.78
// rejects some of these itself and lets others through (doc.go says
// which); checking all of them here keeps what reaches a backend
// independent of the fasthttp version. Each is a request-smuggling vector
// when a backend parses the request differently from us, so none may be
// forwarded. raw is the header block as received, without the request line.
func checkRawHeaders(raw []byte) error {
	_, err := scanRawHeaders(raw)
	return err
}

// scanRawHeaders is checkRawHeaders that also reports which headers of
// interest the block holds.
func scanRawHeaders(raw []byte) (headerSet, error) {
	var cl, te int
	var set headerSet
	first := true
	for len(raw) > 0 {
		line := raw
		next := []byte(nil)
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, next = raw[:i], raw[i+1:]
		}
		raw = next
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			break // end of the header block
		}
		if line[0] == ' ' || line[0] == '\t' {
			if first {
				return 0, errLeadingSpace
			}
			return 0, errObsFold
		}
		first = false
		for _, c := range line {
			if (c < 0x20 && c != '\t') || c == 0x7f {
				return 0, errHeaderChar
			}
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return 0, errBadRequest
		}
		name := line[:colon]
		for _, c := range name {
			if !isTokenChar(c) {
				return 0, errHeaderChar
			}
		}
		bit := headerBit(name)
		switch bit {
		case setContentLength:
			cl++
		case setTransferEncoding:
			te++
		}
		set |= bit
	}
	switch {
	case cl > 0 && te > 0:
		return 0, errAmbiguousLength
	case cl > 1:
		return 0, errDupLength
	}
	return set, nil
}

// responseHeaderSet scans a parsed response header (fasthttp keeps the
// fields it interprets itself, like Content-Length, apart; none of them is
// hop-by-hop except Connection: close, which the caller resets anyway).
func responseHeaderSet(h *fasthttp.ResponseHeader) headerSet {
	var set headerSet
	for k := range h.All() {
		set |= headerBit(k)
	}
	return set
}

// hasToken reports whether the comma-separated list v holds tok.
func hasToken(v, tok []byte) bool {
	for len(v) > 0 {
		t := v
		if i := bytes.IndexByte(v, ','); i >= 0 {
			t, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		if bytes.EqualFold(bytes.TrimSpace(t), tok) {
			return true
		}
	}
	return false
}

// stripRequestHops removes hop-by-hop headers from out, the request to a
// backend, given in, the client's request, and set, what in holds (from
// scanRawHeaders). Headers named in Connection go first, then the fixed
// list. "TE: trailers" survives, as in httputil: it says the client
// accepts trailers, which a backend may rely on.
func stripRequestHops(out, in *fasthttp.RequestHeader, set headerSet) {
	if set&setConnection != 0 {
		delConnectionOptions(in.PeekAll(fasthttp.HeaderConnection), out)
	}
	teTrailers := set&setTE != 0 && hasToken(in.PeekBytes(hdrTE), strTrailers)
	delHops(set, out)
	if set&setExpect != 0 {
		out.DelBytes(hdrExpect) // the proxy answered 100-continue itself
	}
	out.ResetConnectionClose()
	if teTrailers {
		out.SetBytesKV(hdrTE, strTrailers)
	}
}

// stripResponseHops removes hop-by-hop headers from the response going to
// the client; src is the backend's response and set what it holds.
func stripResponseHops(out, src *fasthttp.ResponseHeader, set headerSet) {
	if set&setConnection != 0 {
		delConnectionOptions(src.PeekAll(fasthttp.HeaderConnection), out)
	}
	delHops(set, out)
	// Whether the client connection stays open is the front end's
	// decision, not the backend's.
	out.ResetConnectionClose()
}

// headerDeleter is a request or a response header.
type headerDeleter interface{ DelBytes(key []byte) }

// delConnectionOptions deletes the headers named in every Connection field
// line (RFC 9110 7.6.1): a sender may split its options over several
// lines ("Connection: keep-alive" then "Connection: X-Hop"), and an option
// that only the first line names is not the only one to go. values is
// PeekAll's answer, which reuses the header's own buffer.
func delConnectionOptions(values [][]byte, h headerDeleter) {
	for _, v := range values {
		delConnectionTokens(v, h)
	}
}

// delConnectionTokens deletes the headers named in one Connection value,
// except the fixed hop-by-hop ones: delHops deletes those that are there
// (so "Connection: keep-alive" costs no deletion of an absent Keep-Alive),
// and the framing and routing fields Host and Content-Length, which the
// proxy sets on the outgoing message itself: a peer's "Connection: Host"
// cannot take the request's host or a body's length away.
func delConnectionTokens(v []byte, h headerDeleter) {
	for len(v) > 0 {
		tok := v
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		if tok = bytes.Trim(tok, " \t"); len(tok) > 0 && headerBit(tok)&(setHops|setContentLength) == 0 &&
			!bytes.EqualFold(tok, hdrHost) {
			h.DelBytes(tok)
		}
	}
}

// delHops deletes the hop-by-hop headers in set.
func delHops(set headerSet, h headerDeleter) {
	for i, k := range hopHeaders {
		if set&(1<<i) != 0 {
			h.DelBytes(k)
		}
	}
}

// validRequestID reports whether a client's X-Request-Id may be reused:
// short, visible ASCII only, so it is safe in logs and headers.
func validRequestID(v []byte) bool {
	if len(v) == 0 || len(v) > 128 {
		return false
	}
	for _, c := range v {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// isTokenChar: RFC 9110 5.6.2 tchar.
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}
