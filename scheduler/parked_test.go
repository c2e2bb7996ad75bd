package scheduler

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// drive is a scheduler on a fake clock that records the decisions on the
// requests it queued.
type drive struct {
	t       *testing.T
	s       *Scheduler
	now     time.Time
	granted map[*Waiter]Ticket
	refused map[*Waiter]error
}

func newDrive(t *testing.T, cfg Config, backends int) *drive {
	d := &drive{t: t, now: simEpoch, granted: map[*Waiter]Ticket{}, refused: map[*Waiter]error{}}
	d.s = newTestScheduler(t, cfg, backends, d.now)
	d.s.SetClock(func() time.Time { return d.now })
	d.s.OnDecision(func(w *Waiter, tk Ticket, err error) {
		if err != nil {
			d.refused[w] = err
			return
		}
		d.granted[w] = tk
	})
	return d
}

func (d *drive) advance(by time.Duration) {
	d.now = d.now.Add(by)
	d.s.Tick(d.now)
}

// admit asks for a slot now; it returns the ticket if admitted at once,
// else the waiter queued for it.
func (d *drive) admit() (Ticket, *Waiter) {
	d.t.Helper()
	w := &Waiter{}
	tk, err := d.s.Arrive(&Request{}, w, d.now)
	require.NoError(d.t, err)
	if w.Queued() {
		return Ticket{}, w
	}
	return tk, nil
}

// TestLongPollsDoNotStarveQuickRequests: with every slot held by long
// polls, a quick request is given a probe slot once they are old enough
// to park; its completion proves the backend works, the long polls stop
// counting, and quick requests flow again, all before any queue timeout.
func TestLongPollsDoNotStarveQuickRequests(t *testing.T) {
	d := newDrive(t, Config{LimitMax: 4, QueueTimeout: time.Second}, 1)
	var polls []Ticket
	for range 4 {
		tk, w := d.admit()
		require.Nil(t, w)
		polls = append(polls, tk)
	}
	_, w := d.admit()
	require.NotNil(t, w, "every slot is held")
	for i := 0; i < 3 && d.granted[w].Backend == nil; i++ {
		d.advance(100 * time.Millisecond)
	}
	quick, ok := d.granted[w]
	require.True(t, ok, "the long polls are old: the quick request gets a probe slot within %v", parkMin+100*time.Millisecond)
	d.advance(5 * time.Millisecond)
	d.s.Done(quick, Success, 5*time.Millisecond, d.now)

	// Proof given: the long polls are parked, and the backend takes
	// quick requests at its full limit.
	st := d.s.Stats().Backends[0]
	assert.Equal(t, 4, st.Parked)
	for range 4 {
		tk, w := d.admit()
		require.Nil(t, w, "room again")
		d.s.Done(tk, Success, 5*time.Millisecond, d.now)
	}
	var held []Ticket
	for range 4 {
		tk, w := d.admit()
		require.Nil(t, w)
		held = append(held, tk)
	}
	_, w = d.admit()
	assert.NotNil(t, w, "the limit still binds the requests that are not parked")
	for _, tk := range held {
		d.s.Done(tk, Success, 5*time.Millisecond, d.now)
	}
	last, ok := d.granted[w]
	require.True(t, ok, "released when a slot freed")
	d.s.Done(last, Success, 5*time.Millisecond, d.now)
	for _, tk := range polls {
		d.s.Done(tk, Success, 20*time.Second, d.now)
	}
	assert.Equal(t, 0, d.s.Stats().Backends[0].Inflight)
	assert.Empty(t, d.refused)
}

// TestHungBackendGetsFewProbes: a backend on which every request hangs
// never proves it works, so its requests never park; it is given one
// probe at a time, at intervals that double, not a request for every one
// that hangs.
func TestHungBackendGetsFewProbes(t *testing.T) {
	d := newDrive(t, Config{LimitMax: 4, QueueTimeout: time.Hour, StandingTimeout: time.Hour}, 1)
	for range 4 {
		_, w := d.admit()
		require.Nil(t, w)
	}
	var waiting []*Waiter
	for range 100 {
		_, w := d.admit()
		require.NotNil(t, w)
		waiting = append(waiting, w)
	}
	for range 300 { // 30 s
		d.advance(100 * time.Millisecond)
	}
	probes := len(d.granted)
	t.Logf("%d probes in 30 s", probes)
	assert.GreaterOrEqual(t, probes, 3, "a stalled backend is still probed")
	assert.LessOrEqual(t, probes, 8, "probes back off: a hung backend is no sink")
	assert.Equal(t, 0, d.s.Stats().Backends[0].Parked, "no proof, no parking")
}

// TestStaticLimitIsHard: a static limit is the operator's bound; old
// requests never park past it and no probe goes over it.
func TestStaticLimitIsHard(t *testing.T) {
	d := newDrive(t, Config{Limit: LimitSpec{Kind: LimitStatic, N: 1}, QueueTimeout: time.Hour, StandingTimeout: time.Hour}, 1)
	held, w := d.admit()
	require.Nil(t, w)
	_, w = d.admit()
	require.NotNil(t, w)
	for range 100 {
		d.advance(100 * time.Millisecond)
	}
	assert.Empty(t, d.granted, "10 s later the second request still waits")
	d.s.Done(held, Success, 10*time.Second, d.now)
	assert.Len(t, d.granted, 1)
}
