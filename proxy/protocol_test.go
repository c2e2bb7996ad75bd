package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/sluiceproxy/sluice/scheduler"
)

// The protocol tests: raw clients that write exact bytes, and origins that
// record exactly what reached them.

// recordingBackend is an origin below HTTP: it reads each request's head
// (and a Content-Length body), keeps its bytes as they arrived, and writes
// reply's answer verbatim. A reply holding "Connection: close", or an
// HTTP/1.0 one, ends the connection after it.
type recordingBackend struct {
	*rawBackend
	mu   sync.Mutex
	reqs []string
}

func startRecordingBackend(t testing.TB, reply func(req string) string) *recordingBackend {
	t.Helper()
	rb := &recordingBackend{}
	rb.rawBackend = startRawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := readRawRequest(br)
			if err != nil {
				return
			}
			rb.mu.Lock()
			rb.reqs = append(rb.reqs, req)
			rb.mu.Unlock()
			out := reply(req)
			if _, err := io.WriteString(c, out); err != nil {
				return
			}
			if strings.Contains(out, "Connection: close\r\n") || strings.HasPrefix(out, "HTTP/1.0 ") {
				return
			}
		}
	})
	return rb
}

// requests returns the requests received so far, raw.
func (rb *recordingBackend) requests() []string {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return append([]string(nil), rb.reqs...)
}

// last is the last request received, raw; "" before the first.
func (rb *recordingBackend) last() string {
	r := rb.requests()
	if len(r) == 0 {
		return ""
	}
	return r[len(r)-1]
}

// readRawRequest reads one request head and its Content-Length body, and
// returns their bytes as they were sent.
func readRawRequest(br *bufio.Reader) (string, error) {
	var b strings.Builder
	cl := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		b.WriteString(line)
		if line == "\r\n" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Content-Length") {
			cl, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	body := make([]byte, cl)
	if _, err := io.ReadFull(br, body); err != nil {
		return "", err
	}
	b.Write(body)
	return b.String(), nil
}

// rawExchange writes raw to a new connection to addr and returns all that
// comes back until the proxy closes the connection (or the deadline), and
// whether it closed it.
func rawExchange(t testing.TB, addr, raw string) (string, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(3*time.Second)))
	_, err = io.WriteString(c, raw)
	require.NoError(t, err)
	got, err := io.ReadAll(c)
	return string(got), err == nil
}

