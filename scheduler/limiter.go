package scheduler

import (
	"math"
	"time"
)

// limiter decides how many requests one backend may have in flight. It is
// fed one sample per finished request and is never called concurrently
// (the Scheduler's mu protects it).
type limiter interface {
	// limit is the current concurrency limit, at least 1.
	limit() int
	// sample teaches the limiter one finished request: its latency to the
	// response headers, the backend's in-flight count just before it
	// finished, and whether it failed (an overload signal).
	// clean says the request ran with at most LimitMin in flight on its
	// backend from start to end (a baseline sample).
	sample(now time.Time, rtt time.Duration, inflight int, failed, clean bool)
	// setBounds applies new LimitMin/LimitMax (a reconfiguration) and
	// keeps everything learned.
	setBounds(min, max int)
	// seed starts a new limiter from what its backend's peers learned:
	// their limit and unloaded latency, taken as provisional until its own
	// next baseline probe, a probeEvery later.
	seed(now time.Time, limit int, baseline time.Duration)
	// growing reports whether the limit is in slow start, doubling every
	// round trip that uses all of it.
	growing() bool
	// saturated reports whether the backend was found at its capacity
	// under the limit in force: the last window used all of the limit
	// with latency risen above the baseline by at least half of what the
	// limiter tolerates, and did not cut the limit by much (a lower limit
	// is untried). A backlog behind a limit that has not yet found the
	// backend's capacity is the limit's, not an overload of the backend:
	// after slow start the gradient overshoots and cuts (138, 71, 39 in
	// flight for an origin of 64 workers), and a backlog behind the 39
	// is no reason to refuse anyone. A static limit is the operator's
	// word for the capacity: always saturated.
	saturated() bool
	// outlived teaches that a fresh request (a liveness probe) finished
	// while every request in flight, the whole limit, outlived it.
	outlived()
}

// limiterParams are the knobs shared by the adaptive limiters.
type limiterParams struct {
	min, max int
	// probeEvery is how often the limiter re-measures the backend's
	// unloaded latency; probeSamples is how many clean samples that takes.
	probeEvery   time.Duration
	probeSamples int
}

func newLimiter(cfg Config, now time.Time) limiter {
	p := limiterParams{
		min:          cfg.LimitMin,
		max:          cfg.LimitMax,
		probeEvery:   defaultProbeEvery,
		probeSamples: defaultProbeSamples,
	}
	switch cfg.Limit.Kind {
	case LimitStatic:
		return staticLimiter(cfg.Limit.N)
	case LimitAIMD:
		return newAIMD(p, now)
	case LimitVegas:
		return newVegas(p, now)
	default:
		return newGradient(p, now)
	}
}

const (
	// A minute between probes costs well under 1% of throughput (a probe
	// lasts a few round trips at min concurrency) and follows an origin
	// whose baseline drifts (deploys, cache warm-up) within a minute.
	defaultProbeEvery   = time.Minute
	defaultProbeSamples = 16
)

// staticLimiter is a fixed limit, like HAProxy's maxconn.
type staticLimiter int

func (s staticLimiter) limit() int                                     { return int(s) }
func (staticLimiter) sample(time.Time, time.Duration, int, bool, bool) {}
func (staticLimiter) setBounds(int, int)                               {}
func (staticLimiter) seed(time.Time, int, time.Duration)               {}
func (staticLimiter) growing() bool                                    { return false }
func (staticLimiter) saturated() bool                                  { return true }
func (staticLimiter) outlived()                                        {}

// baseline measures a backend's unloaded latency (the "minRTT" that the
// adaptive limiters compare recent latency against). Inferring it from the
// lowest latency seen under load does not work against a backend that
// shares its capacity among requests: if the limit is too high, every
// request is slow and the minimum is wrong forever. So it takes the median
// latency of clean requests: requests that ran entirely with at most min
// in flight (the scheduler tells, see backend.busyAt).
//
// A probe is passive first: at light load most requests are clean, and
// the baseline comes for free while the limit stays where it is. Only if
// the probe sees grace samples without collecting enough clean ones (the
// backend is busy) does it turn active and, like Envoy's adaptive
// concurrency filter, hold concurrency at min until it has them. Holding
// at min from the start instead made the first requests of an unloaded
// gateway queue behind two slots: p99 41–52 ms through Sluice against
// 22–30 ms direct.
type baseline struct {
	p limiterParams

	rtt time.Duration // 0 until the first probe completes
	// prov stands in for rtt until the first probe completes: the median
	// of the first samples taken with no more in flight than the initial
	// limit (see provisional).
	prov      time.Duration
	low       [16]time.Duration
	nLow      int
	probing   bool
	active    bool // holding concurrency at min
	seen      int  // samples since the probe started
	nextProbe time.Time
	buf       [32]time.Duration
	n         int
}

