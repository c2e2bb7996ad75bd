package proxy

import (
	"fmt"
	"reflect"
	"slices"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/sluiceproxy/sluice/cache"
	"github.com/sluiceproxy/sluice/monitor"
	"github.com/sluiceproxy/sluice/pool"
	"github.com/sluiceproxy/sluice/scheduler"
)

// liveConfig is the part of the configuration a reload may change, compiled
// for the request path. It is immutable once published: a reload builds a
// new one and swaps the pointer (as grpc-go's pickers are swapped), and a
// request keeps the one it loaded at arrival for its whole life.
type liveConfig struct {
	cfg      Config
	routes   []route
	fallback *route // when no routes are configured: the first service
	classify classifier
}

// service is a group of redundant backends and the scheduler in front of
// them. It outlives reloads that keep its name: its scheduler is
// reconfigured in place, so its queue and its backends' learned limits
// stay.
type service struct {
	// Immutable.
	name  string
	sched *scheduler.Scheduler
	mon   *monitor.Service // watches the backends, sets their state on sched, decides standbys
	feed  standbyFeed      // what the standby decisions are fed (standby.go)
	// retries bounds the requests sent to a second backend.
	retries *retryBudget
	// hedges counts the service's hedges (hedge.go); lat is the latency
	// of all its backends together, for a backend with too few samples of
	// its own.
	hedges hedgeCounters
	lat    latencyQuantiles

	// Protected by Server.reloadMu.
	upstreams map[string]*upstream // by backend ID: the backends and the active standbys
	leaving   map[string]*upstream // removed, draining; revived if added back
	pcfg      pool.Config          // the pool settings in force, for standbys brought in
	// cache is the service's cache, nil while none of its routes caches;
	// it outlives reloads that keep one, resized in place.
	cache *cache.Cache
}

// upstream is one backend of a service: the scheduler's record of it and
// its channel pool. The scheduler hands it back with every ticket (its
// Tag), so the request path needs no lookup.
type upstream struct {
	// Immutable.
	id string
	sb *scheduler.Backend

	// The pool is replaced when a reload changes its settings; a request
	// loads it once per attempt.
	pool atomic.Pointer[pool.Backend]

	// Protected by Server.reloadMu.
	pcfg   pool.Config
	leaves int         // how many times it was removed: a drain closes only its own
	mode   BackendMode // an operator's drain or disable (runtime.go)

	probing atomic.Bool // a liveness probe is running (liveness.go)

	// lat is the backend's recent latency, which hedges wait on
	// (latency.go); it outlives reloads with the upstream.
	lat latencyQuantiles
}

func upstreamOf(t scheduler.Ticket) *upstream { return t.Backend.Tag().(*upstream) }

// Reload applies a new configuration while traffic flows: routes,
// services, backends, queue policies, limits, timeouts, pool settings and
// classification. Services and backends are matched by name and URL:
// those that stay keep their queue, learned limits and pooled
// connections; new backends warm their pool before they take requests;
// removed ones drain (nothing new, in-flight requests finish, then the
// pool closes, within ShutdownGrace). An invalid configuration is refused
// with the error and the running one stays in force.
//
// The TLS certificates are read again from their files, before anything
// else is applied: one that does not load refuses the reload, and the
// running set stays in force.
//
// The listen addresses (plain and TLS), the oldest TLS version, the client
// header timeout and idle timeout, the header size limit and the log
// settings are fixed when the listener starts; a reload that changes them
// applies the rest and logs what needs a restart.
func (s *Server) Reload(cfg Config) error {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return fmt.Errorf("proxy: server is shut down")
	}
	for _, f := range restartOnly(s.start, cfg) {
		s.log.Warn().Str("setting", f).Msg("reload: this setting changes only with a restart; the running value stays")
	}
	certs, err := s.tls.reloadable(cfg.TLS)
	if err != nil {
		return err
	}
	if err := s.apply(cfg, time.Now()); err != nil {
		return err
	}
	if certs != nil {
		s.tls.certs.Store(certs)
	}
	return nil
}

