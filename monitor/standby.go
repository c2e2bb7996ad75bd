package monitor

import (
	"fmt"
	"slices"
	"time"
)

// This file decides when a service brings in its standby backends and
// when it lets them go. Standby is a pure state machine on the caller's
// clock: the proxy feeds it a Sample of the service every sampling period
// and carries out what it decides (warming the standby's pool, adding it
// to the scheduler in slow start; draining it on release).
//
// The rules:
//
//   - Pressure: a sample is under pressure when one criterion holds:
//     queue wait p95 above QueueWaitP95; more than RefusalRate of the
//     requests refused for overload; backend latency p95 above
//     LatencyP95Factor × its unloaded level (and at least latencySlack
//     above it); the agents' mean CPU above AgentCPU. The percentiles
//     and the refusal rate count only in a sample of at least
//     minSampleRequests requests: two refusals of three requests say
//     nothing.
//   - Activation: when pressure has held on every sample for Sustain, the
//     first standby in configured order that is not active is activated.
//     One at a time: the next activation needs the pressure to last
//     Sustain more after the last one's slow start (settle), since a
//     backend in slow start has not shown its capacity yet.
//   - No standby left: the same sustained pressure asks for capacity
//     (need_capacity, for a provisioning hook), at most once per CoolDown.
//   - Quiet: no refusal at all, queue wait p95 at most half its level,
//     latency not over its level, the CPU the backends left behind would
//     run at within ReleaseUtilization × AgentCPU, and the admitted rate
//     within ReleaseUtilization of what the backends left behind carry:
//     the sum of their learned capacity (limit / latency), and no more
//     than the service carried without this standby under the pressure
//     that brought it in, as long as no other backend has joined since.
//     The last backend up is never released.
//   - Release: when quiet has held on every sample for CoolDown since the
//     last activation or release, the standby activated last is released
//     (last in, first out); then CoolDown again for the next.
//
// Pressure and quiet exclude each other, and between them lies a band
// (refusals under the rate, queue wait between half its level and its
// level, load that fits but without margin) where neither clock runs:
// that band, the cool-down and the one-at-a-time rule are the hysteresis
// that keeps a standby from flapping.

// minSampleRequests is the fewest requests a sample needs before its
// percentiles and refusal rate count as pressure.
const minSampleRequests = 10

// latencySlack is a rise of the latency p95 over its unloaded level that
// is never pressure, however large relative to it: against a
// sub-millisecond backend, the gateway's own scheduling noise on a busy
// core doubles the p95.
const latencySlack = 5 * time.Millisecond

// latencyMemory is how far back the unloaded latency level looks: the
// lowest p95 of this long, kept per minute.
const latencyMemory = 10

// Sample is what a service looked like over the last sampling period.
type Sample struct {
	// Elapsed is the span the sample covers, ending at Step's now.
	Elapsed time.Duration
	// Admitted are the requests given a backend in the span; Refused
	// those refused for overload (queue full, queue timeout, deadline
	// unreachable, tenant over its share). Not counted: requests
	// canceled by their client, and those refused because no backend was
	// up (no amount of queueing policy is pressure then).
	Admitted, Refused uint64
	// QueueWaitP95 is the 95th percentile of the time the requests
	// admitted in the span waited (0 for those admitted at once).
	QueueWaitP95 time.Duration
	// Answered are the successful backend answers in the span, and
	// LatencyP95 the 95th percentile of their latency.
	Answered   uint64
	LatencyP95 time.Duration
	// CPU is the mean CPU utilisation (0..1) that the agents of the up
	// backends report; HasCPU says whether there is fresh agent data at
	// all (without it the CPU criterion neither holds nor blocks).
	CPU    float64
	HasCPU bool
	// Backends are the service's backends that are not draining: the
	// configured ones and the active standbys.
	Backends []BackendLoad
}

// BackendLoad is one backend in a Sample.
type BackendLoad struct {
	ID string
	Up bool // taking requests: neither ejected nor failing its health check
	// Capacity is the rate the backend can carry, in requests per
	// second: its concurrency limit over its recent latency. 0: not known
	// yet.
	Capacity float64
}

