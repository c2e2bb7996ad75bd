package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/sluiceproxy/sluice/pool"
	"github.com/sluiceproxy/sluice/scheduler"
)

func TestMalformedNeverReachesBackend(t *testing.T) {
	b := startBackend(t, okHandler)
	p := startProxy(t, oneService(b.addr))
	for name, raw := range malformed {
		t.Run(name, func(t *testing.T) {
			resp, body := roundTrip(t, p.addr, raw)
			assert.Equal(t, 400, resp.StatusCode)
			assert.Contains(t, body, "request id: ")
			assert.Zero(t, b.hits.Load(), "the backend saw the request")
		})
	}
}

// TestRefusedRequestClosesConnection: after refusing a request whose
// framing it cannot trust, or whose body it did not read, the proxy
// closes the client connection. Reading on would take what follows
// (a pipelined request, or the unread body) as the next request, and the
// bytes of a body would reach a backend as a request of their own.
func TestRefusedRequestClosesConnection(t *testing.T) {
	b := startBackend(t, okHandler)
	cfg := oneService(b.addr)
	cfg.Limits = LimitsConfig{MaxURLBytes: 64, MaxBodyBytes: 8}
	p := startProxy(t, cfg)
	inner := "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
	next := "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
	for _, tc := range []struct {
		name   string
		raw    string
		status int
	}{
		{"both Content-Length and Transfer-Encoding", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n" +
			"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + next, 400},
		{"body over the limit, unread", fmt.Sprintf("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s", len(inner), inner), 413},
		{"URL over the limit", "GET /" + strings.Repeat("u", 100) + " HTTP/1.1\r\nHost: a\r\n\r\n" + next, 414},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", p.addr)
			require.NoError(t, err)
			defer c.Close()
			require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
			_, err = io.WriteString(c, tc.raw)
			require.NoError(t, err)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, resp.Body)
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.True(t, resp.Close, "Connection: close")
			_, err = http.ReadResponse(br, nil)
			assert.Error(t, err, "a second response on the connection")
			assert.Zero(t, b.hits.Load(), "the backend saw a request")
		})
	}
}

