package proxy

import (
	"slices"

	"github.com/sluiceproxy/sluice/cache"
	"github.com/sluiceproxy/sluice/monitor"
	"github.com/sluiceproxy/sluice/pool"
	"github.com/sluiceproxy/sluice/scheduler"
)

// ServiceSnapshot is one service as the admin API and the metrics see it:
// the scheduler's queue and counters, and every backend with what the
// scheduler, the monitor and the pool know of it.
type ServiceSnapshot struct {
	Name string
	// Queue is the scheduler's Stats without its Backends (they are in
	// Backends, joined with the rest).
	Queue    scheduler.Stats
	Backends []BackendSnapshot
	Standby  []string // the configured standbys, in the order they are used
	// Cache is the service's cache; nil when no route caches for it.
	Cache *cache.Stats
	// Hedge is the service's hedging so far (every route's).
	Hedge HedgeStats
}

// BackendSnapshot is one backend of a service: configured, an active
// standby, or removed and still draining.
type BackendSnapshot struct {
	ID      string
	Mode    BackendMode // an operator's drain or disable
	Standby bool        // an active standby
	Leaving bool        // removed by a reload or the API, finishing what it has
	Sched   scheduler.BackendStats
	QoS     monitor.BackendQoS // zero when the monitor no longer watches it (Leaving)
	Pool    pool.Stats
}

// Snapshot returns every service of the running configuration, in its
// order. It takes the same locks as a reload, briefly; nothing on the
// request path waits for it.
func (s *Server) Snapshot() []ServiceSnapshot {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	rt := s.rt.Load()
	out := make([]ServiceSnapshot, 0, len(rt.cfg.Services))
	for _, sc := range rt.cfg.Services {
		svc := s.services[sc.Name]
		if svc == nil {
			continue
		}
		out = append(out, svc.snapshotLocked(sc))
	}
	return out
}

// snapshotLocked is svc's snapshot. Called with reloadMu held.
func (svc *service) snapshotLocked(sc ServiceConfig) ServiceSnapshot {
	st := svc.sched.Stats()
	qos := svc.mon.Snapshot()
	active := svc.mon.StandbyActive()
	ss := ServiceSnapshot{Name: svc.name, Queue: st, Standby: slices.Clone(sc.Standby)}
	ss.Queue.Backends = nil
	ss.Hedge = svc.hedges.stats()
	if svc.cache != nil {
		cs := svc.cache.Stats()
		ss.Cache = &cs
	}
	for _, b := range st.Backends {
		bs := BackendSnapshot{ID: b.ID, Sched: b, Standby: slices.Contains(active, b.ID)}
		u := svc.upstreams[b.ID]
		if u == nil {
			u, bs.Leaving = svc.leaving[b.ID], true
		}
		if u != nil {
			bs.Mode = u.mode
			bs.Pool = u.pool.Load().Stats()
		}
		if i := slices.IndexFunc(qos, func(q monitor.BackendQoS) bool { return q.ID == b.ID }); i >= 0 {
			bs.QoS = qos[i]
		}
		ss.Backends = append(ss.Backends, bs)
	}
	return ss
}
