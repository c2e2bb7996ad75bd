package monitor

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluiceproxy/sluice/monitor/agent"
)

// scriptedProbe is what the agent under test reports.
type scriptedProbe struct {
	mu      sync.Mutex
	cpu     float64
	missing string
}

func (p *scriptedProbe) set(cpu float64, missing string) {
	p.mu.Lock()
	p.cpu, p.missing = cpu, missing
	p.mu.Unlock()
}

func (p *scriptedProbe) Sample(_ context.Context, now time.Time) (agent.Load, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return agent.Load{
		Version: agent.Version, Time: now, IntervalSeconds: 0.02, WindowSeconds: 0.02,
		CPU: p.cpu, HostCPU: p.cpu, CPUs: 2,
		Targets:         []agent.Target{{Kind: "process", Name: "origin", PIDs: []int32{7}, Cores: p.cpu, CPU: p.cpu, Error: p.missing}},
		MemoryUsedBytes: 1, MemoryTotalBytes: 2, MemoryUsedFraction: 0.5,
	}, nil
}

// TestAgentDrivesCapAndState: a real sluice-agent (the package's Agent on
// loopback) reports a hot CPU, then a missing origin, then stops: the
// monitor caps the backend's concurrency in proportion, takes it out
// while the agent says down, and lets the stale data go.
func TestAgentDrivesCapAndState(t *testing.T) {
	probe := &scriptedProbe{cpu: 0.5}
	a, err := agent.New(agent.Config{Interval: 20 * time.Millisecond}, probe, zerolog.Nop())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, a.Start(ctx))
	srv := httptest.NewServer(a.Handler())
	stopped := false
	defer func() {
		if !stopped {
			srv.Close()
		}
		cancel()
		<-a.Done()
	}()

	cfg := Config{Outlier: OutlierConfig{SlowStart: time.Millisecond}, Agent: AgentConfig{
		URLs:     map[string]string{"b": srv.URL + "/load"},
		Interval: 20 * time.Millisecond, MaxAge: 200 * time.Millisecond,
	}}
	capa := newFakeCapacity()
	s := NewService("web", cfg, capa, nil)
	s.Reconfigure(cfg, []string{"b", "other"}, func(id string) Target { return Target{Addr: strings.TrimPrefix(srv.URL, "http://")} }, time.Now())
	defer s.Close()

	require.Eventually(t, func() bool { return s.Snapshot()[0].AgentState == "up" }, 5*time.Second, 5*time.Millisecond)
	assert.Zero(t, capa.cap("b"), "below the CPU target: no cap")

	probe.set(0.97, "")
	// 40 learned × 0.85 / 0.97 = 35.
	require.Eventually(t, func() bool { return capa.cap("b") == 35 }, 5*time.Second, 5*time.Millisecond, "cap %d", capa.cap("b"))
	assert.False(t, capa.down("b"))

	probe.set(0.2, `process "origin": no running process has this name`)
	require.Eventually(t, func() bool { return capa.down("b") }, 5*time.Second, 5*time.Millisecond, "the agent says down")
	probe.set(0.2, "")
	require.Eventually(t, func() bool { return !capa.down("b") }, 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { s.Tick(time.Now()); return capa.cap("b") == 0 }, 5*time.Second, 5*time.Millisecond,
		"the slow start after coming back ends")

	probe.set(0.99, "")
	require.Eventually(t, func() bool { return capa.cap("b") > 0 && capa.cap("b") < 40 }, 5*time.Second, 5*time.Millisecond)
	srv.Close() // the agent goes silent
	stopped = true
	require.Eventually(t, func() bool {
		s.Tick(time.Now())
		return capa.cap("b") == 0
	}, 5*time.Second, 10*time.Millisecond, "stale data stops capping")
	snap := s.Snapshot()[0]
	assert.NotEmpty(t, snap.AgentError, "the failed polls are reported")
	assert.Greater(t, snap.AgentAge, cfg.Agent.MaxAge)
	assert.False(t, capa.down("b"))
	assert.Equal(t, "", s.Snapshot()[1].AgentState, "a backend without an agent URL is not polled")
}

func TestAgentURL(t *testing.T) {
	cfg := AgentConfig{Port: 9101, URLs: map[string]string{"http://a:80": "http://agent-a:1/load"}}
	assert.Equal(t, "http://agent-a:1/load", agentURL(cfg, "http://a:80", "a:80"))
	assert.Equal(t, "http://10.0.0.2:9101/load", agentURL(cfg, "http://10.0.0.2:8080", "10.0.0.2:8080"))
	assert.Equal(t, "http://[::1]:9101/load", agentURL(cfg, "http://[::1]:8080", "[::1]:8080"))
	assert.Empty(t, agentURL(AgentConfig{}, "http://b:80", "b:80"))
}
