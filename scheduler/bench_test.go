package scheduler

import (
	"context"
	"sync"
	"testing"
	"time"
)

// BenchmarkFastPath is TryAdmit + Done with nobody waiting.
func BenchmarkFastPath(b *testing.B) {
	s, _ := New(Config{}, 4)
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
	s, _ := New(Config{}, 4)
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
	s, _ := newAt(Config{Limit: LimitSpec{Kind: LimitStatic, N: 1}, QueueMax: 1 << 20, QueueTimeout: time.Hour}, 1, simEpoch)
	now := simEpoch
	var held Ticket
	var free []*waiter
	s.onFinish = func(w *waiter) {
		if w.state == granted {
			held = w.ticket
		}
		free = append(free, w)
	}
	held, _ = s.TryAdmit(&Request{}, now)
	for i := range 5000 {
		r := Request{Tenant: uint64(i % 100), Class: Class(i % NumClasses)}
		s.mu.Lock()
		s.arriveLocked(&r, now, &waiter{})
		s.mu.Unlock()
	}
	for range 64 {
		free = append(free, &waiter{})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r := Request{Tenant: uint64(i % 100), Class: Class(i % NumClasses)}
		w := free[len(free)-1]
		free = free[:len(free)-1]
		*w = waiter{}
		s.mu.Lock()
		s.arriveLocked(&r, now, w)
		s.mu.Unlock()
		s.Done(held, Success, time.Millisecond, now)
		i++
	}
}

// BenchmarkAdmitQueued is the blocking Admit through the queue with
// thousands waiting: each iteration is one Admit that queues and is
// released by a Done on another goroutine.
func BenchmarkAdmitQueued(b *testing.B) {
	const waiting = 2000
	s, _ := New(Config{Limit: LimitSpec{Kind: LimitStatic, N: 1}, QueueMax: 1 << 20, QueueTimeout: time.Hour}, 1)
	hold, _ := s.TryAdmit(&Request{}, time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// A standing crowd of low-priority waiters, canceled at the end.
	for range waiting {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if tk, err := s.Admit(ctx, &Request{Class: Low}); err == nil {
				s.Done(tk, Ignore, 0, time.Now())
			}
		}()
	}
	for s.Stats().Queued[Low] < waiting {
		time.Sleep(time.Millisecond)
	}
	tickets := make(chan Ticket, 1)
	b.ReportAllocs()
	b.ResetTimer()
	go func() { tickets <- hold }()
	for range b.N {
		tk := <-tickets
		done := make(chan struct{})
		go func() {
			t2, err := s.Admit(context.Background(), &Request{Class: Critical})
			if err != nil {
				panic(err)
			}
			tickets <- t2
			close(done)
		}()
		for !queuedCritical(s) {
			// spin until queued
		}
		s.Done(tk, Success, time.Millisecond, time.Now())
		<-done
	}
	b.StopTimer()
	s.Done(<-tickets, Ignore, 0, time.Now())
	cancel()
	wg.Wait()
}

func queuedCritical(s *Scheduler) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.classes[Critical].n > 0
}