func TestLimits(t *testing.T) {
	b := startBackend(t, okHandler)
	cfg := oneService(b.addr)
	cfg.Limits = LimitsConfig{MaxHeaderBytes: 4096, MaxURLBytes: 1024, MaxBodyBytes: 100}
	p := startProxy(t, cfg)

	resp, _ := get(t, p.addr, "/x", "X-Big: "+strings.Repeat("a", 5000))
	assert.Equal(t, 431, resp.StatusCode)
	resp, _ = get(t, p.addr, "/"+strings.Repeat("u", 2000))
	assert.Equal(t, 414, resp.StatusCode)
	resp, body := roundTrip(t, p.addr, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n"+strings.Repeat("b", 101))
	assert.Equal(t, 413, resp.StatusCode)
	assert.Contains(t, body, "request id: ")
	assert.Zero(t, b.hits.Load())

	// A chunked body is only known to be too large while it streams.
	chunk := strings.Repeat("c", 80)
	resp, _ = roundTrip(t, p.addr, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"50\r\n"+chunk+"\r\n50\r\n"+chunk+"\r\n0\r\n\r\n")
	assert.Equal(t, 413, resp.StatusCode)

	resp, _ = roundTrip(t, p.addr, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"+strings.Repeat("b", 100))
	assert.Equal(t, 200, resp.StatusCode)

	// The limits are inclusive: a target of max_url_bytes passes.
	resp, _ = get(t, p.addr, "/"+strings.Repeat("u", 1024))
	assert.Equal(t, 414, resp.StatusCode, "one byte over max_url_bytes")
	resp, _ = get(t, p.addr, "/"+strings.Repeat("u", 1023))
	assert.Equal(t, 200, resp.StatusCode, "exactly max_url_bytes")
}

func TestForwardingHeaders(t *testing.T) {
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Connection", "X-Internal")
		ctx.Response.Header.Set("X-Internal", "secret")
		ctx.Response.Header.Set("Keep-Alive", "timeout=5")
		ctx.WriteString("ok") //nolint:errcheck
	})
	p := startProxy(t, oneService(b.addr))
	resp, _ := roundTrip(t, p.addr, "GET /a%2Fb/..%2F/c?q=%20x&y HTTP/1.1\r\n"+
		"Host: shop.example:8080\r\n"+
		"Connection: keep-alive, X-Hop\r\n"+
		"X-Hop: drop me\r\n"+
		"Keep-Alive: timeout=9\r\n"+
		"Proxy-Authorization: Basic abc\r\n"+
		"Upgrade: websocket\r\n"+
		"TE: trailers, deflate\r\n"+
		"X-Forwarded-For: 10.1.1.1\r\n"+
		"Via: 1.1 edge\r\n"+
		"X-Keep: yes\r\n\r\n")
	require.Equal(t, 200, resp.StatusCode)
	r := b.lastReq()
	assert.Equal(t, "/a%2Fb/..%2F/c?q=%20x&y", string(r.Header.RequestURI()), "target forwarded byte for byte")
	assert.Equal(t, "shop.example:8080", string(r.Header.Host()))
	assert.Equal(t, "10.1.1.1, 127.0.0.1", string(r.Header.Peek("X-Forwarded-For")))
	assert.Equal(t, "http", string(r.Header.Peek("X-Forwarded-Proto")))
	assert.Equal(t, "shop.example:8080", string(r.Header.Peek("X-Forwarded-Host")))
	assert.Equal(t, "1.1 edge, 1.1 sluice", string(r.Header.Peek("Via")))
	assert.Equal(t, "yes", string(r.Header.Peek("X-Keep")))
	assert.Equal(t, "trailers", string(r.Header.Peek("TE")))
	for _, h := range []string{"X-Hop", "Keep-Alive", "Proxy-Authorization", "Upgrade"} {
		assert.Empty(t, r.Header.Peek(h), h)
	}
	id := resp.Header.Get("X-Request-Id")
	assert.NotEmpty(t, id)
	assert.Equal(t, id, string(r.Header.Peek("X-Request-Id")))
	assert.Empty(t, resp.Header.Get("X-Internal"))
	assert.Empty(t, resp.Header.Get("Keep-Alive"))
	assert.Equal(t, "1.1 sluice", resp.Header.Get("Via"))

	// Via names the protocol version of the hop it came in on.
	resp, _ = roundTrip(t, p.addr, "GET / HTTP/1.0\r\nHost: a\r\n\r\n")
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "1.0 sluice", string(b.lastReq().Header.Peek("Via")))

	// A client's own request ID is kept; HostRewrite replaces Host.
	resp, _ = get(t, p.addr, "/", "X-Request-Id: abc-123")
	assert.Equal(t, "abc-123", resp.Header.Get("X-Request-Id"))
	assert.Equal(t, "abc-123", string(b.lastReq().Header.Peek("X-Request-Id")))

	cfg := oneService(b.addr)
	cfg.Services[0].HostRewrite = "internal.example"
	p2 := startProxy(t, cfg)
	get(t, p2.addr, "/")
	assert.Equal(t, "internal.example", string(b.lastReq().Header.Host()))
	assert.Equal(t, "example.test", string(b.lastReq().Header.Peek("X-Forwarded-Host")))
}

func TestBodilessResponses(t *testing.T) {
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/204":
			ctx.SetStatusCode(204)
		case "/304":
			ctx.SetStatusCode(304)
		default:
			ctx.SetBodyString("0123456789")
		}
	})
	p := startProxy(t, oneService(b.addr))
	c, err := net.Dial("tcp", p.addr)
	require.NoError(t, err)
	defer c.Close()
	br := bufio.NewReader(c)
	// All three on one connection: a stray body byte would corrupt the next.
	for _, tc := range []struct {
		method, path string
		status       int
		cl           int64
	}{{"HEAD", "/", 200, 10}, {"GET", "/204", 204, 0}, {"GET", "/304", 304, -1}, {"GET", "/", 200, 10}} {
		fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: a\r\n\r\n", tc.method, tc.path)
		resp, err := http.ReadResponse(br, &http.Request{Method: tc.method})
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, tc.status, resp.StatusCode, tc.path)
		if tc.method == "HEAD" {
			assert.Equal(t, "10", resp.Header.Get("Content-Length"))
			assert.Empty(t, body)
		}
	}
}

