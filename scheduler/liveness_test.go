package scheduler

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// probeOnce runs one liveness probe on backend "0" that takes lat: it
// reports whether the scheduler wanted it.
func (d *drive) probeOnce(lat time.Duration) bool {
	if !d.s.WantsProbe("0", d.now) {
		return false
	}
	sent := d.now
	d.now = d.now.Add(lat)
	d.s.Alive("0", sent, d.now)
	return true
}

// TestLongPollsAtAFreshBackend: long polls arriving together at a fresh
// backend hold its whole limit and nothing finishes; liveness probes that
// come back while nothing else does double the limit in slow start, so
// that all of them are admitted within a few probes, long before the
// queue timeout.
func TestLongPollsAtAFreshBackend(t *testing.T) {
	d := newDrive(t, Config{}, 1)
	var waiting []*Waiter
	admitted := 0
	for range 40 {
		if _, w := d.admit(); w != nil {
			waiting = append(waiting, w)
		} else {
			admitted++
		}
	}
	require.Equal(t, 4, admitted, "the initial limit")
	probes := 0
	for d.probeOnce(20 * time.Millisecond) {
		probes++
		require.Less(t, probes, 10, "probes stop once nothing waits")
	}
	assert.Len(t, d.granted, len(waiting), "every long poll admitted")
	assert.LessOrEqual(t, probes, 4, "4, 8, 16, 32, 64")
	assert.Less(t, d.now.Sub(simEpoch), 200*time.Millisecond)
	assert.Empty(t, d.refused)
}

// TestProbeNotWantedWhileCompleting: a full backend that keeps completing
// requests at its usual pace is busy, not stalled: no probe.
func TestProbeNotWantedWhileCompleting(t *testing.T) {
	d := newDrive(t, Config{}, 1)
	var held []Ticket
	for range 4 {
		tk, w := d.admit()
		require.Nil(t, w)
		held = append(held, tk)
	}
	_, w := d.admit()
	require.NotNil(t, w)
	d.now = d.now.Add(10 * time.Millisecond)
	d.s.Done(held[0], Success, 10*time.Millisecond, d.now)
	require.Contains(t, d.granted, w, "the freed slot went to the queued request")
	_, w = d.admit()
	require.NotNil(t, w)
	d.now = d.now.Add(10 * time.Millisecond)
	assert.False(t, d.s.WantsProbe("0", d.now), "a completion %v ago", 10*time.Millisecond)
	d.now = d.now.Add(30 * time.Millisecond)
	assert.True(t, d.s.WantsProbe("0", d.now), "quiet for %v", 40*time.Millisecond)
}

// TestProbeDuringCompletionsDoesNotGrow: a probe during which a request
// finished proves the backend alive but says nothing of room: the limit
// stays.
func TestProbeDuringCompletionsDoesNotGrow(t *testing.T) {
	d := newDrive(t, Config{}, 1)
	var held []Ticket
	for range 4 {
		tk, _ := d.admit()
		held = append(held, tk)
	}
	d.admit()
	require.True(t, d.s.WantsProbe("0", d.now))
	sent := d.now
	d.now = d.now.Add(10 * time.Millisecond)
	d.s.Done(held[0], Success, 10*time.Millisecond, d.now)
	d.now = d.now.Add(10 * time.Millisecond)
	d.s.Alive("0", sent, d.now)
	assert.Equal(t, 4, d.s.Stats().Backends[0].Limit)
}

// TestHungFreshBackendGainsNothing: probes of a hung backend never come
// back, and nothing else is admitted beyond the in-band probes of
// parked.go.
func TestHungFreshBackendGainsNothing(t *testing.T) {
	d := newDrive(t, Config{QueueTimeout: time.Hour, StandingTimeout: time.Hour}, 1)
	for range 40 {
		d.admit()
	}
	for range 50 { // 5 s
		require.True(t, d.s.WantsProbe("0", d.now) || d.s.Stats().Backends[0].Inflight > 4)
		d.advance(100 * time.Millisecond)
	}
	assert.Equal(t, 4, d.s.Stats().Backends[0].Limit)
	assert.LessOrEqual(t, len(d.granted), 5, "only parked.go's probes, backing off")
}

// TestStaticLimitWantsNoProbe: a static limit is the operator's bound.
func TestStaticLimitWantsNoProbe(t *testing.T) {
	d := newDrive(t, Config{Limit: LimitSpec{Kind: LimitStatic, N: 1}}, 1)
	d.admit()
	d.admit()
	assert.False(t, d.s.WantsProbe("0", d.now))
}