// probeGraceFactor × probeSamples samples without a baseline turn a
// passive probe active: under load a clean sample is rare, and waiting
// longer only postpones the adaptation.
const probeGraceFactor = 4

func (b *baseline) start() {
	b.probing = true
	b.active = false
	b.seen = 0
	b.n = 0
}

// holding reports whether the limit must be min (an active probe).
func (b *baseline) holding() bool { return b.probing && b.active }

// ref is the latency the limiters compare recent latency against: the
// baseline, or before there is one the provisional baseline; 0 while
// there is neither.
func (b *baseline) ref() time.Duration {
	if b.rtt > 0 {
		return b.rtt
	}
	return b.prov
}

// provisional learns a stand-in for the baseline from a backend's first
// samples, so that a fresh limit can adapt from its first round trips
// instead of after the first probe. A clean sample needs at most min in
// flight, which a busy backend rarely gives: in front of an origin of 16
// workers at half its capacity, the first probe took more than a second
// and, turning active, held the limit at 2 while a backlog refused 4% of
// the requests. The first samples are taken with no more in flight than
// the initial limit, where an origin of at least that many workers runs
// unloaded; on a smaller origin they are slower than its baseline, and the
// limit then errs high, by at most what it started at, until the first
// probe replaces the stand-in.
func (b *baseline) provisional(rtt time.Duration, inflight int, failed bool) {
	if b.rtt > 0 || failed || b.nLow == len(b.low) || float64(inflight) > initialLimit(b.p) {
		return
	}
	b.low[b.nLow] = rtt
	b.nLow++
	if b.nLow < minWindowSamples {
		return
	}
	s := b.low[:b.nLow]
	sortDurations(s)
	b.prov = max(s[len(s)/2], time.Microsecond)
}

// sortDurations is an insertion sort: a few elements, and no allocation.
func sortDurations(s []time.Duration) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// observe feeds a sample to the probe; it reports whether the sample must
// not be used to adapt the limit (there is no baseline yet, or the limit
// is held at min and says nothing of the backend's capacity).
func (b *baseline) observe(now time.Time, rtt time.Duration, inflight int, failed, clean bool) bool {
	if !b.probing {
		if now.Before(b.nextProbe) {
			return false
		}
		b.start()
	}
	b.provisional(rtt, inflight, failed)
	exclude := b.active || b.ref() == 0
	b.seen++
	want := min(b.p.probeSamples, len(b.buf))
	if clean && !failed {
		b.buf[b.n] = rtt
		b.n++
	}
	if b.n >= want {
		s := b.buf[:b.n]
		sortDurations(s)
		b.rtt = max(s[len(s)/2], time.Microsecond)
		b.probing, b.active = false, false
		b.nextProbe = now.Add(b.p.probeEvery)
		return true
	}
	if !b.active && b.seen >= probeGraceFactor*want {
		if b.rtt == 0 && b.prov > 0 {
			// The first probe of a busy backend: holding it at min now
			// would refuse work it has room for, minutes after start
			// when a limit of 2 meets its real load. The stand-in serves
			// until the next probe, which may hold.
			b.rtt = b.prov
			b.probing = false
			b.nextProbe = now.Add(b.p.probeEvery)
			return false
		}
		b.active = true
	}
	return exclude
}

// initialLimit is where an adaptive limit starts before it knows the
// backend: modest (2×min, at least 4), so that an unloaded backend is not
// queued for while the passive probe runs, and a small one is not swamped.
func initialLimit(p limiterParams) float64 {
	return float64(min(max(2*p.min, 4), p.max))
}

// window aggregates samples between limit updates. A window closes after
// about two baseline round trips and at least a few samples, so one slow
// request does not move the limit.
type window struct {
	start    time.Time
	sum      time.Duration
	n        int
	failures int
	maxIn    int
	// last holds up to windowKeep of the window's samples, each equally
	// likely, for typical.
	last [windowKeep]time.Duration
}

// windowKeep is how many of a window's samples typical reads.
const windowKeep = 32

const minWindowSamples = 4

