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
	sample(now time.Time, rtt time.Duration, inflight int, failed bool)
}

// limiterParams are the knobs shared by the adaptive limiters.
type limiterParams struct {
	min, max int
	// probeEvery is how often the limiter drops to min to re-measure the
	// backend's unloaded latency; probeSamples is how many clean samples
	// that takes.
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

func (s staticLimiter) limit() int                               { return int(s) }
func (staticLimiter) sample(time.Time, time.Duration, int, bool) {}

// baseline measures a backend's unloaded latency (the "minRTT" that the
// adaptive limiters compare recent latency against). Inferring it from the
// lowest latency seen under load does not work against a backend that
// shares its capacity among requests: if the limit is too high, every
// request is slow and the minimum is wrong forever. So, like Envoy's
// adaptive concurrency filter, it periodically holds concurrency at min for
// a few requests and measures the median latency of requests that ran
// entirely inside that quiet period.
type baseline struct {
	p limiterParams

	rtt       time.Duration // 0 until the first probe completes
	probing   bool
	quietFrom time.Time // first instant in-flight was <= min during the probe; zero: not yet
	nextProbe time.Time
	buf       [32]time.Duration
	n         int
}

func (b *baseline) start(now time.Time) {
	b.probing = true
	b.quietFrom = time.Time{}
	b.n = 0
}

// observe feeds a sample to the probe; it reports whether the sample
// belongs to the probe (and so must not be used to adapt the limit).
func (b *baseline) observe(now time.Time, rtt time.Duration, inflight int, failed bool) bool {
	if !b.probing {
		if !now.Before(b.nextProbe) {
			b.start(now)
		} else {
			return false
		}
	}
	if b.quietFrom.IsZero() {
		if inflight-1 <= b.p.min {
			b.quietFrom = now
		}
		return true
	}
	if failed || now.Add(-rtt).Before(b.quietFrom) {
		return true // started before the quiet period: shared the backend with more
	}
	want := min(b.p.probeSamples, len(b.buf))
	b.buf[b.n] = rtt
	b.n++
	if b.n >= want {
		s := b.buf[:b.n]
		// Insertion sort: a few elements, and no allocation.
		for i := 1; i < len(s); i++ {
			for j := i; j > 0 && s[j] < s[j-1]; j-- {
				s[j], s[j-1] = s[j-1], s[j]
			}
		}
		b.rtt = max(s[len(s)/2], time.Microsecond)
		b.probing = false
		b.nextProbe = now.Add(b.p.probeEvery)
	}
	return true
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
}

const minWindowSamples = 4

func (w *window) add(rtt time.Duration, inflight int, failed bool) {
	if failed {
		w.failures++
	} else {
		w.sum += rtt
		w.n++
	}
	w.maxIn = max(w.maxIn, inflight)
}

func (w *window) ready(now time.Time, base time.Duration) bool {
	return w.n+w.failures >= minWindowSamples && now.Sub(w.start) >= 2*base
}

func (w *window) mean() time.Duration {
	if w.n == 0 {
		return 0
	}
	return w.sum / time.Duration(w.n)
}

func (w *window) reset(now time.Time) { *w = window{start: now} }

// gradientLimiter is the default adaptive limiter, after Envoy's adaptive
// concurrency filter and Netflix's Gradient2: every window it multiplies
// the limit by gradient = (baseline·(1+tolerance)) / recent latency, clamped
// to [0.5, 2], and adds a small headroom so the limit can grow while latency
// stays flat. Against a processor-sharing backend latency is flat up to the
// knee and proportional to concurrency beyond it, so the limit settles just
// above the knee, where throughput is already maximal and latency has
// barely risen.
type gradientLimiter struct {
	base baseline
	win  window
	lim  float64

	tolerance float64
}

// gradientTolerance is how far above the baseline recent latency may be
// before the limit shrinks. With the headroom below, the limit settles at
// about knee·(1+tolerance)+headroom: 0.1 and 0.5 put it at 5 in flight for
// the goals' 4-worker origin (25 ms per request), where 0.25 and 1 put it
// at 6 (30 ms), which spent half of the p99 budget of 3× the unloaded
// latency on processor-sharing slowdown alone.
const gradientTolerance = 0.1

func newGradient(p limiterParams, now time.Time) *gradientLimiter {
	g := &gradientLimiter{base: baseline{p: p}, lim: float64(p.min), tolerance: gradientTolerance}
	g.base.start(now)
	g.win.reset(now)
	return g
}

func (g *gradientLimiter) limit() int {
	if g.base.probing {
		return g.base.p.min
	}
	return int(g.lim)
}

func (g *gradientLimiter) sample(now time.Time, rtt time.Duration, inflight int, failed bool) {
	if g.base.observe(now, rtt, inflight, failed) {
		g.win.reset(now)
		return
	}
	g.win.add(rtt, inflight, failed)
	if !g.win.ready(now, g.base.rtt) {
		return
	}
	var next float64
	if g.win.failures > 0 {
		next = g.lim * 0.8
	} else {
		grad := float64(g.base.rtt) * (1 + g.tolerance) / float64(g.win.mean())
		grad = min(max(grad, 0.5), 2)
		next = g.lim*grad + headroom(g.lim)
		// Application-limited: the backend never held half the limit, so
		// low latency says nothing about a higher limit.
		if next > g.lim && float64(g.win.maxIn) < g.lim/2 {
			next = g.lim
		}
	}
	g.lim = clampLimit(next, g.base.p)
	g.win.reset(now)
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
type aimdLimiter struct {
	base baseline
	win  window
	lim  float64
}

func newAIMD(p limiterParams, now time.Time) *aimdLimiter {
	a := &aimdLimiter{base: baseline{p: p}, lim: float64(p.min)}
	a.base.start(now)
	a.win.reset(now)
	return a
}

func (a *aimdLimiter) limit() int {
	if a.base.probing {
		return a.base.p.min
	}
	return int(a.lim)
}

func (a *aimdLimiter) sample(now time.Time, rtt time.Duration, inflight int, failed bool) {
	if a.base.observe(now, rtt, inflight, failed) {
		a.win.reset(now)
		return
	}
	a.win.add(rtt, inflight, failed)
	if !a.win.ready(now, a.base.rtt) {
		return
	}
	switch {
	case a.win.failures > 0 || a.win.mean() > 2*a.base.rtt:
		a.lim *= 0.9
	case float64(a.win.maxIn) >= a.lim/2:
		a.lim++
	}
	a.lim = clampLimit(a.lim, a.base.p)
	a.win.reset(now)
}

// vegasLimiter estimates how many requests wait inside the backend,
// queue = limit·(1 − baseline/latency), and keeps it between alpha and beta
// (TCP Vegas): below alpha it grows, above beta it shrinks.
type vegasLimiter struct {
	base baseline
	win  window
	lim  float64

	alpha, beta float64
}

func newVegas(p limiterParams, now time.Time) *vegasLimiter {
	v := &vegasLimiter{base: baseline{p: p}, lim: float64(p.min), alpha: 2, beta: 4}
	v.base.start(now)
	v.win.reset(now)
	return v
}

func (v *vegasLimiter) limit() int {
	if v.base.probing {
		return v.base.p.min
	}
	return int(v.lim)
}

func (v *vegasLimiter) sample(now time.Time, rtt time.Duration, inflight int, failed bool) {
	if v.base.observe(now, rtt, inflight, failed) {
		v.win.reset(now)
		return
	}
	v.win.add(rtt, inflight, failed)
	if !v.win.ready(now, v.base.rtt) {
		return
	}
	step := max(1, math.Log10(v.lim))
	if v.win.failures > 0 {
		v.lim *= 0.8
	} else {
		queue := v.lim * (1 - float64(v.base.rtt)/float64(v.win.mean()))
		switch {
		case queue < v.alpha*step && float64(v.win.maxIn) >= v.lim/2:
			v.lim += step
		case queue > v.beta*step:
			v.lim -= step
		}
	}
	v.lim = clampLimit(v.lim, v.base.p)
	v.win.reset(now)
}
