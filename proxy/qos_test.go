package proxy

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

// TestFailingBackendEjected: one backend of three answers 500 to
// everything, at once, which makes it the fastest and the one with the
// most free slots. The monitor ejects it after a few failures and the
// others carry the traffic.
func TestFailingBackendEjected(t *testing.T) {
	ok1, ok2 := startBackend(t, okHandler), startBackend(t, okHandler)
	bad := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(500) })
	p := startProxy(t, oneService(ok1.addr, ok2.addr, bad.addr))
	failed := 0
	for range 300 {
		resp, _ := get(t, p.addr, "/")
		if resp.StatusCode != 200 {
			failed++
		}
	}
	assert.LessOrEqual(t, failed, 5, "ejected after 5 failures in a row")
	assert.LessOrEqual(t, bad.hits.Load(), int64(5))
	snap := firstService(p.Server).mon.Snapshot()
	assert.True(t, snap[2].Ejected, "%+v", snap[2])
	assert.Equal(t, 300-failed, int(ok1.hits.Load()+ok2.hits.Load()))
}

// TestDeadBackendEjected: a backend that refuses connections is ejected
// too; its requests move to the others without the client seeing it.
func TestDeadBackendEjected(t *testing.T) {
	ok := startBackend(t, okHandler)
	dead := refusedAddr(t)
	p := startProxy(t, oneService(ok.addr, dead))
	for range 50 {
		resp, _ := get(t, p.addr, "/")
		assert.Equal(t, 200, resp.StatusCode)
	}
	snap := firstService(p.Server).mon.Snapshot()
	assert.True(t, snap[1].Ejected, "%+v", snap[1])
}

// TestLongPollsLeaveRoom: 40 long polls sent together to a fresh gateway
// in front of a roomy origin are all admitted (liveness probes answered
// while nothing else finished grow the limit in slow start), and they do
// not take the origin's admission from the quick requests that follow:
// every one of them succeeds.
func TestLongPollsLeaveRoom(t *testing.T) {
	if testing.Short() {
		t.Skip("holds requests for 2 s")
	}
	release := make(chan struct{})
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/poll" {
			<-release
		}
		ctx.WriteString("ok") //nolint:errcheck
	})
	p := startProxy(t, oneService(b.addr))
	polls := make([]<-chan result, 40)
	for i := range polls {
		polls[i] = getAsync(t, p.addr, "/poll")
	}
	require.Eventually(t, func() bool { return b.hits.Load() >= 40 }, 5*time.Second, time.Millisecond,
		"every long poll reaches the origin, and none waits out the queue timeout")
	time.Sleep(time.Second) // the long polls are parked by now
	ok := 0
	for range 100 {
		resp, _ := get(t, p.addr, "/quick")
		if resp.StatusCode == 200 {
			ok++
		}
	}
	assert.Equal(t, 100, ok, "quick requests beside 40 long polls")
	st := firstService(p.Server).sched.Stats().Backends[0]
	assert.GreaterOrEqual(t, st.Parked, 4, "the long polls in flight no longer count against the limit: %+v", st)
	close(release)
	polled := 0
	for _, ch := range polls {
		if r := <-ch; r.resp.StatusCode == 200 {
			polled++
		}
	}
	assert.Equal(t, 40, polled, "long polls answered 200")
}

// TestHungBackendProbedOutOfBand: a fresh backend on which every request
// hangs answers no liveness probe either: the limit stays where it
// started, and the probes, not clients' requests, are what it is sent
// beyond it (at most one at a time).
func TestHungBackendProbedOutOfBand(t *testing.T) {
	if testing.Short() {
		t.Skip("holds requests for 1 s")
	}
	release := make(chan struct{})
	var probes atomic.Int64
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.UserAgent()) == "sluice-liveness-probe" {
			probes.Add(1)
		}
		<-release
		ctx.WriteString("ok") //nolint:errcheck
	})
	p := startProxy(t, oneService(b.addr))
	polls := make([]<-chan result, 20)
	for i := range polls {
		polls[i] = getAsync(t, p.addr, "/")
	}
	require.Eventually(t, func() bool { return probes.Load() >= 1 }, 5*time.Second, time.Millisecond, "a probe is sent")
	time.Sleep(time.Second)
	st := firstService(p.Server).sched.Stats().Backends[0]
	assert.Equal(t, 4, st.Limit, "no answer, no growth")
	assert.Equal(t, int64(1), probes.Load(), "one probe at a time, and it hangs")
	close(release)
	for _, ch := range polls {
		<-ch
	}
}

// TestRetry503WithinBudget: a 503 from one backend sends an idempotent
// request to another, but never more than the retry budget allows (10% of
// requests, after 10 at start), and never a POST. With outlier ejection
// off, the failing backend keeps its share of first attempts, so the
// budget is what bounds the extra load.
func TestRetry503WithinBudget(t *testing.T) {
	ok := startBackend(t, okHandler)
	busy := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(503)
		ctx.WriteString("busy") //nolint:errcheck
	})
	cfg := oneService(ok.addr, busy.addr)
	cfg.Monitor.Outlier.Disabled = true
	p := startProxy(t, cfg)
	const n = 300
	got503 := 0
	for range n {
		resp, _ := get(t, p.addr, "/")
		if resp.StatusCode == 503 {
			got503++
		}
	}
	retried := int(busy.hits.Load()) - got503
	t.Logf("busy backend hit %d times, %d retried elsewhere, %d answered 503", busy.hits.Load(), retried, got503)
	assert.Positive(t, retried, "a 503 is retried on the other backend")
	assert.LessOrEqual(t, retried, retryInitial/retryCost+n/retryCost, "retries stay within the budget")
	assert.Positive(t, got503, "past the budget the backend's 503 goes to the client")
	assert.EqualValues(t, n-got503, ok.hits.Load())

	// A POST is never sent twice.
	before := busy.hits.Load() + ok.hits.Load()
	for range 20 {
		resp, _ := roundTrip(t, p.addr, "POST / HTTP/1.1\r\nHost: example.test\r\nContent-Length: 2\r\n\r\nhi")
		_ = resp
	}
	assert.EqualValues(t, 20, busy.hits.Load()+ok.hits.Load()-before, "one attempt per POST")
}

// TestOnly503BackendAnswersItself: with no other backend to try, the
// backend's own 503 (and body) reaches the client.
func TestOnly503BackendAnswersItself(t *testing.T) {
	busy := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(503)
		ctx.WriteString("busy") //nolint:errcheck
	})
	p := startProxy(t, oneService(busy.addr))
	resp, body := get(t, p.addr, "/")
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, "busy", body)
	assert.EqualValues(t, 1, busy.hits.Load())
}
