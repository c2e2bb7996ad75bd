package scheduler

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// learn runs n requests one at a time on a fresh scheduler's only
// backend, each taking rtt, so that its adaptive limiter takes a baseline.
func learn(t *testing.T, s *Scheduler, now time.Time, rtt time.Duration, n int) time.Time {
	t.Helper()
	for range n {
		tk, ok := s.TryAdmit(&Request{}, now)
		require.True(t, ok)
		now = now.Add(rtt)
		s.Done(tk, Success, rtt, now)
	}
	return now
}

// TestReconfigureKeepsLearnedLimits: a backend that stays keeps its
// baseline and limit across a change of policy; one whose limit kind
// changes starts afresh; a new one joining a running service starts from
// what its peers learned.
func TestReconfigureKeepsLearnedLimits(t *testing.T) {
	const rtt = 20 * time.Millisecond
	s := newTestScheduler(t, Config{}, 1, simEpoch)
	now := learn(t, s, simEpoch, rtt, 2*defaultProbeSamples)
	before := s.Stats().Backends[0]
	require.Equal(t, rtt, before.Baseline, "the baseline was learned")

	// Same limiter kind, other queue policy and new bounds that the
	// learned limit lies within: nothing learned is lost.
	cfg := Config{QueueMax: 10, QueueTimeout: time.Second, LimitMax: 500}
	require.NoError(t, s.Reconfigure(cfg, []BackendSpec{{ID: "0"}, {ID: "new"}}, now))
	after := s.Stats()
	require.Len(t, after.Backends, 2)
	require.Equal(t, before.Baseline, after.Backends[0].Baseline)
	require.Equal(t, before.Limit, after.Backends[0].Limit)
	require.Equal(t, "new", after.Backends[1].ID)
	require.Equal(t, before.Baseline, after.Backends[1].Baseline, "a backend joining a running service starts from its peers' baseline")
	require.Equal(t, before.Limit, after.Backends[1].Limit, "and from their limit")
	require.Equal(t, 10, s.Config().QueueMax)

	// Bounds below the learned limit clamp it at once.
	require.NoError(t, s.Reconfigure(Config{LimitMax: 2}, []BackendSpec{{ID: "0"}}, now))
	require.Equal(t, 2, s.Stats().Backends[0].Limit)

	// Another kind of limit replaces the limiter.
	require.NoError(t, s.Reconfigure(Config{Limit: LimitSpec{Kind: LimitStatic, N: 7}}, []BackendSpec{{ID: "0"}}, now))
	require.Equal(t, 7, s.Stats().Backends[0].Limit)
	require.Zero(t, s.Stats().Backends[0].Baseline)
}

// TestReconfigureInvalidChangesNothing: a bad policy or backend list is
// refused whole.
func TestReconfigureInvalidChangesNothing(t *testing.T) {
	s := newTestScheduler(t, Config{QueueMax: 5}, 2, simEpoch)
	require.Error(t, s.Reconfigure(Config{QueueMax: -1}, []BackendSpec{{ID: "x"}}, simEpoch))
	require.Error(t, s.Reconfigure(Config{}, []BackendSpec{{ID: "x"}, {ID: "x"}}, simEpoch))
	require.Error(t, s.Reconfigure(Config{}, []BackendSpec{{ID: ""}}, simEpoch))
	st := s.Stats()
	require.Len(t, st.Backends, 2)
	require.Equal(t, "0", st.Backends[0].ID)
	require.Equal(t, 5, s.Config().QueueMax)
}

// TestRemovedBackendTicket: a ticket on a backend that was removed, and
// even forgotten and added again under the same ID, is given back to the
// backend it was issued on; it teaches the new one nothing.
func TestRemovedBackendTicket(t *testing.T) {
	s := newTestScheduler(t, Config{Limit: LimitSpec{Kind: LimitStatic, N: 1}}, 1, simEpoch)
	old, ok := s.TryAdmit(&Request{}, simEpoch)
	require.True(t, ok)
	require.NoError(t, s.RemoveBackend("0", simEpoch))
	_, ok = s.TryAdmit(&Request{}, simEpoch)
	require.False(t, ok, "a draining backend takes nothing new")

	s.Done(old, Success, time.Millisecond, simEpoch)
	n, known := s.BackendInflight("0")
	require.False(t, known, "drained and forgotten, got inflight %d", n)

	// Added back after it was forgotten: a fresh record.
	_, err := s.AddBackend("0", nil, simEpoch)
	require.NoError(t, err)
	a, ok := s.TryAdmit(&Request{}, simEpoch)
	require.True(t, ok)
	require.NotSame(t, old.Backend, a.Backend)
	_, ok = s.TryAdmit(&Request{}, simEpoch)
	require.False(t, ok, "static:1, one in flight")
	s.Done(a, Success, time.Millisecond, simEpoch)
	require.Equal(t, 0, s.Stats().Backends[0].Inflight)
}