// ReloadFrom computes a configuration with load and applies it with
// Reload, and reports the result as an event either way: SIGHUP and the
// admin API's reload both come here, so both are counted and logged
// alike, a file that does not load as much as one that does not apply.
// It returns the configuration now in force when it was applied.
func (s *Server) ReloadFrom(load func() (Config, error)) (Config, error) {
	cfg, err := load()
	if err == nil {
		err = s.Reload(cfg)
	}
	if err != nil {
		s.emit(zerolog.ErrorLevel, "reload refused: the running configuration stays in force",
			Event{Kind: EventReloadFailed, Error: err.Error()}, nil)
		return Config{}, err
	}
	s.emit(zerolog.InfoLevel, "reloaded", Event{Kind: EventReload}, nil)
	return s.rt.Load().cfg, nil
}

// restartOnly lists the settings that differ between a and b and that a
// reload cannot change.
func restartOnly(a, b Config) []string {
	var out []string
	add := func(name string, changed bool) {
		if changed {
			out = append(out, name)
		}
	}
	add("listen", a.Listen != b.Listen)
	add("tls.listen", a.TLS.Listen != b.TLS.Listen)
	add("tls.min_version", a.TLS.MinVersion != b.TLS.MinVersion)
	add("timeouts.client_header", a.Timeouts.ClientHeader != b.Timeouts.ClientHeader)
	add("timeouts.idle", a.Timeouts.Idle != b.Timeouts.Idle)
	add("limits.max_header_bytes", a.Limits.MaxHeaderBytes != b.Limits.MaxHeaderBytes)
	add("buffering.memory_max", a.Buffering.MemoryMax != b.Buffering.MemoryMax)
	add("buffering.disk_max", a.Buffering.DiskMax != b.Buffering.DiskMax)
	add("buffering.temp_dir", a.Buffering.TempDir != b.Buffering.TempDir)
	add("clients", a.Clients != b.Clients)
	la, lb := a.Log, b.Log
	la.AccessWriter, lb.AccessWriter = nil, nil
	add("log", !reflect.DeepEqual(la, lb))
	return out
}

// apply builds or reconfigures every service of cfg (validated, defaults
// applied), publishes the new runtime, and retires what cfg no longer
// names.
func (s *Server) apply(cfg Config, now time.Time) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	return s.applyLocked(cfg, now)
}

// applyLocked is apply with reloadMu held: the admin's runtime changes
// derive the next configuration from the running one under the same
// lock, so that two changes cannot lose each other.
func (s *Server) applyLocked(cfg Config, now time.Time) error {
	keep := make(map[string]*service, len(cfg.Services))
	for _, sc := range cfg.Services {
		svc, err := s.configureService(sc, now)
		if err != nil {
			return err
		}
		keep[sc.Name] = svc
	}
	rt := &liveConfig{cfg: cfg, classify: newClassifier(cfg.Classify)}
	caches := configureCaches(cfg, keep)
	for _, rc := range cfg.Routes {
		r := newRoute(rc, keep[rc.Service], hostRewriteOf(cfg, rc.Service), cfg.Buffering)
		r.cache = caches.forRoute(rc)
		r.hedge = newHedgePolicy(hedgeOf(cfg, rc))
		rt.routes = append(rt.routes, r)
	}
	if len(rt.routes) == 0 {
		first := cfg.Services[0].Name
		fb := newRoute(RouteConfig{Service: first}, keep[first], hostRewriteOf(cfg, first), cfg.Buffering)
		fb.cache = caches.forRoute(RouteConfig{Service: first})
		fb.hedge = newHedgePolicy(&cfg.Hedge)
		rt.fallback = &fb
	}
	s.rt.Store(rt)
	for name, svc := range s.services {
		if keep[name] != svc {
			s.retireService(svc, cfg.ShutdownGrace)
		}
	}
	s.services = keep
	return nil
}

func hostRewriteOf(cfg Config, name string) []byte {
	for _, sc := range cfg.Services {
		if sc.Name == name && sc.HostRewrite != "" {
			return []byte(sc.HostRewrite)
		}
	}
	return nil
}

