package proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluiceproxy/sluice/bench/origin"
	"github.com/sluiceproxy/sluice/monitor"
	"github.com/sluiceproxy/sluice/scheduler"
)

// The provisioning hook in these tests is the test binary itself: with
// hookOutEnv set, TestMain appends its standard input, one event a line,
// to the file the variable names, and exits. No shell, nothing that may
// be missing from the host.
const hookOutEnv = "SLUICE_PROXY_TEST_HOOK_OUT"

// standbyHookHelper plays the hook when asked to, and reports whether it
// did.
func standbyHookHelper() bool {
	path := os.Getenv(hookOutEnv)
	if path == "" {
		return false
	}
	in, err := io.ReadAll(os.Stdin)
	if err == nil {
		var f *os.File
		if f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
			_, err = f.Write(append(in, '\n'))
			f.Close()
		}
	}
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("provisioned nothing\n")
	os.Exit(0)
	return true
}

// hookEvents are the events the hook helper wrote to path.
func hookEvents(t *testing.T, path string) []monitor.HookEvent {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var out []monitor.HookEvent
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		var raw struct {
			monitor.HookEvent
			Figures map[string]any `json:"figures"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &raw), sc.Text())
		require.Contains(t, raw.Figures, "refusal_rate")
		require.Contains(t, raw.Figures, "admitted_rps")
		out = append(out, raw.HookEvent)
	}
	return out
}

// startOrigin is a simulated origin of finite capacity on loopback:
// workers × 1/service requests per second, processor sharing past that.
func startOrigin(t *testing.T, workers int, service time.Duration) *origin.Origin {
	t.Helper()
	cfg := origin.Default()
	cfg.Workers, cfg.Service = workers, service
	o, err := origin.New(cfg)
	require.NoError(t, err)
	require.NoError(t, o.Start("127.0.0.1:0"))
	t.Cleanup(func() { _ = o.Close() })
	return o
}

// loadResult is one request of an open-loop load.
type loadResult struct {
	at     time.Duration // sent, since the start
	status int           // 0: no response
	shed   bool          // an explicit refusal (X-Sluice-Shed)
	err    error
}

// openLoop sends rate requests per second to addr for d, each on its own
// goroutine (at most 512 in flight), whatever the answers: offered load
// does not slow down because the gateway is slow, as real clients do not.
func openLoop(t *testing.T, addr string, rate float64, d time.Duration) []loadResult {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 512, IdleConnTimeout: 5 * time.Second}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var mu sync.Mutex
	var out []loadResult
	var wg sync.WaitGroup
	slots := make(chan struct{}, 512)
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	for i := 0; ; i++ {
		at := time.Duration(i) * interval
		if at >= d {
			break
		}
		time.Sleep(time.Until(start.Add(at)))
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			r := loadResult{at: at}
			resp, err := client.Get("http://" + addr + "/work")
			if err != nil {
				r.err = err
			} else {
				_, r.err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				r.status, r.shed = resp.StatusCode, resp.Header.Get("X-Sluice-Shed") != ""
			}
			mu.Lock()
			out = append(out, r)
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// goodput is the rate of 200s among the requests sent in [from, to).
func goodput(rs []loadResult, from, to time.Duration) float64 {
	n := 0
	for _, r := range rs {
		if r.at >= from && r.at < to && r.status == http.StatusOK && r.err == nil {
			n++
		}
	}
	return float64(n) / (to - from).Seconds()
}

// TestStandbyTakesOverload is the standby floor with real loopback
// servers: one active backend of 100 requests/s offered 1.8× that. The
// standby is active within 5 s, goodput rises to what the offered load
// asks, and once the load stops the standby is released after the
// cool-down, drained with no request lost. The hook command is told of
// the activation and the release with the JSON event.
func TestStandbyTakesOverload(t *testing.T) {
	if testing.Short() {
		t.Skip("offers load for 10 s")
	}
	active, standby := startOrigin(t, 2, 20*time.Millisecond), startOrigin(t, 2, 20*time.Millisecond)
	hookOut := filepath.Join(t.TempDir(), "hook.jsonl")
	t.Setenv(hookOutEnv, hookOut)
	cfg := oneService(active.Addr())
	cfg.Services[0].Standby = []string{standby.URL()}
	cfg.Monitor.Standby = monitor.StandbyConfig{CoolDown: time.Second, HookCommand: []string{os.Args[0]}}
	p := startProxy(t, cfg)
	svc := firstService(p.Server)

	const rate, dur = 180.0, 10 * time.Second // 1.8× the active backend's 100/s
	start := time.Now()
	activatedAt := make(chan time.Duration, 1)
	go func() {
		for time.Since(start) < dur {
			if svc.mon.Events()[monitor.EventActivated] > 0 {
				activatedAt <- time.Since(start)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		close(activatedAt)
	}()
	rs := openLoop(t, p.addr, rate, dur)
	stopped := time.Now()
	act, ok := <-activatedAt
	require.True(t, ok, "the standby was never activated")
	t.Logf("standby activated %v after the overload began", act.Round(10*time.Millisecond))
	assert.Less(t, act, 5*time.Second, "active within 5 s of 1.8× overload")

	before := goodput(rs, 500*time.Millisecond, act)
	after := goodput(rs, act+2*time.Second, dur)
	var failed, shed int
	for _, r := range rs {
		switch {
		case r.err != nil || r.status == 0:
			failed++
		case r.status == http.StatusOK:
		case r.shed:
			shed++
		default:
			failed++
		}
	}
	t.Logf("%d requests: goodput %.0f/s before the standby, %.0f/s with it (offered %.0f/s); %d shed, %d failed",
		len(rs), before, after, rate, shed, failed)
	assert.Zero(t, failed, "refused explicitly or answered, never failed")
	assert.Greater(t, after, 1.3*before, "the standby's capacity is used")
	assert.Greater(t, after, 0.75*rate, "most of the offered load is served with the standby in")
	assert.Positive(t, standby.Stats().OK, "the standby served requests")

	// The load is gone: released after the cool-down, drained, forgotten.
	require.Eventually(t, func() bool { return svc.mon.Events()[monitor.EventReleased] > 0 },
		10*time.Second, 20*time.Millisecond, "released once the load stopped")
	t.Logf("standby released %v after the load stopped (cool-down 1s)", time.Since(stopped).Round(10*time.Millisecond))
	assert.EqualValues(t, 1, svc.mon.Events()[monitor.EventActivated], "one activation, no flapping")
	require.Eventually(t, func() bool {
		_, known := svc.sched.BackendInflight(standby.URL())
		return !known
	}, 5*time.Second, 10*time.Millisecond, "drained and forgotten by the scheduler")
	assert.Empty(t, svc.mon.StandbyActive())
	for _, b := range svc.mon.Snapshot() {
		assert.NotEqual(t, standby.URL(), b.ID, "no longer watched")
	}

	// The hook heard both, with the figures.
	require.Eventually(t, func() bool { return len(hookEvents(t, hookOut)) >= 2 }, 10*time.Second, 20*time.Millisecond)
	evs := hookEvents(t, hookOut)
	assert.Equal(t, "activated", evs[0].Event)
	assert.Equal(t, "web", evs[0].Service)
	assert.Equal(t, standby.URL(), evs[0].Backend)
	assert.NotEmpty(t, evs[0].Reason)
	last := evs[len(evs)-1]
	assert.Equal(t, "released", last.Event)
	assert.Equal(t, standby.URL(), last.Backend)
	assert.Contains(t, last.Reason, "quiet for 1s")
}

// activateAt makes svc's monitor decide an activation at at, as a sample
// of sustained pressure would, and carries it out; it returns the
// standby.
func activateAt(t *testing.T, p *testProxy, svc *service, at time.Time) string {
	t.Helper()
	sustain := svc.mon.Config().Standby.Sustain
	d := svc.mon.StandbyStep(at, monitor.Sample{Elapsed: sustain, Admitted: 100, Refused: 100})
	require.Equal(t, monitor.StandbyActivate, d.Action, "%+v", d)
	p.activateStandby(svc, d.Backend)
	require.Eventually(t, func() bool {
		p.reloadMu.Lock()
		defer p.reloadMu.Unlock()
		return svc.upstreams[d.Backend] != nil
	}, 5*time.Second, 5*time.Millisecond, "the standby joins once its pool is warm")
	return d.Backend
}

// TestStandbyReleaseDrains: a standby released with a request in flight
// on it finishes that request (nothing is lost), takes nothing new, and
// its pool closes after the drain. Activation put it in slow start:
// capped at one request, with its pool warmed first.
func TestStandbyReleaseDrains(t *testing.T) {
	a, sb := startHeldBackend(t), startHeldBackend(t)
	cfg := oneSlot(t, a.addr)
	cfg.Queue.QueueTimeout = 10 * time.Second
	cfg.Pool.WarmConns = 2
	cfg.Services[0].Standby = []string{"http://" + sb.addr}
	cfg.Monitor.Standby.CoolDown = 300 * time.Millisecond
	p := startProxy(t, cfg)
	svc := firstService(p.Server)

	busy := getAsync(t, p.addr, "/busy")
	require.Equal(t, "/busy", <-a.arrived)
	queued := getAsync(t, p.addr, "/queued")
	waitQueued(t, svc.sched, scheduler.Normal, 1)

	id := activateAt(t, p, svc, time.Now())
	assert.Equal(t, "http://"+sb.addr, id)
	sbPool := poolOf(p.Server, id)
	assert.Equal(t, "/queued", <-sb.arrived, "the queued request goes to the standby")
	assert.GreaterOrEqual(t, sbPool.Stats().Open, 2, "its pool was warmed")
	st := svc.sched.Stats().Backends[1]
	assert.Equal(t, 1, st.Cap, "slow start: capped at one request")
	assert.True(t, svc.mon.Snapshot()[1].SlowStart)

	// No load now: quiet; released after the cool-down while /queued is
	// still in flight on it.
	require.Eventually(t, func() bool { return svc.mon.Events()[monitor.EventReleased] == 1 },
		5*time.Second, 10*time.Millisecond)
	n, known := svc.sched.BackendInflight(id)
	assert.True(t, known, "draining, not gone: one in flight")
	assert.Equal(t, 1, n)
	sb.release <- struct{}{}
	r := <-queued
	assert.Equal(t, 200, r.resp.StatusCode)
	assert.Equal(t, "ok", r.body)
	require.Eventually(t, func() bool { return sbPool.Stats().Open == 0 }, 5*time.Second, 5*time.Millisecond,
		"the released standby's pool closes after its drain")
	a.release <- struct{}{}
	assert.Equal(t, 200, (<-busy).resp.StatusCode)
	status, _ := getOK(t, p, a)
	assert.Equal(t, 200, status, "the service serves on without the standby")
	assert.EqualValues(t, 1, sb.hits.Load(), "nothing new after the release")
}

// getOK sends one request that lands on the held backend a and releases
// it.
func getOK(t *testing.T, p *testProxy, a *heldBackend) (int, string) {
	t.Helper()
	ch := getAsync(t, p.addr, "/after")
	<-a.arrived
	a.release <- struct{}{}
	r := <-ch
	return r.resp.StatusCode, r.body
}

// TestStandbyAcrossReload: an active standby stays active across a reload
// that still lists it (same pool, same learning); moved to the backends
// it stays as a backend and is no longer a standby; removed from both it
// drains like any removed backend.
func TestStandbyAcrossReload(t *testing.T) {
	a, s1, s2 := startBackend(t, okHandler), startBackend(t, okHandler), startBackend(t, okHandler)
	u1, u2 := "http://"+s1.addr, "http://"+s2.addr
	cfg := oneService(a.addr)
	cfg.Services[0].Standby = []string{u1, u2}
	p := startProxy(t, cfg)
	svc := firstService(p.Server)
	require.Equal(t, u1, activateAt(t, p, svc, time.Now()), "the first listed")
	pool1 := poolOf(p.Server, u1)

	require.NoError(t, p.Reload(cfg))
	assert.Equal(t, []string{u1}, svc.mon.StandbyActive(), "still listed: still active")
	assert.Same(t, pool1, poolOf(p.Server, u1), "and its pool kept")
	_, known := svc.sched.BackendInflight(u1)
	assert.True(t, known)

	// Listed the other way round: u1 stays active, and u2 is still next.
	next := cfg
	next.Services = []ServiceConfig{{Name: "web", Backends: cfg.Services[0].Backends, Standby: []string{u2, u1}}}
	require.NoError(t, p.Reload(next))
	assert.Equal(t, []string{u1}, svc.mon.StandbyActive())

	// Moved to the backends: a backend now, same pool.
	next.Services = []ServiceConfig{{Name: "web", Backends: []string{"http://" + a.addr, u1}, Standby: []string{u2}}}
	require.NoError(t, p.Reload(next))
	assert.Empty(t, svc.mon.StandbyActive())
	assert.Same(t, pool1, poolOf(p.Server, u1))
	for range 20 {
		resp, _ := get(t, p.addr, "/")
		require.Equal(t, 200, resp.StatusCode)
	}
	assert.Positive(t, s1.hits.Load())

	// The next activation (one at a time: after the first one's slow
	// start) takes u2; then a reload that drops u2 from both lists drains
	// it.
	mc := svc.mon.Config()
	require.Equal(t, u2, activateAt(t, p, svc, time.Now().Add(mc.Outlier.SlowStart+mc.Standby.Sustain)))
	pool2 := poolOf(p.Server, u2)
	next.Services = []ServiceConfig{{Name: "web", Backends: []string{"http://" + a.addr, u1}}}
	require.NoError(t, p.Reload(next))
	assert.Empty(t, svc.mon.StandbyActive())
	require.Eventually(t, func() bool { return pool2.Stats().Open == 0 }, 5*time.Second, 5*time.Millisecond)
	_, known = svc.sched.BackendInflight(u2)
	assert.False(t, known)
}

// TestStandbyWarmingWhenReloaded: a standby whose pool is still warming
// when a reload comes joins afterwards if the reload still lists it, and
// never joins if the reload removed it: its pool is closed.
func TestStandbyWarmingWhenReloaded(t *testing.T) {
	for _, keep := range []bool{true, false} {
		t.Run(map[bool]string{true: "still listed", false: "removed"}[keep], func(t *testing.T) {
			a, sb := startBackend(t, okHandler), startBackend(t, okHandler)
			id := "http://" + sb.addr
			gate := make(chan struct{})
			var mu sync.Mutex
			var dialed []*closeCounter
			cfg := oneService(a.addr)
			cfg.Pool.WarmConns = 1
			cfg.Pool.Dial = func(addr string, timeout time.Duration) (net.Conn, error) {
				if addr == sb.addr {
					<-gate // the standby's warm-up waits here
				}
				c, err := net.DialTimeout("tcp", addr, timeout)
				if err != nil || addr != sb.addr {
					return c, err
				}
				cc := &closeCounter{Conn: c}
				mu.Lock()
				dialed = append(dialed, cc)
				mu.Unlock()
				return cc, nil
			}
			cfg.Services[0].Standby = []string{id}
			p := startProxy(t, cfg)
			svc := firstService(p.Server)

			d := svc.mon.StandbyStep(time.Now(), monitor.Sample{Elapsed: 2 * time.Second, Admitted: 100, Refused: 100})
			require.Equal(t, monitor.StandbyActivate, d.Action)
			p.activateStandby(svc, d.Backend)

			next := oneService(a.addr)
			next.Pool = cfg.Pool
			if keep {
				next.Services[0].Standby = []string{id}
			}
			require.NoError(t, p.Reload(next))
			p.reloadMu.Lock()
			assert.Nil(t, svc.upstreams[id], "not in yet: still warming")
			p.reloadMu.Unlock()
			close(gate)

			if keep {
				require.Eventually(t, func() bool {
					_, known := svc.sched.BackendInflight(id)
					return known
				}, 5*time.Second, 5*time.Millisecond, "joins once warm")
				assert.Equal(t, []string{id}, svc.mon.StandbyActive())
				return
			}
			require.Eventually(t, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(dialed) == 1 && dialed[0].closed.Load()
			}, 5*time.Second, 5*time.Millisecond, "its warmed pool is closed")
			_, known := svc.sched.BackendInflight(id)
			assert.False(t, known, "never joined")
			assert.Empty(t, svc.mon.StandbyActive())
			p.reloadMu.Lock()
			assert.Nil(t, svc.upstreams[id])
			p.reloadMu.Unlock()
		})
	}
}

// closeCounter is a connection that says whether it was closed.
type closeCounter struct {
	net.Conn
	closed atomic.Bool
}

func (c *closeCounter) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}
