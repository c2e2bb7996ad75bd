//go:build linux

package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

// parkedCount is how many connections the proxy's parker holds.
func (p *testProxy) parkedCount() int { return p.Front().ParkedConns }

// rawClient is a raw keep-alive client connection.
type rawClient struct {
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))
	return &rawClient{c: c, br: bufio.NewReader(c)}
}

// send writes raw and reads n responses, returning their bodies.
func (r *rawClient) send(t *testing.T, raw string, n int) []string {
	t.Helper()
	_, err := io.WriteString(r.c, raw)
	require.NoError(t, err)
	var bodies []string
	for range n {
		resp, err := http.ReadResponse(r.br, nil)
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode, string(b))
		bodies = append(bodies, string(b))
	}
	return bodies
}

func pathEcho(ctx *fasthttp.RequestCtx) {
	ctx.Write(ctx.Path()) //nolint:errcheck
}

// Idle keep-alive connections leave their goroutines for the parker, and
// come back to be served, pipelined requests included, as many times as
// they go idle.
func TestIdleConnectionsPark(t *testing.T) {
	b := startBackend(t, pathEcho)
	p := startProxy(t, oneService(b.addr))
	const n = 200
	before := runtime.NumGoroutine()
	clients := make([]*rawClient, n)
	for i := range clients {
		clients[i] = dialRaw(t, p.addr)
		require.Equal(t, []string{"/first"}, clients[i].send(t, "GET /first HTTP/1.1\r\nHost: a\r\n\r\n", 1))
	}
	require.Eventually(t, func() bool { return p.parkedCount() == n }, 10*time.Second, 10*time.Millisecond,
		"every idle connection parks")
	// Each parked connection holds no goroutine: n idle connections would
	// otherwise hold n (fasthttp's serving goroutines, at least). The
	// margin is for the backend's and the pool's own.
	require.Eventually(t, func() bool { return runtime.NumGoroutine() < before+n/10 }, 15*time.Second, 10*time.Millisecond,
		"goroutines: %d before, %d with %d idle connections", before, runtime.NumGoroutine(), n)
	for round := range 2 {
		for i, c := range clients {
			if i%2 == 0 {
				require.Equal(t, []string{"/a", "/b"}, c.send(t,
					"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n", 2), "round %d", round)
			} else {
				require.Equal(t, []string{"/c"}, c.send(t, "GET /c HTTP/1.1\r\nHost: a\r\n\r\n", 1), "round %d", round)
			}
		}
		require.Eventually(t, func() bool { return p.parkedCount() == n }, 10*time.Second, 10*time.Millisecond)
	}
}

// A request whose head or body pauses for longer than a connection waits
// before it parks is still read whole: only the wait between requests
// parks, never a request in progress.
func TestIdleParkNeverInsideARequest(t *testing.T) {
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Write(ctx.Request.Body()) //nolint:errcheck
	})
	p := startProxy(t, oneService(b.addr))
	c := dialRaw(t, p.addr)
	pause := 3 * parkAfter
	write := func(s string) {
		_, err := io.WriteString(c.c, s)
		require.NoError(t, err)
		time.Sleep(pause)
	}
	// Before the first byte (parks), inside the head, inside a body of
	// known length and inside a chunked one.
	time.Sleep(pause)
	write("POST /u HTTP/1.1\r\nHost: a\r\n")
	write("Content-Length: 10\r\n\r\nhello")
	write("")
	require.Equal(t, []string{"helloworld"}, c.send(t, "world", 1))
	time.Sleep(pause) // parks between requests
	write("POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
	require.Equal(t, []string{"hello"}, c.send(t, "0\r\n\r\n", 1))
}

// A parked connection keeps the deadline of its wait: the idle timeout
// between requests, the header timeout before a first one.
func TestIdleParkedConnectionsTimeOut(t *testing.T) {
	b := startBackend(t, okHandler)
	cfg := oneService(b.addr)
	cfg.Timeouts.Idle = 600 * time.Millisecond
	cfg.Timeouts.ClientHeader = 900 * time.Millisecond
	p := startProxy(t, cfg)

	kept := dialRaw(t, p.addr)
	kept.send(t, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)
	silent := dialRaw(t, p.addr)
	require.Eventually(t, func() bool { return p.parkedCount() == 2 }, 5*time.Second, 5*time.Millisecond)

	closedWithin := func(r *rawClient) time.Duration {
		start := time.Now()
		_, err := r.br.ReadByte()
		require.ErrorIs(t, err, io.EOF, "a parked connection is closed silently")
		return time.Since(start)
	}
	require.Less(t, closedWithin(kept), 5*time.Second)
	require.Less(t, closedWithin(silent), 5*time.Second)
	require.Eventually(t, func() bool { return p.parkedCount() == 0 }, 5*time.Second, 5*time.Millisecond)
}

// A client that hangs up while parked is forgotten, and Shutdown closes
// the parked connections at once.
func TestIdleParkedHangUpAndShutdown(t *testing.T) {
	b := startBackend(t, okHandler)
	p := startProxy(t, oneService(b.addr))
	gone := dialRaw(t, p.addr)
	gone.send(t, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)
	stay := dialRaw(t, p.addr)
	stay.send(t, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)
	require.Eventually(t, func() bool { return p.parkedCount() == 2 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, gone.c.Close())
	require.Eventually(t, func() bool { return p.parkedCount() == 1 }, 5*time.Second, 5*time.Millisecond,
		"the hang-up wakes the connection, which closes")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, p.Shutdown(ctx))
	require.Less(t, time.Since(start), 2*time.Second, "shutdown does not wait for parked connections")
	_, err := stay.br.ReadByte()
	require.ErrorIs(t, err, io.EOF)
	require.Equal(t, 0, p.parkedCount())
}

// A WebSocket-style tunnel that idles for longer than a connection waits
// before it parks stays a tunnel: a connection taken over is never parked.
func TestIdleTunnelNotParked(t *testing.T) {
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(fasthttp.StatusSwitchingProtocols)
		ctx.Response.Header.Set("Upgrade", "echo")
		ctx.Response.Header.Set("Connection", "Upgrade")
		ctx.Hijack(func(c net.Conn) {
			buf := make([]byte, 64)
			for {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				if _, err := c.Write(buf[:n]); err != nil {
					return
				}
			}
		})
	})
	p := startProxy(t, oneService(b.addr))
	c := dialRaw(t, p.addr)
	_, err := io.WriteString(c.c, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(c.br, nil)
	require.NoError(t, err)
	require.Equal(t, 101, resp.StatusCode)
	for _, msg := range []string{"one", "two"} {
		time.Sleep(3 * parkAfter)
		_, err = io.WriteString(c.c, msg)
		require.NoError(t, err)
		got := make([]byte, len(msg))
		_, err = io.ReadFull(c.br, got)
		require.NoError(t, err)
		require.Equal(t, msg, string(got))
	}
	require.Equal(t, 0, p.parkedCount())
	require.False(t, strings.Contains(p.logs.String(), `"status":499`))
}
