package proxy

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestScanRawHeaders checks the proxy's own header rules on raw header
// blocks (what RawHeaders returns: the lines after the request line), one
// row per rule, accepted and rejected. The end-to-end malformed-request
// tests cannot do this: fasthttp rejects several of these blocks before
// the scanner runs (duplicate Content-Length, whitespace before the first
// header, NUL and CR in values, a space before the colon), and a block
// that breaks one rule often breaks another too (a folded line has no
// colon). Each rejected row therefore expects the error of its own rule,
// so removing any one check fails a row whatever fasthttp's version does.
func TestScanRawHeaders(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  string
		err  error
		set  headerSet
	}{
		// Accepted.
		{"plain", "Host: a\r\nX-A: b\r\n\r\n", nil, 0},
		{"bare LF line ends", "Host: a\nX-A: b\n\n", nil, 0},
		{"no final empty line", "Host: a\r\nX-A: b", nil, 0},
		{"empty block", "", nil, 0},
		{"tab and spaces in a value", "X-A: \tb  c\t \r\n\r\n", nil, 0},
		{"empty value", "X-A:\r\n\r\n", nil, 0},
		{"obs-text in a value", "X-A: caf\xc3\xa9 \xff\r\n\r\n", nil, 0},
		{"every tchar in a name", "!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n", nil, 0},
		{"one Content-Length", "Host: a\r\nContent-Length: 3\r\n\r\n", nil, setContentLength},
		// The value is fasthttp's to parse; the scanner counts fields.
		{"one Content-Length field holding a list", "Content-Length: 3, 3\r\n\r\n", nil, setContentLength},
		{"one Transfer-Encoding", "Transfer-Encoding: chunked\r\n\r\n", nil, setTransferEncoding},
		{"hop-by-hop and Expect, any case", "connection: x\r\nKEEP-ALIVE: 1\r\nte: trailers\r\nUpgrade: h2c\r\n" +
			"Proxy-Connection: x\r\nproxy-authorization: b\r\nProxy-Authenticate: c\r\nexpect: 100-continue\r\n\r\n", nil,
			setConnection | setKeepAlive | setTE | setUpgrade | setProxyConnection | setProxyAuthorization |
				setProxyAuthenticate | setExpect},
		{"the block ends at the first empty line", "X-A: b\r\n\r\nContent-Length: 1\r\nContent-Length: 2\r\n \x00\r\n", nil, 0},

		// Framing: a request a backend might delimit differently.
		{"Content-Length then Transfer-Encoding", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", errAmbiguousLength, 0},
		{"Transfer-Encoding then Content-Length", "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", errAmbiguousLength, 0},
		{"Content-Length and Transfer-Encoding, other case", "content-length: 5\r\nTRANSFER-ENCODING: chunked\r\n\r\n", errAmbiguousLength, 0},
		{"two Content-Length and a Transfer-Encoding", "Content-Length: 5\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", errAmbiguousLength, 0},
		{"two Content-Length, same value", "Content-Length: 3\r\nContent-Length: 3\r\n\r\n", errDupLength, 0},
		{"two Content-Length, different values", "Content-Length: 3\r\nX-A: b\r\ncontent-length: 4\r\n\r\n", errDupLength, 0},
		{"two Content-Length, empty values", "Content-Length:\r\nContent-Length:\r\n\r\n", errDupLength, 0},

		// Line structure.
		{"obs-fold with a space", "Host: a\r\nX-A: b\r\n c\r\n\r\n", errObsFold, 0},
		{"obs-fold with a tab", "Host: a\r\nX-A: b\r\n\tc\r\n\r\n", errObsFold, 0},
		{"obs-fold that looks like a header", "Host: a\r\nX-A: b\r\n X-B: c\r\n\r\n", errObsFold, 0},
		{"obs-fold of a Content-Length", "Content-Length: 3\r\n  4\r\n\r\n", errObsFold, 0},
		{"space before the first header", " Host: a\r\n\r\n", errLeadingSpace, 0},
		{"tab before the first header", "\tHost: a\r\nX-A: b\r\n\r\n", errLeadingSpace, 0},
		{"no colon", "Host: a\r\nX-A b\r\n\r\n", errBadRequest, 0},
		{"empty name", "Host: a\r\n: b\r\n\r\n", errBadRequest, 0},
		{"bare LF inside a value", "Host: a\r\nX-A: b\nc\r\n\r\n", errBadRequest, 0},

		// Characters.
		{"NUL in a value", "X-A: b\x00c\r\n\r\n", errHeaderChar, 0},
		{"CR inside a value", "X-A: b\rc\r\n\r\n", errHeaderChar, 0},
		{"CR before the line's CR LF", "X-A: b\r\r\n\r\n", errHeaderChar, 0},
		{"other control character", "X-A: b\x01c\r\n\r\n", errHeaderChar, 0},
		{"unit separator", "X-A: b\x1f\r\n\r\n", errHeaderChar, 0},
		{"DEL in a value", "X-A: b\x7fc\r\n\r\n", errHeaderChar, 0},
		{"control character in a name", "X\x01A: b\r\n\r\n", errHeaderChar, 0},
		{"space in a name", "X A: b\r\n\r\n", errHeaderChar, 0},
		{"space before the colon", "X-A : b\r\n\r\n", errHeaderChar, 0},
		{"tab before the colon", "X-A\t: b\r\n\r\n", errHeaderChar, 0},
		{"separator in a name", "X(A): b\r\n\r\n", errHeaderChar, 0},
		{"quote in a name", "X\"A: b\r\n\r\n", errHeaderChar, 0},
		{"obs-text in a name", "X-\xe9: b\r\n\r\n", errHeaderChar, 0},
	} {
		set, err := scanRawHeaders([]byte(tc.raw))
		if tc.err == nil {
			assert.NoError(t, err, "%s: %q", tc.name, tc.raw)
		} else {
			assert.Equal(t, tc.err, err, "%s: %q", tc.name, tc.raw)
		}
		assert.Equal(t, tc.set, set, "%s: %q", tc.name, tc.raw)
		assert.Equal(t, err, checkRawHeaders([]byte(tc.raw)), tc.name)
	}
}

// TestValidRequestID: a client's X-Request-Id is reused only when it is
// short and visible ASCII, since it goes into logs and response headers.
func TestValidRequestID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"abc-123", true},
		{"a/b:c.d_e~f!", true},
		{strings.Repeat("x", 128), true},
		{"", false},
		{strings.Repeat("x", 129), false},
		{"a b", false},
		{"a\tb", false},
		{"a\x00", false},
		{"a\x7f", false},
		{"caf\xc3\xa9", false},
	} {
		assert.Equal(t, tc.ok, validRequestID([]byte(tc.id)), "%q", tc.id)
	}
}

// TestHasToken: Connection and TE values are comma-separated lists of
// case-insensitive tokens with optional whitespace.
func TestHasToken(t *testing.T) {
	for _, tc := range []struct {
		v  string
		ok bool
	}{
		{"trailers", true},
		{"deflate, Trailers", true},
		{" TRAILERS ,gzip", true},
		{"gzip,,trailers", true},
		{"", false},
		{"trailersx", false},
		{"deflate;trailers", false},
		{"trail ers", false},
	} {
		assert.Equal(t, tc.ok, hasToken([]byte(tc.v), strTrailers), "%q", tc.v)
	}
}