func TestChunkedAndTrailers(t *testing.T) {
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		got, _ := io.ReadAll(ctx.RequestBodyStream())
		ctx.Response.Header.Set("X-Got-Body", string(got))
		ctx.Response.Header.Set("X-Got-Trailer", string(ctx.Request.Header.Peek("X-Req-Sum")))
		_ = ctx.Response.Header.SetTrailer("X-Sum")
		ctx.Response.SetBodyStream(&trailerBody{parts: []string{"part1-", "part2"}, h: &ctx.Response.Header}, -1)
	})
	p := startProxy(t, oneService(b.addr))
	resp, body := roundTrip(t, p.addr, "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Req-Sum\r\n\r\n"+
		"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Req-Sum: 7\r\n\r\n")
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "hello world", resp.Header.Get("X-Got-Body"))
	assert.Equal(t, "7", resp.Header.Get("X-Got-Trailer"))
	assert.Equal(t, "part1-part2", body)
	assert.Equal(t, []string{"chunked"}, resp.TransferEncoding)
	assert.Equal(t, "42", resp.Trailer.Get("X-Sum"))
}

func TestExpectContinue(t *testing.T) {
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		got, _ := io.ReadAll(ctx.RequestBodyStream())
		ctx.Write(got) //nolint:errcheck
	})
	p := startProxy(t, oneService(b.addr))
	c, err := net.Dial("tcp", p.addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = io.WriteString(c, "PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "HTTP/1.1 100 Continue\r\n", line)
	_, _ = br.ReadString('\n')
	_, err = io.WriteString(c, "hello")
	require.NoError(t, err)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "hello", string(body))
	assert.Empty(t, b.lastReq().Header.Peek("Expect"))
}

// resetAfterRequest reads a request's headers and resets the connection.
func resetAfterRequest(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil || line == "\r\n" {
			break
		}
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
}