// headerLines is the header block of a raw message, one entry a line,
// without the start line.
func headerLines(msg string) []string {
	head, _, _ := strings.Cut(msg, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	return lines[1:]
}

// hasHeader reports whether the raw message has a field named name (any
// case) in its header block.
func hasHeader(msg, name string) bool {
	for _, l := range headerLines(msg) {
		if k, _, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

// TestConnectionOptions: every header that any Connection field line names
// is removed before forwarding, in both directions, whatever the number of
// lines, the case and the whitespace around the commas (RFC 9110 7.6.1);
// so are the fixed hop-by-hop headers. Host and Content-Length survive a
// Connection that names them: the proxy frames and routes the message.
func TestConnectionOptions(t *testing.T) {
	rb := startRecordingBackend(t, func(string) string {
		return "HTTP/1.1 200 OK\r\n" +
			"Content-Length: 2\r\n" +
			"Connection: X-R1\r\n" +
			"Connection: x-r2 ,\tX-R3, Content-Length\r\n" +
			"X-R1: a\r\nX-R2: b\r\nX-R3: c\r\n" +
			"Keep-Alive: timeout=5\r\n" +
			"X-Keep: k\r\n\r\nok"
	})
	p := startProxy(t, oneService(rb.addr))
	out, _ := rawExchange(t, p.addr, "POST /c HTTP/1.1\r\n"+
		"Host: shop.example\r\n"+
		"Connection: keep-alive\r\n"+
		"Connection: X-One, x-two\r\n"+
		"connection:  X-Three ,X-Four,, Host ,content-length\r\n"+
		"X-One: 1\r\nX-Two: 2\r\nX-Three: 3\r\nX-Four: 4\r\n"+
		"Keep-Alive: timeout=9\r\n"+
		"Proxy-Connection: keep-alive\r\n"+
		"X-Keep: k\r\n"+
		"Content-Length: 3\r\n"+
		"Connection: close\r\n\r\nabc")
	require.True(t, strings.HasPrefix(out, "HTTP/1.1 200 OK\r\n"), out)
	got := rb.last()
	for _, h := range []string{"X-One", "X-Two", "X-Three", "X-Four", "Connection", "Keep-Alive", "Proxy-Connection"} {
		assert.False(t, hasHeader(got, h), "%s reached the backend:\n%s", h, got)
	}
	assert.True(t, hasHeader(got, "X-Keep"), got)
	assert.Contains(t, got, "\r\nHost: shop.example\r\n")
	assert.Contains(t, got, "\r\nContent-Length: 3\r\n")
	assert.True(t, strings.HasSuffix(got, "\r\n\r\nabc"), got)
	for _, h := range []string{"X-R1", "X-R2", "X-R3", "Keep-Alive"} {
		assert.False(t, hasHeader(out, h), "%s reached the client:\n%s", h, out)
	}
	assert.True(t, hasHeader(out, "X-Keep"), out)
	assert.True(t, strings.HasSuffix(out, "\r\n\r\nok"), out)
}

// TestProxyConnectionOptionZeroAlloc: a request whose Connection header
// names an option, over two field lines, is proxied without allocating.
func TestProxyConnectionOptionZeroAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	rig := newMemRig(t, true)
	defer rig.stop()
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://sluice.test/alloc?x=1")
	req.Header.Add("Connection", "X-Hop")
	req.Header.Add("Connection", "x-other, keep-alive")
	req.Header.Set("X-Hop", "1")
	req.Header.Set("X-Other", "2")
	run := func() {
		if err := rig.do(req, resp); err != nil || resp.StatusCode() != 200 {
			t.Fatalf("err %v status %d", err, resp.StatusCode())
		}
	}
	for range 100 {
		run()
	}
	allocs := testing.AllocsPerRun(1000, run)
	require.Zero(t, allocs, "allocations per proxied request")
}

// requestLine is the first line of a raw message.
func requestLine(msg string) string {
	line, _, _ := strings.Cut(msg, "\r\n")
	return line
}

// headerValue is the value of the first field named name (any case) in a
// raw message, "" when there is none.
func headerValue(msg, name string) string {
	for _, l := range headerLines(msg) {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestAbsoluteForm: an absolute-form target is accepted, its authority
// replaces Host (RFC 9112 3.2.2) for routing, X-Forwarded-Host and the
// backend, and the backend gets origin form. Other schemes, userinfo and an
// empty authority are refused before any backend sees them.
func TestAbsoluteForm(t *testing.T) {
	reply := func(name string) func(string) string {
		return func(string) string { return "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n" + name }
	}
	a := startRecordingBackend(t, reply("a"))
	b := startRecordingBackend(t, reply("b"))
	cfg := oneService(a.addr)
	cfg.Services = append(cfg.Services, ServiceConfig{Name: "b", Backends: []string{"http://" + b.addr}})
	cfg.Routes = []RouteConfig{
		{Host: "abs.example", Service: "b"},
		{Host: "host.example", Service: "web"},
	}
	p := startProxy(t, cfg)
	for _, tc := range []struct {
		target, host   string
		backend        *recordingBackend
		line, wantHost string
	}{
		{"http://abs.example:81/p/a%2Fb?q=1&r", "host.example", b, "GET /p/a%2Fb?q=1&r HTTP/1.1", "abs.example:81"},
		{"HTTP://ABS.example/x", "host.example", b, "GET /x HTTP/1.1", "ABS.example"},
		{"https://abs.example", "host.example", b, "GET / HTTP/1.1", "abs.example"},
		{"http://abs.example?q", "host.example", b, "GET /?q HTTP/1.1", "abs.example"},
		{"http://host.example:8080/h", "abs.example", a, "GET /h HTTP/1.1", "host.example:8080"},
		{"http://[::1]:8080/v6", "abs.example", nil, "", ""}, // no route for ::1: 404
		{"/origin", "abs.example", b, "GET /origin HTTP/1.1", "abs.example"},
	} {
		t.Run(tc.target, func(t *testing.T) {
			out, _ := rawExchange(t, p.addr, "GET "+tc.target+" HTTP/1.1\r\nHost: "+tc.host+"\r\nConnection: close\r\n\r\n")
			if tc.backend == nil {
				assert.True(t, strings.HasPrefix(out, "HTTP/1.1 404 "), out)
				return
			}
			require.True(t, strings.HasPrefix(out, "HTTP/1.1 200 OK\r\n"), out)
			got := tc.backend.last()
			assert.Equal(t, tc.line, requestLine(got))
			assert.Equal(t, tc.wantHost, headerValue(got, "Host"))
			assert.Equal(t, tc.wantHost, headerValue(got, "X-Forwarded-Host"))
		})
	}
	// OPTIONS to an absolute target without a path asks about the server.
	cfg.Routes = nil
	p2 := startProxy(t, cfg)
	out, _ := rawExchange(t, p2.addr, "OPTIONS http://abs.example:81 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	require.True(t, strings.HasPrefix(out, "HTTP/1.1 200 OK\r\n"), out)
	assert.Equal(t, "OPTIONS * HTTP/1.1", requestLine(a.last()))

	seen := len(a.requests()) + len(b.requests())
	for _, target := range []string{"ftp://abs.example/x", "http://user@abs.example/x", "http:///x", "http://a\"b/x"} {
		out, closed := rawExchange(t, p.addr, "GET "+target+" HTTP/1.1\r\nHost: host.example\r\n\r\n")
		assert.True(t, strings.HasPrefix(out, "HTTP/1.1 400 "), "%s: %s", target, out)
		assert.True(t, closed, target)
	}
	assert.Equal(t, seen, len(a.requests())+len(b.requests()), "a refused target reached a backend")
}

// FuzzSplitTarget: whatever the target, splitTarget does not panic, what a
// backend gets is in origin form for an absolute target, and an accepted
// authority holds only host and port characters.
func FuzzSplitTarget(f *testing.F) {
	for _, s := range []string{"/a?b", "*", "http://h:1/p?q", "HTTPS://h", "http://h?q", "ftp://h/", "http://u@h/", "http:///", "h:443", "http://[::1]:80/x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, uri []byte) {
		path, authority, err := splitTarget(uri)
		if err != nil || authority == nil {
			return
		}
		if len(authority) == 0 {
			t.Fatalf("%q: empty authority accepted", uri)
		}
		for _, c := range authority {
			if !isAuthorityChar(c) || c == '@' {
				t.Fatalf("%q: authority %q accepted", uri, authority)
			}
		}
		if o := appendOriginForm(nil, path, false); o[0] != '/' {
			t.Fatalf("%q: backend target %q is not origin form", uri, o)
		}
	})
}

// chunked encodes parts as a chunked body, last chunk included.
func chunked(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(strconv.FormatInt(int64(len(p)), 16) + "\r\n" + p + "\r\n")
	}
	return b.String() + "0\r\n\r\n"
}

// TestHTTP10Client: an HTTP/1.0 client never receives Transfer-Encoding
// (RFC 9112 6.1). A response of unknown length, chunked by the backend or
// delimited by its close, reaches it delimited by the close of the
// connection, whole, with Connection: close even when it asked for
// keep-alive; one of known length keeps Content-Length and the keep-alive
// it asked for. An HTTP/1.1 client still gets chunked.
func TestHTTP10Client(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 8<<10) // 128 KiB: many pieces
	rb := startRecordingBackend(t, func(req string) string {
		switch strings.Fields(requestLine(req))[1] {
		case "/chunked":
			return "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" +
				strings.TrimSuffix(chunked("part1-", "part2"), "\r\n") + "X-Sum: 42\r\n\r\n"
		case "/big":
			return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(big[:1000], big[1000:70000], big[70000:])
		case "/until-close":
			return "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nuntil the end"
		case "/http10":
			return "HTTP/1.0 200 OK\r\n\r\nold origin"
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfixed"
	})
	p := startProxy(t, oneService(rb.addr))

	for _, tc := range []struct{ path, conn, body string }{
		{"/chunked", "", "part1-part2"},
		{"/chunked", "Connection: keep-alive\r\n", "part1-part2"},
		{"/big", "", big},
		{"/until-close", "Connection: keep-alive\r\n", "until the end"},
		{"/http10", "", "old origin"},
	} {
		t.Run(tc.path+" "+strings.TrimSpace(tc.conn), func(t *testing.T) {
			out, closed := rawExchange(t, p.addr, "GET "+tc.path+" HTTP/1.0\r\n"+tc.conn+"\r\n")
			require.True(t, closed, "the connection ends the body")
			require.True(t, strings.HasPrefix(out, "HTTP/1.1 200 OK\r\n"), out)
			assert.False(t, hasHeader(out, "Transfer-Encoding"), out)
			assert.False(t, hasHeader(out, "Content-Length"), out)
			assert.False(t, hasHeader(out, "Trailer"), out)
			assert.Equal(t, "close", headerValue(out, "Connection"))
			_, body, _ := strings.Cut(out, "\r\n\r\n")
			assert.Equal(t, tc.body, body)
			got := rb.last()
			assert.Equal(t, "GET "+tc.path+" HTTP/1.1", requestLine(got), "the backend hop is HTTP/1.1")
			assert.Equal(t, "1.0 sluice", headerValue(got, "Via"))
		})
	}

	// Known length, keep-alive asked for: kept, and the connection
	// carries a second request.
	c, err := net.Dial("tcp", p.addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(3*time.Second)))
	br := bufio.NewReader(c)
	for range 2 {
		_, err = io.WriteString(c, "GET /fixed HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		require.NoError(t, err)
		head, err := readHead(br)
		require.NoError(t, err)
		assert.Equal(t, "5", headerValue(head, "Content-Length"), head)
		assert.Equal(t, "keep-alive", headerValue(head, "Connection"), head)
		body := make([]byte, 5)
		_, err = io.ReadFull(br, body)
		require.NoError(t, err)
		assert.Equal(t, "fixed", string(body))
	}

	// HTTP/1.1 keeps chunked coding and its trailers.
	out, _ := rawExchange(t, p.addr, "GET /chunked HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	assert.Equal(t, "chunked", headerValue(out, "Transfer-Encoding"), out)
	assert.Contains(t, out, "X-Sum: 42")
}

// readHead reads a response's start line and header block, raw.
func readHead(br *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return b.String(), err
		}
		b.WriteString(line)
		if line == "\r\n" {
			return b.String(), nil
		}
	}
}

// TestHTTP10ShutdownCutsRelay: a close-delimited response that never ends
// does not hold Shutdown past its context; the client sees the
// connection close.
func TestHTTP10ShutdownCutsRelay(t *testing.T) {
	rb := startRawBackend(t, func(c net.Conn) {
		if _, err := readRawRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
		for {
			if _, err := io.WriteString(c, chunked("tick")[:9]); err != nil { // one chunk, no last chunk
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	s, err := New(oneService(rb.addr), zerolog.Nop())
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = io.WriteString(c, "GET /stream HTTP/1.0\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(c)
	head, err := readHead(br)
	require.NoError(t, err)
	require.False(t, hasHeader(head, "Transfer-Encoding"), head)
	tick := make([]byte, 8)
	_, err = io.ReadFull(br, tick)
	require.NoError(t, err)
	assert.Equal(t, "ticktick", string(tick))

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_ = s.Shutdown(ctx)
	assert.Less(t, time.Since(start), 2*time.Second)
	<-served
	_, err = io.Copy(io.Discard, br)
	assert.NoError(t, err, "the client sees the connection end")
}

// TestInterimResponses: a backend's 1xx responses other than 100 and 101
// reach an HTTP/1.1 client ahead of the final response, each as soon as it
// arrives, with hop-by-hop fields removed and Via added (RFC 9110 15.2); a
// 100 from the backend is dropped (the front end answered Expect itself);
// an HTTP/1.0 client gets the final response only.
func TestInterimResponses(t *testing.T) {
	sent := make(chan struct{})
	proceed := make(chan struct{})
	rb := startRawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := readRawRequest(br)
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\n"+
				"Link: </style.css>; rel=preload; as=style\r\n"+
				"Link: </app.js>; rel=preload; as=script\r\n"+
				"Connection: X-Hop\r\nX-Hop: a\r\n\r\n"+
				"HTTP/1.1 100 Continue\r\n\r\n"+
				"HTTP/1.1 102 Processing\r\n\r\n")
			if strings.Contains(req, "X-Wait: 1") {
				sent <- struct{}{}
				<-proceed // the final response waits until the client has the 103
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	p := startProxy(t, oneService(rb.addr))

	c, err := net.Dial("tcp", p.addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	br := bufio.NewReader(c)
	_, err = io.WriteString(c, "GET /page HTTP/1.1\r\nHost: a\r\nX-Wait: 1\r\n\r\n")
	require.NoError(t, err)
	<-sent
	hints, err := readHead(br)
	require.NoError(t, err)
	assert.Equal(t, "HTTP/1.1 103 Early Hints\r\n"+
		"Link: </style.css>; rel=preload; as=style\r\n"+
		"Link: </app.js>; rel=preload; as=script\r\n"+
		"Via: 1.1 sluice\r\n\r\n", hints, "the 103 arrives before the backend's final response")
	close(proceed)
	processing, err := readHead(br)
	require.NoError(t, err)
	assert.Equal(t, "HTTP/1.1 102 Processing\r\nVia: 1.1 sluice\r\n\r\n", processing)
	final, err := readHead(br)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(final, "HTTP/1.1 200 OK\r\n"), final)
	body := make([]byte, 2)
	_, err = io.ReadFull(br, body)
	require.NoError(t, err)
	assert.Equal(t, "ok", string(body))

	// The same connection carries the next request with its own 1xx.
	_, err = io.WriteString(c, "GET /again HTTP/1.1\r\nHost: a\r\n\r\n")
	require.NoError(t, err)
	for _, want := range []string{"HTTP/1.1 103 ", "HTTP/1.1 102 ", "HTTP/1.1 200 "} {
		head, err := readHead(br)
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(head, want), head)
	}
	_, err = io.ReadFull(br, body)
	require.NoError(t, err)

	out, _ := rawExchange(t, p.addr, "GET /old HTTP/1.0\r\n\r\n")
	assert.True(t, strings.HasPrefix(out, "HTTP/1.1 200 OK\r\n"), "an HTTP/1.0 client gets no 1xx: %s", out)
	assert.True(t, strings.HasSuffix(out, "\r\n\r\nok"), out)
}

// abortBackend reads a request head, optionally answers with head, then
// reads on until its connection ends, and reports on closed how long
// after that the end came, and how many bytes it read after the head.
func abortBackend(t *testing.T, head string) (*rawBackend, chan abortSeen) {
	seen := make(chan abortSeen, 4)
	rb := startRawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				break
			}
		}
		if head != "" {
			_, _ = io.WriteString(c, head)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := io.Copy(io.Discard, br) // the rest of a body, then the end
		seen <- abortSeen{at: time.Now(), body: n, err: err}
	})
	return rb, seen
}

type abortSeen struct {
	at   time.Time
	body int64
	err  error
}

// TestClientAbort: a client that leaves while its request is at the
// backend (mid-upload, waiting for the response headers, or mid-response)
// has its backend connection closed within a second, so the origin can
// stop, and the request is reported as the client's: outcome Ignore,
// errClientGone, never a success nor a backend failure.
func TestClientAbort(t *testing.T) {
	for _, tc := range []struct {
		name   string
		head   string // what the backend answers before it stalls
		req    string
		status int // recorded
		wait   func(t *testing.T, br *bufio.Reader)
	}{
		{
			name:   "waiting for the response",
			req:    "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n",
			status: statusClientClosed,
		},
		{
			name: "mid-upload",
			req: "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n" +
				strings.Repeat("u", 50000),
			status: statusClientClosed,
		},
		{
			name:   "mid-response",
			head:   "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + strings.Repeat("d", 20000),
			req:    "GET /long HTTP/1.1\r\nHost: a\r\n\r\n",
			status: 200, // the client has its status line already
			wait: func(t *testing.T, br *bufio.Reader) {
				head, err := readHead(br)
				require.NoError(t, err)
				require.True(t, strings.HasPrefix(head, "HTTP/1.1 200 OK\r\n"), head)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rb, seen := abortBackend(t, tc.head)
			rec := &recorder{}
			cfg := oneService(rb.addr)
			// The upload is streamed, so that the backend has it while the
			// client leaves (buffered, it never would: TestBufferedUploadAbort).
			off := false
			cfg.Buffering.Requests = &off
			p := startProxy(t, cfg, rec)
			c, err := net.Dial("tcp", p.addr)
			require.NoError(t, err)
			_, err = io.WriteString(c, tc.req)
			require.NoError(t, err)
			if tc.wait != nil {
				tc.wait(t, bufio.NewReader(c))
			}
			require.Eventually(t, func() bool { return rb.conns.Load() > 0 }, 5*time.Second, time.Millisecond)
			time.Sleep(100 * time.Millisecond) // the request is at the backend
			require.NoError(t, c.Close())
			closed := time.Now()
			select {
			case s := <-seen:
				assert.Less(t, s.at.Sub(closed), time.Second, "the backend connection outlived its client")
				if tc.name == "mid-upload" {
					assert.Less(t, s.body, int64(100000), "a truncated upload was completed")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the backend connection was not closed")
			}
			recs := rec.waitFor(t, 1)
			require.Len(t, recs, 1)
			assert.Equal(t, scheduler.Ignore, recs[0].Outcome)
			assert.ErrorIs(t, recs[0].Err, errClientGone)
			assert.Equal(t, tc.status, recs[0].Status)
			st := poolOf(p.Server, "http://"+rb.addr).Stats()
			assert.Zero(t, st.Failures, "the backend was blamed")
			assert.Zero(t, st.InFlight)
		})
	}
}
