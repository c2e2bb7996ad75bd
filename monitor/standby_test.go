package monitor

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The standby decisions, on a fake clock: a script of samples in, the
// decisions out. Every sample covers half a second, as the proxy takes
// them; the defaults apply (pressure sustained 2s, slow start 5s,
// cool-down 30s, release under 70% of what the others carry).

const period = 500 * time.Millisecond

type standbySim struct {
	t   *testing.T
	s   *Standby
	now time.Time
}

func newStandbySim(t *testing.T, cfg Config, listed ...string) *standbySim {
	s := NewStandby(cfg)
	s.SetListed(listed)
	return &standbySim{t: t, s: s, now: t0}
}

// step feeds one sample and returns the decision.
func (m *standbySim) step(smp Sample) StandbyDecision {
	m.now = m.now.Add(period)
	smp.Elapsed = period
	return m.s.Step(m.now, smp)
}

// run feeds the same sample for d and returns the decisions that were
// not "none", with the time since the start of the run.
func (m *standbySim) run(d time.Duration, smp func() Sample) []string {
	var out []string
	start := m.now
	for m.now.Sub(start) < d {
		dec := m.step(smp())
		if dec.Action != StandbyNone {
			out = append(out, fmt.Sprintf("%v %s %s", m.now.Sub(start), actionName(dec.Action), dec.Backend))
		}
	}
	return out
}

func actionName(a StandbyAction) string {
	return map[StandbyAction]string{StandbyActivate: "activate", StandbyRelease: "release", StandbyNeedCapacity: "need_capacity"}[a]
}

// backends lists up backends with a learned capacity of capa each.
func backends(capa float64, ids ...string) []BackendLoad {
	out := make([]BackendLoad, len(ids))
	for i, id := range ids {
		out[i] = BackendLoad{ID: id, Up: true, Capacity: capa}
	}
	return out
}

// overloaded: offered 180/s to what carries 100/s: 100/s admitted, the
// rest refused; adaptive LIFO keeps the queue wait short.
func overloaded(ids ...string) func() Sample {
	return func() Sample {
		return Sample{Admitted: 50, Refused: 40, QueueWaitP95: 20 * time.Millisecond,
			Answered: 50, LatencyP95: 25 * time.Millisecond, Backends: backends(100, ids...)}
	}
}

// load: rate requests/s, all admitted at once.
func load(rate float64, ids ...string) func() Sample {
	return func() Sample {
		n := uint64(rate * period.Seconds())
		return Sample{Admitted: n, QueueWaitP95: time.Millisecond,
			Answered: n, LatencyP95: 22 * time.Millisecond, Backends: backends(100, ids...)}
	}
}

// TestStandbyActivatesAfterSustainedPressure: pressure that holds for
// the sustain time activates the first standby, and not a moment before.
func TestStandbyActivatesAfterSustainedPressure(t *testing.T) {
	m := newStandbySim(t, Config{}, "s1", "s2")
	for range 3 {
		require.Equal(t, StandbyNone, m.step(overloaded("a")()).Action, "1.5s of pressure is not enough")
	}
	d := m.step(overloaded("a")())
	require.Equal(t, StandbyActivate, d.Action)
	assert.Equal(t, "s1", d.Backend, "the first standby in configured order")
	assert.Contains(t, d.Reason, "refusal rate 44.4% above 5.0% for 2s")
	assert.InDelta(t, 100, d.Figures.AdmittedRate, 0.01)
	assert.InDelta(t, 0.444, d.Figures.RefusalRate, 0.001)
	assert.Equal(t, 1, d.Figures.StandbyActive)
	assert.Equal(t, 1, d.Figures.StandbyLeft)
	assert.Equal(t, []string{"s1"}, m.s.Active())
}

