package scheduler

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"
)

// Scheduler admits requests for one service: it joins the queue of waiting
// requests (classes, tenants, discipline) to the capacity of the service's
// backends (one limiter each). See doc.go for the design.
type Scheduler struct {
	// immutable after New (SetClock is for set-up, before any use)
	clock func() time.Time

	mu sync.Mutex
	// protected by mu; the policy changes only in Reconfigure
	cfg        Config
	weights    map[uint64]int
	timeouts   [NumClasses]time.Duration
	minShare   [NumClasses]float64
	anyShare   bool
	maxTimeout time.Duration
	cap        backendSet
	queued     int
	seq        uint64
	classes    [NumClasses]classQueue
	tenants    map[uint64]*tenant
	free       []*tenant
	heavy      *tenant // a tenant with a large queued/weight; refreshed lazily
	expiry     expiryHeap
	released   [NumClasses]float64 // exponentially decayed releases per class
	excessAt   time.Time           // last settleExcessLocked
	stats      Stats
	// onDecision, when set, is told of every queued request's decision
	// (callers that drive the core on their own clock, see Arrive).
	onDecision func(w *Waiter, t Ticket, err error)
}

// Stats is a snapshot of a scheduler's state and counters, for metrics
// and logs.
type Stats struct {
	Queued   [NumClasses]int
	Tenants  int // tenants with requests queued
	Backends []BackendStats

	// Counters since New.
	AdmittedFast   uint64 // TryAdmit, or Admit without waiting
	AdmittedQueued uint64 // released from the queue
	QueueFull      uint64
	QueueTimeout   uint64
	Deadline       uint64
	TenantShare    uint64
	NoBackend      uint64
	Canceled       uint64
}

// BackendStats is one backend's part of Stats.
type BackendStats struct {
	ID       string
	State    BackendState
	Inflight int
	Parked   int           // of Inflight, long-lived requests not counted against the limit
	Limit    int           // the concurrency limit in force (learned, capped)
	Cap      int           // the ceiling set by SetBackendCap; 0 = none
	Weight   float64       // relative share of traffic
	Latency  time.Duration // recent (EWMA) latency to the response headers
	Baseline time.Duration // learned unloaded latency; 0 = not yet (or static limit)
}

// New returns a scheduler for one service, with no backends yet: add them
// with AddBackend or Reconfigure. Until one is up, every request is refused
// with ErrNoBackend.
func New(cfg Config) (*Scheduler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Scheduler{clock: time.Now, tenants: make(map[uint64]*tenant)}
	s.cap = newBackendSet(&s.cfg)
	s.setPolicyLocked(cfg.WithDefaults())
	return s, nil
}

// SetClock makes the blocking Admit read time from clock instead of
// time.Now (simulations). Call it before the scheduler is used.
func (s *Scheduler) SetClock(clock func() time.Time) { s.clock = clock }

// setPolicyLocked derives the per-class tables from cfg (defaults filled).
func (s *Scheduler) setPolicyLocked(cfg Config) {
	s.cfg = cfg
	s.weights = make(map[uint64]int, len(cfg.TenantWeights))
	for name, w := range cfg.TenantWeights {
		s.weights[TenantKey([]byte(name))] = w
	}
	s.maxTimeout, s.anyShare = 0, false
	for c := range s.timeouts {
		s.timeouts[c] = cfg.QueueTimeout
		if d, ok := cfg.ClassTimeout[Class(c)]; ok {
			s.timeouts[c] = d
		}
		s.maxTimeout = max(s.maxTimeout, s.timeouts[c])
		s.minShare[c] = cfg.ClassMinShare[Class(c)]
		s.anyShare = s.anyShare || s.minShare[c] > 0
	}
}