func TestRetriesAndFailures(t *testing.T) {
	good := startBackend(t, okHandler)

	t.Run("refused goes to another backend", func(t *testing.T) {
		p := startProxy(t, oneService(refusedAddr(t), good.addr))
		for range 4 {
			resp, body := roundTrip(t, p.addr, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
			assert.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, "ok", body)
		}
	})
	t.Run("all refused is 502", func(t *testing.T) {
		p := startProxy(t, oneService(refusedAddr(t)))
		resp, body := get(t, p.addr, "/")
		assert.Equal(t, 502, resp.StatusCode)
		assert.Contains(t, body, "bad gateway")
	})
	t.Run("idempotent retried after reset, POST not re-sent", func(t *testing.T) {
		var seen atomic.Int64
		reset := startRawBackend(t, func(c net.Conn) { seen.Add(1); resetAfterRequest(c) })
		// The resetting backend is first: the stand-in scheduler picks the
		// least loaded, lowest index first.
		p := startProxy(t, oneService(reset.addr, good.addr))
		resp, _ := get(t, p.addr, "/")
		assert.Equal(t, 200, resp.StatusCode)
		assert.EqualValues(t, 1, seen.Load())

		before := good.hits.Load()
		resp, body := roundTrip(t, p.addr, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
		assert.Equal(t, 502, resp.StatusCode)
		assert.Contains(t, body, "request id: ")
		assert.EqualValues(t, 2, seen.Load(), "POST sent once")
		assert.Equal(t, before, good.hits.Load(), "POST not re-sent elsewhere")
	})
	t.Run("idempotent request re-sent once, not to every backend", func(t *testing.T) {
		// A request that breaks every backend it reaches (a query of
		// death) must not take the whole service down in turn.
		var seen atomic.Int64
		r1 := startRawBackend(t, func(c net.Conn) { seen.Add(1); resetAfterRequest(c) })
		r2 := startRawBackend(t, func(c net.Conn) { seen.Add(1); resetAfterRequest(c) })
		p := startProxy(t, oneService(r1.addr, r2.addr, good.addr))
		before := good.hits.Load()
		resp, _ := get(t, p.addr, "/")
		assert.Equal(t, 502, resp.StatusCode)
		assert.EqualValues(t, 2, seen.Load(), "sent twice")
		assert.Equal(t, before, good.hits.Load(), "not a third time")
	})
	t.Run("streamed body not re-sent after reset", func(t *testing.T) {
		// A PUT is idempotent, but a body larger than what is buffered is
		// read from the client while it is written: once consumed it
		// cannot go to another backend.
		var seen atomic.Int64
		reset := startRawBackend(t, func(c net.Conn) { seen.Add(1); resetAfterRequest(c) })
		var other atomic.Int64
		second := startRawBackend(t, func(c net.Conn) {
			resetAfterRequestNoRST(c)
			other.Add(1)
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		})
		p := startProxy(t, oneService(reset.addr, second.addr))
		body := strings.Repeat("b", 3*prefetchBytes)
		resp, _ := roundTrip(t, p.addr, fmt.Sprintf("PUT /doc HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
		assert.Equal(t, 502, resp.StatusCode)
		assert.EqualValues(t, 1, seen.Load())
		assert.Zero(t, other.Load(), "the rest of a consumed body went to another backend")
	})
	t.Run("POST whose first write fails goes to another backend", func(t *testing.T) {
		// The connection dies before one byte of the request leaves
		// (the origin reset it between accept and our write): nothing
		// was sent, so even a POST may go elsewhere.
		const dead = "127.0.0.1:1"
		cfg := oneService(dead, good.addr)
		cfg.Pool.Dial = func(addr string, timeout time.Duration) (net.Conn, error) {
			if addr != dead {
				return net.DialTimeout("tcp", addr, timeout)
			}
			c, peer := net.Pipe()
			_ = peer.Close() // every write fails, with nothing written
			return c, nil
		}
		p := startProxy(t, cfg)
		before := good.hits.Load()
		resp, body := roundTrip(t, p.addr, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, "ok", body)
		assert.Equal(t, before+1, good.hits.Load())
	})
	t.Run("hang is 504", func(t *testing.T) {
		release := make(chan struct{})
		hang := startRawBackend(t, func(c net.Conn) { <-release })
		defer close(release)
		cfg := oneService(hang.addr)
		cfg.Pool.ResponseHeaderTimeout = 200 * time.Millisecond
		p := startProxy(t, cfg)
		resp, body := get(t, p.addr, "/")
		assert.Equal(t, 504, resp.StatusCode)
		assert.Contains(t, body, "gateway timeout")
	})
	t.Run("slow headers past the client deadline is 504", func(t *testing.T) {
		release := make(chan struct{})
		slow := startRawBackend(t, func(c net.Conn) { <-release })
		defer close(release)
		p := startProxy(t, oneService(slow.addr))
		resp, _ := get(t, p.addr, "/", "X-Sluice-Timeout: 150ms")
		assert.Equal(t, 504, resp.StatusCode)
	})
	t.Run("junk is 502", func(t *testing.T) {
		junk := startRawBackend(t, func(c net.Conn) {
			resetAfterRequestNoRST(c)
			_, _ = io.WriteString(c, "SSH-2.0-OpenSSH\r\n\r\n")
		})
		p := startProxy(t, oneService(junk.addr))
		resp, _ := roundTrip(t, p.addr, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
		assert.Equal(t, 502, resp.StatusCode)
	})
	t.Run("close mid-body truncates the response", func(t *testing.T) {
		cut := startRawBackend(t, func(c net.Conn) {
			resetAfterRequestNoRST(c)
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("x", 1000))
		})
		p := startProxy(t, oneService(cut.addr))
		c, err := net.Dial("tcp", p.addr)
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		_, err = io.ReadAll(resp.Body)
		assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	})
}

func resetAfterRequestNoRST(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil || line == "\r\n" {
			return
		}
	}
}

// TestStaleConnection: the origin closes every connection after one
// response without saying so; the next request finds the pooled
// connection dead and goes out again on a fresh one.
func TestStaleConnection(t *testing.T) {
	once := startRawBackend(t, func(c net.Conn) {
		resetAfterRequestNoRST(c)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	p := startProxy(t, oneService(once.addr))
	for i := range 3 {
		resp, body := get(t, p.addr, "/")
		require.Equal(t, 200, resp.StatusCode, "request %d", i)
		require.Equal(t, "ok", body)
	}
	assert.GreaterOrEqual(t, once.conns.Load(), int64(3))
}

func TestShedResponses(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		shed   string
	}{
		{scheduler.ErrQueueFull, 503, "queue-full"},
		{scheduler.ErrQueueTimeout, 503, "queue-timeout"},
		{scheduler.ErrDeadline, 503, "deadline"},
		{scheduler.ErrNoBackend, 503, "no-backend"},
		{scheduler.ErrCanceled, 503, "canceled"},
		{scheduler.ErrTenantShare, 429, "tenant-share"},
		{errBadGateway, 502, ""},
		{errGatewayTimeout, 504, ""},
		{errBodyTooLarge, 413, ""},
		{errURITooLong, 414, ""},
		{errHeaderTooLarge, 431, ""},
		{errObsFold, 400, ""},
	} {
		var ctx fasthttp.RequestCtx
		status, shed, _ := writeError(&ctx, tc.err, nil, []byte("id-1"), time.Now(), nil)
		assert.Equal(t, tc.status, status, tc.err.Error())
		assert.Equal(t, tc.status, ctx.Response.StatusCode())
		assert.Equal(t, tc.shed, shed)
		assert.Equal(t, tc.shed, string(ctx.Response.Header.Peek("X-Sluice-Shed")))
		if tc.shed != "" {
			assert.Equal(t, "1", string(ctx.Response.Header.Peek("Retry-After")))
		}
		assert.Contains(t, string(ctx.Response.Body()), "request id: id-1")
	}
}

func TestGracefulShutdown(t *testing.T) {
	arrived := make(chan struct{})
	release := make(chan struct{})
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		close(arrived)
		<-release
		ctx.WriteString("finished") //nolint:errcheck
	})
	p := startProxy(t, oneService(b.addr))
	type result struct {
		status int
		body   string
	}
	got := make(chan result, 1)
	go func() {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			got <- result{}
			return
		}
		defer c.Close()
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			got <- result{}
			return
		}
		body, _ := io.ReadAll(resp.Body)
		got <- result{resp.StatusCode, string(body)}
	}()
	<-arrived
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- p.Shutdown(ctx)
	}()
	// New connections are refused once the listener is closed.
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", p.addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	}, 5*time.Second, 5*time.Millisecond)
	close(release)
	r := <-got
	assert.Equal(t, 200, r.status)
	assert.Equal(t, "finished", r.body)
	assert.NoError(t, <-shut)
}