// TestStandbyEachCriterion: each criterion alone is pressure once it is
// sustained; queue wait and latency at their level are not.
func TestStandbyEachCriterion(t *testing.T) {
	calm := load(60, "a")
	for _, tc := range []struct {
		name   string
		smp    func() Sample
		reason string // "" = no activation
	}{
		{"queue wait", func() Sample { s := calm(); s.QueueWaitP95 = 150 * time.Millisecond; return s }, "queue wait p95 150ms above 100ms"},
		{"queue wait at its level", func() Sample { s := calm(); s.QueueWaitP95 = 100 * time.Millisecond; return s }, ""},
		{"refusals", func() Sample { s := calm(); s.Refused = 3; return s }, "refusal rate 9.1% above 5.0%"},
		{"refusals at 5%", func() Sample { s := calm(); s.Admitted, s.Refused = 95, 5; return s }, ""},
		{"latency", func() Sample { s := calm(); s.LatencyP95 = 60 * time.Millisecond; return s }, "latency p95 60ms above 2 × its unloaded 22ms"},
		{"latency under twice", func() Sample { s := calm(); s.LatencyP95 = 40 * time.Millisecond; return s }, ""},
		{"agent CPU", func() Sample { s := calm(); s.CPU, s.HasCPU = 0.9, true; return s }, "agent CPU 90% above 80%"},
		{"CPU without agent data", func() Sample { s := calm(); s.CPU = 0.9; return s }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newStandbySim(t, Config{}, "s1")
			require.Empty(t, m.run(time.Minute, calm), "a calm minute teaches the unloaded latency")
			got := m.run(5*time.Second, tc.smp)
			if tc.reason == "" {
				assert.Empty(t, got)
				return
			}
			require.Equal(t, []string{"2s activate s1"}, got)
		})
	}
}

// TestStandbySignalsThatLie: what must not read as pressure: a spike
// shorter than the sustain time, refusals among a handful of requests,
// the latency p95 of a sub-millisecond backend doubling within the
// gateway's own noise, and no unloaded latency to compare with yet.
func TestStandbySignalsThatLie(t *testing.T) {
	t.Run("short spike", func(t *testing.T) {
		m := newStandbySim(t, Config{}, "s1")
		for range 5 {
			assert.Empty(t, m.run(1500*time.Millisecond, overloaded("a")))
			assert.Empty(t, m.run(period, load(60, "a")), "one calm sample restarts the clock")
		}
	})
	t.Run("few requests", func(t *testing.T) {
		m := newStandbySim(t, Config{}, "s1")
		assert.Empty(t, m.run(10*time.Second, func() Sample {
			return Sample{Admitted: 2, Refused: 3, QueueWaitP95: time.Second, Backends: backends(100, "a")}
		}))
	})
	t.Run("fast backend", func(t *testing.T) {
		m := newStandbySim(t, Config{}, "s1")
		fast := func(p95 time.Duration) func() Sample {
			return func() Sample {
				return Sample{Admitted: 500, Answered: 500, LatencyP95: p95, Backends: backends(5000, "a")}
			}
		}
		assert.Empty(t, m.run(time.Minute, fast(500*time.Microsecond)))
		assert.Empty(t, m.run(10*time.Second, fast(4*time.Millisecond)), "8× but within 5ms")
		assert.Equal(t, []string{"2s activate s1"}, m.run(5*time.Second, fast(6*time.Millisecond)))
	})
	t.Run("no unloaded latency yet", func(t *testing.T) {
		m := newStandbySim(t, Config{}, "s1")
		assert.Empty(t, m.run(10*time.Second, func() Sample {
			s := load(60, "a")()
			s.LatencyP95 = time.Second
			return s
		}), "the first samples are the reference")
	})
}

// TestStandbyOneAtATime: under pressure that does not end, the second
// standby waits for the first one's slow start and the sustain time
// again; with none left the service asks for capacity, once per
// cool-down.
func TestStandbyOneAtATime(t *testing.T) {
	m := newStandbySim(t, Config{}, "s1", "s2")
	got := m.run(50*time.Second, overloaded("a"))
	assert.Equal(t, []string{
		"2s activate s1",
		"9s activate s2",     // 2s + 5s slow start + 2s
		"16s need_capacity ", // the same for the call for capacity
		"46s need_capacity ", // then once per cool-down
	}, got)
	assert.Equal(t, []string{"s1", "s2"}, m.s.Active())
}