// Config returns the scheduler's configuration with defaults filled in.
func (s *Scheduler) Config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// TryAdmit admits r at once if no one is waiting and a backend has room.
// It never queues and never allocates. When it fails, the caller goes on to
// Admit, which queues or refuses with a reason.
func (s *Scheduler) TryAdmit(r *Request, now time.Time) (Ticket, bool) {
	s.mu.Lock()
	if s.queued > 0 {
		s.mu.Unlock()
		return Ticket{}, false
	}
	b := s.cap.pick(r.Exclude, now)
	if b == nil {
		s.mu.Unlock()
		return Ticket{}, false
	}
	s.settleExcessLocked(now)
	s.cap.take(b, now)
	s.stats.AdmittedFast++
	s.mu.Unlock()
	return Ticket{Backend: b, Start: now}, true
}

// Admit blocks until r is admitted or refused: it returns a ticket, or one
// of the Err* sentinels. ctx.Done() removes a waiting request (ErrCanceled);
// a ticket granted in the same instant is given back, so a canceled Admit
// never leaves a slot taken.
func (s *Scheduler) Admit(ctx context.Context, r *Request) (Ticket, error) {
	if ctx.Err() != nil {
		return Ticket{}, ErrCanceled
	}
	w := getWaiter()
	now := s.clock()
	s.mu.Lock()
	t, err := s.arriveLocked(r, now, w)
	if err != nil || w.state == granted {
		s.mu.Unlock()
		putWaiter(w)
		return t, err
	}
	wait := w.expires.Sub(now)
	s.mu.Unlock()

	w.timer.Reset(wait)
	select {
	case <-w.ch:
		w.signaled = false // consumed; read below under no lock: w is ours again
	case <-ctx.Done():
		s.mu.Lock()
		switch w.state {
		case waiting:
			s.refuseLocked(w, ErrCanceled, false)
		case granted:
			// Too late to leave the queue: give the slot back unused.
			s.doneLocked(w.ticket, Ignore, 0, s.clock())
			w.state, w.err = refused, ErrCanceled
			s.stats.Canceled++
		}
		sig := w.signaled
		s.mu.Unlock()
		if sig {
			<-w.ch
		}
	case <-w.timer.C:
		s.mu.Lock()
		s.expireLocked(s.clock())
		if w.state == waiting {
			// The timer fired a hair before the clock reached w.expires.
			s.refuseLocked(w, w.expireErr, false)
		}
		sig := w.signaled
		s.mu.Unlock()
		if sig {
			<-w.ch
		}
	}
	w.timer.Stop()
	t, err = w.ticket, w.err
	if w.state != granted {
		t = Ticket{}
	}
	putWaiter(w)
	return t, err
}

// Done returns a ticket's slot. latency is the backend's response time (to
// the response headers), not the time spent streaming the body to a client.
// The freed slot goes to the next queued request at once.
func (s *Scheduler) Done(t Ticket, o Outcome, latency time.Duration, now time.Time) {
	s.mu.Lock()
	s.doneLocked(t, o, latency, now)
	s.mu.Unlock()
}

func (s *Scheduler) doneLocked(t Ticket, o Outcome, latency time.Duration, now time.Time) {
	s.settleExcessLocked(now)
	s.cap.giveBack(t.Backend, o, latency, t.Start, now)
	if s.queued > 0 {
		s.releaseLocked(now)
	}
}

// Expire refuses every queued request whose timeout or deadline has passed
// at now. Admit's own timers do this for blocking callers; Expire is for
// callers that drive the scheduler with their own clock.
func (s *Scheduler) Expire(now time.Time) {
	s.mu.Lock()
	s.expireLocked(now)
	s.mu.Unlock()
}

// RetryAfter is how long a refused client should wait before trying again:
// the time the current queue takes to drain at the backends' recent rate,
// bounded by the longest queue timeout (by then everything queued now has
// been served or refused).
func (s *Scheduler) RetryAfter(now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	rate := s.cap.drainRate()
	if rate <= 0 {
		return s.maxTimeout
	}
	d := time.Duration(float64(s.queued+1) / rate * float64(time.Second))
	return min(max(d, time.Millisecond), s.maxTimeout)
}

