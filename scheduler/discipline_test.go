package scheduler

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// coreRun drives the pure core (Arrive, Done) on a fake clock and records
// the decisions on queued requests, in order, by name.
type coreRun struct {
	t       *testing.T
	s       *Scheduler
	now     time.Time
	names   map[*Waiter]string
	tickets map[string]Ticket
	decided []string // "name" when admitted, "name refused: reason" otherwise
}

func newCoreRun(t *testing.T, cfg Config, backends int) *coreRun {
	r := &coreRun{t: t, now: simEpoch, names: map[*Waiter]string{}, tickets: map[string]Ticket{}}
	r.s = newTestScheduler(t, cfg, backends, r.now)
	r.s.SetClock(func() time.Time { return r.now })
	r.s.OnDecision(func(w *Waiter, tk Ticket, err error) {
		name := r.names[w]
		delete(r.names, w)
		if err != nil {
			r.decided = append(r.decided, fmt.Sprintf("%s refused: %v", name, err))
			return
		}
		r.tickets[name] = tk
		r.decided = append(r.decided, name)
	})
	return r
}

// arrive offers a request; it reports "admitted" or "queued", and fails
// the test on a refusal.
func (r *coreRun) arrive(name string, req Request) string {
	r.t.Helper()
	w := &Waiter{}
	tk, err := r.s.Arrive(&req, w, r.now)
	require.NoError(r.t, err, "arrive %s", name)
	if w.Queued() {
		r.names[w] = name
		return "queued"
	}
	r.tickets[name] = tk
	return "admitted"
}

// done ends the request name after latency and returns the decisions it
// led to.
func (r *coreRun) done(name string, latency time.Duration) []string {
	r.t.Helper()
	tk, ok := r.tickets[name]
	require.True(r.t, ok, "no ticket %s", name)
	delete(r.tickets, name)
	r.decided = nil
	r.s.Done(tk, Success, latency, r.now)
	return r.decided
}

// TestAdaptiveLIFOOrder: adaptive LIFO serves a short backlog oldest first
// and, once the class is overloaded (more work waiting than the backends
// serve in half a queue timeout), newest first.
func TestAdaptiveLIFOOrder(t *testing.T) {
	r := newCoreRun(t, Config{Limit: LimitSpec{Kind: LimitStatic, N: 1}, Discipline: DisciplineAdaptiveLIFO,
		QueueTimeout: 100 * time.Millisecond}, 1)
	// One request teaches the backend's latency: 10ms a request, so
	// 100/s, and the overload threshold (50ms of work) is 5 waiting.
	require.Equal(t, "admitted", r.arrive("warm", Request{}))
	r.now = r.now.Add(10 * time.Millisecond)
	require.Empty(t, r.done("warm", 10*time.Millisecond))
	require.Equal(t, "admitted", r.arrive("busy", Request{}))

	for i := 1; i <= 3; i++ {
		require.Equal(t, "queued", r.arrive(fmt.Sprintf("q%d", i), Request{}))
	}
	require.Equal(t, []string{"q1"}, r.done("busy", 10*time.Millisecond), "30ms of work: not overloaded, oldest first")

	for i := 4; i <= 8; i++ {
		require.Equal(t, "queued", r.arrive(fmt.Sprintf("q%d", i), Request{}))
	}
	require.Equal(t, []string{"q8"}, r.done("q1", 10*time.Millisecond), "70ms of work: overloaded, newest first")
}

// TestCoDelShedsOnlyFloods: with codel, a standing queue sheds requests
// older than the target, but only from a tenant whose backlog is a flood;
// a tenant within its share is served, however long it waited behind it.
func TestCoDelShedsOnlyFloods(t *testing.T) {
	r := newCoreRun(t, Config{Limit: LimitSpec{Kind: LimitStatic, N: 1}, Discipline: DisciplineCoDel,
		QueueTimeout: time.Second}, 1)
	require.Equal(t, "admitted", r.arrive("busy", Request{}))
	flood, light := TenantKey([]byte("flood")), TenantKey([]byte("light"))
	const floodN = sparseMax + 1 // one past the sparse tier: a flood
	for i := range floodN {
		require.Equal(t, "queued", r.arrive(fmt.Sprintf("f%d", i), Request{Class: Normal, Tenant: flood}))
	}
	require.Equal(t, "queued", r.arrive("light", Request{Class: Normal, Tenant: light}))

	// The queue has stood for longer than CoDelInterval, and every
	// request in it is older than CoDelTarget.
	r.now = r.now.Add(DefaultCoDelInterval + 50*time.Millisecond)
	require.Equal(t, []string{"light"}, r.done("busy", 10*time.Millisecond))

	shed := r.done("light", 10*time.Millisecond)
	require.Len(t, shed, floodN, "the flood's stale requests are shed in one go")
	for _, d := range shed {
		require.Contains(t, d, "refused: "+ErrQueueTimeout.Error())
	}
	require.Zero(t, r.s.Queued())
}

