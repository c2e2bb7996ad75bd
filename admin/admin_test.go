package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluiceproxy/sluice/bench/loadgen"
	"github.com/sluiceproxy/sluice/proxy"
	"github.com/sluiceproxy/sluice/scheduler"
)

func runLoad(t *testing.T, target, rate string, d time.Duration) *loadgen.Report {
	t.Helper()
	sched, err := loadgen.ParseSchedule(rate)
	require.NoError(t, err)
	rep, err := loadgen.Run(context.Background(), loadgen.Config{Target: "http://" + target, Rate: sched, Duration: d}, io.Discard)
	require.NoError(t, err)
	return rep
}

// The counts /metrics shows after a load match what the load generator
// saw: every 200, and every refusal by its X-Sluice-Shed reason. The
// origin (2 × 4 workers × 20 ms = 400/s) is offered 700/s with a short
// queue timeout, so that both kinds happen; /metrics is scraped during
// the load too, as Prometheus would.
func TestMetricsMatchTheLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs load")
	}
	var q scheduler.Config
	q.QueueTimeout = 20 * time.Millisecond
	require.NoError(t, q.Limit.UnmarshalText([]byte("static:4")))
	r := newRig(t, rigOptions{workers: 4, service: 20 * time.Millisecond, queue: q})

	stop := make(chan struct{})
	scrapes := make(chan int, 1)
	go func() {
		n := 0
		defer func() { scrapes <- n }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
				if resp, err := http.Get(r.admin + "/metrics"); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					n++
				}
			}
		}
	}()
	rep := runLoad(t, r.addr, "700", 2*time.Second)
	close(stop)
	require.Positive(t, <-scrapes, "scraped during the load")
	require.Empty(t, rep.Errors, "client-side errors")
	require.Positive(t, rep.Status[200])
	require.Positive(t, rep.Status[503], "the load must overflow the queue for this test to mean anything")

	want := map[string]float64{"200": float64(rep.Status[200]), "503": float64(rep.Status[503])}
	// A request reports after its response is written: give the last
	// ones a moment.
	var m metricsText
	eventually(t, 2*time.Second, func() bool {
		m = r.scrape()
		for code, n := range want {
			if got, _ := m.sum("sluice_requests_total", map[string]string{"service": "web", "code": code}); got != n {
				return false
			}
		}
		return true
	}, "sluice_requests_total does not match the load generator's %v", rep.Status)
	for reason, n := range rep.Shed {
		got, ok := m.sum("sluice_refusals_total", map[string]string{"service": "web", "reason": reason})
		assert.True(t, ok, reason)
		assert.Equal(t, float64(n), got, "refusals %s", reason)
	}
	total, _ := m.sum("sluice_refusals_total", map[string]string{"service": "web"})
	assert.Equal(t, float64(rep.Status[503]), total, "every refusal has its reason")
	admitted, _ := m.sum("sluice_admissions_total", map[string]string{"service": "web"})
	assert.Equal(t, float64(rep.Status[200]), admitted, "admitted = answered 200")
	waits, _ := m.sum("sluice_queue_wait_seconds_count", map[string]string{"service": "web", "class": "normal"})
	assert.Equal(t, float64(rep.Status[200]), waits, "every admitted request's wait is in the histogram")
	lat, _ := m.sum("sluice_backend_latency_seconds_count", map[string]string{"service": "web"})
	assert.Equal(t, float64(rep.Status[200]), lat)
	for _, name := range []string{"sluice_backend_limit", "sluice_backend_inflight", "sluice_pool_dials_total",
		"sluice_queue_length", "sluice_backend_state", "sluice_events_total", "sluice_reloads_total"} {
		_, ok := m.sum(name, nil)
		assert.True(t, ok, "%s exposed", name)
	}
	limit, _ := m.sum("sluice_backend_limit", map[string]string{"backend": r.backend(0)})
	assert.Equal(t, 4.0, limit)
}

