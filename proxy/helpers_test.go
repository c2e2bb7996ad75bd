package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"

	"github.com/sluiceproxy/sluice/pool"
)

func TestMain(m *testing.M) {
	if standbyHookHelper() {
		return
	}
	goleak.VerifyTestMain(m,
		// fasthttp's process-wide clock for Date headers (backends use it).
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		// A stopped fasthttp worker pool's cleaner notices the stop only
		// after its sleep (up to 10 s); it holds nothing.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
	)
}

// backend is a real fasthttp origin on 127.0.0.1 that records what it saw.
type backend struct {
	addr string
	hits atomic.Int64
	mu   sync.Mutex
	last *fasthttp.Request // copy of the last request
	srv  *fasthttp.Server
	ln   net.Listener
}

func startBackend(t testing.TB, h fasthttp.RequestHandler) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b := &backend{addr: ln.Addr().String(), ln: ln}
	b.srv = &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			b.hits.Add(1)
			r := &fasthttp.Request{}
			ctx.Request.Header.CopyTo(&r.Header)
			if !ctx.Request.IsBodyStream() {
				r.SetBody(ctx.Request.Body())
			}
			b.mu.Lock()
			b.last = r
			b.mu.Unlock()
			h(ctx)
		},
		DisablePreParseMultipartForm: true,
		StreamRequestBody:            true,
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = b.srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = b.srv.Shutdown()
		<-done
	})
	return b
}

func (b *backend) lastReq() *fasthttp.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// rawBackend accepts connections and hands each to fn: for backends that
// misbehave below HTTP.
type rawBackend struct {
	addr  string
	conns atomic.Int64
	ln    net.Listener
	wg    sync.WaitGroup
}

func startRawBackend(t testing.TB, fn func(c net.Conn)) *rawBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	rb := &rawBackend{addr: ln.Addr().String(), ln: ln}
	var mu sync.Mutex
	var open []net.Conn
	rb.wg.Add(1)
	go func() {
		defer rb.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			rb.conns.Add(1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			rb.wg.Add(1)
			go func() {
				defer rb.wg.Done()
				defer c.Close()
				fn(c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range open {
			_ = c.Close()
		}
		mu.Unlock()
		rb.wg.Wait()
	})
	return rb
}

// refusedAddr is a loopback address nothing listens on.
func refusedAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

type testProxy struct {
	*Server
	addr string
	logs *syncBuf
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func oneService(backends ...string) Config {
	urls := make([]string, len(backends))
	for i, b := range backends {
		urls[i] = "http://" + b
	}
	return Config{
		Services: []ServiceConfig{{Name: "web", Backends: urls}},
		Pool:     pool.Config{ResponseHeaderTimeout: 2 * time.Second, ConnectTimeout: time.Second},
	}
}

func startProxy(t testing.TB, cfg Config, observers ...Observer) *testProxy {
	t.Helper()
	logs := &syncBuf{}
	if cfg.Log.AccessWriter == nil {
		cfg.Log.AccessWriter = logs
	}
	s, err := New(cfg, zerolog.Nop())
	require.NoError(t, err)
	for _, o := range observers {
		s.AddObserver(o)
	}
	return serveProxy(t, s, logs)
}

// serveProxy serves s on a loopback listener until the test ends; logs is
// where its access log goes.
func serveProxy(t testing.TB, s *Server, logs *syncBuf) *testProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-done
	})
	return &testProxy{Server: s, addr: ln.Addr().String(), logs: logs}
}

// roundTrip sends raw bytes and parses one response (body read whole).
func roundTrip(t testing.TB, addr, raw string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(c, raw)
	require.NoError(t, err)
	br := bufio.NewReader(c)
	method := raw[:strings.IndexByte(raw, ' ')]
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

func get(t testing.TB, addr, path string, hdrs ...string) (*http.Response, string) {
	raw := "GET " + path + " HTTP/1.1\r\nHost: example.test\r\n"
	for _, h := range hdrs {
		raw += h + "\r\n"
	}
	return roundTrip(t, addr, raw+"\r\n")
}

func okHandler(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/plain")
	ctx.WriteString("ok") //nolint:errcheck
}