// TestTryAdmitNeverOvertakesTheQueue: the fast path admits only while no
// one waits. A queue can hold requests while a backend has room: its head
// is a retry that must avoid that backend, and waits for another one
// (head-of-line, see releaseLocked). A newcomer still goes behind it, and
// behind the request queued after it.
func TestTryAdmitNeverOvertakesTheQueue(t *testing.T) {
	r := newCoreRun(t, Config{Limit: LimitSpec{Kind: LimitStatic, N: 1}, Discipline: DisciplineFIFO,
		QueueTimeout: time.Second}, 2)
	require.Equal(t, "admitted", r.arrive("a", Request{}))
	require.Equal(t, "admitted", r.arrive("b", Request{}))
	onA := r.tickets["a"].Backend
	require.Equal(t, "queued", r.arrive("retry", Request{Exclude: []*Backend{onA}}))
	require.Equal(t, "queued", r.arrive("next", Request{}))

	require.Empty(t, r.done("a", 10*time.Millisecond), "a's backend is free, but the head of the queue excludes it")
	_, ok := r.s.TryAdmit(&Request{}, r.now)
	require.False(t, ok, "a newcomer took the free slot while two requests wait")

	require.Equal(t, []string{"retry", "next"}, r.done("b", 10*time.Millisecond))
}

// TestCanceledAsGrantedGivesSlotBack: a waiting Admit whose context is
// canceled in the instant its ticket is granted returns ErrCanceled and
// gives the slot back, so the backend is not left a slot short for good.
// The test holds the scheduler's lock across the cancel and the grant, so
// the waiter wakes on its context with the ticket already granted; the
// waiter may still take the ticket instead, if it had not reached its
// select when the context was canceled, hence the repetitions.
func TestCanceledAsGrantedGivesSlotBack(t *testing.T) {
	s := newTestScheduler(t, Config{Limit: LimitSpec{Kind: LimitStatic, N: 1}, QueueTimeout: time.Hour}, 1, time.Now())
	for range 50 {
		hold, ok := s.TryAdmit(&Request{}, time.Now())
		require.True(t, ok)
		ctx, cancel := context.WithCancel(context.Background())
		res := make(chan error, 1)
		go func() {
			tk, err := s.Admit(ctx, &Request{})
			if err == nil {
				s.Done(tk, Ignore, 0, time.Now())
			}
			res <- err
		}()
		require.Eventually(t, func() bool { return s.Queued() == 1 }, 5*time.Second, 100*time.Microsecond)
		time.Sleep(time.Millisecond) // let it park in its select

		s.mu.Lock()
		cancel()
		s.doneLocked(hold, Success, time.Millisecond, time.Now()) // grants the waiter
		s.mu.Unlock()
		err := <-res

		n, _ := s.BackendInflight("0")
		require.Zero(t, n, "slot leaked (Admit returned %v)", err)
		if errors.Is(err, ErrCanceled) {
			return
		}
		require.NoError(t, err)
	}
	t.Fatal("the waiter never woke on its canceled context with a ticket granted")
}

// TestRetryAfter: the time the queue takes to drain at the backends'
// recent rate, bounded by the longest queue timeout (by then everything
// queued now is served or refused).
func TestRetryAfter(t *testing.T) {
	r := newCoreRun(t, Config{Limit: LimitSpec{Kind: LimitStatic, N: 1}, Discipline: DisciplineFIFO,
		QueueTimeout: 10 * time.Second}, 1)
	require.Equal(t, "admitted", r.arrive("warm", Request{}))
	r.now = r.now.Add(time.Second)
	require.Empty(t, r.done("warm", time.Second)) // one slot, 1s each: 1/s
	require.Equal(t, "admitted", r.arrive("busy", Request{}))
	for i := range 5 {
		require.Equal(t, "queued", r.arrive(fmt.Sprintf("q%d", i), Request{}))
	}
	require.Equal(t, 6*time.Second, r.s.RetryAfter(r.now), "five waiting and the one asking, at 1/s")
	for i := 5; i < 15; i++ {
		require.Equal(t, "queued", r.arrive(fmt.Sprintf("q%d", i), Request{}))
	}
	require.Equal(t, 10*time.Second, r.s.RetryAfter(r.now), "bounded by the queue timeout")
}
