package scheduler

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
)

// BenchmarkFastPath is TryAdmit + Done with nobody waiting.
func BenchmarkFastPath(b *testing.B) {
	s := newTestScheduler(b, Config{}, 4, time.Now())
	r := &Request{Class: Normal}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		tk, ok := s.TryAdmit(r, now)
		if !ok {
			b.Fatal("refused")
		}
		s.Done(tk, Success, time.Millisecond, now)
	}
}

func BenchmarkFastPathParallel(b *testing.B) {
	s := newTestScheduler(b, Config{}, 4, time.Now())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := &Request{Class: Normal}
		for pb.Next() {
			now := time.Now()
			if tk, ok := s.TryAdmit(r, now); ok {
				s.Done(tk, Success, time.Millisecond, now)
			}
		}
	})
}

// BenchmarkQueuedCore is one arrival into and one release from a queue
// holding thousands of requests (pure core, no goroutines).
func BenchmarkQueuedCore(b *testing.B) {
	s := newTestScheduler(b, Config{Limit: LimitSpec{Kind: LimitStatic, N: 1}, QueueMax: 1 << 20, QueueTimeout: time.Hour}, 1, simEpoch)
	now := simEpoch
	var held Ticket
	var free []*Waiter
	s.OnDecision(func(w *Waiter, t Ticket, err error) {
		if err == nil {
			held = t
		}
		free = append(free, w)
	})
	held, _ = s.TryAdmit(&Request{}, now)
	for i := range 5000 {
		r := Request{Tenant: uint64(i % 100), Class: Class(i % NumClasses)}
		s.Arrive(&r, &Waiter{}, now)
	}
	for range 64 {
		free = append(free, &Waiter{})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r := Request{Tenant: uint64(i % 100), Class: Class(i % NumClasses)}
		w := free[len(free)-1]
		free = free[:len(free)-1]
		s.Arrive(&r, w, now)
		s.Done(held, Success, time.Millisecond, now)
		i++
	}
}

// BenchmarkAdmitQueued is the blocking path through the queue with
// thousands waiting: goroutines (8 per CPU) loop on Admit + Done against
// four slots. A standing crowd of low-priority waiters keeps the queue
// non-empty, so no Admit takes the fast path: every one queues, parks on
// its channel and is woken by another goroutine's Done, which hands it the
// freed slot. One op is one queued admission and its release.
func BenchmarkAdmitQueued(b *testing.B) {
	const crowd = 2000
	// No timeouts: closed-loop workers in a standing queue would otherwise
	// be shed by adaptive LIFO, which is right for clients, not for a
	// measurement of the mechanics.
	s := newTestScheduler(b, Config{Limit: LimitSpec{Kind: LimitStatic, N: 4}, QueueMax: 1 << 20,
		QueueTimeout: time.Hour, StandingTimeout: time.Hour}, 1, time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// The crowd: low priority, so released only when no worker waits;
	// one that gets a slot gives it back and queues again, so the crowd
	// stays the same size.
	for range crowd {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				tk, err := s.Admit(ctx, &Request{Class: Low})
				if err != nil {
					return
				}
				s.Done(tk, Ignore, 0, time.Now())
			}
		}()
	}
	for {
		st := s.Stats()
		if st.Queued[Low] >= crowd-4 {
			break
		}
		runtime.Gosched()
	}
	st0 := s.Stats()
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := &Request{Class: Critical}
		for pb.Next() {
			tk, err := s.Admit(context.Background(), r)
			if err != nil {
				b.Error(err)
				return
			}
			s.Done(tk, Success, time.Millisecond, time.Now())
		}
	})
	b.StopTimer()
	st := s.Stats()
	q, f := st.AdmittedQueued-st0.AdmittedQueued, st.AdmittedFast-st0.AdmittedFast
	b.ReportMetric(float64(q)/float64(q+f), "queued/admit")
	cancel()
	wg.Wait()
}