func (w *window) add(rtt time.Duration, inflight int, failed bool) {
	if failed {
		w.failures++
	} else {
		if w.n < windowKeep {
			w.last[w.n] = rtt
		} else if j := int(uint64(w.n) * 2654435761 % uint64(w.n+1)); j < windowKeep {
			// Reservoir sampling, with a hash of the count for the
			// draw: every sample of the window equally likely kept.
			w.last[j] = rtt
		}
		w.sum += rtt
		w.n++
	}
	w.maxIn = max(w.maxIn, inflight)
}

// minWindowSpan is the shortest window. Against a sub-millisecond
// backend two round trips are a few hundred microseconds and a handful of
// samples, and one scheduling hiccup of the gateway's own (a GC assist, a
// time slice lost on a shared core: 0.2–2 ms) moved the whole window's
// mean. 10 ms averages over a few hundred requests there and changes
// nothing for a backend of 5 ms or more, whose windows are longer anyway.
const minWindowSpan = 10 * time.Millisecond

// ready reports whether the window is complete: span long (two baseline
// round trips), and at least minWindowSamples.
func (w *window) ready(now time.Time, span time.Duration) bool {
	return w.n+w.failures >= minWindowSamples && now.Sub(w.start) >= max(span, minWindowSpan)
}

func (w *window) mean() time.Duration {
	if w.n == 0 {
		return 0
	}
	return w.sum / time.Duration(w.n)
}

// typical is the median of the window's samples: the latency of
// most of its requests. The mean is what one kind of request costs when
// kinds mix: with one request in ten costing 20 times the others, the
// mean is 2.9 times the cheap latency whatever the load, and read against
// a baseline that is the cheap one (the median of clean samples), it was
// congestion all the time; the limit sat at its floor and 25% of the
// requests were refused at 1x. A backend that congests slows most of its
// requests, and the median follows; a minority of slow kinds does not
// move it.
func (w *window) typical() time.Duration {
	n := min(w.n, windowKeep)
	if n == 0 {
		return 0
	}
	var buf [windowKeep]time.Duration
	s := buf[:n]
	copy(s, w.last[:n])
	sortDurations(s)
	return s[n/2]
}

func (w *window) reset(now time.Time) { *w = window{start: now} }

// latencySlack is a rise in latency over the baseline that never counts as
// congestion, however large relative to the baseline. The latency the
// gateway measures is not the backend's alone: it includes the time the
// gateway's own goroutine waited for a CPU once the response had arrived,
// and with one or two cores that wait grows with the number of requests in
// flight whatever the backend does. Against a fast origin (nginx `return
// 200`, 50–100 µs unloaded) with 32 clients, the latency measured at 32 in
// flight was 0.74 ms at the median (1.3 ms p90) against 0.1 ms at 3–7 in
// flight: all of it the gateway's own CPU queue, which a lower limit only
// moves into the admission queue (the total stayed the same) at a cost in
// CPU of 1.7× HAProxy's per request. A rise under a millisecond is
// nothing a client notices and is within the gateway's own noise, so the
// limiters treat it as no rise at all. It only matters for backends under
// 10 ms: above that the relative tolerance (10% of the baseline) is the
// larger, and the limit against the 20 ms origin of the goals is
// unchanged.
const latencySlack = time.Millisecond

// congested is the latency above which a window counts as congestion:
// base·(1+tolerance) or base + latencySlack, whichever is larger.
func congested(base time.Duration, tolerance float64) time.Duration {
	return max(time.Duration(float64(base)*(1+tolerance)), base+latencySlack)
}

// adaptive is what the adaptive limiters share: the baseline probe, the
// sample window and the current limit. Each limiter's sample calls collect,
// and when a window is complete decides the next limit and calls commit.
type adaptive struct {
	base baseline
	win  window
	lim  float64
	// slowStart: the limit doubles every window that used all of it with
	// flat latency, until the first window that does not have flat
	// latency (see growth).
	slowStart bool
	// streak counts the windows in a row that used all of the limit with
	// flat latency, after slow start.
	streak int
	// tolerance is the relative rise in latency the limiter's rule
	// allows before it shrinks the limit.
	tolerance float64
	// full counts the windows in a row that found the backend at its
	// capacity (see saturated).
	full int
}

func newAdaptive(p limiterParams, now time.Time) adaptive {
	a := adaptive{base: baseline{p: p}, lim: initialLimit(p), slowStart: true}
	a.base.start()
	a.win.reset(now)
	return a
}

