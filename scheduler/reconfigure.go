package scheduler

import (
	"fmt"
	"time"
)

// This file is how a running scheduler changes: backends come and go
// (reload, the admin API, standby activation), change state (health,
// ejection, an operator) and weight, and the policy is replaced, all in
// place. Queued requests keep their place, their class and their deadline;
// surviving backends keep their learned limit and baseline.

// AddBackend adds a backend known by id, up, with a fresh limiter. tag is
// the caller's handle for it, returned by Backend.Tag. Adding a backend
// that is draining brings it back with what it learned (and keeps its old
// tag); one drained and forgotten less than rememberFor ago gets a new
// record (with tag) that takes up its limiter and latency. It is an error
// to add one already present.
func (s *Scheduler) AddBackend(id string, tag any, now time.Time) (*Backend, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.cap.add(id, tag, now)
	if err != nil {
		return nil, err
	}
	s.releaseLocked(now)
	return b, nil
}

// AddBackendCapped is AddBackend with the backend's cap (SetBackendCap)
// in force before it is offered a request: a backend brought in under
// slow start (a standby) must not be handed a whole limit's worth of the
// queue the moment it is added. limit 0 is no cap.
func (s *Scheduler) AddBackendCapped(id string, tag any, limit int, now time.Time) (*Backend, error) {
	if limit < 0 {
		return nil, fmt.Errorf("scheduler: backend %q: cap must be >= 0, got %d", id, limit)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.cap.add(id, tag, now)
	if err != nil {
		return nil, err
	}
	b.cap = limit
	s.releaseLocked(now)
	return b, nil
}

// RemoveBackend drains a backend: it gets no new request, and leaves the
// scheduler once what it has in flight is done (BackendInflight tells).
// Requests queued for the service stay queued for the other backends;
// when none is left up they are refused with ErrNoBackend.
func (s *Scheduler) RemoveBackend(id string, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.activeLocked(id)
	if err != nil {
		return err
	}
	s.cap.drain(b, now)
	s.afterCapacityChangeLocked(now)
	return nil
}

// SetBackendState marks an active backend up or down (health checks,
// ejection, an operator's disable). When the last backend goes down, every
// queued request is refused with ErrNoBackend rather than left to time
// out. StateDraining is RemoveBackend's business and is refused here.
func (s *Scheduler) SetBackendState(id string, st BackendState, now time.Time) error {
	if st != StateUp && st != StateDown {
		return fmt.Errorf("scheduler: backend %q: cannot set state %v", id, st)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.activeLocked(id)
	if err != nil {
		return err
	}
	if s.cap.setState(b, st) {
		s.afterCapacityChangeLocked(now)
	}
	return nil
}

// SetBackendWeight sets a backend's relative share of traffic (1 is
// everyone's default): among backends with room, the one with the least
// in flight per unit of limit × weight is chosen. weight must be > 0.
func (s *Scheduler) SetBackendWeight(id string, weight float64) error {
	if !(weight > 0) {
		return fmt.Errorf("scheduler: backend %q: weight must be > 0, got %v", id, weight)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.activeLocked(id)
	if err != nil {
		return err
	}
	b.weight = weight
	return nil
}

// SetBackendCap bounds a backend's concurrency limit from above (an agent
// reporting a hot CPU, an operator's fixed limit); 0 removes the bound.
// The limiter keeps learning underneath.
func (s *Scheduler) SetBackendCap(id string, limit int, now time.Time) error {
	if limit < 0 {
		return fmt.Errorf("scheduler: backend %q: cap must be >= 0, got %d", id, limit)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.activeLocked(id)
	if err != nil {
		return err
	}
	b.cap = limit
	s.releaseLocked(now)
	return nil
}

// BackendInflight is the number of requests a backend has in flight, and
// whether the scheduler still knows it (a drained backend is forgotten
// once its last request is done).
func (s *Scheduler) BackendInflight(id string) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.cap.byID[id]
	if !ok {
		return 0, false
	}
	return b.inflight, true
}

// Reconfigure replaces the policy and the set of backends in place.
// Backends in backends that the scheduler has, or forgot less than
// rememberFor ago, keep their limiter (a limit of another kind starts
// afresh; bounds apply at once), new ones are added, and those not named
// are drained as by RemoveBackend. Queued requests keep their place and
// expiry; a smaller QueueMax only refuses newcomers, and new tenant
// weights apply to tenants as they next join the queue. On an error
// nothing has changed.
func (s *Scheduler) Reconfigure(cfg Config, backends []BackendSpec, now time.Time) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	want := make(map[string]bool, len(backends))
	for _, b := range backends {
		if b.ID == "" {
			return fmt.Errorf("scheduler: backend with an empty ID")
		}
		if want[b.ID] {
			return fmt.Errorf("scheduler: backend %q: %w", b.ID, ErrDuplicateBackend)
		}
		want[b.ID] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setPolicyLocked(cfg.WithDefaults())
	s.cap.retune(now)
	for _, b := range append([]*Backend(nil), s.cap.active...) {
		if !want[b.id] {
			s.cap.drain(b, now)
		}
	}
	for _, spec := range backends {
		if b, ok := s.cap.byID[spec.ID]; ok && b.state != StateDraining {
			continue
		}
		if _, err := s.cap.add(spec.ID, spec.Tag, now); err != nil {
			return err // cannot happen: IDs were checked above
		}
	}
	s.afterCapacityChangeLocked(now)
	return nil
}

// afterCapacityChangeLocked hands out new room, or refuses everything
// queued when no backend is left up.
func (s *Scheduler) afterCapacityChangeLocked(now time.Time) {
	if s.cap.nUp == 0 {
		for len(s.expiry) > 0 {
			s.refuseLocked(s.expiry[0], ErrNoBackend, true)
		}
		return
	}
	s.releaseLocked(now)
}

func (s *Scheduler) activeLocked(id string) (*Backend, error) {
	b, ok := s.cap.byID[id]
	if !ok || b.state == StateDraining {
		return nil, fmt.Errorf("scheduler: backend %q: %w", id, ErrUnknownBackend)
	}
	return b, nil
}

func (b *Backend) stats() BackendStats {
	st := BackendStats{
		ID: b.id, State: b.state, Inflight: b.inflight, Parked: b.parked(), Limit: b.effectiveLimit(),
		Cap: b.cap, Weight: b.weight, Latency: b.latency,
	}
	if a, ok := b.lim.(interface{ baselineRTT() time.Duration }); ok {
		st.Baseline = a.baselineRTT()
	}
	return st
}

// What a removed backend learned outlives its drain for a while. Whether
// the drain is over when the backend comes back is an accident of timing
// and load: swapped out and back by reloads (an operator's revert, a
// flapping endpoint), a backend still draining resumes with its limit,
// while one already forgotten, as it is at once when nothing was in flight
// on it, would start again from the initial limit and a baseline probe
// that holds it at LimitMin: about a second at a fraction of its capacity,
// in which the other backends must absorb its share or the queue sheds.
// Back within rememberFor, a backend resumes as if it had stayed.

// rememberFor is how long a forgotten backend's learning is kept: the
// limiter's own re-measuring period, within which it would not have
// re-measured the baseline of a backend that stayed either.
const rememberFor = defaultProbeEvery

// maxRemembered bounds that memory when backend IDs churn (endpoints that
// come back under new addresses): the oldest is dropped first.
const maxRemembered = 256

// remember keeps b, just forgotten, for recall.
func (bs *backendSet) remember(b *Backend) {
	if bs.recent == nil {
		bs.recent = make(map[string]*Backend)
	}
	for id, old := range bs.recent {
		if b.goneAt.Sub(old.goneAt) >= rememberFor {
			delete(bs.recent, id)
		}
	}
	if len(bs.recent) >= maxRemembered {
		var oldest *Backend
		for _, old := range bs.recent {
			if oldest == nil || old.goneAt.Before(oldest.goneAt) {
				oldest = old
			}
		}
		delete(bs.recent, oldest.id)
	}
	bs.recent[b.id] = b
}

// recall returns the backend forgotten under id less than rememberFor
// before now, and forgets it for good: its learning passes to the new
// record.
func (bs *backendSet) recall(id string, now time.Time) *Backend {
	old, ok := bs.recent[id]
	if !ok {
		return nil
	}
	delete(bs.recent, id)
	if now.Sub(old.goneAt) >= rememberFor {
		return nil
	}
	return old
}
