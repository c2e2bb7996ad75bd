package monitor

import (
	"math"
	"slices"
	"sync"
	"time"

	"github.com/sluiceproxy/sluice/monitor/agent"
	"github.com/sluiceproxy/sluice/scheduler"
)

// Capacity is what the monitor acts on: the capacity side of a service's
// scheduler (scheduler.Scheduler implements it).
type Capacity interface {
	SetBackendState(id string, st scheduler.BackendState, now time.Time) error
	SetBackendCap(id string, limit int, now time.Time) error
	LearnedLimit(id string) (int, bool)
}

// EventKind names what happened to a backend, or to a service's capacity.
type EventKind uint8

// The events the monitor reports.
const (
	EventEjected      EventKind = iota // outlier ejection began
	EventReturned                      // an ejection ended; slow start follows
	EventUnhealthy                     // the active health check failed Fall times
	EventHealthy                       // the active health check passed Rise times
	EventActivated                     // a standby backend was brought in
	EventReleased                      // an active standby was let go (it drains)
	EventNeedCapacity                  // QoS fell and no standby is left to bring in
	numEventKinds
)

var eventNames = [...]string{"ejected", "returned", "unhealthy", "healthy", "activated", "released", "need_capacity"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) {
		return eventNames[k]
	}
	return "invalid"
}

// Event is one change of a backend's standing, or of the service's
// capacity, for the event log.
type Event struct {
	Time    time.Time
	Service string
	Backend string // "" for need_capacity
	Kind    EventKind
	Reason  string        // why, in a few words
	For     time.Duration // an ejection's length
	Figures *Figures      // the QoS behind a standby event; nil for the others
}

// BackendQoS is one backend's record in a Snapshot.
type BackendQoS struct {
	ID           string
	Up           bool // neither ejected nor failing its health check
	Ejected      bool
	EjectedUntil time.Time
	Ejections    int // the current ejection multiplier
	Healthy      bool
	Latency      time.Duration // EWMA of successful requests
	Requests     int           // in the current and previous interval
	Failures     int
	Consecutive  int       // failures in a row
	SlowStart    bool      // ramping up after coming back
	LastCheck    time.Time // zero without an active health check
	// From the backend's agent; AgentAge < 0 when there is no sample.
	AgentCPU   float64
	AgentState string
	AgentAge   time.Duration
	AgentError string // why the last poll failed, if it did
	CPUCap     int    // the concurrency cap the CPU rule sets; 0 = none
	// An operator's override (SetOperator).
	OperatorDown  bool
	OperatorLimit int
}

// Service watches the backends of one service: it takes a report of every
// finished attempt (Report), ejects outliers, runs the active health check,
// and sets each backend up or down, and its slow-start cap, on the
// scheduler (Capacity). It is pure but for the health-check goroutines:
// every decision takes now, and Tick moves time on (ejections ending, slow
// start, decay).
//
// Lock order: Service.mu, then the scheduler's lock (through Capacity);
// the scheduler never calls back.
type Service struct {
	// Immutable.
	name    string
	capa    Capacity
	onEvent func(Event)

	mu sync.Mutex
	// Protected by mu.
	cfg      Config
	backends map[string]*backendQoS
	order    []*backendQoS // in configuration order
	counts   [numEventKinds]uint64
	standby  *Standby
	closed   bool
}

// backendQoS is what the monitor knows of one backend. Protected by
// Service.mu.
type backendQoS struct {
	id          string
	consecutive int
	cur, prev   window
	windowStart time.Time
	latency     time.Duration

	ejected      bool
	ejectedUntil time.Time
	ejections    int
	lastDecay    time.Time

	healthy    bool
	passes     int // in a row, while unhealthy
	fails      int // in a row, while healthy
	lastCheck  time.Time
	checker    *periodic // nil without an active health check
	poller     *periodic // nil without an agent
	load       agent.Load
	loadErr    string
	agentDown  bool // as last published: the agent said down or drain
	down       bool // as last published
	slowSince  time.Time
	publishCap int

	// An operator's override (the admin API): opDown keeps the backend
	// out of rotation whatever its health says, opLimit > 0 caps its
	// concurrency.
	opDown  bool
	opLimit int
}

type window struct{ requests, failures int }

// NewService returns the monitor of the service name, acting on capa.
// onEvent, when set, is told of every event, under the monitor's lock: it
// must not call back.
func NewService(name string, cfg Config, capa Capacity, onEvent func(Event)) *Service {
	return &Service{
		name: name, cfg: cfg.WithDefaults(), capa: capa, onEvent: onEvent,
		backends: make(map[string]*backendQoS), standby: NewStandby(cfg),
	}
}

