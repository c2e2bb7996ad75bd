package scheduler

import "time"

// This file is the non-blocking face of the scheduler, for callers that
// drive it on their own clock: simulations, the data-driven tests, an
// event loop. Admit is built from the same pieces, with a goroutine parked
// on a channel and a timer; here the caller gets the decision of a queued
// request from the OnDecision hook instead, and moves time itself with
// Expire and the now arguments.

// OnDecision sets fn to be told, under the scheduler's lock, of the
// decision on every request queued by Arrive: a ticket, or the reason it
// was refused. fn must not call back into the scheduler. Set it before use.
func (s *Scheduler) OnDecision(fn func(w *Waiter, t Ticket, err error)) { s.onDecision = fn }

// Arrive admits r at once (a ticket), refuses it (an error), or queues it
// in w (w.Queued reports true; the decision comes later through the
// OnDecision hook). w must not be reused before its decision.
func (s *Scheduler) Arrive(r *Request, w *Waiter, now time.Time) (Ticket, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	*w = Waiter{}
	return s.arriveLocked(r, now, w)
}

// Queued reports whether the request is waiting for a decision.
func (w *Waiter) Queued() bool { return w.tenant != nil }

// Arrived is when the request arrived.
func (w *Waiter) Arrived() time.Time { return w.arrived }

// Cancel takes a queued request out of the queue (its client went away);
// the decision, ErrCanceled, reaches OnDecision like any other.
func (s *Scheduler) Cancel(w *Waiter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.Queued() {
		s.refuseLocked(w, ErrCanceled, false)
	}
}

// Queued is the number of requests waiting.
func (s *Scheduler) Queued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queued
}

// NextExpiry is the earliest time at which a queued request times out or
// reaches its deadline, and false when nothing is queued: a caller with its
// own clock calls Expire then.
func (s *Scheduler) NextExpiry() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.expiry) == 0 {
		return time.Time{}, false
	}
	return s.expiry[0].expires, true
}

// Tick moves the scheduler to now without an arrival or a completion:
// it expires what timed out and hands out room that time alone has made
// (a stalled backend's probe coming due, long-lived requests parking).
// The proxy calls it a few times a second.
func (s *Scheduler) Tick(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(now)
	if s.queued > 0 {
		s.releaseLocked(now)
	}
}

// HasOther reports whether a backend other than also and those in exclude
// is up: whether a retry elsewhere has somewhere to go.
func (s *Scheduler) HasOther(exclude []*Backend, also *Backend) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.cap.active {
		if b.state == StateUp && b != also && !excluded(b, exclude) {
			return true
		}
	}
	return false
}

// LearnedLimit is the limit backend id's limiter has learned, before any
// cap: what a cap set from outside (the monitor's CPU rule) scales.
func (s *Scheduler) LearnedLimit(id string) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.cap.byID[id]
	if !ok {
		return 0, false
	}
	return b.lim.limit(), true
}
