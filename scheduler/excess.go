package scheduler

import "time"

// This file is the bound of a class's queue under a persistent overload,
// however mild. The overload test of overloadedLocked waits for half a
// queue timeout of work, which an excess of 10% of the capacity takes
// seconds to build, and until then the backlog is served oldest first:
// every request of a 1.1× load waited up to 250 ms (7.7× the unloaded
// p99 in the simulation's sweep). So the queue of a class with a
// persistent excess is held at a target delay instead (targetDelayLocked,
// about one service time), and what would wait longer is refused at
// arrival, in no time, rather than queued for a late service or a late
// refusal.
//
// Persistent is judged on the backlog the class would have had without
// refusals: the requests queued (in the class and those before it) plus
// the excess, the requests of those classes refused for want of capacity
// (at arrival, timed out or shed) that the backends have not since had
// idle room for. The excess drains only while nothing of those classes
// waits, at the rate of the room left idle (Σ free slots/latency): a
// backlog that persists is the integral of arrivals beyond the drain,
// whatever the refusals did to the real queue. The real queue alone
// cannot say that the overload goes on once it is held short (the latch
// of overloadedLocked needs its own rules for that), and a rate compared
// with a rate can not either: in a closed loop arrivals equal
// completions, and any error of the estimate reads as an overload.
//
// The threshold is a count, not a time: under Poisson arrivals below
// capacity the queue's tail falls by about a factor e per 1/(2(1−ρ))
// requests whatever the backends' speed, so standingBacklog requests are
// as rare at 0.9× on 4 workers as on 64, where they are a few
// milliseconds of work and an overload is caught within a fraction of a
// second.

// standingBacklog is the shadow backlog (queued plus excess, in requests)
// at which a class's queue is held at the target delay; it is let go at
// half of it.
const standingBacklog = 40

// targetDelayFactor times the backends' recent latency is the target
// delay of a held queue.
const targetDelayFactor = 0.8

// settleExcessLocked drains the excess of every class that had nothing
// waiting since the last event, by the room the backends left idle. Call
// it at every event before the queue or the slots change.
func (s *Scheduler) settleExcessLocked(now time.Time) {
	any := false
	for c := range s.classes {
		any = any || s.classes[c].excess > 0
	}
	dt := now.Sub(s.excessAt).Seconds()
	s.excessAt = now
	if !any || dt <= 0 {
		return
	}
	idle := 0.0
	n := now.UnixNano()
	for _, b := range s.cap.active {
		if b.state != StateUp || b.latency <= 0 {
			continue
		}
		if free := b.effectiveLimit() - b.occupancy(n); free > 0 {
			idle += float64(free) / b.latency.Seconds()
		}
	}
	queued := 0
	for c := range s.classes {
		cq := &s.classes[c]
		queued += cq.n
		if queued == 0 && cq.excess > 0 {
			cq.excess = max(0, cq.excess-idle*dt)
		}
	}
}

// noteExcessLocked counts one request of class c refused for want of
// capacity, in the shadow backlog of c and of every class after it.
func (s *Scheduler) noteExcessLocked(c Class) {
	for k := int(c); k < NumClasses; k++ {
		s.classes[k].excess = min(s.classes[k].excess+1, s.excessCapLocked(Class(k)))
	}
}

// heldLocked reports whether class c's queue is held at the target delay:
// its shadow backlog reached the overload threshold of overloadedLocked
// (half the class's queue timeout of work) and standingBacklog requests,
// while the backends were found at their capacity, and has not yet
// fallen under half of that.
func (s *Scheduler) heldLocked(c Class, now time.Time) bool {
	cq := &s.classes[c]
	queued := 0
	for i := 0; i <= int(c); i++ {
		queued += s.classes[i].n
	}
	rate := s.cap.drainRate()
	if rate <= 0 {
		return cq.held
	}
	shadow := float64(queued) + cq.excess
	threshold := max(standingBacklog, rate*s.timeouts[c].Seconds()/2)
	if !cq.held {
		d := s.targetDelayLocked()
		cq.held = d > 0 && shadow >= threshold && s.cap.saturated() && s.cap.drainTime(queued) >= d.Seconds()
		return cq.held
	}
	if shadow < threshold/2 {
		cq.held = false
	}
	return cq.held
}

// targetDelayLocked is how long a request may wait in a held queue: about
// one service time of the fastest backend up, 0 before any latency is
// known.
func (s *Scheduler) targetDelayLocked() time.Duration {
	var d time.Duration
	for _, b := range s.cap.active {
		if b.state == StateUp && b.latency > 0 && (d == 0 || b.latency < d) {
			d = b.latency
		}
	}
	return time.Duration(float64(d) * targetDelayFactor)
}

// saturated reports whether every backend up runs at its capacity
// (limiter.saturated) or at the cap set on it: a backlog is then the
// backends' and not a limit's still finding them.
func (bs *backendSet) saturated() bool {
	any := false
	for _, b := range bs.active {
		if b.state != StateUp || b.latency <= 0 {
			continue
		}
		if !(b.cap > 0 && b.cap <= b.lim.limit()) && !b.lim.saturated() {
			return false
		}
		any = true
	}
	return any
}

// excessCapLocked bounds the excess of class c at the hold's threshold:
// once an overload ends, the hold lets go after the backends have had
// idle room for half of it.
func (s *Scheduler) excessCapLocked(c Class) float64 {
	return max(standingBacklog, s.cap.drainRate()*s.timeouts[c].Seconds()/2)
}

// beyondHoldLocked reports whether a new request of tenant t in class c
// is refused by the hold: the class is held, its backlog (with the classes
// before it) is already the target delay's worth of work, and t is a flood
// (its backlog passed sparseMax and has not emptied since) or alone in the
// class, and the class is not also overloaded (overloadedLocked: adaptive
// LIFO and its stale shed serve a heavy overload with a lower tail than a
// queue bounded at arrival). A tenant within its share waits in the sparse ring, ahead of the
// floods, and is never refused for them: refusing whoever held the most
// refused 15–20% of the tenants within their share while another sent ten
// times its own, since a flood held short looks no heavier than they do.
func (s *Scheduler) beyondHoldLocked(t *tenant, c Class, now time.Time) bool {
	if n := t.q[c].n; n == 0 || !t.flooded[c] && n < s.classes[c].n || !s.heldLocked(c, now) || s.classes[c].over {
		return false
	}
	queued := 0
	for i := 0; i <= int(c); i++ {
		queued += s.classes[i].n
	}
	return s.cap.drainTime(queued+1) > s.targetDelayLocked().Seconds()
}

// heldStaleLocked is how long a request may have waited in a held queue
// before it is shed instead of served: twice the target delay, and no
// less than StandingTimeout.
func (s *Scheduler) heldStaleLocked() time.Duration {
	return max(s.cfg.StandingTimeout, 2*s.targetDelayLocked())
}