// Reconfigure sets the policy and the backends: those named keep their
// record, new ones start healthy with nothing learned, missing ones are
// forgotten (and their health checks stop). target maps a backend to
// where its health check goes.
func (s *Service) Reconfigure(cfg Config, ids []string, target func(id string) Target, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	old := s.cfg
	s.cfg = cfg.WithDefaults()
	s.standby.Reconfigure(s.cfg)
	keep := make(map[string]bool, len(ids))
	s.order = s.order[:0]
	for _, id := range ids {
		keep[id] = true
		b := s.backends[id]
		if b == nil {
			b = &backendQoS{id: id, healthy: true, windowStart: now, lastDecay: now}
			s.backends[id] = b
		}
		s.order = append(s.order, b)
	}
	for id, b := range s.backends {
		if !keep[id] {
			b.stopCheck()
			b.stopPoll()
			delete(s.backends, id)
		}
	}
	agentChanged := !sameAgentConfig(s.cfg.Agent, old.Agent)
	for _, b := range s.order {
		if s.cfg.HealthCheck != old.HealthCheck {
			b.stopCheck()
		}
		if agentChanged {
			b.stopPoll()
			b.load, b.loadErr = agent.Load{}, ""
		}
		if u := agentURL(s.cfg.Agent, b.id, target(b.id).Addr); u != "" && b.poller == nil {
			b.poller = startPoller(s, b.id, u, s.cfg.Agent)
		}
		if s.cfg.HealthCheck.Path != "" && b.checker == nil {
			b.checker = startChecker(s, b.id, target(b.id), s.cfg.HealthCheck)
		}
		if s.cfg.Outlier.Disabled && b.ejected {
			s.returnLocked(b, now, "outlier ejection turned off")
		}
		if s.cfg.HealthCheck.Path == "" && !b.healthy {
			b.healthy = true
			s.eventLocked(b, EventHealthy, "health check turned off", 0, now)
		}
		s.publishLocked(b, now)
	}
}

// AddBackend starts watching one more backend (a standby brought in) in
// slow start. The caller has added it to the scheduler capped at 1
// (scheduler.AddBackendCapped), so that it takes a single request before
// the cap starts doubling; t is where its health check goes. A backend
// already watched is left as it is.
func (s *Service) AddBackend(id string, t Target, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.backends[id] != nil {
		return
	}
	b := &backendQoS{id: id, healthy: true, windowStart: now, lastDecay: now, slowSince: now, publishCap: 1}
	s.backends[id] = b
	s.order = append(s.order, b)
	if s.cfg.HealthCheck.Path != "" {
		b.checker = startChecker(s, id, t, s.cfg.HealthCheck)
	}
	s.publishLocked(b, now)
}

// RemoveBackend stops watching a backend (a standby released); the
// caller drains it from the scheduler.
func (s *Service) RemoveBackend(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.backends[id]
	if b == nil {
		return
	}
	b.stopCheck()
	delete(s.backends, id)
	s.order = slices.DeleteFunc(s.order, func(x *backendQoS) bool { return x == b })
}

// Report takes the result of one attempt on backend id: failed for a 5xx
// from the backend, a connection refused or reset, a timeout or a broken
// response; latency of a success (to its response headers). Reports of a
// backend the monitor does not know are dropped.
func (s *Service) Report(id string, failed bool, latency time.Duration, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.backends[id]
	if b == nil {
		return
	}
	o := &s.cfg.Outlier
	if d := now.Sub(b.windowStart); d >= o.Interval {
		b.prev, b.cur = b.cur, window{}
		if d >= 2*o.Interval {
			b.prev = window{}
		}
		b.windowStart = now
	}
	b.cur.requests++
	if !failed {
		b.consecutive = 0
		if b.latency == 0 {
			b.latency = latency
		} else {
			b.latency += (latency - b.latency) / 8
		}
		return
	}
	b.cur.failures++
	b.consecutive++
	if o.Disabled || b.ejected {
		return
	}
	switch {
	case b.consecutive >= o.ConsecutiveFailures:
		s.ejectLocked(b, now, "consecutive failures")
	case b.rateOver(o):
		s.ejectLocked(b, now, "failure rate")
	}
}

