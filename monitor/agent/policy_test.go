package agent

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestWeight(t *testing.T) {
	p := Policy{}.withDefaults()
	for _, tc := range []struct {
		cpu  float64
		want int
	}{
		{0, 100},
		{0.5, 100},
		{0.85, 100},
		{0.88, 82},  // 100 − 90·(0.03/0.15)
		{0.925, 55}, // halfway from the target to full
		{0.97, 28},
		{1, 10},
		{1.2, 10},
		{math.NaN(), 100},
	} {
		assert.Equal(t, tc.want, p.Weight(tc.cpu), "cpu %v", tc.cpu)
	}
	// Never below the floor, never rising with CPU.
	last := 101
	for cpu := 0.0; cpu <= 1.0001; cpu += 0.001 {
		w := p.Weight(cpu)
		assert.LessOrEqual(t, w, last, "cpu %v", cpu)
		assert.GreaterOrEqual(t, w, p.FloorWeight)
		last = w
	}
	q := Policy{TargetCPU: 0.5, FloorWeight: 50}.withDefaults()
	assert.Equal(t, 75, q.Weight(0.75))
	assert.Equal(t, 50, q.Weight(1))
}

func TestDecide(t *testing.T) {
	p := Policy{DrainCPU: 0.95}.withDefaults()
	type step struct {
		cpu    float64
		target string // a target's error, if any
		state  State
		weight int
	}
	// A scripted run: up, into drain, the hysteresis band, out of drain,
	// a target that goes missing and comes back.
	script := []step{
		{0.5, "", StateUp, 100},
		{0.9, "", StateUp, 70},
		{0.95, "", StateDrain, 0},
		{0.93, "", StateDrain, 0}, // inside the band: still draining
		{0.9001, "", StateDrain, 0},
		{0.89, "", StateUp, 76},
		{0.93, "", StateUp, 52}, // from up, the threshold is 0.95 again
		{0.2, `process "origin": no running process has this name`, StateDown, 0},
		{0.99, `process "origin": no running process has this name`, StateDown, 0}, // down wins over drain
		{0.2, "", StateUp, 100},
	}
	prev := StateUp
	for i, s := range script {
		l := &Load{CPU: s.cpu, Targets: []Target{{Kind: "process", Name: "origin", Error: s.target}}}
		state, weight, reason := p.Decide(prev, l)
		assert.Equal(t, s.state, state, "step %d", i)
		assert.Equal(t, s.weight, weight, "step %d", i)
		assert.Equal(t, s.target, reason, "step %d", i)
		prev = state
	}
	// Without a drain threshold a full CPU is the floor weight, not drain.
	state, weight, _ := Policy{}.withDefaults().Decide(StateUp, &Load{CPU: 1})
	assert.Equal(t, StateUp, state)
	assert.Equal(t, DefaultFloorWeight, weight)
}

func TestAgentReply(t *testing.T) {
	assert.Equal(t, "up 75%\n", AgentReply(StateUp, 75, "", false))
	assert.Equal(t, "up ready 100%\n", AgentReply(StateUp, 100, "", true))
	assert.Equal(t, "up 100%\n", AgentReply(StateUp, 250, "", false), "clamped")
	assert.Equal(t, "drain\n", AgentReply(StateDrain, 0, "", true))
	assert.Equal(t, "down #pid 42: no such process\n", AgentReply(StateDown, 0, "pid 42: no such process", false))
	assert.Equal(t, "down\n", AgentReply(StateDown, 0, "\n", false))
	// A reason cannot break the one-line protocol, nor fill HAProxy's page.
	r := AgentReply(StateDown, 0, "line one\r\nup 100%\x00"+strings.Repeat("é", 300), false)
	assert.Equal(t, 1, strings.Count(r, "\n"))
	assert.True(t, strings.HasSuffix(r, "\n"))
	assert.True(t, strings.HasPrefix(r, "down #line one  up 100% "))
	assert.LessOrEqual(t, len(r), len("down #")+maxReasonBytes+1)
	assert.True(t, strings.HasSuffix(r, "é\n"), "cut on a character boundary: %q", r[len(r)-4:])
}

func TestNeedReady(t *testing.T) {
	hold := time.Minute
	started := t0
	assert.True(t, needReady(t0.Add(time.Second), started, time.Time{}, hold), "just started")
	assert.False(t, needReady(t0.Add(2*time.Minute), started, time.Time{}, hold), "long up")
	assert.True(t, needReady(t0.Add(2*time.Minute), started, t0.Add(90*time.Second), hold), "drained 30 s ago")
	assert.False(t, needReady(t0.Add(5*time.Minute), started, t0.Add(90*time.Second), hold), "drained long ago")
}