func TestAccessLog(t *testing.T) {
	b := startBackend(t, okHandler)
	p := startProxy(t, oneService(b.addr))
	get(t, p.addr, "/logged?x=1", "X-Request-Id: log-me")
	require.NoError(t, p.Shutdown(context.Background())) // flushes
	line := p.logs.String()
	for _, want := range []string{`"service":"web"`, `"backend":"http://` + b.addr + `"`, `"method":"GET"`,
		`"path":"/logged?x=1"`, `"status":200`, `"request_id":"log-me"`, `"queue":`, `"backend_latency":`, `"total":`} {
		assert.Contains(t, line, want)
	}

	off := false
	cfg := oneService(b.addr)
	cfg.Log.AccessLog = &off
	p2 := startProxy(t, cfg)
	get(t, p2.addr, "/")
	require.NoError(t, p2.Shutdown(context.Background()))
	assert.Empty(t, p2.logs.String())
}

// TestStreamingBoundedMemory sends a large body each way through the
// proxy, and a chunked one up. Streaming holds a few buffers per request
// whatever the body size, so what the whole process allocates while a
// body passes must stay far below the body's size. TotalAlloc is the measure, not the heap in
// use: it counts a buffer holding the whole body even if a GC has freed
// it by the time of the reading, and garbage made for every chunk too.
// The one-time allocations of a first request (pooled exchange, connection
// buffers) are paid by a warm-up on the same connections beforehand.
func TestStreamingBoundedMemory(t *testing.T) {
	size := int64(256 << 20)
	if raceEnabled || testing.Short() {
		size = 32 << 20
	}
	// A transfer needs a few buffers, tens of KiB, whatever the size. The
	// bound is a sixteenth of the smaller body: a whole body buffered, or
	// every chunk copied once, fails it by far. It does not grow with the
	// body, since the claim is that memory does not; its headroom is for
	// -race, where sync.Pool drops items at random, so fasthttp re-makes
	// the small buffer it writes each chunk size with, and a chunked
	// upload allocates a few KiB per MiB.
	const bound = 2 << 20
	var upload atomic.Int64
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		if ctx.IsPost() {
			n, _ := io.Copy(io.Discard, ctx.RequestBodyStream())
			upload.Store(n)
			return
		}
		n, _ := strconv.ParseInt(string(ctx.QueryArgs().Peek("n")), 10, 64)
		ctx.SetBodyStream(io.LimitReader(zeros{}, n), int(n))
	})
	p := startProxy(t, oneService(b.addr))

	c, err := net.Dial("tcp", p.addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(2*time.Minute)))
	br := bufio.NewReaderSize(c, 64<<10)
	up := func(n int64) {
		fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", n)
		_, err := io.Copy(c, io.LimitReader(zeros{}, n))
		require.NoError(t, err)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, n, upload.Load())
	}
	upChunked := func(n int64) {
		fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
		cw := httputil.NewChunkedWriter(c)
		_, err := io.CopyBuffer(cw, io.LimitReader(zeros{}, n), make([]byte, 32<<10))
		require.NoError(t, err)
		require.NoError(t, cw.Close())
		_, err = io.WriteString(c, "\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, n, upload.Load())
	}
	down := func(n int64) {
		fmt.Fprintf(c, "GET /down?n=%d HTTP/1.1\r\nHost: a\r\n\r\n", n)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode)
		got, err := io.Copy(io.Discard, resp.Body)
		require.NoError(t, err)
		require.Equal(t, n, got)
	}
	allocated := func(f func(int64), n int64) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f(n)
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	transfers := []struct {
		name string
		f    func(int64)
	}{{"upload", up}, {"chunked upload", upChunked}, {"download", down}}
	for _, tr := range transfers {
		tr.f(1 << 20)
	}
	for _, tr := range transfers {
		a := allocated(tr.f, size)
		t.Logf("%s of %d MiB: the process allocated %d KiB", tr.name, size>>20, a>>10)
		assert.Less(t, a, uint64(bound), "%s: memory grows with the body size", tr.name)
	}
	assert.EqualValues(t, 2*len(transfers), poolOf(p.Server, p.rt.Load().cfg.Services[0].Backends[0]).Stats().Requests, "every transfer went through the proxy")
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestQueuedClientGone: a request waiting in the queue whose client hangs
// up leaves the queue (canceled) and never reaches the backend; the watch
// stops by itself once nothing is queued.
func TestQueuedClientGone(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		arrived <- struct{}{}
		<-release
		ctx.WriteString("ok") //nolint:errcheck
	})
	cfg := oneService(b.addr)
	require.NoError(t, cfg.Queue.Limit.UnmarshalText([]byte("static:1")))
	cfg.Queue.QueueTimeout = 30 * time.Second
	p := startProxy(t, cfg)
	sched := firstService(p.Server).sched

	first := make(chan int, 1)
	go func() {
		resp, _ := get(t, p.addr, "/first")
		first <- resp.StatusCode
	}()
	<-arrived // the one slot is taken

	c, err := net.Dial("tcp", p.addr)
	require.NoError(t, err)
	_, err = io.WriteString(c, "GET /second HTTP/1.1\r\nHost: a\r\n\r\n")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return sched.Stats().Queued[scheduler.Normal] == 1 }, 5*time.Second, time.Millisecond)
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return sched.Stats().Canceled == 1 }, 5*time.Second, time.Millisecond)

	close(release)
	assert.Equal(t, 200, <-first)
	assert.EqualValues(t, 1, b.hits.Load(), "the abandoned request never reached the backend")
	require.Eventually(t, func() bool {
		p.watch.mu.Lock()
		defer p.watch.mu.Unlock()
		return !p.watch.running && len(p.watch.waiting) == 0
	}, 5*time.Second, time.Millisecond)
}