// configureService returns the service named sc.Name with sc applied: the
// existing one reconfigured in place, or a new one.
func (s *Server) configureService(sc ServiceConfig, now time.Time) (*service, error) {
	qcfg, pcfg, mcfg := *sc.Queue, *sc.Pool, *sc.Monitor // WithDefaults gave every service all three
	svc := s.services[sc.Name]
	if svc == nil {
		sched, err := scheduler.New(qcfg)
		if err != nil {
			return nil, fmt.Errorf("service %q: %w", sc.Name, err)
		}
		svc = &service{name: sc.Name, sched: sched,
			upstreams: make(map[string]*upstream), leaving: make(map[string]*upstream)}
		svc.mon = monitor.NewService(sc.Name, mcfg, sched, s.monitorEvent)
		svc.retries = newRetryBudget()
	}
	// The backends: those configured, and the active standbys that stay
	// standbys (one moved to the backends is just a backend now; one
	// removed altogether drains like any removed backend).
	ids := append(slices.Clone(sc.Backends), standbyIDs(svc, sc)...)
	specs := make([]scheduler.BackendSpec, 0, len(ids))
	var added []*upstream
	for _, id := range ids {
		u := svc.upstreams[id]
		if u == nil {
			u = svc.leaving[id] // back before its drain ended: as it was
		}
		if u == nil {
			u = &upstream{id: id}
			p, err := s.newPool(sc.Name, id, pcfg)
			if err != nil {
				for _, a := range added {
					a.pool.Load().Close()
				}
				return nil, err
			}
			u.pool.Store(p)
			u.pcfg = pcfg
			added = append(added, u)
		}
		specs = append(specs, scheduler.BackendSpec{ID: id, Tag: u})
	}
	if err := svc.sched.Reconfigure(qcfg, specs, now); err != nil {
		for _, a := range added {
			a.pool.Load().Close()
		}
		return nil, fmt.Errorf("service %q: %w", sc.Name, err)
	}
	svc.mon.SetStandbys(sc.Standby)
	svc.mon.Reconfigure(mcfg, ids, func(id string) monitor.Target {
		for _, sp := range specs {
			if sp.ID == id {
				return targetOf(sp.Tag.(*upstream).pool.Load())
			}
		}
		addr, _ := backendAddr(id) // validated; listed in specs anyway
		return monitor.Target{Addr: addr}
	}, now)
	svc.pcfg = pcfg
	wanted := make(map[string]*upstream, len(specs))
	for _, sp := range specs {
		wanted[sp.ID] = sp.Tag.(*upstream)
	}
	for id, u := range svc.upstreams {
		if wanted[id] == nil {
			s.leaveLocked(svc, u)
		}
	}
	for id, u := range wanted {
		delete(svc.leaving, id)
		svc.upstreams[id] = u
	}
	for _, id := range ids {
		u := svc.upstreams[id]
		if !slices.Contains(added, u) && !samePoolConfig(u.pcfg, pcfg) {
			// New pool settings: new requests take a new pool; the old
			// one closes once what it carries is done.
			p, err := s.newPool(sc.Name, id, pcfg)
			if err != nil {
				return nil, err // validated: cannot happen
			}
			old := u.pool.Swap(p)
			u.pcfg = pcfg
			s.retirePool(old, s.graceOf())
		}
	}
	return svc, nil
}

// leaveLocked moves u, just removed from the scheduler, to the backends
// leaving svc, and closes its pool once its drain is over. Called with
// reloadMu held.
func (s *Server) leaveLocked(svc *service, u *upstream) {
	delete(svc.upstreams, u.id)
	svc.leaving[u.id] = u
	u.leaves++
	u.mode = ModeEnabled // the monitor forgets the override with the backend
	s.drainUpstream(svc, u, u.leaves, s.graceOf())
}

// graceOf is the drain bound of the running configuration.
func (s *Server) graceOf() time.Duration {
	if rt := s.rt.Load(); rt != nil {
		return rt.cfg.ShutdownGrace
	}
	return s.start.ShutdownGrace
}

func (s *Server) newPool(svc, id string, pcfg pool.Config) (*pool.Backend, error) {
	addr, https, _ := parseBackend(id) // validated
	newBackend := pool.NewBackend
	if https {
		newBackend = pool.NewTLSBackend
	}
	p, err := newBackend(addr, pcfg)
	if err != nil {
		return nil, fmt.Errorf("service %q backend %q: %w", svc, id, err)
	}
	if err := p.Warm(); err != nil {
		// Not fatal: a backend may start after the gateway. The pool
		// keeps trying, and requests see the failures.
		s.log.Warn().Err(err).Str("service", svc).Str("backend", id).Msg("warming connections failed")
	}
	return p, nil
}

// targetOf is where the monitor's health checks of p go: its address, and
// its TLS client configuration for an https:// backend, so that a check
// verifies the backend as its requests do.
func targetOf(p *pool.Backend) monitor.Target {
	return monitor.Target{Addr: p.Addr(), TLS: p.TLSConfig()}
}