// TestBackendWeightAndCap: the monitor's inputs steer backend choice and
// bound the limit without touching the queue.
func TestBackendWeightAndCap(t *testing.T) {
	s := newTestScheduler(t, Config{Limit: LimitSpec{Kind: LimitStatic, N: 10}}, 2, simEpoch)
	require.NoError(t, s.SetBackendWeight("1", 3))
	counts := map[string]int{}
	var held []Ticket
	for range 8 {
		tk, ok := s.TryAdmit(&Request{}, simEpoch)
		require.True(t, ok)
		counts[tk.Backend.ID()]++
		held = append(held, tk)
	}
	require.Equal(t, map[string]int{"0": 2, "1": 6}, counts, "weight 3 takes three times the share")
	for _, tk := range held {
		s.Done(tk, Ignore, 0, simEpoch)
	}

	require.NoError(t, s.SetBackendCap("0", 1, simEpoch))
	require.NoError(t, s.SetBackendState("1", StateDown, simEpoch))
	a, ok := s.TryAdmit(&Request{}, simEpoch)
	require.True(t, ok)
	_, ok = s.TryAdmit(&Request{}, simEpoch)
	require.False(t, ok, "capped at 1")
	require.Equal(t, 1, s.Stats().Backends[0].Limit)
	s.Done(a, Ignore, 0, simEpoch)

	require.Error(t, s.SetBackendWeight("0", 0))
	require.Error(t, s.SetBackendCap("0", -1, simEpoch))
	require.Error(t, s.SetBackendState("0", StateDraining, simEpoch))
	require.ErrorIs(t, s.SetBackendState("nope", StateUp, simEpoch), ErrUnknownBackend)
}

// TestReaddedBackendTakesUpItsLearning: a backend removed, drained and
// forgotten, then added back within rememberFor, takes up its baseline
// and limit (under a new tag); added back later, or under a limit of
// another kind, it starts afresh. The memory is bounded: the oldest
// forgotten backend goes first.
func TestReaddedBackendTakesUpItsLearning(t *testing.T) {
	const rtt = 20 * time.Millisecond
	s := newTestScheduler(t, Config{}, 1, simEpoch)
	now := learn(t, s, simEpoch, rtt, 2*defaultProbeSamples)
	before := s.Stats().Backends[0]
	require.Equal(t, rtt, before.Baseline)

	removeIdle := func(id string) {
		t.Helper()
		require.NoError(t, s.RemoveBackend(id, now))
		_, known := s.BackendInflight(id)
		require.False(t, known, "idle: forgotten at once")
	}
	removeIdle("0")
	now = now.Add(rememberFor - time.Second)
	b, err := s.AddBackend("0", "new tag", now)
	require.NoError(t, err)
	require.Equal(t, "new tag", b.Tag())
	after := s.Stats().Backends[0]
	require.Equal(t, before.Baseline, after.Baseline, "back within rememberFor")
	require.Equal(t, before.Limit, after.Limit)
	require.Equal(t, before.Latency, after.Latency)

	removeIdle("0")
	now = now.Add(rememberFor)
	_, err = s.AddBackend("0", nil, now)
	require.NoError(t, err)
	require.Zero(t, s.Stats().Backends[0].Baseline, "back after rememberFor: afresh")

	// Learned again, removed, and back under a static limit: the
	// limiter's learning does not transfer.
	s = newTestScheduler(t, Config{}, 1, simEpoch)
	now = learn(t, s, simEpoch, rtt, 2*defaultProbeSamples)
	removeIdle("0")
	require.NoError(t, s.Reconfigure(Config{Limit: LimitSpec{Kind: LimitStatic, N: 7}}, []BackendSpec{{ID: "0"}}, now))
	require.Equal(t, 7, s.Stats().Backends[0].Limit)
	require.Zero(t, s.Stats().Backends[0].Baseline)

	// Many other backends forgotten since: the oldest memory went first.
	s = newTestScheduler(t, Config{}, 1, simEpoch)
	now = learn(t, s, simEpoch, rtt, 2*defaultProbeSamples)
	removeIdle("0")
	for i := range maxRemembered {
		now = now.Add(time.Millisecond)
		id := "churn-" + strconv.Itoa(i)
		_, err := s.AddBackend(id, nil, now)
		require.NoError(t, err)
		removeIdle(id)
	}
	_, err = s.AddBackend("0", nil, now)
	require.NoError(t, err)
	require.Zero(t, s.Stats().Backends[0].Baseline, "evicted by %d newer ones", maxRemembered)
}

