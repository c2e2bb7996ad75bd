package proxy

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluiceproxy/sluice/scheduler"
)

// TestReloadKeepsQueueAndAddsBackend: requests waiting in a service's queue
// stay queued across a reload, in order, and are served by a backend the
// reload adds; the request in flight on the old backend finishes.
func TestReloadKeepsQueueAndAddsBackend(t *testing.T) {
	a, b := startHeldBackend(t), startHeldBackend(t)
	cfg := oneSlot(t, a.addr)
	cfg.Queue.QueueTimeout = 10 * time.Second
	p := startProxy(t, cfg)
	sched := firstService(p.Server).sched

	busy := getAsync(t, p.addr, "/busy")
	require.Equal(t, "/busy", a.next(t))
	q1 := getAsync(t, p.addr, "/q1")
	waitQueued(t, sched, scheduler.Normal, 1)
	q2 := getAsync(t, p.addr, "/q2")
	waitQueued(t, sched, scheduler.Normal, 2)

	next := oneSlot(t, a.addr)
	next.Queue.QueueTimeout = 10 * time.Second
	next.Services[0].Backends = append(next.Services[0].Backends, "http://"+b.addr)
	require.NoError(t, p.Reload(next))
	assert.Same(t, sched, firstService(p.Server).sched, "the service's scheduler is kept")

	// The new backend's free slot goes to the oldest waiting request.
	assert.Equal(t, "/q1", b.next(t))
	b.release <- struct{}{}
	assert.Equal(t, "/q2", b.next(t))
	b.release <- struct{}{}
	a.release <- struct{}{}
	for _, ch := range []<-chan result{busy, q1, q2} {
		assert.Equal(t, 200, (<-ch).resp.StatusCode)
	}
}

// TestReloadDrainsRemovedBackend: a backend dropped by a reload gets
// nothing new; its request in flight finishes; then its pool closes.
func TestReloadDrainsRemovedBackend(t *testing.T) {
	a, b := startHeldBackend(t), startHeldBackend(t)
	cfg := oneService(a.addr)
	p := startProxy(t, cfg)
	busy := getAsync(t, p.addr, "/on-a")
	require.Equal(t, "/on-a", a.next(t))
	oldPool := poolOf(p.Server, "http://"+a.addr)

	require.NoError(t, p.Reload(oneService(b.addr)))
	after := getAsync(t, p.addr, "/after")
	assert.Equal(t, "/after", b.next(t), "new requests go to the new backend")
	b.release <- struct{}{}
	assert.Equal(t, 200, (<-after).resp.StatusCode)

	assert.Equal(t, 1, oldPool.Stats().Open, "the draining backend keeps its connection while in flight")
	a.release <- struct{}{}
	r := <-busy
	assert.Equal(t, 200, r.resp.StatusCode)
	assert.Equal(t, "ok", r.body)
	require.Eventually(t, func() bool { return oldPool.Stats().Open == 0 }, 5*time.Second, 5*time.Millisecond,
		"the drained backend's pool closes")
	n, known := firstService(p.Server).sched.BackendInflight("http://" + a.addr)
	assert.False(t, known, "the scheduler forgot the drained backend (inflight %d)", n)
	assert.EqualValues(t, 1, a.hits.Load())
}

// TestReloadReaddsDrainingBackend: a backend removed by a reload and added
// back by the next one while its request is still in flight comes back as
// it was, pool included, and serves on. The scheduler revives a draining
// backend with its old handle, so the pool that handle leads to must not
// have been closed meanwhile.
func TestReloadReaddsDrainingBackend(t *testing.T) {
	a, b := startHeldBackend(t), startBackend(t, okHandler)
	p := startProxy(t, oneService(a.addr))
	busy := getAsync(t, p.addr, "/busy")
	require.Equal(t, "/busy", a.next(t))
	poolA := poolOf(p.Server, "http://"+a.addr)

	require.NoError(t, p.Reload(oneService(b.addr)))
	time.Sleep(5 * drainPoll) // the drain has looked a few times
	require.NoError(t, p.Reload(oneService(a.addr)))
	assert.Same(t, poolA, poolOf(p.Server, "http://"+a.addr), "the pool of the backend added back")

	a.release <- struct{}{}
	assert.Equal(t, 200, (<-busy).resp.StatusCode)
	next := getAsync(t, p.addr, "/next")
	assert.Equal(t, "/next", a.next(t))
	a.release <- struct{}{}
	assert.Equal(t, 200, (<-next).resp.StatusCode)
}

