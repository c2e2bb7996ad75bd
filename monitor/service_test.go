package monitor

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluiceproxy/sluice/scheduler"
)

func TestMain(m *testing.M) {
	if hookHelper() {
		return
	}
	goleak.VerifyTestMain(m)
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// fakeCapacity records what the monitor sets.
type fakeCapacity struct {
	mu    sync.Mutex
	state map[string]scheduler.BackendState
	caps  map[string]int
}

func newFakeCapacity() *fakeCapacity {
	return &fakeCapacity{state: map[string]scheduler.BackendState{}, caps: map[string]int{}}
}

func (f *fakeCapacity) SetBackendState(id string, st scheduler.BackendState, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state[id] = st
	return nil
}

func (f *fakeCapacity) SetBackendCap(id string, n int, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.caps[id] = n
	return nil
}

// LearnedLimit: every backend has learned a limit of 40.
func (f *fakeCapacity) LearnedLimit(string) (int, bool) { return 40, true }

func (f *fakeCapacity) down(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state[id] == scheduler.StateDown
}

func (f *fakeCapacity) cap(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.caps[id]
}

func newTestService(t *testing.T, cfg Config, ids ...string) (*Service, *fakeCapacity, *[]Event) {
	t.Helper()
	capa := newFakeCapacity()
	var events []Event
	s := NewService("web", cfg, capa, func(e Event) { events = append(events, e) })
	s.Reconfigure(cfg, ids, func(id string) Target { return Target{Addr: id} }, t0)
	t.Cleanup(s.Close)
	return s, capa, &events
}

// TestFastFailuresEject: a backend whose answers are failures is ejected
// after ConsecutiveFailures of them, however fast they were; successes in
// between reset the count.
func TestFastFailuresEject(t *testing.T) {
	s, capa, events := newTestService(t, Config{}, "a", "b", "c")
	now := t0
	for range 4 {
		s.Report("a", true, time.Millisecond, now)
	}
	s.Report("a", false, time.Millisecond, now) // a success resets the run
	for range 4 {
		s.Report("a", true, time.Millisecond, now)
	}
	assert.False(t, capa.down("a"), "4 in a row do not eject")
	s.Report("a", true, time.Millisecond, now)
	assert.True(t, capa.down("a"), "the 5th in a row ejects")
	require.Len(t, *events, 1)
	assert.Equal(t, EventEjected, (*events)[0].Kind)
	assert.Equal(t, DefaultBaseEjectionTime, (*events)[0].For)
	assert.False(t, capa.down("b"))
}

// TestFailureRateEjects: failures spread among successes, never five in
// a row, eject once they are half of the window's requests.
func TestFailureRateEjects(t *testing.T) {
	s, capa, _ := newTestService(t, Config{}, "a", "b")
	now := t0
	for i := range 9 {
		s.Report("a", i%2 == 0, 0, now) // 5 failures of 9
	}
	assert.False(t, capa.down("a"), "below MinRequests the rate does not count")
	s.Report("a", true, 0, now) // 6 of 10
	assert.True(t, capa.down("a"))
}

// TestEjectionTimeGrowsAndDecays: each ejection in a row lasts longer;
// after it behaves for an interval the multiplier comes down; on return
// the backend's cap ramps up from 1 over the slow start.
func TestEjectionTimeGrowsAndDecays(t *testing.T) {
	cfg := Config{Outlier: OutlierConfig{BaseEjectionTime: 10 * time.Second, SlowStart: 5 * time.Second, Interval: 10 * time.Second}}
	s, capa, events := newTestService(t, cfg, "a", "b")
	now := t0
	fail5 := func() {
		for range 5 {
			s.Report("a", true, 0, now)
		}
	}
	fail5()
	require.True(t, capa.down("a"))
	now = now.Add(9 * time.Second)
	s.Tick(now)
	assert.True(t, capa.down("a"), "still ejected before its time")
	now = now.Add(time.Second)
	s.Tick(now)
	assert.False(t, capa.down("a"), "back after 10s")
	assert.Equal(t, 1, capa.cap("a"), "slow start begins at 1")
	now = now.Add(2500 * time.Millisecond)
	s.Tick(now)
	assert.Equal(t, 32, capa.cap("a"), "half way: 2^5")

	fail5() // fails again at once: the second ejection is twice as long
	require.True(t, capa.down("a"))
	assert.Equal(t, 20*time.Second, (*events)[len(*events)-1].For)
	now = now.Add(20 * time.Second)
	s.Tick(now)
	require.False(t, capa.down("a"))
	now = now.Add(5 * time.Second)
	s.Tick(now)
	assert.Equal(t, 0, capa.cap("a"), "slow start over: no cap")

	// Behaving for two intervals brings the multiplier back to zero.
	for range 2 {
		now = now.Add(10 * time.Second)
		s.Tick(now)
	}
	fail5()
	assert.Equal(t, 10*time.Second, (*events)[len(*events)-1].For)
}

// TestMaxEjected: at most MaxEjectedPercent of the backends are ejected,
// at least one may be, and the last backend taking traffic never is.
func TestMaxEjected(t *testing.T) {
	s, capa, _ := newTestService(t, Config{}, "a", "b", "c")
	for _, id := range []string{"a", "b", "c"} {
		for range 5 {
			s.Report(id, true, 0, t0)
		}
	}
	n := 0
	for _, id := range []string{"a", "b", "c"} {
		if capa.down(id) {
			n++
		}
	}
	assert.Equal(t, 1, n, "50% of 3 backends: one")

	one, capa1, _ := newTestService(t, Config{}, "only")
	for range 20 {
		one.Report("only", true, 0, t0)
	}
	assert.False(t, capa1.down("only"), "the last backend is never ejected")
}

func TestOutlierDisabled(t *testing.T) {
	s, capa, _ := newTestService(t, Config{Outlier: OutlierConfig{Disabled: true}}, "a", "b")
	for range 50 {
		s.Report("a", true, 0, t0)
	}
	assert.False(t, capa.down("a"))
}

// TestHealthCheck runs the active check against a real loopback server
// that turns unhealthy and back: Fall failures take the backend out, Rise
// passes bring it back with a slow start.
func TestHealthCheck(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/healthz" {
			w.WriteHeader(404)
			return
		}
		if !healthy.Load() {
			w.WriteHeader(503)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	cfg := Config{HealthCheck: HealthCheckConfig{Path: "/healthz", Interval: 10 * time.Millisecond, Rise: 2, Fall: 2}}
	capa := newFakeCapacity()
	var mu sync.Mutex
	var kinds []EventKind
	s := NewService("web", cfg, capa, func(e Event) { mu.Lock(); kinds = append(kinds, e.Kind); mu.Unlock() })
	s.Reconfigure(cfg, []string{"b", "other"}, func(id string) Target {
		if id == "b" {
			return Target{Addr: addr}
		}
		return Target{Addr: "127.0.0.1:1"} // nothing listens: unhealthy from the start
	}, time.Now())
	defer s.Close()

	require.Eventually(t, func() bool { return hits.Load() >= 3 }, 5*time.Second, time.Millisecond)
	assert.False(t, capa.down("b"))
	require.Eventually(t, func() bool { return capa.down("other") }, 5*time.Second, time.Millisecond,
		"a backend that refuses connections fails its check")
	healthy.Store(false)
	require.Eventually(t, func() bool { return capa.down("b") }, 5*time.Second, time.Millisecond)
	healthy.Store(true)
	require.Eventually(t, func() bool { return !capa.down("b") }, 5*time.Second, time.Millisecond)
	assert.Positive(t, capa.cap("b"), "back with a slow start")
	mu.Lock()
	assert.Contains(t, kinds, EventUnhealthy)
	assert.Contains(t, kinds, EventHealthy)
	mu.Unlock()
	snap := s.Snapshot()
	require.Len(t, snap, 2)
	assert.False(t, snap[0].LastCheck.IsZero())
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Outlier: OutlierConfig{FailureRate: 1.5}}, "outlier.failure_rate"},
		{Config{Outlier: OutlierConfig{MaxEjectedPercent: 120}}, "outlier.max_ejected_percent"},
		{Config{Outlier: OutlierConfig{BaseEjectionTime: time.Minute, MaxEjectionTime: time.Second}}, "outlier.max_ejection_time"},
		{Config{HealthCheck: HealthCheckConfig{Path: "healthz"}}, "health_check.path"},
		{Config{HealthCheck: HealthCheckConfig{ExpectStatusMin: 300, ExpectStatusMax: 200}}, "health_check.expect_status_max"},
	} {
		err := tc.cfg.Validate()
		require.Error(t, err, fmt.Sprint(tc.cfg))
		assert.Contains(t, err.Error(), tc.want)
	}
	ok := Config{}
	assert.NoError(t, ok.Validate())
}
