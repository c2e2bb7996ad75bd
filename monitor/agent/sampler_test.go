package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// judged fills the verdict the Agent would, so Validate can check the
// whole document.
func judged(l Load) Load {
	l.State, l.Weight, l.Error = Policy{}.withDefaults().Decide(StateUp, &l)
	return l
}

func TestSamplerHost(t *testing.T) {
	s, err := NewSampler(Config{})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	first, err := s.Sample(ctx, time.Now())
	require.NoError(t, err)
	assert.Zero(t, first.WindowSeconds, "no previous reading")
	assert.Zero(t, first.HostCPU)
	time.Sleep(100 * time.Millisecond)
	l, err := s.Sample(ctx, time.Now())
	require.NoError(t, err)
	require.NoError(t, judged(l).Validate())
	assert.InDelta(t, 0.1, l.WindowSeconds, 0.09)
	assert.GreaterOrEqual(t, l.CPUs, 1)
	assert.Positive(t, l.MemoryTotalBytes)
	assert.Positive(t, l.MemoryUsedBytes)
	assert.Equal(t, 1.0, l.IntervalSeconds)
	assert.Empty(t, l.Targets)
	assert.Nil(t, l.Inflight)
	assert.Equal(t, l.HostCPU, l.CPU, "no targets: the host decides")
}

// The test process itself, by PID and by name: it spins for a while
// between two samples, and the sampler sees cores used.
func TestSamplerProcessTargets(t *testing.T) {
	comm, err := os.ReadFile("/proc/self/comm")
	require.NoError(t, err)
	name := strings.TrimSpace(string(comm))
	s, err := NewSampler(Config{PIDs: []int{os.Getpid()}, Processes: []string{name}})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = s.Sample(ctx, time.Now())
	require.NoError(t, err)
	spin(150 * time.Millisecond)
	l, err := s.Sample(ctx, time.Now())
	require.NoError(t, err)
	require.NoError(t, judged(l).Validate())
	require.Len(t, l.Targets, 2)
	for _, tg := range l.Targets {
		assert.Empty(t, tg.Error, tg.Kind)
		assert.Contains(t, tg.PIDs, int32(os.Getpid()), tg.Kind)
		// At least a tenth of a core; the spin is one full core, less
		// what a shared machine takes from it.
		assert.Greater(t, tg.Cores, 0.1, tg.Kind)
		assert.LessOrEqual(t, tg.CPU, 1.0)
	}
	assert.Equal(t, "process", l.Targets[0].Kind)
	assert.Equal(t, name, l.Targets[0].Name)
	assert.Equal(t, "pid", l.Targets[1].Kind)
}

func spin(d time.Duration) {
	x := 0
	for start := time.Now(); time.Since(start) < d; {
		for i := range 10000 {
			x += i
		}
	}
	_ = x
}

// Missing targets are reported, never fatal: each one has its error, and
// the verdict is down with the first one's reason.
func TestSamplerMissingTargets(t *testing.T) {
	// A PID that surely exited: a child that ran and was reaped.
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run())
	dead := cmd.Process.Pid
	missingCgroup := filepath.Join(t.TempDir(), "no-such.slice")
	s, err := NewSampler(Config{
		Processes: []string{"no-such-origin"},
		PIDs:      []int{dead},
		Cgroups:   []string{missingCgroup},
	})
	require.NoError(t, err)
	ctx := context.Background()
	for range 2 { // and again: a missing target does not break later samples
		l, err := s.Sample(ctx, time.Now())
		require.NoError(t, err)
		require.Len(t, l.Targets, 3)
		assert.Equal(t, `process "no-such-origin": no running process has this name`, l.Targets[0].Error)
		assert.Equal(t, fmt.Sprintf("pid %d: no such process", dead), l.Targets[1].Error)
		assert.Equal(t, "cgroup "+missingCgroup+": no such cgroup (no cpu.stat)", l.Targets[2].Error)
		j := judged(l)
		assert.Equal(t, StateDown, j.State)
		assert.Equal(t, l.Targets[0].Error, j.Error)
		require.NoError(t, j.Validate())
	}
}