func TestPoolReusesConnections(t *testing.T) {
	b := startBackend(t, okHandler)
	cfg := oneService(b.addr)
	cfg.Pool.WarmConns = 2
	p := startProxy(t, cfg)
	for range 10 {
		resp, _ := get(t, p.addr, "/")
		require.Equal(t, 200, resp.StatusCode)
	}
	st := poolOf(p.Server, "http://"+b.addr).Stats()
	assert.EqualValues(t, 10, st.Requests)
	assert.EqualValues(t, 2, st.Dials, "sequential requests ride the warm connections")
	assert.Zero(t, st.InFlight)
	assert.NotZero(t, st.BytesIn)
	assert.NotZero(t, st.BytesOut)
}

// TestBackendConnectionClose: a backend connection whose response said
// Connection: close carries no further request, even if the backend has
// not closed it yet (RFC 9112 9.6); the next request dials anew.
func TestBackendConnectionClose(t *testing.T) {
	var mu sync.Mutex
	var arrived []string // "conn/seq" of each request read
	var conns atomic.Int64
	b := startRawBackend(t, func(c net.Conn) {
		n := conns.Add(1)
		br := bufio.NewReader(c)
		for seq := 1; ; seq++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			mu.Lock()
			arrived = append(arrived, fmt.Sprintf("%d/%d", n, seq))
			mu.Unlock()
			// Says close, and stays open: the proxy must not take it
			// at its word only when the socket ends.
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	p := startProxy(t, oneService(b.addr))
	for range 2 {
		resp, body := get(t, p.addr, "/")
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, "ok", body)
	}
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"1/1", "2/1"}, arrived)
}