func (a *adaptive) limit() int {
	if a.base.holding() {
		return a.base.p.min
	}
	return int(a.lim)
}

func (a *adaptive) growing() bool { return a.slowStart && !a.base.holding() }

// saturated asks two windows in a row: the first after a cut still
// holds requests that ran under the limit before it, slowed by that
// limit's load (in front of 64 workers, the window after a cut from 71
// to 39 read as saturated at 39, and 65 requests were refused at 0.8×).
func (a *adaptive) saturated() bool { return a.full >= 2 && !a.slowStart && !a.base.holding() }

// outlived: in slow start, requests that hold the whole limit while a
// fresh one comes and goes are long-lived, not a backend at its capacity;
// the limit doubles as for a window that used it all with flat latency.
func (a *adaptive) outlived() {
	if a.growing() {
		a.lim = clampLimit(2*a.lim, a.base.p)
	}
}

func (a *adaptive) seed(now time.Time, limit int, baseline time.Duration) {
	a.lim = clampLimit(float64(limit), a.base.p)
	a.base.rtt = baseline
	a.base.probing, a.base.active = false, false
	a.base.nextProbe = now.Add(a.base.p.probeEvery)
	a.slowStart = false
	a.win.reset(now)
}

func (a *adaptive) setBounds(lo, hi int) {
	a.base.p.min, a.base.p.max = lo, hi
	a.lim = clampLimit(a.lim, a.base.p)
}

// collect feeds one sample to the probe or the window and reports whether
// a window is complete, so the limiter should decide a new limit now.
func (a *adaptive) collect(now time.Time, rtt time.Duration, inflight int, failed, clean bool) bool {
	if a.base.observe(now, rtt, inflight, failed, clean) {
		a.win.reset(now)
		return false
	}
	a.win.add(rtt, inflight, failed)
	span := 2 * a.base.ref()
	if a.slowStart {
		// One round trip, as TCP's slow start: a window of a limit
		// that doubles sees every request admitted under the previous
		// limit finish.
		span /= 2
	}
	return a.win.ready(now, span)
}

// growth is how far a complete window lets the limit grow beyond what
// the limiter's own rule gives. A limit that starts at 4 and grows by
// half a request per window takes seconds to reach the 32 that an origin
// of 64 workers needs at half its capacity, and refuses work all that
// time. So, like TCP's slow start, a fresh limit doubles every window that
// used all of it while latency stayed flat, and slow start ends at the
// first window whose latency rose (or that failed), from where the
// limiter's rule takes over. After that, windows in a row that used the
// whole limit with flat latency grow it by a step that doubles with each
// (a load that rose, or long-lived requests that hold slots), at most by
// half the limit per window: the first rise in latency ends the streak.
// flat says the window's latency was within the limiter's tolerance.
func (a *adaptive) growth(flat bool) float64 {
	bound := float64(a.win.maxIn) >= a.lim
	switch {
	case !flat || a.win.failures > 0:
		a.slowStart, a.streak = false, 0
		return 0
	case !bound:
		a.streak = 0
		return 0
	case a.slowStart:
		return a.lim
	}
	a.streak++
	if a.streak < 2 {
		return 0
	}
	return min(headroom(a.lim)*float64(int(1)<<min(a.streak-1, 16)), a.lim/2)
}

// commit sets the limit, within bounds, and opens the next window.
func (a *adaptive) commit(now time.Time, next float64) {
	next = clampLimit(next, a.base.p)
	base := a.base.ref()
	risen := base + (congested(base, a.tolerance)-base)/2
	if base > 0 && a.win.failures == 0 && a.win.maxIn >= int(a.lim) &&
		a.win.typical() >= risen && next >= 0.9*a.lim {
		a.full++
	} else {
		a.full = 0
	}
	a.lim = next
	a.win.reset(now)
}

// gradientLimiter is the default adaptive limiter, after Envoy's adaptive
// concurrency filter and Netflix's Gradient2: every window it multiplies
// the limit by gradient = congested(baseline) / recent latency, clamped
// to [0.5, 2], and adds a small headroom so the limit can grow while latency
// stays flat. Against a processor-sharing backend latency is flat up to the
// knee and proportional to concurrency beyond it, so the limit settles just
// above the knee, where throughput is already maximal and latency has
// barely risen.
type gradientLimiter struct {
	adaptive
}

