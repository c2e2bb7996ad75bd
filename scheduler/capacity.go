package scheduler

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// This file is the capacity side of the scheduler: the backends, what each
// may take (its limiter, its state, its weight, an optional cap), and which
// one a request goes to. The queue side (fairqueue.go, discipline.go) never
// looks inside a Backend; it asks the granter interface below. The monitor
// feeds this side only, through SetBackendState, SetBackendWeight and
// SetBackendCap.

// BackendState says whether a backend may be given new requests.
type BackendState uint8

const (
	// StateUp: the backend takes requests, within its limit.
	StateUp BackendState = iota
	// StateDown: failing health checks, ejected, or disabled by an
	// operator. It gets nothing new; what it has in flight finishes. Its
	// learned limit and baseline are kept for when it comes back.
	StateDown
	// StateDraining: removed (reload, admin API, a standby released). It
	// gets nothing new and leaves the scheduler once its last request is
	// done, unless it is added back before, in which case it keeps what it
	// learned.
	StateDraining
)

var stateNames = [...]string{"up", "down", "draining"}

func (s BackendState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "invalid"
}

// Errors of the backend-changing methods.
var (
	ErrUnknownBackend   = errors.New("unknown backend")
	ErrDuplicateBackend = errors.New("backend already present")
)

// Backend is the scheduler's record of one backend, known by a stable
// identity (its URL or configured name). A *Backend stays valid after the
// backend is removed: a Ticket that names it can still be given back.
type Backend struct {
	// Immutable after AddBackend.
	id  string
	tag any

	// Protected by Scheduler.mu.
	state    BackendState
	inflight int
	lim      limiter
	limKind  LimitSpec
	latency  time.Duration // EWMA of successful samples; 0 = none yet
	weight   float64       // relative share of traffic; 1 unless set
	cap      int           // a ceiling on the limit (monitor, operator); 0 = none
	ages     ages          // of the requests in flight, for parking long-lived ones (parked.go)
	// busyAt is the last admission that took inflight above LimitMin. A
	// request admitted after it ran with at most LimitMin in flight the
	// whole time, and its latency is a clean baseline sample (limiter.go).
	busyAt time.Time
	// gone: drained and forgotten. A later AddBackend of the same ID
	// makes a new record, which takes up what this one learned if it
	// comes within rememberFor of goneAt (reconfigure.go).
	gone   bool
	goneAt time.Time
}

// ID is the backend's stable identity.
func (b *Backend) ID() string { return b.id }

// Tag is the value the caller gave AddBackend: its own handle for this
// backend (the proxy's pool), so that a ticket needs no lookup.
func (b *Backend) Tag() any { return b.tag }

// BackendSpec names a backend for Reconfigure.
type BackendSpec struct {
	ID  string
	Tag any // used only when the backend is new
}

// granter is the capacity side as the queue side sees it. It is the seam
// between the two halves of the scheduler, as CockroachDB's granter is to
// its WorkQueue; every method runs under Scheduler.mu.
type granter interface {
	// pick returns a backend with room at now, not in exclude, or nil.
	pick(exclude []*Backend, now time.Time) *Backend
	// take gives one slot of b to a request admitted at now.
	take(b *Backend, now time.Time)
	// giveBack returns a slot and teaches b's limiter the outcome.
	giveBack(b *Backend, o Outcome, latency time.Duration, start, now time.Time)
	// eligible reports whether some backend is up and not in exclude.
	eligible(exclude []*Backend) bool
	// drainRate is how many requests per second the backends complete at
	// their current limits.
	drainRate() float64
}

var _ granter = (*backendSet)(nil)

// backendSet holds a service's backends.
type backendSet struct {
	cfg *Config // the scheduler's, for limiter construction and LimitMin
	// active are the backends up or down, in the order they were added;
	// draining ones are only in byID until they are gone.
	active []*Backend
	byID   map[string]*Backend
	nUp    int
	// recent are the backends forgotten less than rememberFor ago, by ID,
	// at most maxRemembered of them (reconfigure.go).
	recent map[string]*Backend
}

func newBackendSet(cfg *Config) backendSet {
	return backendSet{cfg: cfg, byID: make(map[string]*Backend)}
}

// exploreAfter is how long a backend may go without a completion before
// pick tries it again whatever its last latency said.
const exploreAfter = time.Second

// effectiveLimit is b's limit with its cap applied.
func (b *Backend) effectiveLimit() int {
	l := b.lim.limit()
	if b.cap > 0 && b.cap < l {
		l = b.cap
	}
	return l
}

func excluded(b *Backend, exclude []*Backend) bool {
	for _, e := range exclude {
		if e == b {
			return true
		}
	}
	return false
}