// Stats returns a snapshot of the scheduler's state and counters.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	for c := range s.classes {
		st.Queued[c] = s.classes[c].n
	}
	st.Tenants = len(s.tenants)
	st.Backends = make([]BackendStats, 0, len(s.cap.byID))
	for _, b := range s.cap.active {
		st.Backends = append(st.Backends, b.stats())
	}
	n := len(st.Backends)
	for _, b := range s.cap.byID {
		if b.state == StateDraining {
			st.Backends = append(st.Backends, b.stats())
		}
	}
	// Active backends in the order they were added, then the draining
	// ones by ID: the same state always reads the same.
	slices.SortFunc(st.Backends[n:], func(a, b BackendStats) int { return strings.Compare(a.ID, b.ID) })
	return st
}

// arriveLocked admits r at once, queues w for it, or refuses it. On return
// w.state is granted (ticket returned), waiting (queued) or the error is set.
func (s *Scheduler) arriveLocked(r *Request, now time.Time, w *Waiter) (Ticket, error) {
	s.settleExcessLocked(now)
	if len(s.expiry) > 0 && !now.Before(s.expiry[0].expires) {
		s.expireLocked(now)
	}
	if !s.cap.eligible(r.Exclude) {
		s.stats.NoBackend++
		return Ticket{}, ErrNoBackend
	}
	if s.queued == 0 {
		if b := s.cap.pick(r.Exclude, now); b != nil {
			s.cap.take(b, now)
			s.stats.AdmittedFast++
			w.state = granted
			return Ticket{Backend: b, Start: now}, nil
		}
	}
	c := r.Class
	if int(c) >= NumClasses {
		c = Normal
	}
	expires, expireErr := now.Add(s.timeouts[c]), ErrQueueTimeout
	if !r.Deadline.IsZero() {
		if !r.Deadline.After(now) || now.Add(s.estimateWaitLocked(r, c, now)).After(r.Deadline) {
			s.stats.Deadline++
			return Ticket{}, ErrDeadline
		}
		if r.Deadline.Before(expires) {
			expires, expireErr = r.Deadline, ErrDeadline
		}
	}
	t := s.tenantLocked(r.Tenant)
	if s.beyondHoldLocked(t, c, now) {
		if t.queued == 0 {
			s.dropTenantLocked(t)
		}
		s.stats.QueueFull++
		s.noteExcessLocked(c)
		return Ticket{}, ErrQueueFull
	}
	if err := s.makeRoomLocked(t, c); err != nil {
		if t.queued == 0 {
			s.dropTenantLocked(t)
		}
		return Ticket{}, err
	}
	s.seq++
	*w = Waiter{
		req: *r, id: s.seq, arrived: now, expires: expires, expireErr: expireErr,
		tenant: t, ch: w.ch, timer: w.timer,
	}
	w.req.Class = c
	s.classes[c].push(c, t, w, now, s.cfg.CoDelInterval)
	s.queued++
	s.overloadedLocked(c, now)
	s.expiry.push(w)
	if s.heavy == nil || t.queued*s.heavy.weight > s.heavy.queued*t.weight {
		s.heavy = t
	}
	return Ticket{}, nil
}

// pressureFraction is the queue fill above which tenants over their
// weighted share of the queue are refused (429) while others still get in.
const pressureFraction = 0.5

// makeRoomLocked decides whether a new request of tenant t in class c may
// join the queue, evicting someone else's queued request if the queue is
// full and the newcomer has the better claim.
func (s *Scheduler) makeRoomLocked(t *tenant, c Class) error {
	limit := s.queueBoundLocked(c)
	if s.queued >= int(float64(limit)*pressureFraction) && s.overShareLocked(t, 1, limit) {
		s.stats.TenantShare++
		s.noteExcessLocked(c)
		return ErrTenantShare
	}
	if s.queued < limit {
		return nil
	}
	// Full. A more important class displaces the least important waiting
	// work; otherwise a tenant within its share displaces the heaviest
	// tenant's oldest request, which is the least likely to be served in
	// time anyway.
	for low := NumClasses - 1; low > int(c); low-- {
		if cq := &s.classes[low]; cq.n > 0 {
			v := s.heaviestInClassLocked(Class(low))
			s.refuseLocked(v.q[low].head, ErrQueueFull, true)
			return nil
		}
	}
	h := s.heaviestLocked()
	if h != nil && h != t && h.queued*t.weight > (t.queued+1)*h.weight {
		for cl := NumClasses - 1; cl >= int(c); cl-- {
			if v := h.q[cl].head; v != nil {
				s.refuseLocked(v, ErrTenantShare, true)
				return nil
			}
		}
	}
	s.stats.QueueFull++
	s.noteExcessLocked(c)
	return ErrQueueFull
}