// TestStandbyReleaseAfterCoolDown: when the load is gone, the standby
// activated last goes first, after a cool-down of quiet, then the other
// after another.
func TestStandbyReleaseAfterCoolDown(t *testing.T) {
	m := newStandbySim(t, Config{}, "s1", "s2")
	require.Len(t, m.run(9*time.Second, overloaded("a")), 2)
	got := m.run(2*time.Minute, load(0, "a", "s1", "s2"))
	assert.Equal(t, []string{"30s release s2", "1m0s release s1"}, got)
	assert.Empty(t, m.s.Active())
	assert.Empty(t, m.run(time.Minute, load(0, "a")), "nothing left to release")
}

// TestStandbyNoFlap: a load the standby was needed for, then one between
// what the service carried without it and what would fit with margin, is
// never quiet: the standby stays. Below the margin it is released, and
// a sample in the band between quiet and pressure restarts the cool-down.
func TestStandbyNoFlap(t *testing.T) {
	m := newStandbySim(t, Config{}, "s1")
	require.Equal(t, []string{"2s activate s1"}, m.run(2*time.Second, overloaded("a")))
	// 150/s with both up: no refusal, no queue. a's learned capacity is
	// 100/s, and the service carried 100/s without s1: 150 > 70.
	assert.Empty(t, m.run(5*time.Minute, load(150, "a", "s1")))
	// 80/s: fits in a's 100/s, but not with the margin.
	assert.Empty(t, m.run(5*time.Minute, load(80, "a", "s1")))
	// 60/s fits, but a refusal every 20s restarts the cool-down.
	band := func() func() Sample {
		i := 0
		return func() Sample {
			s := load(60, "a", "s1")()
			if i++; i%40 == 0 {
				s.Refused = 1
			}
			return s
		}
	}()
	assert.Empty(t, m.run(5*time.Minute, band))
	assert.Equal(t, []string{"30s release s1"}, m.run(time.Minute, load(60, "a", "s1")))
}

// TestStandbyReleaseBound: the measured bound (what the service carried
// without the standby) counts only while no other backend has joined;
// and the last backend up is never released.
func TestStandbyReleaseBound(t *testing.T) {
	m := newStandbySim(t, Config{}, "s1")
	require.Len(t, m.run(2*time.Second, overloaded("a")), 1)
	assert.Empty(t, m.run(2*time.Minute, load(120, "a", "s1")), "120 > 0.7 × 100 carried by a alone")
	// b joins (a reload): a and b carry 200/s by their learned capacity.
	assert.Equal(t, []string{"30s release s1"}, m.run(time.Minute, load(120, "a", "b", "s1")))

	m = newStandbySim(t, Config{}, "s1")
	require.Len(t, m.run(2*time.Second, overloaded("a")), 1)
	downA := func() Sample {
		s := load(0, "a", "s1")()
		s.Backends[0].Up = false // a is ejected: s1 is all there is
		return s
	}
	assert.Empty(t, m.run(2*time.Minute, downA))
}

// TestStandbyCPURelease: with agent data, a release must leave the
// remaining backends' CPU within the margin.
func TestStandbyCPURelease(t *testing.T) {
	m := newStandbySim(t, Config{}, "s1")
	require.Len(t, m.run(2*time.Second, overloaded("a")), 1)
	cpu := func(c float64) func() Sample {
		return func() Sample {
			s := load(10, "a", "s1")()
			s.CPU, s.HasCPU = c, true
			return s
		}
	}
	assert.Empty(t, m.run(2*time.Minute, cpu(0.4)), "0.8 on a alone > 0.7 × 0.8")
	assert.Equal(t, []string{"30s release s1"}, m.run(time.Minute, cpu(0.25)))
}

