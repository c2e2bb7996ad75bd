package proxy

import (
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/sluiceproxy/sluice/scheduler"
)

// heldBackend answers each request only when the test releases it, and
// records the order in which paths arrived. A test that fails (or stops
// early) with requests still held does not hang: the release channel is
// closed when the test ends, before the backend shuts down, and next gives
// up on an arrival that does not come.
type heldBackend struct {
	*backend
	arrived chan string
	release chan struct{}
	mu      sync.Mutex
	order   []string
}

func startHeldBackend(t *testing.T) *heldBackend {
	h := &heldBackend{arrived: make(chan string, 16), release: make(chan struct{}, 16)}
	h.backend = startBackend(t, func(ctx *fasthttp.RequestCtx) {
		p := string(ctx.Path())
		h.mu.Lock()
		h.order = append(h.order, p)
		h.mu.Unlock()
		h.arrived <- p
		<-h.release
		ctx.WriteString("ok") //nolint:errcheck
	})
	t.Cleanup(func() { close(h.release) }) // runs before the backend's shutdown
	return h
}

// next is the path of the next request to reach the backend.
func (h *heldBackend) next(t *testing.T) string {
	t.Helper()
	select {
	case p := <-h.arrived:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no request reached the backend")
		return ""
	}
}

// oneSlot is a service whose single backend takes one request at a time,
// so every further request has to queue.
func oneSlot(t *testing.T, addr string) Config {
	cfg := oneService(addr)
	require.NoError(t, cfg.Queue.Limit.UnmarshalText([]byte("static:1")))
	return cfg
}

type result struct {
	resp *http.Response
	body string
}

func getAsync(t *testing.T, addr, path string, hdrs ...string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		resp, body := get(t, addr, path, hdrs...)
		ch <- result{resp, body}
	}()
	return ch
}

func waitQueued(t *testing.T, s *scheduler.Scheduler, c scheduler.Class, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return s.Stats().Queued[c] == n }, 5*time.Second, time.Millisecond)
}

// TestQueueRefusals drives a real queue through the proxy: a full queue is
// refused at once with 503 queue-full, a request that waits past the queue
// timeout gets 503 queue-timeout, and both carry Retry-After and the
// request ID. The request holding the slot still completes.
func TestQueueRefusals(t *testing.T) {
	b := startHeldBackend(t)
	cfg := oneSlot(t, b.addr)
	cfg.Queue.QueueMax = 1
	cfg.Queue.QueueTimeout = 300 * time.Millisecond
	p := startProxy(t, cfg)
	sched := firstService(p.Server).sched

	first := getAsync(t, p.addr, "/first")
	require.Equal(t, "/first", b.next(t))

	second := getAsync(t, p.addr, "/second")
	waitQueued(t, sched, scheduler.Normal, 1)

	resp, body := get(t, p.addr, "/third", "X-Request-Id: third-id")
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, "queue-full", resp.Header.Get("X-Sluice-Shed"))
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	require.NoError(t, err)
	assert.GreaterOrEqual(t, ra, 1)
	assert.Contains(t, body, "third-id")

	r := <-second
	assert.Equal(t, 503, r.resp.StatusCode)
	assert.Equal(t, "queue-timeout", r.resp.Header.Get("X-Sluice-Shed"))
	assert.NotEmpty(t, r.resp.Header.Get("Retry-After"))

	b.release <- struct{}{}
	r = <-first
	assert.Equal(t, 200, r.resp.StatusCode)
	assert.Equal(t, "ok", r.body)
	assert.EqualValues(t, 1, b.hits.Load(), "refused requests never reach the backend")
}

// TestPriorityReleaseOrder: with the only slot busy, a critical request
// that arrives after a low one is released first.
func TestPriorityReleaseOrder(t *testing.T) {
	b := startHeldBackend(t)
	cfg := oneSlot(t, b.addr)
	cfg.Queue.QueueTimeout = 10 * time.Second
	p := startProxy(t, cfg)
	sched := firstService(p.Server).sched

	first := getAsync(t, p.addr, "/busy")
	require.Equal(t, "/busy", b.next(t))
	low := getAsync(t, p.addr, "/low", "X-Priority: low")
	waitQueued(t, sched, scheduler.Low, 1)
	crit := getAsync(t, p.addr, "/critical", "X-Priority: critical")
	waitQueued(t, sched, scheduler.Critical, 1)

	b.release <- struct{}{}
	assert.Equal(t, "/critical", b.next(t))
	b.release <- struct{}{}
	assert.Equal(t, "/low", b.next(t))
	b.release <- struct{}{}
	for _, ch := range []<-chan result{first, crit, low} {
		assert.Equal(t, 200, (<-ch).resp.StatusCode)
	}
	b.mu.Lock()
	assert.Equal(t, []string{"/busy", "/critical", "/low"}, b.order)
	b.mu.Unlock()
}

// TestDeadlineRefused: a client's time budget that runs out while queued
// ends in 503 deadline, not in a late answer.
func TestDeadlineRefused(t *testing.T) {
	b := startHeldBackend(t)
	cfg := oneSlot(t, b.addr)
	cfg.Queue.QueueTimeout = 10 * time.Second
	p := startProxy(t, cfg)

	first := getAsync(t, p.addr, "/busy")
	require.Equal(t, "/busy", b.next(t))
	resp, _ := get(t, p.addr, "/hurry", "X-Sluice-Timeout: 50ms")
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, "deadline", resp.Header.Get("X-Sluice-Shed"))

	b.release <- struct{}{}
	assert.Equal(t, 200, (<-first).resp.StatusCode)
	assert.EqualValues(t, 1, b.hits.Load())
}