// queueBoundLocked is how many requests may wait when a request of class
// c arrives: as many as the backends are expected to serve within c's
// queue timeout (drainTime), never more than QueueMax, which is only a
// memory guard. A bound by count alone refuses what a bound by time would
// serve: 10,000 clients arriving at once at an origin that serves tens of
// thousands of requests a second were refused queue-full beyond 1024,
// although all of them would have been served within a fraction of the
// timeout; and in front of an origin of 200 requests a second, a queue of
// 1024 holds five seconds of work, ten times what can be served before it
// times out, so the excess waited 500 ms for a certain refusal. Before
// any latency is known nothing is estimated and QueueMax bounds alone. The
// time bound never goes below minQueueBound: it only lets a queue grow
// past what a count bound used to allow when the backends can serve it.
// The estimate rests on a latency average that one stalled request moves
// a long way, and with a floor of 16 a closed-loop client of 32
// connections in front of a fast origin was refused queue-full whenever
// the gateway itself was starved of CPU for a moment.
func (s *Scheduler) queueBoundLocked(c Class) int {
	bound := s.cfg.QueueMax
	if n, ok := s.cap.servable(s.timeouts[c].Seconds()); ok {
		bound = min(bound, max(n, minQueueBound))
	}
	return bound
}

// minQueueBound is the least the time bound of the queue may be: the
// count bound of before, under which the queue behaves as it did.
const minQueueBound = 1024

// overShareLocked reports whether t, with extra more requests, would hold
// more than its weighted share of limit (the queue's bound) among the
// tenants now queued.
func (s *Scheduler) overShareLocked(t *tenant, extra, limit int) bool {
	if t.queued == s.queued {
		return false // alone in the queue: its share is all of it
	}
	if t.queued == 0 {
		// Holding nothing, it is no flood, however many tenants share
		// the queue: 10,000 clients with one request each were all
		// refused as over their share of a queue of 1024.
		return false
	}
	sum := 0
	for c := range s.classes {
		sum += s.classes[c].sumWeight
	}
	// sumWeight counts a tenant once per class it waits in; that only
	// makes shares smaller for tenants spread over classes, which is fine
	// for a pressure valve.
	if t.queued == 0 {
		sum += t.weight
	}
	return (t.queued+extra)*sum > limit*t.weight
}

// heaviestLocked returns the tenant with the most queued requests per unit
// of weight. The candidate is kept up to date on arrival and rescanned
// only when it has drained, so the scan is amortized.
func (s *Scheduler) heaviestLocked() *tenant {
	h := s.heavy
	if h != nil && h.queued > 0 && h.queued*4 >= s.queued/max(1, len(s.tenants)) {
		return h
	}
	h = nil
	for _, t := range s.tenants {
		if t.queued > 0 && (h == nil || t.queued*h.weight > h.queued*t.weight) {
			h = t
		}
	}
	s.heavy = h
	return h
}

func (s *Scheduler) heaviestInClassLocked(c Class) *tenant {
	var h *tenant
	for _, r := range s.classes[c].rings {
		if r.cur == nil {
			continue
		}
		t := r.cur
		for {
			if h == nil || t.q[c].n*h.weight > h.q[c].n*t.weight {
				h = t
			}
			if t = t.ringNext[c]; t == r.cur {
				break
			}
		}
	}
	return h
}

func (s *Scheduler) tenantLocked(key uint64) *tenant {
	if t, ok := s.tenants[key]; ok {
		return t
	}
	var t *tenant
	if n := len(s.free); n > 0 {
		t = s.free[n-1]
		s.free = s.free[:n-1]
	} else {
		t = new(tenant)
	}
	t.key, t.weight = key, 1
	if w, ok := s.weights[key]; ok {
		t.weight = w
	}
	s.tenants[key] = t
	return t
}

