package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

// stallOrigins are loopback backends that share one rule: a request sent
// with X-Test-Stall is held by the first backend that receives its
// X-Request-Id, for stallFor or until the proxy closes the connection,
// and answered at once by any other (its hedge). Wherever the scheduler
// sends a request first, that backend is the slow one.
type stallOrigins struct {
	stallFor time.Duration
	addrs    []string
	requests [3]atomic.Int64 // requests received, per backend
	stalled  atomic.Int64    // requests held
	closed   atomic.Int64    // held requests whose connection the proxy closed
	answered atomic.Int64    // held requests answered after stallFor

	mu   sync.Mutex
	seen map[string]bool
}

func startStallOrigins(t *testing.T, stallFor time.Duration) *stallOrigins {
	o := &stallOrigins{stallFor: stallFor, seen: map[string]bool{}}
	for i := range 3 {
		rb := startRawBackend(t, func(c net.Conn) { o.serve(i, c) })
		o.addrs = append(o.addrs, rb.addr)
	}
	return o
}

func (o *stallOrigins) serve(i int, c net.Conn) {
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		o.requests[i].Add(1)
		if req.Header.Get("X-Test-Stall") != "" {
			id := req.Header.Get("X-Request-Id")
			o.mu.Lock()
			first := !o.seen[id]
			o.seen[id] = true
			o.mu.Unlock()
			if first {
				o.stalled.Add(1)
				if !o.hold(c, br) {
					o.closed.Add(1)
					return
				}
				o.answered.Add(1)
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nb%d", i)
				return
			}
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nb%d", i)
	}
}

// hold waits for stallFor; false when the connection closed first (the
// proxy sends nothing more on a connection while it waits for a response,
// so a read ends only with the close).
func (o *stallOrigins) hold(c net.Conn, br *bufio.Reader) bool {
	_ = c.SetReadDeadline(time.Now().Add(o.stallFor))
	_, err := br.ReadByte()
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (o *stallOrigins) total() int64 {
	return o.requests[0].Load() + o.requests[1].Load() + o.requests[2].Load()
}

func hedgeProxy(t *testing.T, o *stallOrigins, h HedgeConfig) *testProxy {
	cfg := oneService(o.addrs...)
	h.Enabled = true
	cfg.Hedge = h
	return startProxy(t, cfg)
}

// warm sends n plain GETs on one connection, so that the backends the
// scheduler prefers have a latency estimate (the others are hedged after
// max_delay).
func warm(t *testing.T, addr string, n int) {
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	br := bufio.NewReader(c)
	for range n {
		_, err := io.WriteString(c, "GET /warm HTTP/1.1\r\nHost: example.test\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		require.Equal(t, 200, resp.StatusCode)
	}
}

// TestHedgeStallingBackend: a request held by the backend it went to is
// answered by the hedge on another backend, long before the stall ends;
// the held request's connection is closed, so that backend sees its
// client leave; the client gets exactly one response, and the connection
// goes on serving.
func TestHedgeStallingBackend(t *testing.T) {
	o := startStallOrigins(t, 5*time.Second)
	p := hedgeProxy(t, o, HedgeConfig{Budget: 1, MinDelay: 50 * time.Millisecond, MaxDelay: 100 * time.Millisecond})
	warm(t, p.addr, 150)
	base, before := o.total(), p.Snapshot()[0].Hedge // a slow warm-up request may have been hedged

	c, err := net.Dial("tcp", p.addr)
	require.NoError(t, err)
	defer c.Close()
	br := bufio.NewReader(c)
	const n = 8
	for i := range n {
		start := time.Now()
		_, err := fmt.Fprintf(c, "GET /x HTTP/1.1\r\nHost: example.test\r\nX-Test-Stall: 1\r\nX-Request-Id: hedge-%d\r\n\r\n", i)
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(3*time.Second)))
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode)
		assert.Less(t, time.Since(start), time.Second, "answered by the hedge, not after the stall")
		assert.Regexp(t, `^b[012]$`, string(body))
	}
	// The same connection still serves: no second response was written
	// for any of the hedged requests.
	_, err = io.WriteString(c, "GET /after HTTP/1.1\r\nHost: example.test\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	require.Equal(t, 200, resp.StatusCode)

	require.Eventually(t, func() bool { return o.closed.Load() == n }, 5*time.Second, 10*time.Millisecond,
		"every held request's connection closed by the proxy (closed %d)", o.closed.Load())
	assert.Zero(t, o.answered.Load())
	assert.Equal(t, int64(n), o.stalled.Load())
	assert.Equal(t, base+2*n+1, o.total(), "each hedged request reached two backends, no more")
	st := p.Snapshot()[0].Hedge
	assert.Equal(t, uint64(n), st.Sent-before.Sent)
	assert.Equal(t, uint64(n), st.Won-before.Won)
	require.Eventually(t, func() bool { return strings.Count(p.logs.String(), `"hedge":"won"`) == n+int(before.Won) },
		5*time.Second, 20*time.Millisecond)
	// The held requests taught the latency estimate that 1 in ~20 takes
	// at least the delay: they are censored samples, not left out.
	p99, ok := firstService(p.Server).lat.quantile(99)
	require.True(t, ok)
	assert.GreaterOrEqual(t, p99, 50*time.Millisecond)
}

