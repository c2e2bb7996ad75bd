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
		// Only a tenant with a backlog (bulk ring) has a standing queue
		// of its own; a sparse tenant's request is never shed for the
		// backlog of others (as in FQ-CoDel, per flow).
		w := l.head
		if t.ring[c] == bulkRing && cq.standing(now, s.cfg.CoDelInterval) && now.Sub(w.arrived) > s.cfg.CoDelTarget {
			s.refuseLocked(w, ErrQueueTimeout, true)
			return nil
		}
		return w
	case DisciplineAdaptiveLIFO:
		// While the queue stands, serve the newest: it is the one most
		// likely to still have a client waiting and to finish within its
		// deadline, and the old ones behind it time out instead of
		// everyone being served late.
		if t.ring[c] == bulkRing && cq.standing(now, s.cfg.CoDelInterval) {
			return l.tail
		}
		return l.head
	default:
		return l.head
	}
}
