package proxy

import (
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/sluiceproxy/sluice/pool"
)

// memRig is the proxy between an in-memory client and an in-memory
// fasthttp backend: no sockets, so the numbers are the proxy's own.
type memRig struct {
	proxy   *Server
	client  *fasthttp.HostClient
	stop    func()
	backend *fasthttp.Server
}

func newMemRig(tb testing.TB, accessLog bool) *memRig {
	return newMemRigWith(tb, accessLog, nil)
}

// newMemRigWith is newMemRig with the proxy's configuration adjusted by
// mut (nil: none).
func newMemRigWith(tb testing.TB, accessLog bool, mut func(*Config)) *memRig {
	return newMemRigObserved(tb, accessLog, mut, nil)
}

// newMemRigBody is newMemRigWith whose backend answers body.
func newMemRigBody(tb testing.TB, body []byte, mut func(*Config)) *memRig {
	return newMemRigServing(tb, true, mut, nil, body)
}

// newMemRigObserved is newMemRigWith with attach called on the proxy
// before it serves (to add observers); nil: nothing.
func newMemRigObserved(tb testing.TB, accessLog bool, mut func(*Config), attach func(*Server)) *memRig {
	return newMemRigServing(tb, accessLog, mut, attach, benchBody)
}

// newMemRigServing is newMemRigObserved whose backend answers body.
func newMemRigServing(tb testing.TB, accessLog bool, mut func(*Config), attach func(*Server), body []byte) *memRig {
	return newMemRigHandler(tb, accessLog, mut, attach, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentType("text/plain")
		ctx.Response.SetBodyRaw(body)
	})
}

// newMemRigHandler is newMemRigObserved whose backend is handler.
func newMemRigHandler(tb testing.TB, accessLog bool, mut func(*Config), attach func(*Server), handler fasthttp.RequestHandler) *memRig {
	tb.Helper()
	backLn := fasthttputil.NewInmemoryListener()
	frontLn := fasthttputil.NewInmemoryListener()
	backend := &fasthttp.Server{
		Handler:       handler,
		NoDefaultDate: true,
	}
	backDone := make(chan struct{})
	go func() { defer close(backDone); _ = backend.Serve(backLn) }()

	cfg := Config{
		Services: []ServiceConfig{{Name: "bench", Backends: []string{"http://backend.test:80"}}},
		Pool: pool.Config{
			Dial: func(string, time.Duration) (net.Conn, error) { return backLn.Dial() },
		},
		Log: LogConfig{AccessLog: &accessLog, AccessWriter: discard{}},
	}
	if mut != nil {
		mut(&cfg)
	}
	s, err := New(cfg, zerolog.Nop())
	require.NoError(tb, err)
	if attach != nil {
		attach(s)
	}
	frontDone := make(chan struct{})
	go func() { defer close(frontDone); _ = s.Serve(frontLn) }()
	client := &fasthttp.HostClient{
		Addr:     "sluice.test",
		Dial:     func(string) (net.Conn, error) { return frontLn.Dial() },
		MaxConns: 1024,
	}
	return &memRig{proxy: s, client: client, backend: backend, stop: func() {
		client.CloseIdleConnections()
		_ = s.Shutdown(tb.Context())
		<-frontDone
		_ = backend.Shutdown()
		<-backDone
	}}
}

var benchBody = []byte("hello from the backend, a short body\n")

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func (r *memRig) do(req *fasthttp.Request, resp *fasthttp.Response) error {
	return r.client.Do(req, resp)
}

// runParallelGets sends GETs through the rig from b's parallel goroutines
// until b.N is reached, failing on any non-200 answer.
func runParallelGets(b *testing.B, rig *memRig) {
	b.RunParallel(func(pb *testing.PB) {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		req.SetRequestURI("http://sluice.test/bench/path?q=1")
		for pb.Next() {
			if err := rig.do(req, resp); err != nil {
				b.Fatal(err)
			}
			if resp.StatusCode() != fasthttp.StatusOK {
				b.Fatalf("status %d", resp.StatusCode())
			}
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	})
}

func BenchmarkProxy(b *testing.B) {
	rig := newMemRig(b, true)
	defer rig.stop()
	b.ReportAllocs()
	b.ResetTimer()
	runParallelGets(b, rig)
}

// BenchmarkProxyQueued is BenchmarkProxy with a concurrency limit far
// below the number of clients, so that nearly every request waits in the
// queue: the path every request takes when an adaptive limit settles below
// the client count. It too should allocate nothing per request.
func BenchmarkProxyQueued(b *testing.B) {
	rig := newMemRigWith(b, true, func(c *Config) {
		if err := c.Queue.Limit.UnmarshalText([]byte("static:2")); err != nil {
			b.Fatal(err)
		}
	})
	defer rig.stop()
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	runParallelGets(b, rig)
	st := firstService(rig.proxy).sched.Stats()
	b.ReportMetric(float64(st.AdmittedQueued)/float64(st.AdmittedQueued+st.AdmittedFast), "queued/op")
}

// TestProxyZeroAlloc guards the hot path: a proxied request, access log
// included, allocates nothing in steady state (client, proxy and backend
// together, as in fasthttp's allocation_test.go).
func TestProxyZeroAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	rig := newMemRig(t, true)
	defer rig.stop()
	requireZeroAllocRequests(t, rig)
}

// requireZeroAllocRequests fails t unless a proxied request through rig
// allocates nothing once the pools are warm.
func requireZeroAllocRequests(t *testing.T, rig *memRig) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://sluice.test/alloc?x=1")
	req.Header.Set("X-Tenant", "t1")
	run := func() {
		if err := rig.do(req, resp); err != nil || resp.StatusCode() != 200 {
			t.Fatalf("err %v status %d", err, resp.StatusCode())
		}
	}
	for range 100 { // warm every pool
		run()
	}
	allocs := testing.AllocsPerRun(1000, run)
	require.Zero(t, allocs, "allocations per proxied request")
}

// BenchmarkProxyBody measures responses of several sizes, with response
// buffering on (the default) and off: what the buffer path costs per
// request where fasthttp alone would relay the body directly.
func BenchmarkProxyBody(b *testing.B) {
	for _, size := range []int{1 << 10, 16 << 10, 64 << 10, 256 << 10} {
		body := bytes.Repeat([]byte("x"), size)
		for _, buffering := range []bool{true, false} {
			b.Run(fmt.Sprintf("%dKiB/buffering=%v", size>>10, buffering), func(b *testing.B) {
				rig := newMemRigBody(b, body, func(c *Config) { c.Buffering.Responses = &buffering })
				defer rig.stop()
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				runParallelGets(b, rig)
			})
		}
	}
}
