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
func (s *Scheduler) nextLocked(now time.Time) *waiter {
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
		// queue's timeout is short: a request that waited longer than
		// StandingTimeout is shed instead of served. LIFO alone only
		// postpones the old requests: when the pressure stops (a burst
		// ends, the load drops) the backlog drains newest first down to
		// requests almost QueueTimeout old, and those make the tail. The
		// test is on the newest: if it is stale, so is all the rest, and
		// the loop in releaseLocked sheds the backlog in one go. The
		// stale requests behind a fresh newest are left to QueueTimeout
		// rather than shed at once, so that a flooding tenant keeps its
		// long backlog and stays in the bulk ring: shed down to a few
		// requests, it would count as sparse again and be served before
		// the tenants within their share.
		//
		// Newest first applies to every tenant of an overloaded class,
		// not only to flooding ones: the order inside a tenant's own
		// backlog is nobody else's business, and a flooding tenant whose
		// backlog was just shed in one go starts again with a short one
		// that must not be served oldest first while it grows. The
		// shedding applies only to a backlogged tenant, so a tenant
		// within its share does not lose requests to someone else's
		// flood.
		if s.overloadedLocked(c, now) {
			w := l.tail
			if now.Sub(w.arrived) > s.cfg.StandingTimeout && t.backlogged(c, cq) {
				s.refuseLocked(w, ErrQueueTimeout, true)
				return nil
			}
			return w
		}
		return l.head
	default:
		return l.head
	}
}