// TestHedgeBudget: hedges stop once the route's budget is spent; the
// requests then wait for their backend, and the origins see one request
// per client request plus one per hedge sent.
func TestHedgeBudget(t *testing.T) {
	o := startStallOrigins(t, 150*time.Millisecond)
	p := hedgeProxy(t, o, HedgeConfig{Budget: 0.05, MinDelay: 50 * time.Millisecond, MaxDelay: 100 * time.Millisecond})
	const stallN = 12
	warm(t, p.addr, 150)
	warmN, before := o.total(), p.Snapshot()[0].Hedge
	// Tokens: one hedge at start, 0.05 of one per eligible request, at
	// most ten saved up.
	most := min(1+(uint64(warmN)+stallN)/20, 10)
	for i := range stallN {
		resp, _ := get(t, p.addr, "/x", "X-Test-Stall: 1", fmt.Sprintf("X-Request-Id: budget-%d", i))
		require.Equal(t, 200, resp.StatusCode)
	}
	st := p.Snapshot()[0].Hedge
	assert.LessOrEqual(t, st.Sent, most, "%+v", st)
	assert.Positive(t, st.BudgetDenied, "%+v", st)
	won := int64(st.Won - before.Won)
	// A hedge that lost before it was written (its primary answered while
	// it dialed) never reached an origin.
	assert.LessOrEqual(t, o.total(), warmN+stallN+int64(st.Sent-before.Sent))
	assert.GreaterOrEqual(t, o.total(), warmN+stallN+won)
	require.Eventually(t, func() bool { return o.closed.Load() == won }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, stallN-won, o.answered.Load())
}

// TestHedgeNeverPost: a POST (or any request with a body) goes to one
// backend only, however long it takes.
func TestHedgeNeverPost(t *testing.T) {
	o := startStallOrigins(t, 200*time.Millisecond)
	p := hedgeProxy(t, o, HedgeConfig{Budget: 1, MinDelay: 20 * time.Millisecond, MaxDelay: 50 * time.Millisecond})
	warm(t, p.addr, 150)
	base, sent := o.total(), p.Snapshot()[0].Hedge.Sent
	for i, raw := range []string{
		"POST /x HTTP/1.1\r\nHost: example.test\r\nContent-Length: 2\r\n",
		"PUT /x HTTP/1.1\r\nHost: example.test\r\nContent-Length: 0\r\n",
		"GET /x HTTP/1.1\r\nHost: example.test\r\nContent-Length: 2\r\n",
	} {
		body := ""
		if strings.Contains(raw, "Length: 2") {
			body = "hi"
		}
		resp, _ := roundTrip(t, p.addr, fmt.Sprintf("%sX-Test-Stall: 1\r\nX-Request-Id: post-%d\r\n\r\n%s", raw, i, body))
		require.Equal(t, 200, resp.StatusCode)
	}
	assert.Equal(t, base+3, o.total())
	assert.Equal(t, int64(3), o.answered.Load())
	assert.Equal(t, sent, p.Snapshot()[0].Hedge.Sent)
}

// TestHedgeArmedZeroAlloc: on a hedging route whose backend answers in
// time, every request arms a hedge (a pooled hedge, its timer Reset and
// stopped) and allocates nothing for it.
func TestHedgeArmedZeroAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	rig := newMemRigWith(t, true, func(c *Config) {
		c.Hedge = HedgeConfig{Enabled: true, MinDelay: time.Second}
	})
	defer rig.stop()
	requireZeroAllocRequests(t, rig)
	svc := firstService(rig.proxy)
	require.Zero(t, svc.hedges.sent.Load())
	for _, u := range svc.upstreams {
		_, ok := u.lat.quantile(95)
		require.True(t, ok, "the backend has an estimate, so every request armed a hedge")
	}
}

// TestHedgeLatencyOnlyAnswers: a backend answering 500 at once teaches
// the latency estimate nothing; it is broken, not fast.
func TestHedgeLatencyOnlyAnswers(t *testing.T) {
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(500) })
	cfg := oneService(b.addr)
	cfg.Hedge = HedgeConfig{Enabled: true}
	p := startProxy(t, cfg)
	for range 2 * latMinSamples {
		resp, _ := get(t, p.addr, "/")
		require.Equal(t, 500, resp.StatusCode)
	}
	_, ok := firstService(p.Server).lat.quantile(50)
	assert.False(t, ok, "no estimate from failures")
}
