package agent

import (
	"math"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestHostBusy(t *testing.T) {
	base := cpu.TimesStat{User: 100, System: 50, Idle: 800, Nice: 5, Iowait: 20, Irq: 1, Softirq: 2, Steal: 0, Guest: 30, GuestNice: 1}
	add := func(f func(*cpu.TimesStat)) cpu.TimesStat { c := base; f(&c); return c }
	for _, tc := range []struct {
		name string
		cur  cpu.TimesStat
		want float64
	}{
		{"idle", add(func(c *cpu.TimesStat) { c.Idle += 2 }), 0},
		{"half busy", add(func(c *cpu.TimesStat) { c.User += 0.5; c.System += 0.5; c.Idle += 1 }), 0.5},
		{"iowait is not busy", add(func(c *cpu.TimesStat) { c.User += 1; c.Iowait += 3 }), 0.25},
		{"irq, softirq and steal are busy", add(func(c *cpu.TimesStat) { c.Irq += 1; c.Softirq += 1; c.Steal += 1; c.Idle += 1 }), 0.75},
		// Guest time is inside user already: counting it again would
		// report more than the CPU did.
		{"guest counted once", add(func(c *cpu.TimesStat) { c.User += 1; c.Guest += 1; c.Idle += 1 }), 0.5},
		{"no tick between readings", base, 0},
		{"counters went backwards", add(func(c *cpu.TimesStat) { c.User -= 50; c.Idle -= 100 }), 0},
		{"all busy", add(func(c *cpu.TimesStat) { c.User += 2 }), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.InDelta(t, tc.want, hostBusy(base, tc.cur), 1e-9)
		})
	}
}

func TestProcCores(t *testing.T) {
	prevAt, curAt := t0, t0.Add(2*time.Second)
	old := t0.Add(-time.Hour).UnixMilli()
	prev := []procTimes{{pid: 10, created: old, cpu: 5}, {pid: 11, created: old, cpu: 7}, {pid: 12, created: old, cpu: 1}}
	for _, tc := range []struct {
		name string
		cur  []procTimes
		want float64 // cores
	}{
		{"steady", []procTimes{{10, old, 6}, {11, old, 8}, {12, old, 1}}, 1},
		// 12 exited: only what the survivors used counts.
		{"one exited", []procTimes{{10, old, 6}, {11, old, 7}}, 0.5},
		// 13 started inside the window: all its time is this window's.
		{"started in window", []procTimes{{10, old, 5}, {13, t0.Add(time.Second).UnixMilli(), 0.5}}, 0.25},
		// 14 was running before the window but tracked only now (a
		// rescan found it): a baseline, not a burst of an hour's CPU.
		{"newly tracked old process", []procTimes{{10, old, 5}, {14, old, 3600}}, 0},
		// PID 11 reused by a process started inside the window.
		{"pid reused", []procTimes{{11, t0.Add(time.Second).UnixMilli(), 0.2}}, 0.1},
		{"counter went backwards", []procTimes{{10, old, 4}}, 0},
		{"nothing", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.InDelta(t, tc.want, procCores(prev, tc.cur, prevAt, curAt), 1e-9)
		})
	}
	assert.Zero(t, procCores(prev, prev, t0, t0), "empty window")
}

func TestCounterCores(t *testing.T) {
	assert.InDelta(t, 1.5, counterCores(1_000_000, 2_500_000, t0, t0.Add(time.Second)), 1e-9)
	assert.InDelta(t, 0.25, counterCores(0, 500_000, t0, t0.Add(2*time.Second)), 1e-9)
	assert.Zero(t, counterCores(2_000_000, 1_000_000, t0, t0.Add(time.Second)), "cgroup recreated")
	assert.Zero(t, counterCores(0, 1, t0, t0), "empty window")
}

func TestTargetCPU(t *testing.T) {
	assert.InDelta(t, 0.25, targetCPU(1, 0, 4), 1e-9, "no quota: a share of the host")
	assert.InDelta(t, 1, targetCPU(0.5, 0.5, 4), 1e-9, "at its quota")
	assert.InDelta(t, 1, targetCPU(9, 0, 4), 1e-9, "clamped")
	assert.Zero(t, targetCPU(math.NaN(), 0, 4))
}