// drainPoll is how often a retiring pool or service is checked for work
// still in flight.
const drainPoll = 20 * time.Millisecond

// retirePool closes a pool that was replaced once no request uses it, or
// after grace.
func (s *Server) retirePool(p *pool.Backend, grace time.Duration) {
	s.retired.Add(1)
	go func() {
		defer s.retired.Done()
		waitUntil(grace, func() bool { return p.Stats().InFlight == 0 })
		p.Close()
	}()
}

// drainUpstream closes the pool of a removed backend once the scheduler
// has nothing of it in flight, or after grace, unless the backend was
// added back meanwhile (its leaves count moved on).
func (s *Server) drainUpstream(svc *service, u *upstream, leave int, grace time.Duration) {
	s.retired.Add(1)
	go func() {
		defer s.retired.Done()
		waitUntil(grace, func() bool {
			n, _ := svc.sched.BackendInflight(u.id)
			return n == 0 && u.pool.Load().Stats().InFlight == 0
		})
		s.reloadMu.Lock()
		gone := svc.leaving[u.id] == u && u.leaves == leave
		if gone {
			delete(svc.leaving, u.id)
		}
		s.reloadMu.Unlock()
		if gone {
			u.pool.Load().Close()
		}
	}()
}

// waitUntil polls done until it holds or grace has passed.
func waitUntil(grace time.Duration, done func() bool) {
	deadline := time.Now().Add(grace)
	for !done() && time.Now().Before(deadline) {
		time.Sleep(drainPoll)
	}
}

// retireService lets a service that a reload removed finish what it has
// queued and in flight (no new request reaches it: no route leads there),
// then closes its pools. Called with reloadMu held.
func (s *Server) retireService(svc *service, grace time.Duration) {
	s.retiring[svc] = true
	s.retired.Add(1)
	go func() {
		defer s.retired.Done()
		waitUntil(grace, svc.idle)
		svc.mon.Close()
		s.reloadMu.Lock()
		delete(s.retiring, svc)
		svc.close()
		s.reloadMu.Unlock()
	}()
}

// idle reports whether nothing waits in the service's queue and nothing is
// in flight on its backends.
func (svc *service) idle() bool {
	st := svc.sched.Stats()
	if st.Queued != [scheduler.NumClasses]int{} {
		return false
	}
	for _, b := range st.Backends {
		if b.Inflight > 0 {
			return false
		}
	}
	return true
}

// closePools closes every pool, of the services in use and of those
// still retiring (Shutdown).
func (s *Server) closePools() {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.poolsClosed = true // a standby still warming closes its own
	for _, svc := range s.services {
		svc.mon.Close()
		svc.close()
	}
	for svc := range s.retiring {
		svc.mon.Close()
		svc.close()
	}
}

// monitorTick is how often the monitors and schedulers move time on
// (ejections ending, slow starts, long-lived requests parking, probes of a
// stalled backend, liveness probes).
const monitorTick = 100 * time.Millisecond

// tickMonitors runs until stop is closed.
func (s *Server) tickMonitors(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(monitorTick)
	defer t.Stop()
	var svcs []*service
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			s.reloadMu.Lock()
			svcs = svcs[:0]
			for _, svc := range s.services {
				svcs = append(svcs, svc)
			}
			live := len(svcs)
			for _, svc := range svcs {
				s.stepLiveness(svc, now)
			}
			for svc := range s.retiring {
				svcs = append(svcs, svc)
			}
			s.reloadMu.Unlock()
			for i, svc := range svcs {
				svc.mon.Tick(now)
				svc.sched.Tick(now)
				if i < live {
					s.stepStandby(svc, now)
				}
			}
		}
	}
}

// close closes the pools of every backend of svc, those leaving too.
// Called with reloadMu held.
func (svc *service) close() {
	for _, u := range svc.upstreams {
		u.pool.Load().Close()
	}
	for _, u := range svc.leaving {
		u.pool.Load().Close()
	}
}

// samePoolConfig compares pool settings; Dial (set by tests and benchmarks,
// never by a file) does not count.
func samePoolConfig(a, b pool.Config) bool {
	a.Dial, b.Dial = nil, nil
	return reflect.DeepEqual(a, b)
}