// TestSlowBackendGetsTheOverflow: with two fast backends and one four
// times slower, all with room, requests go where they are expected to
// finish soonest; the slow one gets a small part of the traffic instead
// of a third of it (which would put its latency into the tail).
func TestSlowBackendGetsTheOverflow(t *testing.T) {
	s := newTestScheduler(t, Config{Limit: LimitSpec{Kind: LimitStatic, N: 8}}, 3, simEpoch)
	latency := map[string]time.Duration{"0": 20 * time.Millisecond, "1": 20 * time.Millisecond, "2": 80 * time.Millisecond}
	now := simEpoch
	// Warm: each backend answers once, so each has a latency.
	for _, id := range []string{"0", "1", "2"} {
		for {
			tk, ok := s.TryAdmit(&Request{}, now)
			require.True(t, ok)
			if tk.Backend.ID() == id {
				s.Done(tk, Success, latency[id], now)
				break
			}
			defer s.Done(tk, Ignore, 0, now)
		}
	}
	counts := map[string]int{}
	type job struct {
		tk  Ticket
		end time.Time
	}
	var inflight []job
	for range 3000 {
		// Six requests in flight: well within the fast pair's room.
		for len(inflight) < 6 {
			tk, ok := s.TryAdmit(&Request{}, now)
			require.True(t, ok)
			counts[tk.Backend.ID()]++
			inflight = append(inflight, job{tk, now.Add(latency[tk.Backend.ID()])})
		}
		first := 0
		for i, j := range inflight {
			if j.end.Before(inflight[first].end) {
				first = i
			}
		}
		j := inflight[first]
		inflight = append(inflight[:first], inflight[first+1:]...)
		now = j.end
		s.Done(j.tk, Success, latency[j.tk.Backend.ID()], now)
	}
	total := counts["0"] + counts["1"] + counts["2"]
	t.Logf("shares: %v of %d", counts, total)
	assert.Less(t, float64(counts["2"])/float64(total), 0.05, "the slow backend takes the overflow only")
	assert.InDelta(t, counts["0"], counts["1"], float64(total)/10, "the fast pair share evenly")
}

// TestAddBackendCapped: a backend added with a cap takes no more of the
// queue than the cap at once, and the cap lifts like any other.
func TestAddBackendCapped(t *testing.T) {
	s := newTestScheduler(t, Config{Limit: LimitSpec{Kind: LimitStatic, N: 64}, QueueTimeout: time.Minute}, 1, simEpoch)
	require.NoError(t, s.SetBackendCap("0", 1, simEpoch))
	got := map[string]int{}
	s.OnDecision(func(w *Waiter, tk Ticket, err error) {
		require.NoError(t, err)
		got[tk.Backend.ID()]++
	})
	_, ok := s.TryAdmit(&Request{}, simEpoch)
	require.True(t, ok)
	for range 10 {
		_, err := s.Arrive(&Request{}, &Waiter{}, simEpoch)
		require.NoError(t, err)
	}
	require.Equal(t, 10, s.Queued())
	_, err := s.AddBackendCapped("standby", "tag", 1, simEpoch)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"standby": 1}, got, "one request, not 64")
	require.NoError(t, s.SetBackendCap("standby", 4, simEpoch))
	require.Equal(t, map[string]int{"standby": 4}, got)
	_, err = s.AddBackendCapped("standby", nil, 1, simEpoch)
	require.ErrorIs(t, err, ErrDuplicateBackend)
	_, err = s.AddBackendCapped("other", nil, -1, simEpoch)
	require.Error(t, err)
}

// TestFullnessCountsInChoice: a backend a little faster than another is
// preferred only until it is fuller by enough to make one more request
// finish later there (a processor-sharing origin slows as it fills); it
// does not take everything up to its limit.
func TestFullnessCountsInChoice(t *testing.T) {
	s := newTestScheduler(t, Config{Limit: LimitSpec{Kind: LimitStatic, N: 8}}, 2, simEpoch)
	for _, c := range []struct {
		id  string
		lat time.Duration
	}{{"0", 10 * time.Millisecond}, {"1", 14 * time.Millisecond}} {
		for {
			tk, ok := s.TryAdmit(&Request{}, simEpoch)
			require.True(t, ok)
			if tk.Backend.ID() == c.id {
				s.Done(tk, Success, c.lat, simEpoch)
				break
			}
			defer s.Done(tk, Ignore, 0, simEpoch)
		}
	}
	counts := map[string]int{}
	for range 8 {
		tk, ok := s.TryAdmit(&Request{}, simEpoch)
		require.True(t, ok)
		counts[tk.Backend.ID()]++
		defer s.Done(tk, Ignore, 0, simEpoch)
	}
	// 10ms × (1 + 4/8) = 15ms > 14ms: the fifth request goes to the
	// slower one; of eight, 6 and 2 (latency alone would give 8 and 0).
	assert.Equal(t, map[string]int{"0": 6, "1": 2}, counts)
}
