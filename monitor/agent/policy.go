package agent

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// Policy defaults. The CPU target matches the gateway's: above it a
// backend's queueing delay grows quickly, so that is where its share of new
// work starts to shrink.
const (
	DefaultTargetCPU   = 0.85
	DefaultFloorWeight = 10
	DefaultReadyHold   = time.Minute
	// DrainHysteresis is how far CPU must fall below DrainCPU before a
	// draining agent says up again, so that a CPU hovering at the threshold
	// does not flip the backend in and out of rotation every check.
	DrainHysteresis = 0.05
)

// Policy maps a sample to the agent's verdict. It is pure: the same
// sample and previous state always give the same answer.
type Policy struct {
	// TargetCPU is the CPU utilisation (0..1) up to which the weight is
	// 100%. Above it the weight falls linearly, reaching FloorWeight at a
	// CPU of 1. 0 = DefaultTargetCPU (0.85).
	TargetCPU float64
	// FloorWeight is the weight (percent, 1..100) at full CPU. It is never
	// 0: HAProxy reads a weight of 0 as drain, and a busy backend that
	// still answers is better than one taken out. 0 = DefaultFloorWeight
	// (10).
	FloorWeight int
	// DrainCPU, when set, is the CPU (TargetCPU < DrainCPU ≤ 1) from which
	// the agent says drain instead of a weight; it says up again once CPU
	// is below DrainCPU−DrainHysteresis. 0 = never drain.
	DrainCPU float64
	// ReadyHold is how long after the agent starts, and after its last
	// sample that was not up, an up reply also carries HAProxy's "ready"
	// (see AgentReply). 0 = DefaultReadyHold (1m).
	ReadyHold time.Duration
}

// withDefaults fills the zero fields.
func (p Policy) withDefaults() Policy {
	if p.TargetCPU == 0 {
		p.TargetCPU = DefaultTargetCPU
	}
	if p.FloorWeight == 0 {
		p.FloorWeight = DefaultFloorWeight
	}
	if p.ReadyHold == 0 {
		p.ReadyHold = DefaultReadyHold
	}
	return p
}

// Weight is the weight, in percent, for a CPU utilisation: 100 up to
// TargetCPU, then linear down to FloorWeight at 1. p must have its
// defaults filled.
func (p Policy) Weight(cpu float64) int {
	if !(cpu > p.TargetCPU) { // also NaN: no figure is no reason to shed
		return 100
	}
	if cpu >= 1 {
		return p.FloorWeight
	}
	over := (cpu - p.TargetCPU) / (1 - p.TargetCPU)
	w := int(math.Round(100 - float64(100-p.FloorWeight)*over))
	return max(p.FloorWeight, min(100, w))
}

// Decide gives the state and weight for a sample, given the state of the
// previous sample (for the drain hysteresis). A target with an error means
// down: the origin the agent was told to watch is not there.
func (p Policy) Decide(prev State, l *Load) (State, int, string) {
	for _, t := range l.Targets {
		if t.Error != "" {
			return StateDown, 0, t.Error
		}
	}
	if p.DrainCPU > 0 {
		threshold := p.DrainCPU
		if prev == StateDrain {
			threshold -= DrainHysteresis
		}
		if l.CPU >= threshold {
			return StateDrain, 0, ""
		}
	}
	return StateUp, p.Weight(l.CPU), ""
}

// needReady reports whether an up reply at now should carry "ready". The
// agent's own drain can only be undone by the agent ("ready"), but
// "ready" also cancels a drain or maintenance an operator set on the
// HAProxy CLI. So it is sent only while it may be needed: for a while
// after the agent starts (HAProxy may hold a drain from before a restart)
// and after the agent last reported something other than up.
func needReady(now, started, lastNotUp time.Time, hold time.Duration) bool {
	return now.Sub(started) < hold || (!lastNotUp.IsZero() && now.Sub(lastNotUp) < hold)
}

// maxReasonBytes bounds the description sent after "down #": HAProxy shows
// it on its stats page, so a page of error text is no use there.
const maxReasonBytes = 200

// AgentReply is the one-line HAProxy agent-check reply for a verdict:
//
//	up 75%            weight 75% of the server's configured weight
//	up ready 75%      the same, and cancel a drain set earlier
//	drain             admin state DRAIN: no new connections
//	down #<reason>    operational state DOWN, with the reason on the stats page
//
// HAProxy splits the line into words at spaces, tabs and commas, and a
// word starting with '#' starts the description, which runs to the end of
// the line. It keeps whatever a reply does not mention, so an up reply
// always says "up" (undoing an earlier down) and the weight.
func AgentReply(state State, weight int, reason string, ready bool) string {
	switch state {
	case StateDown:
		if reason = sanitizeReason(reason); reason == "" {
			return "down\n"
		}
		return "down #" + reason + "\n"
	case StateDrain:
		return "drain\n"
	}
	weight = max(0, min(100, weight))
	var b strings.Builder
	b.WriteString("up ")
	if ready {
		b.WriteString("ready ")
	}
	b.WriteString(strconv.Itoa(weight))
	b.WriteString("%\n")
	return b.String()
}

// sanitizeReason makes reason fit on the reply's one line.
func sanitizeReason(reason string) string {
	reason = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, reason)
	reason = strings.TrimSpace(reason)
	if len(reason) > maxReasonBytes {
		cut := maxReasonBytes
		for cut > 0 && !utf8Start(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	return reason
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
