package proxy

import (
	"testing"

	"github.com/stretchr/testify/assert"
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
