package proxy

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/sluiceproxy/sluice/cache"
)

// The cache's hit path, measured and guarded: a fresh hit is answered
// before admission from the stored entry, so past the first request the
// backend sees nothing and the proxy's own cost is all there is.

// newMemRigCached is the in-memory rig with the cache on and a backend
// that answers body as cacheable for an hour, counting its requests.
func newMemRigCached(tb testing.TB, body []byte, fetches *atomic.Int64) *memRig {
	return newMemRigHandler(tb, true, func(c *Config) {
		c.Services[0].Cache = &cache.Config{Enabled: true}
	}, nil, func(ctx *fasthttp.RequestCtx) {
		fetches.Add(1)
		ctx.Response.Header.SetContentType("application/octet-stream")
		ctx.Response.Header.Set("Cache-Control", "max-age=3600")
		ctx.Response.SetBodyRaw(body)
	})
}

// BenchmarkCacheHit: fresh hits of one stored object, by body size.
func BenchmarkCacheHit(b *testing.B) {
	for _, size := range []int{0, 1 << 10, 16 << 10, 256 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			var fetches atomic.Int64
			rig := newMemRigCached(b, bytes.Repeat([]byte("x"), size), &fetches)
			defer rig.stop()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			runParallelGets(b, rig)
			b.StopTimer()
			if n := fetches.Load(); n > int64(b.N)/100+8 {
				b.Fatalf("%d backend fetches for %d requests: not hits", n, b.N)
			}
		})
	}
}

// TestCacheHitZeroAlloc: answering a fresh hit, access log included,
// allocates nothing in steady state, as a proxied request does not
// (TestProxyZeroAlloc); a hit should be cheaper than a proxied request,
// never dearer.
func TestCacheHitZeroAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	var fetches atomic.Int64
	rig := newMemRigCached(t, bytes.Repeat([]byte("x"), 4<<10), &fetches)
	defer rig.stop()
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://sluice.test/alloc?x=1")
	run := func() {
		if err := rig.do(req, resp); err != nil || resp.StatusCode() != 200 {
			t.Fatalf("err %v status %d", err, resp.StatusCode())
		}
	}
	for range 100 { // store the object, then warm every pool
		run()
	}
	require.Equal(t, "hit", string(resp.Header.Peek("X-Sluice-Cache")))
	allocs := testing.AllocsPerRun(1000, run)
	require.Equal(t, int64(1), fetches.Load(), "backend fetches")
	require.Zero(t, allocs, "allocations per cache hit")
}