// TestReloadKeepsLearnedState: a backend that stays keeps its learned
// limit, baseline and warm connections when unrelated settings change;
// new pool settings swap its pool without failing a request.
func TestReloadKeepsLearnedState(t *testing.T) {
	b := startBackend(t, okHandler)
	cfg := oneService(b.addr)
	p := startProxy(t, cfg)
	for range 40 {
		resp, _ := get(t, p.addr, "/")
		require.Equal(t, 200, resp.StatusCode)
	}
	id := "http://" + b.addr
	before := firstService(p.Server).sched.Stats().Backends[0]
	require.NotZero(t, before.Baseline, "40 requests one at a time make a baseline")
	poolBefore := poolOf(p.Server, id)

	next := oneService(b.addr)
	next.Routes = []RouteConfig{{PathPrefix: "/", Service: "web", Priority: "high"}}
	next.Classify.TenantHeader = "X-Customer"
	require.NoError(t, p.Reload(next))
	after := firstService(p.Server).sched.Stats().Backends[0]
	assert.Equal(t, before.Baseline, after.Baseline)
	assert.Equal(t, before.Limit, after.Limit)
	assert.Same(t, poolBefore, poolOf(p.Server, id), "same pool settings: same pool")

	next.Pool.MaxConns = 7
	require.NoError(t, p.Reload(next))
	swapped := poolOf(p.Server, id)
	assert.NotSame(t, poolBefore, swapped)
	assert.Equal(t, 7, swapped.Config().MaxConns)
	resp, _ := get(t, p.addr, "/")
	assert.Equal(t, 200, resp.StatusCode)
	require.Eventually(t, func() bool { return poolBefore.Stats().Open == 0 }, 5*time.Second, 5*time.Millisecond,
		"the replaced pool closes once idle")
	assert.Equal(t, before.Baseline, firstService(p.Server).sched.Stats().Backends[0].Baseline)
}

// TestReloadInvalidKeepsRunning: a configuration that does not validate
// is refused whole, and the running one serves on.
func TestReloadInvalidKeepsRunning(t *testing.T) {
	b := startBackend(t, okHandler)
	p := startProxy(t, oneService(b.addr))
	bad := oneService(b.addr)
	bad.Routes = []RouteConfig{{Service: "nope"}}
	err := p.Reload(bad)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "routes[0].service")
	bad = oneService(b.addr, b.addr)
	require.ErrorContains(t, p.Reload(bad), "listed twice")
	resp, _ := get(t, p.addr, "/")
	assert.Equal(t, 200, resp.StatusCode)
}

// TestReloadRemovesServiceAfterItsQueue: a service a reload drops keeps
// serving what it had queued; new requests follow the new routes.
func TestReloadRemovesServiceAfterItsQueue(t *testing.T) {
	a, b := startHeldBackend(t), startBackend(t, okHandler)
	cfg := oneSlot(t, a.addr)
	cfg.Queue.QueueTimeout = 10 * time.Second
	p := startProxy(t, cfg)
	old := firstService(p.Server)
	busy := getAsync(t, p.addr, "/busy")
	require.Equal(t, "/busy", a.next(t))
	queued := getAsync(t, p.addr, "/queued")
	waitQueued(t, old.sched, scheduler.Normal, 1)

	next := oneService(b.addr)
	next.Services[0].Name = "other"
	require.NoError(t, p.Reload(next))
	resp, _ := get(t, p.addr, "/new")
	assert.Equal(t, 200, resp.StatusCode)
	assert.EqualValues(t, 1, b.hits.Load())

	a.release <- struct{}{}
	assert.Equal(t, "/queued", a.next(t), "the old service's queue is served, not dropped")
	a.release <- struct{}{}
	assert.Equal(t, 200, (<-busy).resp.StatusCode)
	assert.Equal(t, 200, (<-queued).resp.StatusCode)
}