// dropTenantLocked forgets a tenant with nothing queued, so that tenant
// identities that come and go (client addresses) do not accumulate.
func (s *Scheduler) dropTenantLocked(t *tenant) {
	delete(s.tenants, t.key)
	if s.heavy == t {
		s.heavy = nil
	}
	*t = tenant{}
	s.free = append(s.free, t)
}

// removeLocked takes a waiting w off every queue structure.
func (s *Scheduler) removeLocked(w *Waiter) {
	c := w.req.Class
	s.classes[c].remove(c, w)
	s.queued--
	s.expiry.remove(w)
	if w.tenant.queued == 0 {
		s.dropTenantLocked(w.tenant)
	}
	w.tenant = nil
}

func (s *Scheduler) refuseLocked(w *Waiter, err error, signal bool) {
	s.removeLocked(w)
	w.state, w.err = refused, err
	switch err {
	case ErrQueueFull, ErrQueueTimeout, ErrTenantShare:
		s.noteExcessLocked(w.req.Class)
	}
	switch err {
	case ErrQueueFull:
		s.stats.QueueFull++
	case ErrQueueTimeout:
		s.stats.QueueTimeout++
	case ErrDeadline:
		s.stats.Deadline++
	case ErrTenantShare:
		s.stats.TenantShare++
	case ErrNoBackend:
		s.stats.NoBackend++
	case ErrCanceled:
		s.stats.Canceled++
	}
	s.finishLocked(w, signal)
}

func (s *Scheduler) finishLocked(w *Waiter, signal bool) {
	if signal && w.ch != nil {
		w.signaled = true
		w.ch <- struct{}{}
	}
	if s.onDecision != nil {
		s.onDecision(w, w.ticket, w.err)
	}
}

func (s *Scheduler) expireLocked(now time.Time) {
	for len(s.expiry) > 0 && !now.Before(s.expiry[0].expires) {
		w := s.expiry[0]
		s.refuseLocked(w, w.expireErr, true)
	}
}

// releaseLocked hands free backend slots to queued requests, most
// important class first, until the queue is empty or no backend has room.
func (s *Scheduler) releaseLocked(now time.Time) {
	for s.queued > 0 {
		if len(s.expiry) > 0 && !now.Before(s.expiry[0].expires) {
			s.expireLocked(now)
			continue
		}
		if s.cap.pick(nil, now) == nil {
			return
		}
		w := s.nextLocked(now)
		if w == nil {
			continue // the discipline shed what it looked at
		}
		b := s.cap.pick(w.req.Exclude, now)
		if b == nil {
			if !s.cap.eligible(w.req.Exclude) {
				s.refuseLocked(w, ErrNoBackend, true)
				continue
			}
			// Only backends w must avoid have room. Waiting for its own is
			// head-of-line blocking, bounded by their next Done; retries
			// with exclusions are rare.
			return
		}
		c := w.req.Class
		w.tenant.deficit[c]--
		s.removeLocked(w)
		s.noteReleaseLocked(c)
		s.cap.take(b, now)
		s.stats.AdmittedQueued++
		w.state = granted
		w.ticket = Ticket{Backend: b, Start: now}
		s.finishLocked(w, true)
	}
}

// noteReleaseLocked keeps the decayed release counts the minimum class
// shares are measured against (a window of about 100 releases).
func (s *Scheduler) noteReleaseLocked(c Class) {
	if !s.anyShare {
		return
	}
	for i := range s.released {
		s.released[i] *= 0.99
	}
	s.released[c]++
}

// pickClassLocked is the most important class with waiting requests,
// unless a less important one is below its minimum share.
func (s *Scheduler) pickClassLocked() Class {
	first := Class(NumClasses)
	for c := range s.classes {
		if s.classes[c].n > 0 {
			first = Class(c)
			break
		}
	}
	if s.anyShare {
		total := 0.0
		for _, r := range s.released {
			total += r
		}
		for c := int(first) + 1; c < NumClasses; c++ {
			if s.minShare[c] > 0 && s.classes[c].n > 0 && s.released[c] < s.minShare[c]*total {
				return Class(c)
			}
		}
	}
	return first
}

