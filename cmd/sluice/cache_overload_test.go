package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/sluiceproxy/sluice/bench/loadgen"
	"github.com/sluiceproxy/sluice/bench/origin"
)

// A cacheable route offered three times what its origin can serve,
// through the real binary: the simulated origin (bench/origin, 4 workers
// × 20 ms = 200 requests/s) marks its responses fresh for one second, and
// the clients cycle over more keys than they revisit in a second, so
// every request finds its copy stale and, without a cache, every one
// would go to the origin. Admission keeps the origin at its capacity; the
// requests it refuses get the stale copy (stale_on_overload) instead of a
// 503, so the clients keep getting 200s. The figures are logged for
// docs/benchmarks.md; SLUICE_CACHE_OVERLOAD=30s runs longer.

const (
	overloadCapacity = 200 // the origin's requests/s
	overloadFactor   = 3
	overloadMaxAge   = 1 // seconds
)

func overloadDuration(t *testing.T) time.Duration {
	if s := os.Getenv("SLUICE_CACHE_OVERLOAD"); s != "" {
		d, err := time.ParseDuration(s)
		require.NoError(t, err, "SLUICE_CACHE_OVERLOAD")
		return d
	}
	return 8 * time.Second
}

func TestE2ECacheOverload(t *testing.T) {
	needBinary(t)
	dur := overloadDuration(t)
	cfg := origin.Default() // 4 workers × 20 ms
	cfg.BodySize = 1024
	o, err := origin.New(cfg)
	require.NoError(t, err)
	require.NoError(t, o.Start("127.0.0.1:0")) // runs its clock; served through front below
	t.Cleanup(func() { _ = o.Close() })
	require.InDelta(t, overloadCapacity, cfg.Capacity(), 1)
	// The simulated origin sends no Cache-Control; this front marks its
	// 200s fresh for overloadMaxAge seconds.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	front := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		o.Handler(ctx)
		if ctx.Response.StatusCode() == fasthttp.StatusOK {
			ctx.Response.Header.Set("Cache-Control", fmt.Sprintf("max-age=%d", overloadMaxAge))
		}
	}, NoDefaultDate: true, CloseOnShutdown: true}
	go func() { _ = front.Serve(ln) }()
	t.Cleanup(func() { _ = front.Shutdown() })

	p := startSluice(t, "--listen", "127.0.0.1:0", "--backend", "http://"+ln.Addr().String(),
		"--access-log=false", "--admin", "127.0.0.1:0", "--cache")
	admin := adminAddr(t, p)

	// More keys than the clients revisit within max-age: at 600 requests/s
	// each key comes back every 4/3 s, stale every time.
	keys := make([]string, 4*overloadCapacity*overloadMaxAge)
	for i := range keys {
		keys[i] = fmt.Sprintf("/item/%d", i)
	}
	// Store every key first, at the origin's own pace (its 4 workers).
	var wg sync.WaitGroup
	var failed atomic.Int64
	work := make(chan string)
	c := newClient(t)
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range work {
				if st, _ := get(t, c, "http://"+p.addr+k, nil, ""); st != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	for _, k := range keys {
		work <- k
	}
	close(work)
	wg.Wait()
	require.Zero(t, failed.Load(), "prefill: every key fetched")

	before := o.Stats()
	stale0 := cacheMetric(t, admin, "sluice_cache_requests_total", `result="stale"`)
	rate := float64(overloadFactor * overloadCapacity)
	rep, err := loadgen.Run(context.Background(), loadgen.Config{
		Target:   "http://" + p.addr,
		Rate:     loadgen.Schedule{{From: rate, To: rate, Dur: dur}},
		Targets:  keys,
		Timeout:  5 * time.Second,
		MaxConns: 2000,
	}, nil)
	require.NoError(t, err)
	after := o.Stats()
	stale := cacheMetric(t, admin, "sluice_cache_requests_total", `result="stale"`) - stale0

	ok := rep.Status[200]
	frac := float64(ok) / float64(rep.Sent)
	originRate := float64(after.Received-before.Received) / rep.Duration.Seconds()
	t.Logf("offered %.0f req/s (%dx the origin's %d) over %d keys for %s: %d sent, %d 200 (%.2f%%; %d of them stale copies), status %v, errors %v; p50 %s p99 %s; origin %.0f req/s (%.2fx its capacity), max in service %d",
		rate, overloadFactor, overloadCapacity, len(keys), dur, rep.Sent, ok, 100*frac, stale, rep.Status, rep.Errors,
		rep.Latency.P50.Round(time.Millisecond), rep.Latency.P99.Round(time.Millisecond),
		originRate, originRate/overloadCapacity, after.MaxActive)
	require.GreaterOrEqual(t, frac, 0.99, "the clients keep getting 200s")
	require.Greater(t, stale, int64(rep.Sent)/2, "most answers are stale copies: the origin could not have served them")
	require.LessOrEqual(t, originRate, 1.1*overloadCapacity, "the origin is kept at its capacity")
	require.Less(t, rep.Latency.P99, time.Second, "p99")
}