// TestStandbyListChanges: a reload keeps an active standby that is still
// listed, forgets one moved away, and the order of the list decides the
// next activation.
func TestStandbyListChanges(t *testing.T) {
	m := newStandbySim(t, Config{}, "s1", "s2", "s3")
	require.Len(t, m.run(9*time.Second, overloaded("a")), 2)
	require.Equal(t, []string{"s1", "s2"}, m.s.Active())

	assert.Equal(t, []string{"s2"}, m.s.SetListed([]string{"s3", "s2"}), "s1 moved to the backends")
	got := m.run(8*time.Second, overloaded("a", "s1", "s2"))
	assert.Equal(t, []string{"7s activate s3"}, got, "the next in the new order, after s2's slow start")

	m.s.Drop("s3")
	assert.Equal(t, []string{"s2"}, m.s.Active())
}

// TestStandbyShortCoolDown: the cool-down and the sustain time are the
// configuration's.
func TestStandbyShortCoolDown(t *testing.T) {
	cfg := Config{Standby: StandbyConfig{Sustain: time.Second, CoolDown: 3 * time.Second}}
	m := newStandbySim(t, cfg, "s1")
	assert.Equal(t, []string{"1s activate s1"}, m.run(3*time.Second, overloaded("a")))
	assert.Equal(t, []string{"3s release s1"}, m.run(10*time.Second, load(0, "a", "s1")))
}

// TestServiceStandbyEvents: the service's standby decisions are events,
// told and counted like ejections, with the figures behind them.
func TestServiceStandbyEvents(t *testing.T) {
	s, _, events := newTestService(t, Config{}, "a")
	require.Empty(t, s.SetStandbys([]string{"s1"}))
	now := t0
	for range 4 {
		now = now.Add(period)
		smp := overloaded("a")()
		smp.Elapsed = period
		s.StandbyStep(now, smp)
	}
	require.Len(t, *events, 1)
	e := (*events)[0]
	assert.Equal(t, EventActivated, e.Kind)
	assert.Equal(t, "activated", e.Kind.String())
	assert.Equal(t, "s1", e.Backend)
	assert.Equal(t, "web", e.Service)
	require.NotNil(t, e.Figures)
	assert.InDelta(t, 100, e.Figures.AdmittedRate, 0.01)
	assert.EqualValues(t, 1, s.Events()[EventActivated])
	assert.Equal(t, []string{"s1"}, s.StandbyActive())
	assert.Equal(t, []string{"s1"}, s.SetStandbys([]string{"s1", "s2"}), "still listed: still active")
	assert.Empty(t, s.SetStandbys(nil))
}

// TestServiceAddBackendSlowStart: a standby brought in is watched from
// then on and starts slow: its cap (1, as the caller added it) doubles
// over SlowStart and is then lifted; removed, it is forgotten.
func TestServiceAddBackendSlowStart(t *testing.T) {
	s, capa, _ := newTestService(t, Config{}, "a")
	s.AddBackend("s1", Target{Addr: "s1"}, t0)
	snap := s.Snapshot()
	require.Len(t, snap, 2)
	assert.Equal(t, "s1", snap[1].ID)
	assert.True(t, snap[1].SlowStart)
	assert.Zero(t, capa.cap("s1"), "the caller set 1 already: nothing to change")
	s.Tick(t0.Add(DefaultSlowStart / 2))
	assert.Equal(t, 32, capa.cap("s1"))
	s.Tick(t0.Add(DefaultSlowStart))
	assert.Zero(t, capa.cap("s1"))
	assert.False(t, s.Snapshot()[1].SlowStart)

	s.AddBackend("a", Target{Addr: "a"}, t0) // already watched: unchanged
	assert.Len(t, s.Snapshot(), 2)
	s.RemoveBackend("s1")
	s.Report("s1", true, 0, t0) // dropped
	snap = s.Snapshot()
	require.Len(t, snap, 1)
	assert.Equal(t, "a", snap[0].ID)
}