func (b *backendQoS) rateOver(o *OutlierConfig) bool {
	n := b.cur.requests + b.prev.requests
	f := b.cur.failures + b.prev.failures
	return n >= o.MinRequests && float64(f) >= o.FailureRate*float64(n)
}

// Tick ends ejections that are due, moves slow starts on and decays the
// ejection multipliers of backends that behave.
func (s *Service) Tick(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := &s.cfg.Outlier
	for _, b := range s.order {
		if b.ejected && !now.Before(b.ejectedUntil) {
			s.returnLocked(b, now, "ejection time over")
		}
		if !b.ejected && b.ejections > 0 && now.Sub(b.lastDecay) >= o.Interval {
			b.ejections--
			b.lastDecay = now
		}
		s.publishLocked(b, now)
	}
}

// ejectLocked takes b out of rotation, unless the bound on ejected
// backends forbids it or b is the last backend taking traffic.
func (s *Service) ejectLocked(b *backendQoS, now time.Time, reason string) {
	o := &s.cfg.Outlier
	ejected, up := 0, 0
	for _, x := range s.order {
		if x.ejected {
			ejected++
		}
		if !x.down && x != b {
			up++
		}
	}
	allowed := max(1, int(math.Floor(float64(len(s.order))*o.MaxEjectedPercent/100)))
	if ejected+1 > allowed || up == 0 {
		return
	}
	b.ejections++
	d := min(time.Duration(b.ejections)*o.BaseEjectionTime, o.MaxEjectionTime)
	b.ejected, b.ejectedUntil, b.lastDecay = true, now.Add(d), now
	// What got it ejected must not eject it again the moment it is back.
	b.consecutive, b.cur, b.prev, b.windowStart = 0, window{}, window{}, now
	s.eventLocked(b, EventEjected, reason, d, now)
	s.publishLocked(b, now)
}

func (s *Service) returnLocked(b *backendQoS, now time.Time, reason string) {
	b.ejected = false
	b.lastDecay = now
	s.eventLocked(b, EventReturned, reason, 0, now)
	s.publishLocked(b, now)
}

// healthResult takes one active check's outcome.
func (s *Service) healthResult(id string, ok bool, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.backends[id]
	if b == nil || s.closed {
		return
	}
	h := &s.cfg.HealthCheck
	b.lastCheck = now
	switch {
	case ok && b.healthy:
		b.fails = 0
	case ok:
		if b.passes++; b.passes >= h.Rise {
			b.healthy, b.passes = true, 0
			s.eventLocked(b, EventHealthy, "health check passed", 0, now)
		}
	case b.healthy:
		if b.fails++; b.fails >= h.Fall {
			b.healthy, b.fails = false, 0
			s.eventLocked(b, EventUnhealthy, "health check failed", 0, now)
		}
	default:
		b.passes = 0
	}
	s.publishLocked(b, now)
}

// publishLocked sets b's state and concurrency cap on the scheduler when
// they changed.
func (s *Service) publishLocked(b *backendQoS, now time.Time) {
	fresh := s.agentFresh(b, now)
	agentDown := fresh && b.load.State != agent.StateUp
	if agentDown != b.agentDown {
		b.agentDown = agentDown
		if agentDown {
			s.eventLocked(b, EventUnhealthy, "agent reports "+string(b.load.State)+": "+b.load.Error, 0, now)
		} else {
			s.eventLocked(b, EventHealthy, "agent no longer reports down", 0, now)
		}
	}
	down := b.ejected || !b.healthy || agentDown || b.opDown
	if down != b.down {
		if !down && b.down {
			b.slowSince = now
		}
		b.down = down
		st := scheduler.StateUp
		if down {
			st = scheduler.StateDown
		}
		_ = s.capa.SetBackendState(b.id, st, now) // unknown: already removed
	}
	c := 0
	if !b.slowSince.IsZero() {
		c = slowStartCap(now.Sub(b.slowSince), s.cfg.Outlier.SlowStart)
		if c == 0 {
			b.slowSince = time.Time{}
		}
	}
	if cc := s.cpuCap(b, fresh); cc > 0 && (c == 0 || cc < c) {
		c = cc
	}
	if b.opLimit > 0 && (c == 0 || b.opLimit < c) {
		c = b.opLimit
	}
	if c != b.publishCap {
		b.publishCap = c
		_ = s.capa.SetBackendCap(b.id, c, now)
	}
}