// Draining one of two backends under load fails no request: it gets
// nothing new, what it has finishes, and the other takes the traffic.
func TestDrainUnderLoadFailsNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs load")
	}
	r := newRig(t, rigOptions{})
	drained := r.backend(0)
	done := make(chan *loadgen.Report, 1)
	go func() { done <- runLoad(t, r.addr, "300", 3*time.Second) }()

	time.Sleep(time.Second)
	code, body := r.change("/api/v1/drain", Change{Service: "web", Backend: drained})
	require.Equal(t, http.StatusOK, code, "%v", body)
	// Nothing new goes to the drained backend: once its in-flight
	// requests are done, its origin sees no more.
	eventually(t, 2*time.Second, func() bool { return r.backendStatus(drained).Inflight == 0 }, "drain did not finish")
	before := r.origins[0].Stats().Received
	rep := <-done
	assert.Equal(t, before, r.origins[0].Stats().Received, "the drained backend received requests")
	assert.Equal(t, rep.Sent, rep.Status[200], "every request succeeded: %v %v", rep.Status, rep.Errors)
	assert.Positive(t, r.origins[1].Stats().Received)

	b := r.backendStatus(drained)
	assert.Equal(t, "drain", b.Mode)
	assert.Equal(t, "down", b.State)
	m := r.scrape()
	v, _ := m.sum("sluice_backend_mode", map[string]string{"backend": drained, "mode": "drain"})
	assert.Equal(t, 1.0, v)
	v, _ = m.sum("sluice_events_total", map[string]string{"kind": "drain"})
	assert.Equal(t, 1.0, v)

	code, _ = r.change("/api/v1/enable", Change{Service: "web", Backend: drained})
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "enabled", r.backendStatus(drained).Mode)
	all := r.get("/api/v1/events")
	assert.Contains(t, string(all), `"kind": "drain"`)
	assert.Contains(t, string(all), `"kind": "enable"`)
}