// gradientTolerance is how far above the baseline recent latency may be
// before the limit shrinks. With the headroom below, the limit settles at
// about knee·(1+tolerance)+headroom: 0.1 and 0.5 put it at 5 in flight for
// the goals' 4-worker origin (25 ms per request), where 0.25 and 1 put it
// at 6 (30 ms), which spent half of the p99 budget of 3× the unloaded
// latency on processor-sharing slowdown alone.
const gradientTolerance = 0.1

func newGradient(p limiterParams, now time.Time) *gradientLimiter {
	g := &gradientLimiter{adaptive: newAdaptive(p, now)}
	g.tolerance = gradientTolerance
	return g
}

func (g *gradientLimiter) sample(now time.Time, rtt time.Duration, inflight int, failed, clean bool) {
	if !g.collect(now, rtt, inflight, failed, clean) {
		return
	}
	var next float64
	limit := float64(congested(g.base.ref(), g.tolerance))
	mean := float64(g.win.typical())
	if g.win.failures > 0 {
		g.growth(false)
		next = g.lim * 0.8
	} else {
		grad := min(max(limit/mean, 0.5), 2)
		next = g.lim*grad + headroom(g.lim)
		// Application-limited: the backend never held half the limit, so
		// low latency says nothing about a higher limit.
		if next > g.lim && float64(g.win.maxIn) < g.lim/2 {
			next = g.lim
		}
		if grow := g.growth(mean <= limit); grow > 0 {
			next = max(next, g.lim+grow)
		}
	}
	g.commit(now, next)
}

// headroom lets the limit grow by half a request per window while latency
// is flat, more on big backends. A square root (Envoy's choice)
// settles too far past the knee of a small backend.
func headroom(lim float64) float64 { return max(0.5, math.Log10(lim)) }

func clampLimit(v float64, p limiterParams) float64 {
	return min(max(v, float64(p.min)), float64(p.max))
}

// aimdLimiter adds one per window while latency stays under twice the
// baseline, and multiplies by 0.9 on a failure or a slow window.
type aimdLimiter struct{ adaptive }

func newAIMD(p limiterParams, now time.Time) *aimdLimiter {
	a := &aimdLimiter{newAdaptive(p, now)}
	a.tolerance = 1 // a slow window is one over twice the baseline
	return a
}

func (a *aimdLimiter) sample(now time.Time, rtt time.Duration, inflight int, failed, clean bool) {
	if !a.collect(now, rtt, inflight, failed, clean) {
		return
	}
	next := a.lim
	slow := a.win.mean() > congested(a.base.ref(), a.tolerance)
	grow := a.growth(!slow)
	switch {
	case a.win.failures > 0 || slow:
		next *= 0.9
	case float64(a.win.maxIn) >= a.lim/2:
		next += max(1, grow)
	}
	a.commit(now, next)
}

// vegasLimiter estimates how many requests wait inside the backend,
// queue = limit·(1 − baseline/latency), and keeps it between alpha and beta
// (TCP Vegas): below alpha it grows, above beta it shrinks.
type vegasLimiter struct {
	adaptive

	alpha, beta float64
}

func newVegas(p limiterParams, now time.Time) *vegasLimiter {
	v := &vegasLimiter{adaptive: newAdaptive(p, now), alpha: 2, beta: 4}
	v.tolerance = gradientTolerance // Vegas counts a queue, not a ratio; this only says when it is saturated
	return v
}

func (v *vegasLimiter) sample(now time.Time, rtt time.Duration, inflight int, failed, clean bool) {
	if !v.collect(now, rtt, inflight, failed, clean) {
		return
	}
	step := max(1, math.Log10(v.lim))
	if v.win.failures > 0 {
		v.lim *= 0.8
	} else {
		// A rise within latencySlack is no queue in the backend.
		queue := 0.0
		ref := v.base.ref()
		if mean := v.win.mean(); mean > ref+latencySlack {
			queue = v.lim * (1 - float64(ref)/float64(mean))
		}
		grow := v.growth(queue < v.alpha*step)
		switch {
		case queue < v.alpha*step && float64(v.win.maxIn) >= v.lim/2:
			v.lim += max(step, grow)
		case queue > v.beta*step:
			v.lim -= step
		}
	}
	v.commit(now, v.lim)
}

// baselineRTT is the learned unloaded latency, 0 before the first probe.
func (a *adaptive) baselineRTT() time.Duration { return a.base.rtt }