// Figures are the numbers behind a standby decision, for the event log
// and the provisioning hook.
type Figures struct {
	QueueWaitP95    time.Duration
	RefusalRate     float64
	LatencyP95      time.Duration
	LatencyUnloaded time.Duration // the level LatencyP95 is compared with; 0: none yet
	CPU             float64
	HasCPU          bool
	AdmittedRate    float64 // requests per second
	Capacity        float64 // the up backends' learned capacity, requests per second
	BackendsUp      int
	StandbyActive   int // after the decision
	StandbyLeft     int // listed, not active, after the decision
}

// StandbyAction is what a Step decided.
type StandbyAction uint8

// The decisions.
const (
	StandbyNone         StandbyAction = iota
	StandbyActivate                   // bring Backend in
	StandbyRelease                    // let Backend go
	StandbyNeedCapacity               // pressure, and no standby left to bring in
)

// String is the decision's name as events and hooks give it: "activated",
// "released", "need_capacity" ("none" for no decision).
func (a StandbyAction) String() string {
	switch a {
	case StandbyActivate:
		return EventActivated.String()
	case StandbyRelease:
		return EventReleased.String()
	case StandbyNeedCapacity:
		return EventNeedCapacity.String()
	}
	return "none"
}

// StandbyDecision is one Step's outcome.
type StandbyDecision struct {
	Action  StandbyAction
	Backend string // the standby activated or released
	Reason  string
	Figures Figures
}

// Standby decides the activations and releases of one service's standby
// backends. It is not safe for concurrent use (Service holds it under its
// lock).
type Standby struct {
	cfg    StandbyConfig // defaults applied
	settle time.Duration // a new backend's slow start
	listed []string      // the standbys, in configured order
	active []activation  // in activation order

	pressureSince  time.Time // zero: not under pressure
	pressAdmitted  uint64    // over the current pressure, past the last slow start
	pressElapsed   time.Duration
	quietSince     time.Time // zero: not quiet
	lastChange     time.Time // the last activation or release
	lastActivation time.Time
	lastNeed       time.Time
	ref            latencyLevel
}

// activation is an active standby and what the service did without it.
type activation struct {
	id string
	// carried is the admitted rate the service reached under the
	// pressure that brought this standby in, with upThen up: a measured
	// bound on what they carry without it.
	carried float64
	upThen  []string
}

// NewStandby returns the standby decisions of a service watched with cfg,
// with no standby listed yet.
func NewStandby(cfg Config) *Standby {
	s := &Standby{}
	s.Reconfigure(cfg)
	return s
}

// Reconfigure takes a new policy; what was observed and decided stays.
func (s *Standby) Reconfigure(cfg Config) {
	cfg = cfg.WithDefaults()
	s.cfg, s.settle = cfg.Standby, cfg.Outlier.SlowStart
}

// SetListed sets the service's standbys, in order. Active standbys still
// listed stay active; it returns them, in activation order. Those no
// longer listed are forgotten here: moved to the service's backends, they
// stay as such; removed, the caller drains them as any removed backend.
func (s *Standby) SetListed(ids []string) []string {
	s.listed = slices.Clone(ids)
	s.active = slices.DeleteFunc(s.active, func(a activation) bool { return !slices.Contains(ids, a.id) })
	return s.Active()
}

// Active are the active standbys, in activation order.
func (s *Standby) Active() []string {
	out := make([]string, len(s.active))
	for i, a := range s.active {
		out[i] = a.id
	}
	return out
}

// Drop forgets an active standby that could not be brought in.
func (s *Standby) Drop(id string) {
	s.active = slices.DeleteFunc(s.active, func(a activation) bool { return a.id == id })
}

