package scheduler

import "time"

// nextLocked picks the queued request the discipline would release next,
// or sheds one (CoDel) and returns nil. It does not remove what it returns:
// the caller may find that no backend suits it.
//
// The class comes first (strict priority, bent by minimum shares), then
// the tenant (deficit round robin), and only then the discipline orders
// that tenant's own requests. Shedding and LIFO therefore act within a
// tenant's backlog and can never hand one tenant's turn to another.
func (s *Scheduler) nextLocked(now time.Time) *Waiter {
	c := s.pickClassLocked()
	cq := &s.classes[c]
	t := cq.nextTenant(c)
	l := &t.q[c]
	cq.lastPop = now
	switch s.cfg.Discipline {
	case DisciplineCoDel:
		// Facebook's variant of CoDel: once the queue has not emptied for
		// an interval it is a standing queue, and whatever waited longer
		// than the target is shed from the head instead of served late.
		// Only a backlogged tenant (see tenant.backlogged) has a standing
		// queue of its own; a sparse tenant's request is never shed for the
		// backlog of others (as in FQ-CoDel, per flow).
		w := l.head
		if t.backlogged(c, cq) && cq.standing(now, s.cfg.CoDelInterval) && now.Sub(w.arrived) > s.cfg.CoDelTarget {
			s.refuseLocked(w, ErrQueueTimeout, true)
			return nil
		}
		return w
	case DisciplineAdaptiveLIFO:
		// What a held queue admits waits less than the target delay; a
		// request that waited well past it is the backlog from before
		// the hold, and served oldest first it would set the tail of the
		// whole run (p99 3.6× the unloaded one at 10× on 4 workers, 1.8×
		// when it is shed). Held and overloaded, the stale shed below
		// applies instead.
		if cq.held && !cq.over && (t.backlogged(c, cq) || l.n == cq.n) && now.Sub(l.head.arrived) > s.heldStaleLocked() {
			s.refuseLocked(l.head, ErrQueueTimeout, true)
			return nil
		}
		// While the class is overloaded (overloadedLocked: its backlog is
		// more than the backends can serve in half a queue timeout),
		// serve the newest: it is the one most likely to still have a
		// client waiting and to finish within its deadline, and the old
		// ones behind it time out instead of everyone being served late.
		// Short of that, oldest first: a transient backlog (Poisson load
		// near capacity) is served in time that way, where newest first
		// let its oldest requests time out (0.8% refused at 0.9×).
		//
		// And, as in Facebook's adaptive LIFO with CoDel, an overloaded
		// queue's timeout is short: a request of a flooded tenant that
		// waited longer than StandingTimeout is shed instead of served.
		// LIFO alone only postpones the old requests: when the pressure
		// stops (a burst ends, the load drops) the backlog drains newest
		// first down to requests almost QueueTimeout old, and those make
		// the tail. And it makes their clients wait for nothing: under
		// sustained overload the bottom of the stack is never served, so
		// waiting out QueueTimeout only delays a refusal that is certain
		// (3× end to end: 2 in 3 responses were 503s taking 500 ms).
		// So the stale are shed from the head, the oldest first, at each
		// release decision that reaches the tenant; the loop in
		// releaseLocked comes back here until the head is fresh, and a
		// backlog that is stale all through is shed in one go. Shedding
		// from the head cuts a flood down to the requests of the last
		// StandingTimeout; the tenant still stays in the bulk ring while
		// it is flooded (classQueue.remove), or it would count as sparse
		// again and be served before the tenants within their share.
		//
		// Newest first applies to every tenant of an overloaded class,
		// not only to flooding ones: the order inside a tenant's own
		// backlog is nobody else's business, and a flooding tenant whose
		// backlog was just shed in one go starts again with a short one
		// that must not be served oldest first while it grows. The
		// shedding applies only to a backlogged tenant, so a tenant
		// within its share does not lose requests to someone else's
		// flood.
		//
		// A held class (excess.go) keeps its backlog short, so a lone
		// tenant's never counts as a flood; it is shed from too, or its
		// oldest requests time out after 500 ms under newest first.
		if s.overloadedLocked(c, now) {
			if h := l.head; (t.backlogged(c, cq) || cq.held && l.n == cq.n) && now.Sub(h.arrived) > s.cfg.StandingTimeout {
				cq.lastStale = now
				s.refuseLocked(h, ErrQueueTimeout, true)
				return nil
			}
			return l.tail
		}
		return l.head
	default:
		return l.head
	}
}
