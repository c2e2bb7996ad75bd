package proxy

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// FuzzHeaders drives a request header block through fasthttp's parser,
// our ambiguity checks and hop-by-hop stripping, and checks that whatever
// we would forward is well-formed: no hop-by-hop or Connection-named
// header survives, no control character or folded line gets through, and
// the forwarded header block parses back to the same framing.
func FuzzHeaders(f *testing.F) {
	for _, raw := range malformed {
		f.Add([]byte(raw[strings.Index(raw, "\r\n")+2:]))
	}
	f.Add([]byte("Host: a\r\nConnection: X-A, keep-alive\r\nX-A: 1\r\nTE: trailers\r\n\r\n"))
	f.Add([]byte("Host: a\r\nContent-Length: 3\r\nUpgrade: h2c\r\nProxy-Authorization: x\r\n\r\n"))
	f.Add([]byte("Host: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"))
	f.Fuzz(func(t *testing.T, block []byte) {
		var in fasthttp.RequestHeader
		br := bufio.NewReader(bytes.NewReader(append([]byte("POST /p HTTP/1.1\r\n"), block...)))
		if in.Read(br) != nil {
			return
		}
		raw := in.RawHeaders()
		set, err := scanRawHeaders(raw)
		if err != nil {
			return
		}
		for _, line := range bytes.Split(raw, []byte("\n")) {
			line = bytes.TrimSuffix(line, []byte("\r"))
			if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
				t.Fatalf("folded line accepted: %q", line)
			}
			for _, c := range line {
				if c < 0x20 && c != '\t' {
					t.Fatalf("control character accepted: %q", line)
				}
			}
		}
		var out fasthttp.RequestHeader
		in.CopyTo(&out)
		stripRequestHops(&out, &in, set)
		for _, h := range hopHeaders {
			if v := out.PeekBytes(h); len(v) > 0 && !(bytes.Equal(h, hdrTE) && bytes.Equal(v, strTrailers)) &&
				!bytes.Equal(h, hdrTransferEncoding) {
				t.Fatalf("hop-by-hop %s survived: %q", h, v)
			}
		}
		conn := in.Peek("Connection")
		for _, tok := range bytes.Split(conn, []byte(",")) {
			tok = bytes.TrimSpace(tok)
			if len(tok) > 0 && len(out.PeekBytes(tok)) > 0 && !bytes.EqualFold(tok, hdrTE) &&
				!bytes.EqualFold(tok, []byte("Host")) && !bytes.EqualFold(tok, hdrContentLength) &&
				!bytes.EqualFold(tok, hdrTransferEncoding) {
				t.Fatalf("header %q named in Connection survived", tok)
			}
		}
		var back fasthttp.RequestHeader
		if err := back.Read(bufio.NewReader(bytes.NewReader(out.Header()))); err != nil {
			t.Fatalf("forwarded header does not parse: %v\n%q", err, out.Header())
		}
	})
}