// Step takes the sample of the period ending at now and decides at most
// one activation, release or call for capacity.
func (s *Standby) Step(now time.Time, smp Sample) StandbyDecision {
	f := s.figures(now, smp)
	why := s.pressure(smp, f)
	s.ref.observe(now, smp)
	start := now.Add(-smp.Elapsed)
	if why != "" {
		if s.pressureSince.IsZero() {
			s.pressureSince, s.pressAdmitted, s.pressElapsed = start, 0, 0
		}
		// What the backends carry under pressure, once the last standby
		// brought in has finished its slow start.
		if s.lastActivation.IsZero() || !start.Before(s.lastActivation.Add(s.settle)) {
			s.pressAdmitted += smp.Admitted
			s.pressElapsed += smp.Elapsed
		}
		s.quietSince = time.Time{}
		return s.underPressure(now, smp, f, why)
	}
	s.pressureSince = time.Time{}
	if len(s.active) == 0 {
		s.quietSince = time.Time{}
		return StandbyDecision{}
	}
	last := s.active[len(s.active)-1]
	calm := s.quiet(smp, f, last)
	if calm == "" {
		s.quietSince = time.Time{}
		return StandbyDecision{}
	}
	if s.quietSince.IsZero() {
		s.quietSince = start
	}
	if now.Sub(later(s.quietSince, s.lastChange)) < s.cfg.CoolDown {
		return StandbyDecision{}
	}
	s.active = s.active[:len(s.active)-1]
	s.lastChange, s.quietSince = now, time.Time{}
	f.StandbyActive, f.StandbyLeft = s.counts()
	return StandbyDecision{Action: StandbyRelease, Backend: last.id,
		Reason: fmt.Sprintf("quiet for %v: %s", s.cfg.CoolDown, calm), Figures: f}
}

func (s *Standby) underPressure(now time.Time, smp Sample, f Figures, why string) StandbyDecision {
	from := s.pressureSince
	if !s.lastActivation.IsZero() {
		from = later(from, s.lastActivation.Add(s.settle))
	}
	if now.Sub(from) < s.cfg.Sustain {
		return StandbyDecision{}
	}
	reason := fmt.Sprintf("%s for %v", why, now.Sub(s.pressureSince).Round(time.Millisecond))
	if id := s.next(); id != "" {
		carried := 0.0
		if s.pressElapsed > 0 {
			carried = float64(s.pressAdmitted) / s.pressElapsed.Seconds()
		}
		s.active = append(s.active, activation{id: id, carried: carried, upThen: upIDs(smp, "")})
		s.lastActivation, s.lastChange = now, now
		s.pressAdmitted, s.pressElapsed = 0, 0
		f.StandbyActive, f.StandbyLeft = s.counts()
		return StandbyDecision{Action: StandbyActivate, Backend: id, Reason: reason, Figures: f}
	}
	if !s.lastNeed.IsZero() && now.Sub(s.lastNeed) < s.cfg.CoolDown {
		return StandbyDecision{}
	}
	s.lastNeed = now
	return StandbyDecision{Action: StandbyNeedCapacity, Reason: reason + "; no standby left", Figures: f}
}

// next is the first listed standby not active, or "".
func (s *Standby) next() string {
	for _, id := range s.listed {
		if !slices.ContainsFunc(s.active, func(a activation) bool { return a.id == id }) {
			return id
		}
	}
	return ""
}

func (s *Standby) counts() (active, left int) {
	return len(s.active), len(s.listed) - len(s.active)
}

// pressure names the first criterion that holds in smp, or "".
func (s *Standby) pressure(smp Sample, f Figures) string {
	c := &s.cfg
	switch {
	case smp.Admitted+smp.Refused >= minSampleRequests && f.RefusalRate > c.RefusalRate:
		return fmt.Sprintf("refusal rate %.1f%% above %.1f%%", 100*f.RefusalRate, 100*c.RefusalRate)
	case smp.Admitted >= minSampleRequests && smp.QueueWaitP95 > c.QueueWaitP95:
		return fmt.Sprintf("queue wait p95 %v above %v", smp.QueueWaitP95.Round(time.Millisecond), c.QueueWaitP95)
	case s.latencyOver(smp, f):
		return fmt.Sprintf("latency p95 %v above %g × its unloaded %v",
			smp.LatencyP95.Round(100*time.Microsecond), c.LatencyP95Factor, f.LatencyUnloaded.Round(100*time.Microsecond))
	case smp.HasCPU && smp.CPU > c.AgentCPU:
		return fmt.Sprintf("agent CPU %.0f%% above %.0f%%", 100*smp.CPU, 100*c.AgentCPU)
	}
	return ""
}