// pick chooses, among the backends with room, the one where one more
// request is expected to finish soonest (recent latency × (1 + fill)),
// then the one with the most room relative to its limit and weight; nil
// if none has room. A stalled
// backend (parked.go) whose probe is due counts as having room for one.
func (bs *backendSet) pick(exclude []*Backend, now time.Time) *Backend {
	var best *Backend
	var bestNum, bestDen, bestOcc float64
	n := now.UnixNano()
	for _, b := range bs.active {
		if b.state != StateUp || (len(exclude) > 0 && excluded(b, exclude)) {
			continue
		}
		lim := b.effectiveLimit()
		occ := b.occupancy(n)
		if occ >= lim {
			if !b.stalled() || !b.probeDue(n) {
				continue
			}
			occ = lim - 1 // the probe: room for one, and the least room there is
		}
		// The expected latency of one more request: the backend's recent
		// latency, stretched by how full it is (a processor-sharing
		// origin slows as its concurrency grows), per unit of weight.
		// Equal backends thus share by room; a slow one gets what the
		// fast ones cannot take, rather than its proportional share,
		// which would put its latency into the tail of every request.
		//
		// cost = latency × (lim + occ) / (lim × weight), kept as a
		// fraction and compared cross-multiplied: no division on the
		// admission path.
		num := float64(b.latency) * float64(lim+occ)
		den := float64(lim) * b.weight
		if occ == 0 && n-b.ages.lastDone >= int64(exploreAfter) {
			// Idle for a while: its latency is old news. One request
			// finds out whether it is still slow, so a backend that
			// recovered is not left idle behind a stale figure.
			num = 0
		}
		o := float64(occ)
		if best == nil {
			best, bestNum, bestDen, bestOcc = b, num, den, o
			continue
		}
		l, r := num*bestDen, bestNum*den
		if l < r || (l == r && o*bestDen < bestOcc*den) {
			best, bestNum, bestDen, bestOcc = b, num, den, o
		}
	}
	return best
}

func (bs *backendSet) take(b *Backend, now time.Time) {
	n := now.UnixNano()
	if b.occupancy(n) >= b.effectiveLimit() {
		b.probed(n)
	}
	b.started(n)
	b.inflight++
	if b.inflight-b.parked() > bs.cfg.LimitMin {
		b.busyAt = now
	}
}

func (bs *backendSet) giveBack(b *Backend, o Outcome, latency time.Duration, start, now time.Time) {
	n := now.UnixNano()
	in := b.occupancy(n)
	parked := b.finished(start.UnixNano(), n, o != Ignore)
	b.inflight--
	if o != Ignore && !b.gone && !parked {
		// Clean: no admission took the backend above LimitMin while
		// this request ran, so its latency is the unloaded one.
		b.lim.sample(now, latency, in, o == Failure, start.After(b.busyAt))
		if o == Success {
			if b.latency == 0 {
				b.latency = latency
			} else {
				b.latency += (latency - b.latency) / 8
			}
		}
	}
	if b.state == StateDraining && b.inflight == 0 {
		bs.forget(b, now)
	}
}

func (bs *backendSet) eligible(exclude []*Backend) bool {
	if bs.nUp == 0 {
		return false
	}
	if len(exclude) == 0 {
		return true
	}
	for _, b := range bs.active {
		if b.state == StateUp && !excluded(b, exclude) {
			return true
		}
	}
	return false
}

func (bs *backendSet) drainRate() float64 {
	rate := 0.0
	for _, b := range bs.active {
		if b.state == StateUp && b.latency > 0 {
			rate += float64(b.effectiveLimit()) / b.latency.Seconds()
		}
	}
	return rate
}

// drainTime is how long, in seconds, the up backends take to serve n
// requests: n over the drain rate, unless every one of them is still in
// slow start (limiter.go, growth), whose limit doubles every round trip,
// so that n requests take log2(1 + n/limits) round trips. Counting a
// fresh limit of 4 as the capacity of an origin of 64 workers made the
// first backlog of a cold start look like 300 ms of work and refused it
// within 40 ms of the start, a fifth of a second before the limit had
// grown past the load.
func (bs *backendSet) drainTime(n int) float64 {
	rate, limits, growing := bs.drainModel()
	if rate <= 0 {
		return 0
	}
	if !growing {
		return float64(n) / rate
	}
	return limits / rate * math.Log2(1+float64(n)/limits)
}

// drainModel is what drainTime and servable estimate from: the up
// backends' drain rate (Σ limit/latency, of those with a latency known),
// their limits together, and whether every one of them is in slow start.
func (bs *backendSet) drainModel() (rate, limits float64, growing bool) {
	growing = true
	for _, b := range bs.active {
		if b.state != StateUp || b.latency <= 0 {
			continue
		}
		l := float64(b.effectiveLimit())
		rate += l / b.latency.Seconds()
		limits += l
		growing = growing && b.lim.growing() && (b.cap == 0 || b.cap > b.lim.limit())
	}
	return rate, limits, growing
}