// Every changing call's bad input is refused with the field named (400),
// an unknown service or backend with 404, and nothing is applied.
func TestChangesRefuseBadInput(t *testing.T) {
	r := newRig(t, rigOptions{})
	b0 := r.backend(0)
	before := r.status()
	cases := []struct {
		path, body string
		code       int
		msg        string
	}{
		{"/api/v1/drain", ``, 400, "body: want a JSON object"},
		{"/api/v1/drain", `{`, 400, "body: "},
		{"/api/v1/drain", `[]`, 400, "want"},
		{"/api/v1/drain", `{"backend":"` + b0 + `"}`, 400, "service: required"},
		{"/api/v1/drain", `{"service":"web"}`, 400, "backend: required"},
		{"/api/v1/drain", `{"service":"web","backend":"` + b0 + `","weight":2}`, 400, "weight: not a field of this call"},
		{"/api/v1/drain", `{"service":"web","backend":"` + b0 + `","colour":1}`, 400, "colour: unknown field"},
		{"/api/v1/drain", `{"service":"web","backend":"` + b0 + `"} {}`, 400, "more than one JSON value"},
		{"/api/v1/drain", `{"service":7,"backend":"` + b0 + `"}`, 400, "service: want a string"},
		{"/api/v1/drain", `{"service":"nope","backend":"` + b0 + `"}`, 404, "unknown service"},
		{"/api/v1/drain", `{"service":"web","backend":"http://127.0.0.1:1"}`, 404, "unknown backend"},
		{"/api/v1/disable", `{"service":"web"}`, 400, "backend: required"},
		{"/api/v1/disable", `{"service":"web","backend":"http://127.0.0.1:1"}`, 404, "unknown backend"},
		{"/api/v1/enable", `{"service":"nope","backend":"` + b0 + `"}`, 404, "unknown service"},
		{"/api/v1/weight", `{"service":"web","backend":"` + b0 + `"}`, 400, "weight: required"},
		{"/api/v1/weight", `{"service":"web","backend":"` + b0 + `","weight":0}`, 400, "weight: want a number > 0"},
		{"/api/v1/weight", `{"service":"web","backend":"` + b0 + `","weight":-1}`, 400, "weight: want a number > 0"},
		{"/api/v1/weight", `{"service":"web","backend":"` + b0 + `","weight":"2"}`, 400, "weight: want a number"},
		{"/api/v1/weight", `{"service":"web","backend":"http://127.0.0.1:1","weight":2}`, 404, "unknown backend"},
		{"/api/v1/limit", `{"service":"web","backend":"` + b0 + `"}`, 400, "limit: required"},
		{"/api/v1/limit", `{"service":"web","backend":"` + b0 + `","limit":-1}`, 400, "limit: want >= 0"},
		{"/api/v1/limit", `{"service":"web","backend":"` + b0 + `","limit":1.5}`, 400, "limit: want an integer"},
		{"/api/v1/limit", `{"service":"nope","backend":"` + b0 + `","limit":3}`, 404, "unknown service"},
		{"/api/v1/add", `{"service":"web","backend":"127.0.0.1:9"}`, 400, "backend: want http://host:port"},
		{"/api/v1/add", `{"service":"web","backend":"` + b0 + `"}`, 400, "already a backend"},
		{"/api/v1/add", `{"service":"web","backend":"http://127.0.0.1:9/x"}`, 400, "services[0].backends[2]"},
		{"/api/v1/add", `{"service":"nope","backend":"http://127.0.0.1:9"}`, 404, "unknown service"},
		{"/api/v1/remove", `{"service":"web","backend":"http://127.0.0.1:1"}`, 404, "unknown backend"},
		{"/api/v1/remove", `{"service":"nope","backend":"` + b0 + `"}`, 404, "unknown service"},
		{"/api/v1/reload", ``, 501, "reload: this gateway has no configuration"},
	}
	for _, tc := range cases {
		t.Run(strings.TrimPrefix(tc.path, "/api/v1/")+" "+tc.body, func(t *testing.T) {
			code, body := r.call(http.MethodPost, tc.path, tc.body, "")
			assert.Equal(t, tc.code, code)
			assert.Contains(t, fmt.Sprint(body["error"]), tc.msg)
		})
	}
	// The last backend cannot be removed: the service would be left
	// with nothing, and a drain says the same without losing the backend.
	code, _ := r.change("/api/v1/remove", Change{Service: "web", Backend: r.backend(1)})
	require.Equal(t, http.StatusOK, code)
	code, body := r.change("/api/v1/remove", Change{Service: "web", Backend: b0})
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, fmt.Sprint(body["error"]), "last backend")

	after := r.status()
	require.Len(t, after.Services, 1)
	var ids []string
	for _, b := range after.Services[0].Backends {
		if !b.Leaving {
			ids = append(ids, b.ID)
			assert.Equal(t, "enabled", b.Mode, b.ID)
			assert.Equal(t, 1.0, b.Weight, b.ID)
			assert.Zero(t, b.FixedLimit, b.ID)
		}
	}
	assert.Equal(t, []string{b0}, ids, "only the one valid removal was applied")
	assert.Len(t, before.Services[0].Backends, 2)
	resp, err := http.Get(r.admin + "/api/v1/events?since=x")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

// Weight, limit, add and remove take effect and show in the status and
// the metrics; reload goes through the function it was given.
func TestChangesApply(t *testing.T) {
	var reloaded atomic.Int32
	r := newRig(t, rigOptions{reloadFn: func(*proxy.Server) func() error {
		return func() error {
			if reloaded.Add(1) > 1 {
				return errors.New("services[0].backends[0]: invalid URL")
			}
			return nil
		}
	}})
	b0 := r.backend(0)
	w := 2.5
	code, _ := r.change("/api/v1/weight", Change{Service: "web", Backend: b0, Weight: &w})
	require.Equal(t, http.StatusOK, code)
	n := 3
	code, _ = r.change("/api/v1/limit", Change{Service: "web", Backend: b0, Limit: &n})
	require.Equal(t, http.StatusOK, code)
	b := r.backendStatus(b0)
	assert.Equal(t, 2.5, b.Weight)
	assert.Equal(t, 3, b.FixedLimit)
	assert.LessOrEqual(t, b.Limit, 3)

	extra := startOrigins(t, 1, 4, time.Millisecond)[0]
	code, body := r.change("/api/v1/add", Change{Service: "web", Backend: extra.URL()})
	require.Equal(t, http.StatusOK, code, "%v", body)
	assert.Equal(t, "up", r.backendStatus(extra.URL()).State)
	code, _ = r.change("/api/v1/remove", Change{Service: "web", Backend: extra.URL()})
	require.Equal(t, http.StatusOK, code)
	for _, b := range r.status().Services[0].Backends {
		// Gone, or still finishing what it had.
		assert.True(t, b.ID != extra.URL() || b.Leaving, "%+v", b)
	}

	code, _ = r.call(http.MethodPost, "/api/v1/reload", "", "")
	assert.Equal(t, http.StatusOK, code)
	code, body = r.call(http.MethodPost, "/api/v1/reload", "", "")
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, fmt.Sprint(body["error"]), "services[0].backends[0]")

	m := r.scrape()
	v, _ := m.sum("sluice_backend_weight", map[string]string{"backend": b0})
	assert.Equal(t, 2.5, v)
	v, _ = m.sum("sluice_backend_fixed_limit", map[string]string{"backend": b0})
	assert.Equal(t, 3.0, v)
	for _, kind := range []string{"weight", "limit", "add_backend", "remove_backend"} {
		v, _ = m.sum("sluice_events_total", map[string]string{"kind": kind})
		assert.Equal(t, 1.0, v, kind)
	}
}