func (s *Standby) latencyOver(smp Sample, f Figures) bool {
	ref := f.LatencyUnloaded
	if smp.Answered < minSampleRequests || ref <= 0 {
		return false
	}
	level := max(time.Duration(float64(ref)*s.cfg.LatencyP95Factor), ref+latencySlack)
	return smp.LatencyP95 > level
}

// quiet says why the service would do without the standby a, or "" when
// it would not.
func (s *Standby) quiet(smp Sample, f Figures, a activation) string {
	c := &s.cfg
	if smp.Refused > 0 || smp.QueueWaitP95 > c.QueueWaitP95/2 || s.latencyOver(smp, f) {
		return ""
	}
	remaining, nUp, aUp := 0.0, 0, false
	for _, b := range smp.Backends {
		switch {
		case !b.Up:
		case b.ID == a.id:
			aUp = true
		default:
			remaining += b.Capacity
			nUp++
		}
	}
	if nUp == 0 {
		return "" // the last backend up stays
	}
	if smp.HasCPU {
		cpu := smp.CPU
		if aUp {
			cpu *= float64(nUp+1) / float64(nUp)
		}
		if cpu > c.ReleaseUtilization*c.AgentCPU {
			return ""
		}
	}
	if a.carried > 0 && subset(upIDs(smp, a.id), a.upThen) {
		remaining = min(remaining, a.carried)
	}
	if f.AdmittedRate == 0 {
		return "no requests"
	}
	if remaining <= 0 || f.AdmittedRate > c.ReleaseUtilization*remaining {
		return ""
	}
	return fmt.Sprintf("%.1f requests/s, %.0f%% of what the other backends carry", f.AdmittedRate, 100*f.AdmittedRate/remaining)
}

func (s *Standby) figures(now time.Time, smp Sample) Figures {
	f := Figures{
		QueueWaitP95: smp.QueueWaitP95, LatencyP95: smp.LatencyP95,
		LatencyUnloaded: s.ref.value(now), CPU: smp.CPU, HasCPU: smp.HasCPU,
	}
	if n := smp.Admitted + smp.Refused; n > 0 {
		f.RefusalRate = float64(smp.Refused) / float64(n)
	}
	if smp.Elapsed > 0 {
		f.AdmittedRate = float64(smp.Admitted) / smp.Elapsed.Seconds()
	}
	for _, b := range smp.Backends {
		if b.Up {
			f.BackendsUp++
			f.Capacity += b.Capacity
		}
	}
	f.StandbyActive, f.StandbyLeft = s.counts()
	return f
}

// upIDs are the up backends of smp but except.
func upIDs(smp Sample, except string) []string {
	var out []string
	for _, b := range smp.Backends {
		if b.Up && b.ID != except {
			out = append(out, b.ID)
		}
	}
	return out
}

func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// latencyLevel is the unloaded latency level: the lowest p95 of a sample
// with enough answers over the last latencyMemory minutes, kept as one
// minimum per minute. Under admission control the latency of admitted
// requests stays near the unloaded one whatever the load (the queue takes
// the excess), so the lowest recent p95 is a fair reference; a p95 rather
// than the limiter's median baseline, because the p95 of a service whose
// requests vary in cost (exponential, lognormal) is several times its
// median at any load, and would read as permanent pressure.
type latencyLevel struct {
	minute [latencyMemory]int64
	low    [latencyMemory]time.Duration
}

func (l *latencyLevel) observe(now time.Time, smp Sample) {
	if smp.Answered < minSampleRequests || smp.LatencyP95 <= 0 {
		return
	}
	m := now.UnixNano() / int64(time.Minute)
	i := int(m % latencyMemory)
	if l.minute[i] != m {
		l.minute[i], l.low[i] = m, smp.LatencyP95
		return
	}
	l.low[i] = min(l.low[i], smp.LatencyP95)
}

func (l *latencyLevel) value(now time.Time) time.Duration {
	m := now.UnixNano() / int64(time.Minute)
	var best time.Duration
	for i := range l.low {
		if l.low[i] > 0 && m-l.minute[i] < latencyMemory && (best == 0 || l.low[i] < best) {
			best = l.low[i]
		}
	}
	return best
}