// estimateWaitLocked estimates how long a new request of class c would
// wait: the requests that would be released before it, over the drain
// rate. Before any latency is known it estimates zero (admit, learn).
func (s *Scheduler) estimateWaitLocked(r *Request, c Class, now time.Time) time.Duration {
	if s.cap.drainRate() <= 0 {
		return 0
	}
	ahead := 0
	for i := 0; i < int(c); i++ {
		ahead += s.classes[i].n
	}
	cq := &s.classes[c]
	if cq.n > 0 {
		own, w := 0, 1
		if t, ok := s.tenants[r.Tenant]; ok {
			own, w = t.q[c].n, t.weight
		}
		if s.cfg.Discipline == DisciplineAdaptiveLIFO && cq.over {
			own = 0 // newest first: it goes before its own tenant's backlog
		}
		sum := cq.sumWeight
		if own == 0 {
			sum += w
		}
		// Round robin: each of its own requests ahead costs a round of
		// sum/w releases; it never waits for more than the class holds.
		ahead += min(cq.n, (own+1)*sum/w-1)
	}
	return time.Duration(s.cap.drainTime(ahead) * float64(time.Second))
}

// overloadedLocked reports whether class c is overloaded: the backends
// need more than half the class's queue timeout to serve what waits in c
// and in the classes before it (the wait a newcomer would have oldest
// first, by Little's law). The flag latches until the class has been left
// empty for a CoDelInterval (see classQueue.over).
//
// This is CoDel's question — has the queue stopped draining? — asked of a
// sojourn that does not depend on the discipline. The sojourn of released
// requests cannot answer it: LIFO releases fresh requests however deep the
// backlog. Nor can the mere presence of a backlog for an interval (the
// "standing" test): under Poisson load at 0.9× a backlog stands for
// hundreds of milliseconds and is still served in time. A backlog is the
// integral of excess arrivals, so it needs no interval of its own: half a
// queue timeout of work (50 requests at 200 req/s) is built in 125 ms at
// 3× and is all but unreachable at 0.9× (sim_test.go). Waiting an interval
// more kept the start of every overload oldest first for 225 ms, and
// those late requests set the p99 end to end (115 ms at 3×).
//
// The latch also lets go once the backlog has stayed under a quarter of
// that threshold for a CoDelInterval while the class never emptied: a
// closed-loop client (a fixed number of connections, each sending its next
// request when the last is answered) keeps a short queue that never
// empties, and a single slow moment (a stall of the gateway, a burst of
// slow responses lowering the drain rate) latched it overloaded for good.
// Newest first then starved its oldest requests until they timed out, 503s
// in front of an origin with room to spare. Under a real overload the
// backlog rebuilds past a quarter of the threshold within tens of
// milliseconds of being shed (31 ms at 3×), so the latch holds there.
func (s *Scheduler) overloadedLocked(c Class, now time.Time) bool {
	cq := &s.classes[c]
	if s.cap.drainRate() <= 0 {
		// No latency known yet: nothing says the backlog is slow.
		return cq.over
	}
	ahead := 0
	for i := 0; i <= int(c); i++ {
		ahead += s.classes[i].n
	}
	work := s.cap.drainTime(ahead) // seconds to serve what waits
	threshold := s.timeouts[c].Seconds() / 2
	if !cq.over {
		cq.over = work >= threshold
		cq.calmSince = time.Time{}
		return cq.over
	}
	switch {
	case work >= threshold/4 || now.Sub(cq.lastStale) < s.cfg.CoDelInterval:
		cq.calmSince = time.Time{}
	case cq.calmSince.IsZero():
		cq.calmSince = now
	case now.Sub(cq.calmSince) >= s.cfg.CoDelInterval:
		cq.over = false
		cq.calmSince = time.Time{}
	}
	return cq.over
}