// With a token file, the changing calls need the token; reading does not.
func TestTokenGuardsChanges(t *testing.T) {
	r := newRig(t, rigOptions{token: "s3cret-token"})
	drain := `{"service":"web","backend":"` + r.backend(0) + `"}`
	code, body := r.call(http.MethodPost, "/api/v1/drain", drain, "")
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.Contains(t, fmt.Sprint(body["error"]), "missing bearer token")
	code, body = r.call(http.MethodPost, "/api/v1/drain", drain, "wrong")
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.Contains(t, fmt.Sprint(body["error"]), "wrong token")
	assert.Equal(t, "enabled", r.backendStatus(r.backend(0)).Mode, "nothing applied without the token")
	code, _ = r.call(http.MethodPost, "/api/v1/reload", "", "")
	assert.Equal(t, http.StatusUnauthorized, code)

	code, _ = r.call(http.MethodPost, "/api/v1/drain", drain, "s3cret-token")
	assert.Equal(t, http.StatusOK, code)
	for _, path := range []string{"/api/v1/status", "/api/v1/events", "/metrics", "/"} {
		code, _ = r.call(http.MethodGet, path, "", "")
		assert.Equal(t, http.StatusOK, code, path)
	}
}

// A non-loopback address needs a token file; the listener refuses to
// start without one. Only Validate runs: nothing listens off loopback.
func TestNonLoopbackNeedsToken(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:9901", ":9901", "10.1.2.3:9901", "[::]:9901", "example.com:9901"} {
		err := Config{Listen: addr}.Validate()
		assert.ErrorContains(t, err, "admin.token_file", addr)
		assert.NoError(t, Config{Listen: addr, TokenFile: "t"}.Validate(), addr)
	}
	for _, addr := range []string{"127.0.0.1:9901", "[::1]:9901", "localhost:9901", "127.0.0.2:0"} {
		assert.NoError(t, Config{Listen: addr}.Validate(), addr)
	}
	assert.ErrorContains(t, Config{Listen: "9901"}.Validate(), "admin.listen")
	assert.ErrorContains(t, Config{TokenFile: "t"}.Validate(), "admin.token_file: set without admin.listen")
	_, err := New(Config{Listen: "0.0.0.0:9901"}, nil, nil)
	assert.ErrorContains(t, err, "admin.token_file")
	_, err = New(Config{Listen: "127.0.0.1:0", TokenFile: "/nonexistent/token"}, nil, nil)
	assert.ErrorContains(t, err, "admin.token_file")
}

// The dashboard is one self-contained page: it names no other host.
func TestDashboardIsSelfContained(t *testing.T) {
	r := newRig(t, rigOptions{origins: 1})
	resp, err := http.Get(r.admin + "/")
	require.NoError(t, err)
	defer resp.Body.Close()
	page, _ := io.ReadAll(resp.Body)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("Content-Type"), "text/html")
	assert.NotContains(t, string(page), "https://")
	assert.NotContains(t, string(page), "<script src")
	assert.NotContains(t, string(page), "<link")
	resp2, err := http.Get(r.admin + "/nope")
	require.NoError(t, err)
	resp2.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp2.StatusCode)
}
