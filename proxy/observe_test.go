package proxy

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/sluiceproxy/sluice/scheduler"
)

// recorder keeps a copy of every Record (their byte slices are reused
// after Observe returns).
type recorder struct {
	mu   sync.Mutex
	recs []Record
}

func (r *recorder) Observe(rec *Record) {
	c := *rec
	c.Method = append([]byte(nil), rec.Method...)
	c.Path = append([]byte(nil), rec.Path...)
	c.RequestID = append([]byte(nil), rec.RequestID...)
	r.mu.Lock()
	r.recs = append(r.recs, c)
	r.mu.Unlock()
}

// waitFor returns the records once n have arrived: a Record is reported
// after the response is written, so the client may see its answer first.
func (r *recorder) waitFor(t *testing.T, n int) []Record {
	t.Helper()
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.recs) >= n
	}, 5*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond) // and no more than n
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Record(nil), r.recs...)
}

// TestObserverOneRecordPerRequest: every request reports once, with what
// happened to it — a success, a backend's 500, a refused request, an
// unroutable one, a dead backend and a malformed request.
func TestObserverOneRecordPerRequest(t *testing.T) {
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/boom" {
			ctx.SetStatusCode(500)
		}
		ctx.WriteString("hello") //nolint:errcheck
	})
	cfg := Config{
		Services: []ServiceConfig{
			{Name: "web", Backends: []string{"http://" + b.addr}},
			{Name: "dead", Backends: []string{"http://" + refusedAddr(t)}},
		},
		Routes: []RouteConfig{
			{PathPrefix: "/dead", Service: "dead"},
			{Host: "example.test", PathPrefix: "/", Service: "web", Priority: "high"},
		},
	}
	rec := &recorder{}
	p := startProxy(t, cfg, rec)

	resp, _ := get(t, p.addr, "/ok?q=1", "X-Request-Id: req-ok")
	require.Equal(t, 200, resp.StatusCode)
	resp, _ = get(t, p.addr, "/boom")
	require.Equal(t, 500, resp.StatusCode)
	resp, _ = get(t, p.addr, "/dead")
	require.Equal(t, 502, resp.StatusCode)
	resp, _ = roundTrip(t, p.addr, "GET /x HTTP/1.1\r\nHost: other.test\r\n\r\n")
	require.Equal(t, 404, resp.StatusCode)
	resp, _ = roundTrip(t, p.addr, "GET /x HTTP/1.1\r\nHost: example.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
	require.Equal(t, 400, resp.StatusCode)

	recs := rec.waitFor(t, 5)
	require.Len(t, recs, 5, "one record per request")

	ok := recs[0]
	assert.Equal(t, "web", ok.Service)
	assert.Equal(t, "example.test/", ok.Route)
	assert.Equal(t, "http://"+b.addr, ok.Backend)
	assert.Equal(t, scheduler.High, ok.Class, "the route's priority")
	assert.Equal(t, 200, ok.Status)
	assert.Equal(t, scheduler.Success, ok.Outcome)
	assert.NoError(t, ok.Err)
	assert.Equal(t, "GET", string(ok.Method))
	assert.Equal(t, "/ok?q=1", string(ok.Path))
	assert.Equal(t, "req-ok", string(ok.RequestID))
	assert.EqualValues(t, 5, ok.BytesOut)
	assert.Positive(t, ok.BackendLatency)
	assert.GreaterOrEqual(t, ok.Total, ok.BackendLatency)

	boom := recs[1]
	assert.Equal(t, 500, boom.Status)
	assert.Equal(t, scheduler.Failure, boom.Outcome, "a fast 500 is a failure, not a success")

	dead := recs[2]
	assert.Equal(t, "dead", dead.Service)
	assert.Equal(t, 502, dead.Status)
	assert.Equal(t, scheduler.Ignore, dead.Outcome)
	assert.True(t, errors.Is(dead.Err, errBadGateway), "err %v", dead.Err)

	noRoute := recs[3]
	assert.Empty(t, noRoute.Service)
	assert.Equal(t, 404, noRoute.Status)

	malformed := recs[4]
	assert.Equal(t, 400, malformed.Status)
	assert.Error(t, malformed.Err)
}