// servable is how many requests the up backends are expected to serve in
// d seconds, the inverse of drainTime (with their limits counted as well:
// those are served first); false when no latency is known yet.
func (bs *backendSet) servable(d float64) (int, bool) {
	rate, limits, growing := bs.drainModel()
	if rate <= 0 {
		return 0, false
	}
	n := rate * d
	if growing {
		// limits·(2^(d/rtt) − 1), bounded so that it cannot overflow.
		n = limits * (math.Exp2(min(d*rate/limits, 30)) - 1)
	}
	return int(min(n, math.MaxInt32)) + int(limits), true
}

// add puts a backend in the set, or brings a draining or recently
// forgotten one back with what it learned.
func (bs *backendSet) add(id string, tag any, now time.Time) (*Backend, error) {
	if id == "" {
		return nil, fmt.Errorf("scheduler: backend with an empty ID")
	}
	if b, ok := bs.byID[id]; ok {
		if b.state != StateDraining {
			return nil, fmt.Errorf("scheduler: backend %q: %w", id, ErrDuplicateBackend)
		}
		b.state = StateUp
		bs.active = append(bs.active, b)
		bs.nUp++
		return b, nil
	}
	b := &Backend{id: id, tag: tag, weight: 1}
	if old := bs.recall(id, now); old != nil {
		b.lim, b.limKind, b.latency = old.lim, old.limKind, old.latency
		bs.retuneBackend(b, now)
	} else {
		b.lim, b.limKind = newLimiter(*bs.cfg, now), bs.cfg.Limit
		bs.seedFromPeers(b, now)
	}
	bs.byID[id] = b
	bs.active = append(bs.active, b)
	bs.nUp++
	return b, nil
}

// drain takes b out of the active set; it is forgotten once idle.
func (bs *backendSet) drain(b *Backend, now time.Time) {
	if b.state == StateDraining {
		return
	}
	if b.state == StateUp {
		bs.nUp--
	}
	b.state = StateDraining
	if i := slices.Index(bs.active, b); i >= 0 {
		bs.active = slices.Delete(bs.active, i, i+1)
	}
	if b.inflight == 0 {
		bs.forget(b, now)
	}
}

func (bs *backendSet) forget(b *Backend, now time.Time) {
	if bs.byID[b.id] == b {
		delete(bs.byID, b.id)
	}
	b.gone, b.goneAt = true, now
	bs.remember(b)
}

// setState moves an active backend between up and down. It reports
// whether anything changed.
func (bs *backendSet) setState(b *Backend, st BackendState) bool {
	if b.state == st || b.state == StateDraining {
		return false
	}
	if st == StateUp {
		bs.nUp++
	} else {
		bs.nUp--
	}
	b.state = st
	return true
}

// retune applies a new policy to every backend: a limiter of another kind
// is replaced (its learning does not transfer); one of the same kind keeps
// its limit and baseline and only takes the new bounds.
func (bs *backendSet) retune(now time.Time) {
	for _, b := range bs.byID {
		bs.retuneBackend(b, now)
	}
}

func (bs *backendSet) retuneBackend(b *Backend, now time.Time) {
	if b.limKind != bs.cfg.Limit {
		b.lim, b.limKind = newLimiter(*bs.cfg, now), bs.cfg.Limit
		return
	}
	b.lim.setBounds(bs.cfg.LimitMin, bs.cfg.LimitMax)
}

// seedFromPeers starts a backend that joins a running service from what
// its peers learned: the median of their limits and of their baselines.
// Redundant backends of a service run the same application, and a cold
// start (a limit of 4 and a baseline probe held at LimitMin) in the middle
// of traffic took a new backend to half its capacity or less for over a
// second, which the others had to absorb. Its own probe, a minute later,
// replaces the borrowed baseline. Peers that have learned nothing yet give
// nothing.
func (bs *backendSet) seedFromPeers(b *Backend, now time.Time) {
	var limits []int
	var bases []time.Duration
	for _, p := range bs.active {
		if p.limKind != b.limKind {
			continue
		}
		if a, ok := p.lim.(interface{ baselineRTT() time.Duration }); ok && a.baselineRTT() > 0 {
			limits = append(limits, p.lim.limit())
			bases = append(bases, a.baselineRTT())
		}
	}
	if len(limits) == 0 {
		return
	}
	slices.Sort(limits)
	slices.Sort(bases)
	b.lim.seed(now, limits[len(limits)/2], bases[len(bases)/2])
}
