package scheduler

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// This file simulates a closed-loop client — a fixed number of
// connections, each sending its next request as soon as the last one is
// answered, like wrk — in front of a backend whose latency a function
// gives. It is the load of the CPU comparison with HAProxy and nginx
// (scripts/bench-compare.sh), where the queue never empties and the
// latencies are well under a millisecond.

type closedSpec struct {
	cfg     Config
	clients int
	dur     time.Duration
	seed    uint64
	// latency of a request started at now with inflight requests on the
	// backend (itself included).
	latency func(now time.Duration, inflight int, rng *rand.Rand) time.Duration
}

type closedResult struct {
	done       int           // successful responses
	queued     int           // admissions that waited in the queue
	lastQueued time.Duration // last admission from the queue
	refused    map[error]int // refusals by reason
	limit      int           // the backend's limit at the end
	maxWait    time.Duration // longest wait in the queue
}

func runClosed(tb testing.TB, spec closedSpec) *closedResult {
	tb.Helper()
	at := func(d time.Duration) time.Time { return simEpoch.Add(d) }
	s := newTestScheduler(tb, spec.cfg, 1, at(0))
	rng := rand.New(rand.NewPCG(spec.seed, 0xc105ed))
	type job struct {
		client int
		ticket Ticket
		end    time.Duration
	}
	var (
		now     time.Duration
		jobs    []job
		waiting = map[*Waiter]int{}
		// wake is when each client sends its next request; -1 while its
		// request is queued or in service.
		wake = make([]time.Duration, spec.clients)
		res  = &closedResult{refused: map[error]int{}}
	)
	s.SetClock(func() time.Time { return at(now) })
	start := func(c int, t Ticket) {
		lat := spec.latency(now, len(jobs)+1, rng) // the jobs in service are the backend's in-flight requests, this one included
		jobs = append(jobs, job{client: c, ticket: t, end: now + lat})
	}
	s.OnDecision(func(w *Waiter, t Ticket, err error) {
		c := waiting[w]
		delete(waiting, w)
		if err == nil {
			res.queued++
			res.lastQueued = now
			res.maxWait = max(res.maxWait, now-w.Arrived().Sub(simEpoch))
			start(c, t)
			return
		}
		res.refused[err]++
		wake[c] = now + time.Millisecond // a refused client tries again soon
	})
	for {
		tNext, kind, idx := time.Duration(math.MaxInt64), 0, -1
		for c, t := range wake {
			if t >= 0 && t < tNext {
				tNext, kind, idx = t, 1, c
			}
		}
		for j := range jobs {
			if jobs[j].end < tNext {
				tNext, kind, idx = jobs[j].end, 2, j
			}
		}
		if e, ok := s.NextExpiry(); ok {
			if t := e.Sub(simEpoch); t < tNext {
				tNext, kind = max(t, now), 3
			}
		}
		if tNext > spec.dur {
			break
		}
		now = tNext
		switch kind {
		case 1:
			wake[idx] = -1
			r := Request{Class: Normal, Tenant: 1}
			t, w, err := simArrive(s, &r, at(now))
			switch {
			case err != nil:
				res.refused[err]++
				wake[idx] = now + time.Millisecond
			case w == nil:
				start(idx, t)
			default:
				waiting[w] = idx
			}
		case 2:
			j := jobs[idx]
			jobs[idx] = jobs[len(jobs)-1]
			jobs = jobs[:len(jobs)-1]
			res.done++
			wake[j.client] = now
			s.Done(j.ticket, Success, now-j.ticket.Start.Sub(simEpoch), at(now))
		case 3:
			s.Expire(at(now))
		}
	}
	res.limit = s.Stats().Backends[0].Limit
	return res
}

// fastOriginLatency is a sub-millisecond origin with room to spare, as
// the gateway measures it on one core: 100 µs of service plus 25 µs of
// the gateway's own CPU queue per request in flight (0.9 ms at 32 in
// flight, as measured against nginx `return 200`), jittered ±50%, and one
// request in a hundred delayed 2 ms (a GC pause, a lost time slice).
func fastOriginLatency(_ time.Duration, inflight int, rng *rand.Rand) time.Duration {
	d := time.Duration(float64(100*time.Microsecond+time.Duration(inflight)*25*time.Microsecond) * (0.5 + rng.Float64()))
	if rng.IntN(100) == 0 {
		d += 2 * time.Millisecond
	}
	return d
}

// TestFastOriginNotThrottled: in front of a fast origin whose capacity is
// far above the offered concurrency, the adaptive limiters must grow to
// cover all 32 clients, so that after the start nothing waits in the queue
// and nothing is refused. Before latencySlack the gradient limit sat at
// 3–7 and nearly every request went through the queue: the latency rise
// it reacted to was the gateway's own, not the backend's.
func TestFastOriginNotThrottled(t *testing.T) {
	const clients = 32
	for _, kind := range []LimitKind{LimitAdaptive, LimitAIMD, LimitVegas} {
		t.Run(LimitSpec{Kind: kind}.String(), func(t *testing.T) {
			for seed := uint64(1); seed <= 2; seed++ {
				r := runClosed(t, closedSpec{
					cfg:     Config{Limit: LimitSpec{Kind: kind}},
					clients: clients, dur: 2 * time.Second, seed: seed,
					latency: fastOriginLatency,
				})
				t.Logf("seed %d: %d done, limit %d, %d queued (last at %v), refused %v",
					seed, r.done, r.limit, r.queued, r.lastQueued, r.refused)
				if len(r.refused) != 0 {
					t.Errorf("seed %d: refused %v, want none", seed, r.refused)
				}
				if r.limit < clients {
					t.Errorf("seed %d: limit %d, want >= %d clients", seed, r.limit, clients)
				}
				if r.lastQueued > 500*time.Millisecond {
					t.Errorf("seed %d: requests still queued at %v, want none after the start", seed, r.lastQueued)
				}
			}
		})
	}
}

// TestClosedLoopNotShedAfterStall: a closed-loop client keeps the queue
// non-empty for good (32 connections, a limit of 8). One stall — the
// backend answers the requests started in a 10 ms window after 300 ms —
// makes the backlog look like an overload (the drain rate collapses for a
// moment). The overload must be let go once the backlog is short again:
// latched, newest first starved the oldest connections until they timed
// out, 503s in front of an origin with room to spare.
func TestClosedLoopNotShedAfterStall(t *testing.T) {
	r := runClosed(t, closedSpec{
		cfg:     Config{Limit: LimitSpec{Kind: LimitStatic, N: 8}},
		clients: 32, dur: 3 * time.Second, seed: 1,
		latency: func(now time.Duration, _ int, _ *rand.Rand) time.Duration {
			if now >= 500*time.Millisecond && now < 510*time.Millisecond {
				return 300 * time.Millisecond
			}
			return 100 * time.Microsecond
		},
	})
	t.Logf("%d done, %d queued, longest wait %v, refused %v", r.done, r.queued, r.maxWait, r.refused)
	if len(r.refused) != 0 {
		t.Errorf("refused %v, want none", r.refused)
	}
}
