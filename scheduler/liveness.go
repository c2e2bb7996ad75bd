package scheduler

import "time"

// Liveness probes: a backend whose slots are all held by requests that
// have not finished, with requests queued for it, says nothing the
// limiter can learn from, and it may be hung or it may be holding long
// polls. Giving it a queued request as a probe (parked.go) answers slowly
// and at a client's expense: when every request is a long poll, the probe
// is one more long poll, and 40 long polls arriving together at a fresh
// backend saw 35 of theirs time out in the queue. So the caller, which can
// send requests of its own, is asked for a probe out of band
// (WantsProbe): a cheap request on a fresh connection. Its answer
// (Alive) is the proof parked.go asks for, so that old requests park
// without a client's request completing; and when it came back while
// nothing else finished, every request in flight outlived a fresh one,
// which is no sign of a busy backend: a limit still in slow start doubles,
// as for a window that used it all with flat latency. A hung backend
// answers no probe and gains nothing.

// probeQuietMin is the shortest time without a completion before a full
// backend is probed: under a fraction of any queue timeout, and long
// enough that a busy backend completing requests at its usual pace is
// never probed (the quiet time is also at least twice its latency).
const probeQuietMin = 20 * time.Millisecond

// WantsProbe reports whether backend id should be sent a liveness probe
// at now: it is up, its limit is adaptive, all of it is taken, requests
// are queued, and nothing has finished on it for a while.
func (s *Scheduler) WantsProbe(id string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.cap.byID[id]
	if !ok || s.queued == 0 || b.state != StateUp || b.limKind.Kind == LimitStatic {
		return false
	}
	n := now.UnixNano()
	if b.occupancy(n) < b.effectiveLimit() {
		return false
	}
	quiet := max(probeQuietMin, 2*b.latency)
	return n-b.ages.lastServed >= int64(quiet)
}

// Alive tells that a liveness probe sent to backend id at sent was
// answered at now, and hands out the room it made.
func (s *Scheduler) Alive(id string, sent, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.cap.byID[id]
	if !ok || b.limKind.Kind == LimitStatic {
		return
	}
	n := now.UnixNano()
	b.rotate(n)
	if b.ages.lastServed < sent.UnixNano() && b.occupancy(n) >= b.effectiveLimit() {
		b.lim.outlived()
	}
	b.ages.lastDone = n
	b.ages.probeEvery = 0
	if s.queued > 0 {
		s.releaseLocked(now)
	}
}