func TestConfigValidate(t *testing.T) {
	good := oneService("127.0.0.1:1")
	for _, tc := range []struct {
		name string
		mut  func(c *Config)
		want string
	}{
		{"ok", func(c *Config) {}, ""},
		{"no services", func(c *Config) { c.Services = nil }, "services"},
		{"bad url", func(c *Config) { c.Services[0].Backends = []string{"ftp://x"} }, "services[0].backends[0]"},
		{"unknown service", func(c *Config) { c.Routes = []RouteConfig{{Service: "nope"}} }, `routes[0].service: no service named "nope"`},
		{"bad priority", func(c *Config) { c.Routes = []RouteConfig{{Service: "web", Priority: "urgent"}} }, `"urgent"`},
		{"bad tenant_from", func(c *Config) { c.Classify.TenantFrom = "cookie" }, "classify.tenant_from"},
		{"negative body", func(c *Config) { c.Limits.MaxBodyBytes = -1 }, "limits.max_body_bytes"},
		{"pool", func(c *Config) { c.Pool.MaxConns = -1 }, "pool: max_conns"},
	} {
		c := good
		c.Services = []ServiceConfig{{Name: "web", Backends: []string{"http://127.0.0.1:1"}}}
		tc.mut(&c)
		c = c.WithDefaults()
		err := c.Validate()
		if tc.want == "" {
			assert.NoError(t, err, tc.name)
		} else if assert.Error(t, err, tc.name) {
			assert.Contains(t, err.Error(), tc.want, tc.name)
		}
	}
	d := Config{}.WithDefaults()
	assert.Equal(t, DefaultClientHeader, d.Timeouts.ClientHeader)
	assert.Equal(t, pool.DefaultMaxConns, d.Pool.MaxConns)
}