// slowStartCap is the concurrency cap of a backend elapsed into a slow
// start of length total: 1, doubling ten times over total (1024 at the
// end, by which point the learned limit governs), then none (0).
func slowStartCap(elapsed, total time.Duration) int {
	if total <= 0 || elapsed >= total {
		return 0
	}
	return 1 << int(10*elapsed/total)
}

func (s *Service) eventLocked(b *backendQoS, k EventKind, reason string, d time.Duration, now time.Time) {
	s.emitLocked(Event{Time: now, Service: s.name, Backend: b.id, Kind: k, Reason: reason, For: d})
}

func (s *Service) emitLocked(e Event) {
	s.counts[e.Kind]++
	if s.onEvent != nil {
		s.onEvent(e)
	}
}

// SetStandbys sets the service's standby backends, in the order they are
// to be brought in, and returns the active ones still listed (see
// Standby.SetListed).
func (s *Service) SetStandbys(ids []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.standby.SetListed(ids)
}

// StandbyActive are the active standbys, in activation order: those a
// Step activated, whether or not the caller has finished bringing them in.
func (s *Service) StandbyActive() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.standby.Active()
}

// DropStandby forgets an activation the caller could not carry out.
func (s *Service) DropStandby(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.standby.Drop(id)
}

// StandbyStep feeds the service's sample of the period ending at now to
// its standby decisions (standby.go) and returns the decision, which the
// caller carries out; every decision is also an event (activated,
// released, need_capacity), counted and told to onEvent.
func (s *Service) StandbyStep(now time.Time, smp Sample) StandbyDecision {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.standby.Step(now, smp)
	var kind EventKind
	switch d.Action {
	case StandbyActivate:
		kind = EventActivated
	case StandbyRelease:
		kind = EventReleased
	case StandbyNeedCapacity:
		kind = EventNeedCapacity
	default:
		return d
	}
	if !s.closed {
		f := d.Figures
		s.emitLocked(Event{Time: now, Service: s.name, Backend: d.Backend, Kind: kind, Reason: d.Reason, Figures: &f})
	}
	return d
}

// Config is the policy in force, defaults applied.
func (s *Service) Config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Events is how many events of each kind there have been.
func (s *Service) Events() map[EventKind]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[EventKind]uint64, numEventKinds)
	for k, n := range s.counts {
		m[EventKind(k)] = n
	}
	return m
}

// Snapshot is every backend's record, in configuration order.
func (s *Service) Snapshot() []BackendQoS {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]BackendQoS, 0, len(s.order))
	for _, b := range s.order {
		out = append(out, BackendQoS{
			ID: b.id, Up: !b.down, Ejected: b.ejected, EjectedUntil: b.ejectedUntil,
			Ejections: b.ejections, Healthy: b.healthy, Latency: b.latency,
			Requests: b.cur.requests + b.prev.requests, Failures: b.cur.failures + b.prev.failures,
			Consecutive: b.consecutive, SlowStart: !b.slowSince.IsZero(), LastCheck: b.lastCheck,
			AgentCPU: b.load.CPU, AgentState: string(b.load.State), AgentAge: b.agentAge(now),
			AgentError: b.loadErr, CPUCap: s.cpuCap(b, s.agentFresh(b, now)),
			OperatorDown: b.opDown, OperatorLimit: b.opLimit,
		})
	}
	return out
}

// SetOperator applies an operator's override to backend id: down keeps it
// out of rotation (a drain or a disable) whatever its health says, and
// limit > 0 caps its concurrency (0 lifts the cap). It goes through the
// monitor rather than straight to the scheduler because the monitor is
// the one place that combines every opinion about a backend's state and
// cap: set on the scheduler directly, the override would be undone by the
// next ejection ending or health check passing. False when the monitor
// does not know id.
func (s *Service) SetOperator(id string, down bool, limit int, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.backends[id]
	if b == nil || s.closed {
		return false
	}
	b.opDown, b.opLimit = down, limit
	s.publishLocked(b, now)
	return true
}

// Close stops the health checks. The monitor takes no reports after it.
func (s *Service) Close() {
	s.mu.Lock()
	s.closed = true
	var polls []*periodic
	for _, b := range s.backends {
		for _, p := range []**periodic{&b.checker, &b.poller} {
			if *p != nil {
				polls = append(polls, *p)
				*p = nil
			}
		}
	}
	s.mu.Unlock()
	for _, p := range polls {
		p.stop()
	}
}

func (b *backendQoS) stopCheck() {
	if b.checker != nil {
		b.checker.stopAsync()
		b.checker = nil
	}
}