func TestParseCPUStat(t *testing.T) {
	n, err := parseCPUStat([]byte("usage_usec 1615636293\nuser_usec 1063965501\nsystem_usec 551670792\nnr_periods 0\n"))
	require.NoError(t, err)
	assert.Equal(t, uint64(1615636293), n)
	n, err = parseCPUStat([]byte("user_usec 1\nusage_usec 42"))
	require.NoError(t, err)
	assert.Equal(t, uint64(42), n)
	for _, bad := range []string{"", "user_usec 1\n", "usage_usec -1\n", "usage_usec x\n", "usage_usec\n"} {
		_, err := parseCPUStat([]byte(bad))
		assert.Error(t, err, "%q", bad)
	}
}

func TestParseCPUMax(t *testing.T) {
	for in, want := range map[string]float64{"max 100000\n": 0, "50000 100000\n": 0.5, "200000 100000": 2, "150000": 1.5} {
		got, err := parseCPUMax([]byte(in))
		require.NoError(t, err, "%q", in)
		assert.InDelta(t, want, got, 1e-9, "%q", in)
	}
	for _, bad := range []string{"", "a b", "1 0", "1 2 3", "-5 100000"} {
		_, err := parseCPUMax([]byte(bad))
		assert.Error(t, err, "%q", bad)
	}
}

func TestParseInflight(t *testing.T) {
	for _, tc := range []struct {
		body, field string
		want        float64
	}{
		{"12\n", "", 12},
		{" 3.5 ", "", 3.5},
		{`{"inflight": 7}`, "inflight", 7},
		{`{"http": {"active": 9, "idle": 2}}`, "http.active", 9},
	} {
		got, err := parseInflight([]byte(tc.body), tc.field)
		require.NoError(t, err, "%q", tc.body)
		assert.Equal(t, tc.want, got)
	}
	for _, tc := range []struct{ body, field, msg string }{
		{"", "", "not a number"},
		{"twelve", "", "not a number"},
		{"-1", "", "want a number >= 0"},
		{"NaN", "", "want a number >= 0"},
		{"+Inf", "", "want a number >= 0"},
		{`{"a": 1}`, "b", `no "b"`},
		{`{"a": "1"}`, "a", "not a number"},
		{`{"a": 1}`, "a.b", "not inside an object"},
		{`[1]`, "a", "not inside an object"},
		{`{"a": -2}`, "a", "want a number >= 0"},
		{`{`, "a", "not JSON"},
	} {
		_, err := parseInflight([]byte(tc.body), tc.field)
		if assert.Error(t, err, "%q %q", tc.body, tc.field) {
			assert.Contains(t, err.Error(), tc.msg)
		}
	}
}

func TestNameMatches(t *testing.T) {
	assert.True(t, nameMatches("nginx", "nginx"))
	assert.False(t, nameMatches("nginx-debug", "nginx"))
	assert.False(t, nameMatches("nginx", "nginx-debug"))
	// comm is cut at 15 bytes by the kernel; gopsutil extends it from the
	// command line when it can.
	assert.True(t, nameMatches("sluice-bench-or", "sluice-bench-origin"), "cut comm, full name given")
	assert.True(t, nameMatches("sluice-bench-origin", "sluice-bench-or"), "extended name, cut comm given")
	assert.True(t, nameMatches("sluice-bench-origin", "sluice-bench-origin"))
	assert.False(t, nameMatches("sluice-bench-or", "sluice-bench-ox-other"))
	assert.False(t, nameMatches("sluice-bench-origin", "sluice-bench-origin2"), "both extended: exact")
	assert.False(t, nameMatches("sluice-bench-o", "sluice-bench-or"))
}

// The parsers read what the kernel and an origin write: fuzz them for
// panics and for answers outside their contract.
func FuzzParseInflight(f *testing.F) {
	f.Add([]byte("12\n"), "")
	f.Add([]byte(`{"a":{"b":3}}`), "a.b")
	f.Add([]byte(`{"a":1e400}`), "a")
	f.Fuzz(func(t *testing.T, body []byte, field string) {
		n, err := parseInflight(body, field)
		if err == nil && (n < 0 || math.IsNaN(n) || math.IsInf(n, 0)) {
			t.Fatalf("parseInflight(%q, %q) = %v", body, field, n)
		}
	})
}

func FuzzParseCgroupFiles(f *testing.F) {
	f.Add([]byte("usage_usec 5\nuser_usec 3\n"))
	f.Add([]byte("50000 100000\n"))
	f.Add([]byte("max"))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseCPUStat(b)
		if n, err := parseCPUMax(b); err == nil && (n < 0 || math.IsNaN(n) || math.IsInf(n, 0)) {
			t.Fatalf("parseCPUMax(%q) = %v", b, n)
		}
	})
}
