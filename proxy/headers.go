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

// checkRawHeaders rejects the ambiguous requests fasthttp's parser lets
// through: both Content-Length and Transfer-Encoding (fasthttp lets
// Transfer-Encoding win), several Content-Length fields, obs-fold
// continuation lines, whitespace before the first header, and control
// characters in header lines. Each of these is a request-smuggling vector
// when a backend parses the request differently from us, so none may be
// forwarded. raw is the header block as received, without the request line.
func checkRawHeaders(raw []byte) error {
	var cl, te int
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
				return errLeadingSpace
			}
			return errObsFold
		}
		first = false
		for _, c := range line {
			if (c < 0x20 && c != '\t') || c == 0x7f {
				return errHeaderChar
			}
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return errBadRequest
		}
		name := line[:colon]
		for _, c := range name {
			if !isTokenChar(c) {
				return errHeaderChar
			}
		}
		switch {
		case bytes.EqualFold(name, hdrContentLength):
			cl++
		case bytes.EqualFold(name, hdrTransferEncoding):
			te++
		}
	}
	switch {
	case cl > 0 && te > 0:
		return errAmbiguousLength
	case cl > 1:
		return errDupLength
	}
	return nil
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
// backend, given in, the client's request. Headers named in Connection go
// first, then the fixed list. "TE: trailers" survives, as in httputil:
// it says the client accepts trailers, which a backend may rely on.
func stripRequestHops(out, in *fasthttp.RequestHeader) {
	v := in.PeekBytes(hdrConnection)
	for len(v) > 0 {
		tok := v
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		if tok = bytes.TrimSpace(tok); len(tok) > 0 {
			out.DelBytes(tok)
		}
	}
	teTrailers := hasToken(in.PeekBytes(hdrTE), strTrailers)
	for _, h := range hopHeaders {
		out.DelBytes(h)
	}
	out.DelBytes(hdrExpect) // the proxy answered 100-continue itself
	out.ResetConnectionClose()
	if teTrailers {
		out.SetBytesKV(hdrTE, strTrailers)
	}
}

// stripResponseHops removes hop-by-hop headers from the response going to
// the client; src is the backend's response.
func stripResponseHops(out, src *fasthttp.ResponseHeader) {
	v := src.PeekBytes(hdrConnection)
	for len(v) > 0 {
		tok := v
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		if tok = bytes.TrimSpace(tok); len(tok) > 0 {
			out.DelBytes(tok)
		}
	}
	for _, h := range hopHeaders {
		out.DelBytes(h)
	}
	// Whether the client connection stays open is the front end's
	// decision, not the backend's.
	out.ResetConnectionClose()
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