// TestHeaderBits: bit i of a headerSet is hopHeaders[i] (delHops relies on
// it), names match in any case, and look-alikes do not.
func TestHeaderBits(t *testing.T) {
	for i, h := range hopHeaders {
		assert.Equal(t, headerSet(1)<<i, headerBit(h), "%s", h)
		assert.Equal(t, headerSet(1)<<i, headerBit([]byte(strings.ToLower(string(h)))), "%s", h)
		assert.NotZero(t, headerBit(h)&setHops)
	}
	assert.Equal(t, setExpect, headerBit([]byte("expect")))
	assert.Equal(t, setContentLength, headerBit([]byte("CONTENT-LENGTH")))
	for _, k := range []string{"", "Te-", "Via", "X-Connectio", "Connexion", "Keep-Alivf", "Host", "Upgrades"} {
		assert.Zero(t, headerBit([]byte(k)), k)
	}
	set, err := scanRawHeaders([]byte("Host: a\r\nconnection: close\r\nUPGRADE: h2c\r\nX-Keep: 1\r\n\r\n"))
	require.NoError(t, err)
	assert.Equal(t, setConnection|setUpgrade, set)

	var resp fasthttp.Response
	require.NoError(t, resp.Read(bufio.NewReader(strings.NewReader(
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nX-A: b\r\n\r\nok"))))
	assert.Equal(t, setKeepAlive|setProxyAuthenticate, responseHeaderSet(&resp.Header)&setHops)
}

// TestCanonicalHeaderNames: the names the proxy sets with SetCanonical are
// what fasthttp's normalisation makes of them, so they replace what a
// client or backend sent under any spelling.
func TestCanonicalHeaderNames(t *testing.T) {
	for _, k := range [][]byte{hdrXForwardedFor, hdrXForwardedProto, hdrXForwardedHost, hdrVia, hdrRequestID} {
		var h fasthttp.RequestHeader
		h.Set(strings.ToLower(string(k)), "client")
		h.SetCanonical(k, []byte("proxy"))
		n := 0
		for key, v := range h.All() {
			if strings.EqualFold(string(key), string(k)) {
				n++
				assert.Equal(t, string(k), string(key))
				assert.Equal(t, "proxy", string(v))
			}
		}
		assert.Equal(t, 1, n, "%s set once", k)
	}
}

// TestBackendAddr: errors quote the backend as the user wrote it, never
// the URL it was completed to.
func TestBackendAddr(t *testing.T) {
	for _, tc := range []struct{ in, addr, err string }{
		{"http://127.0.0.1:9001", "127.0.0.1:9001", ""},
		{"127.0.0.1:9001", "127.0.0.1:9001", ""},
		{"http://origin.test", "origin.test:80", ""},
		{"http://[::1]:8080/", "[::1]:8080", ""},
		{"htp:/x", "", `"htp:/x": a backend URL has no path or query`},
		{"ftp://x", "", `"ftp://x": scheme "ftp" is not supported`},
		{"http://", "", `"http://" has no host`},
		{"http://a:b:c", "", `"http://a:b:c" is not a URL`},
		{"a b:1", "", `"a b:1" is not a URL`},
		{"http://x/p?q", "", `"http://x/p?q": a backend URL has no path or query`},
	} {
		addr, err := backendAddr(tc.in)
		if tc.err == "" {
			assert.NoError(t, err, tc.in)
			assert.Equal(t, tc.addr, addr, tc.in)
			continue
		}
		if assert.Error(t, err, tc.in) {
			assert.Contains(t, err.Error(), tc.err)
			if !strings.Contains(tc.in, "://") {
				assert.NotContains(t, err.Error(), "http://", "a value the user never wrote")
			}
		}
	}
}

func TestRouting(t *testing.T) {
	a := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.WriteString("a") })  //nolint:errcheck
	bb := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.WriteString("b") }) //nolint:errcheck
	cfg := Config{
		Services: []ServiceConfig{
			{Name: "a", Backends: []string{"http://" + a.addr}},
			{Name: "b", Backends: []string{"http://" + bb.addr}},
		},
		Routes: []RouteConfig{
			{Host: "api.example", PathPrefix: "/v2/", Service: "b"},
			{Headers: map[string]string{"X-Canary": "1"}, Service: "b"},
			{PathPrefix: "/v1/", Service: "a"},
		},
	}
	p := startProxy(t, cfg)
	_, body := roundTrip(t, p.addr, "GET /v2/x HTTP/1.1\r\nHost: API.example:443\r\n\r\n")
	assert.Equal(t, "b", body)
	_, body = roundTrip(t, p.addr, "GET /v1/x HTTP/1.1\r\nHost: api.example\r\n\r\n")
	assert.Equal(t, "a", body)
	_, body = get(t, p.addr, "/", "X-Canary: 1")
	assert.Equal(t, "b", body)
	resp, body := get(t, p.addr, "/other")
	assert.Equal(t, 404, resp.StatusCode)
	assert.Contains(t, body, "no route")
	resp, _ = get(t, p.addr, "/x/v1/y")
	assert.Equal(t, 404, resp.StatusCode, "a path prefix matches at the start of the path only")
}

// trailerBody yields its parts, then sets the X-Sum trailer: fasthttp reads
// it on the connection's goroutine, so the header is ours to touch.
type trailerBody struct {
	parts []string
	h     *fasthttp.ResponseHeader
}

func (b *trailerBody) Read(p []byte) (int, error) {
	if len(b.parts) == 0 {
		b.h.Set("X-Sum", "42")
		return 0, io.EOF
	}
	n := copy(p, b.parts[0])
	b.parts = b.parts[1:]
	return n, nil
}
