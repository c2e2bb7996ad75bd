package proxy

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

// The protocol tests: raw clients that write exact bytes, and origins that
// record exactly what reached them.

// recordingBackend is an origin below HTTP: it reads each request's head
// (and a Content-Length body), keeps its bytes as they arrived, and writes
// reply's answer verbatim. A reply holding "Connection: close" ends the
// connection after it.
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
			if strings.Contains(out, "Connection: close\r\n") {
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
