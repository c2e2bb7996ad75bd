package loadgen

import (
	"context"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// newTestRunner builds the state Run builds, without starting a run, so a
// single connection's request path can be measured on its own.
func newTestRunner(t testing.TB, url string) (*runner, *worker) {
	t.Helper()
	cfg := Config{Target: url, Rate: Schedule{{1, 1, time.Second}}, Mix: []Class{{Name: "a", Share: 1, Path: "/x",
		Headers: map[string]string{"X-Priority": "high"}}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg = cfg.withDefaults()
	addr, host, _ := parseTarget(url)
	r := &runner{cfg: cfg, addr: addr, timeout: int64(cfg.Timeout), ctx: context.Background(),
		live: map[*worker]struct{}{}, shedIdx: map[string]uint8{}, t0: time.Now()}
	r.classes = []preparedClass{prepareClass(cfg.Mix[0], host)}
	w := r.newWorker(0)
	t.Cleanup(func() { r.retire(w) })
	return r, w
}

func shedHandler(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set(ShedHeader, "queue-full")
	ctx.SetStatusCode(503)
	ctx.SetBodyString("busy")
}

// The request path allocates nothing once a connection is open: building
// the request, writing it, parsing the response and recording the outcome
// reuse the connection's buffers.
func TestRequestPathZeroAlloc(t *testing.T) {
	url := startFast(t, shedHandler)
	r, w := newTestRunner(t, url)
	rec := &record{target: -1}
	rec.sched = r.now()
	w.do(rec) // dial, size the buffers, intern the shed reason
	if rec.status != 503 || rec.shed == 0 {
		t.Fatalf("status %d shed %d", rec.status, rec.shed)
	}
	allocs := testing.AllocsPerRun(200, func() {
		rec.sched = r.now()
		w.do(rec)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per request, want 0", allocs)
	}
}

// BenchmarkRequest measures one request on a kept-alive loopback
// connection to an in-process fasthttp server, generator and server
// sharing the CPU: the cost floor of the generator's request path.
func BenchmarkRequest(b *testing.B) {
	url := startFast(b, okHandler)
	r, w := newTestRunner(b, url)
	rec := &record{target: -1}
	b.ReportAllocs()
	for b.Loop() {
		rec.sched = r.now()
		w.do(rec)
	}
	if rec.status != 200 {
		b.Fatalf("status %d", rec.status)
	}
}

// BenchmarkCollect measures folding one finished record into the
// aggregates (the collector's per-request cost).
func BenchmarkCollect(b *testing.B) {
	r, _ := newTestRunner(b, "http://127.0.0.1:1")
	c := newCollector(r, nil)
	rec := &record{status: 200, sched: 1e6, sent: 1e6 + 1000, end: 1e6 + 250_000}
	b.ReportAllocs()
	for b.Loop() {
		c.add(rec)
	}
}