// A cgroup directory made up in a temporary directory: with the sample
// times given, the figures are exact.
func TestSamplerCgroup(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	write("cpu.stat", "usage_usec 1000000\nuser_usec 600000\nsystem_usec 400000\n")
	write("cpu.max", "50000 100000\n")
	s, err := NewSampler(Config{Cgroups: []string{dir}})
	require.NoError(t, err)
	ctx := context.Background()
	now := time.Now()
	_, err = s.Sample(ctx, now)
	require.NoError(t, err)
	write("cpu.stat", "usage_usec 1400000\nuser_usec 800000\nsystem_usec 600000\n")
	l, err := s.Sample(ctx, now.Add(time.Second))
	require.NoError(t, err)
	require.Len(t, l.Targets, 1)
	tg := l.Targets[0]
	assert.Empty(t, tg.Error)
	assert.InDelta(t, 0.4, tg.Cores, 1e-9)
	assert.InDelta(t, 0.5, tg.LimitCores, 1e-9)
	assert.InDelta(t, 0.8, tg.CPU, 1e-9, "0.4 of a 0.5-core quota")
	assert.GreaterOrEqual(t, l.CPU, 0.8, "the quota is the tightest constraint")

	// The cgroup goes away, then comes back.
	require.NoError(t, os.Remove(filepath.Join(dir, "cpu.stat")))
	l, err = s.Sample(ctx, now.Add(2*time.Second))
	require.NoError(t, err)
	assert.Contains(t, l.Targets[0].Error, "no such cgroup")
	write("cpu.stat", "usage_usec 10\n")
	write("cpu.max", "max 100000\n")
	l, err = s.Sample(ctx, now.Add(3*time.Second))
	require.NoError(t, err)
	assert.Empty(t, l.Targets[0].Error)
	assert.Zero(t, l.Targets[0].LimitCores)
	assert.Zero(t, l.Targets[0].Cores, "first reading after coming back: a baseline")

	write("cpu.stat", "no usage here\n")
	l, err = s.Sample(ctx, now.Add(4*time.Second))
	require.NoError(t, err)
	assert.Contains(t, l.Targets[0].Error, "no usage_usec")
}

// The machine's own cgroup v2 hierarchy, where there is one.
func TestSamplerRealCgroup(t *testing.T) {
	var dir string
	for _, d := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		if b, err := os.ReadFile(filepath.Join(d, "cpu.stat")); err == nil && strings.Contains(string(b), "usage_usec") {
			dir = d
			break
		}
	}
	if dir == "" {
		t.Skip("no cgroup v2 cpu.stat on this machine")
	}
	s, err := NewSampler(Config{Cgroups: []string{dir}})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = s.Sample(ctx, time.Now())
	require.NoError(t, err)
	spin(50 * time.Millisecond)
	l, err := s.Sample(ctx, time.Now())
	require.NoError(t, err)
	require.NoError(t, judged(l).Validate())
	assert.Empty(t, l.Targets[0].Error)
	assert.Positive(t, l.Targets[0].Cores, "the root cgroup holds this test's spin")
}

func TestSamplerInflight(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/count":
			io.WriteString(w, "17\n")
		case "/json":
			io.WriteString(w, `{"requests": {"active": 4}}`)
		case "/broken":
			http.Error(w, "no", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		path, field string
		want        float64
		msg         string
	}{
		{"/count", "", 17, ""},
		{"/json", "requests.active", 4, ""},
		{"/broken", "", 0, "status 500"},
		{"/json", "", 0, "not a number"},
	} {
		s, err := NewSampler(Config{InflightURL: srv.URL + tc.path, InflightField: tc.field})
		require.NoError(t, err)
		l, err := s.Sample(ctx, time.Now())
		require.NoError(t, err, "an in-flight failure is not a sampling failure")
		if tc.msg == "" {
			require.NotNil(t, l.Inflight, tc.path)
			assert.Equal(t, tc.want, *l.Inflight)
			assert.Empty(t, l.InflightError)
		} else {
			assert.Nil(t, l.Inflight)
			assert.Contains(t, l.InflightError, tc.msg)
			assert.Equal(t, StateUp, judged(l).State, "the origin's status page failing is not the origin down")
		}
		s.Close()
	}
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, Config{}.WithDefaults().Validate())
	d := Config{}.WithDefaults()
	assert.Equal(t, time.Second, d.Interval)
	assert.Equal(t, 500*time.Millisecond, d.InflightTimeout)
	assert.Equal(t, 50*time.Millisecond, Config{Interval: 100 * time.Millisecond}.WithDefaults().InflightTimeout)
	for _, tc := range []struct {
		cfg Config
		msg string
	}{
		{Config{Interval: time.Millisecond}, "interval: 1ms is below the minimum 10ms"},
		{Config{Interval: time.Minute, Rescan: time.Second}, "rescan: 1s is shorter than the interval 1m0s"},
		{Config{Processes: []string{""}}, `process: ""`},
		{Config{Processes: []string{"/usr/sbin/nginx"}}, "not a command name"},
		{Config{PIDs: []int{0}}, "pid: 0"},
		{Config{Cgroups: []string{""}}, "cgroup"},
		{Config{InflightURL: "127.0.0.1:8080/inflight"}, "inflight-url"},
		{Config{InflightURL: "ftp://x/y"}, "inflight-url"},
		{Config{InflightField: "a"}, "without inflight-url"},
		{Config{InflightURL: "http://x/", InflightTimeout: 2 * time.Second}, "inflight-timeout"},
		{Config{Policy: Policy{TargetCPU: 85}}, "target-cpu: 85"},
		{Config{Policy: Policy{FloorWeight: 101}}, "floor-weight: 101"},
		{Config{Policy: Policy{DrainCPU: 0.8}}, "drain-cpu: 0.8"},
		{Config{Policy: Policy{DrainCPU: 1.1}}, "drain-cpu: 1.1"},
		{Config{Policy: Policy{ReadyHold: -time.Second}}, "ready-hold"},
	} {
		err := tc.cfg.WithDefaults().Validate()
		if assert.Error(t, err, "%+v", tc.cfg) {
			assert.Contains(t, err.Error(), tc.msg)
		}
	}
}
