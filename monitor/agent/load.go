package agent

// This file fixes the contract between an agent and the gateway: the JSON
// document GET /load serves. The gateway's monitor decodes it with Client;
// a field renamed or a unit changed here is a new Version.

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Version is the version of the Load document. A client refuses any other:
// a document it does not fully understand must not steer traffic.
const Version = 1

// State is what the agent says about its backend, in HAProxy's words.
type State string

const (
	// StateUp: the backend takes traffic at Load.Weight percent.
	StateUp State = "up"
	// StateDrain: CPU is above the drain threshold; send no new work.
	StateDrain State = "drain"
	// StateDown: a configured target (process, PID, cgroup) is missing, so
	// the origin this agent watches is not running. Load.Error says why.
	StateDown State = "down"
)

// Load is one sample, as served by GET /load. Every figure covers the
// window that ends at Time; fractions are 0..1, never percentages.
type Load struct {
	Version int `json:"version"`
	// Time is when the sample was taken, on the agent's clock.
	Time time.Time `json:"time"`
	// AgeSeconds is how old the sample was when it was served (seconds).
	// With the time the client received it, it dates the sample on the
	// client's own clock, whatever the skew between the two hosts.
	AgeSeconds float64 `json:"age_seconds"`
	// IntervalSeconds is the configured sampling period (seconds);
	// WindowSeconds the time actually covered by the CPU figures, which
	// differs after a late tick and for the very first sample.
	IntervalSeconds float64 `json:"interval_seconds"`
	WindowSeconds   float64 `json:"window_seconds"`

	// State and Weight are the agent's verdict, the same it gives HAProxy
	// over agent-check: Weight is a percentage of the configured weight
	// (0..100), meaningful when State is up.
	State  State `json:"state"`
	Weight int   `json:"weight"`
	// Error says why the state is down: which target is missing.
	Error string `json:"error,omitempty"`

	// CPU is the utilisation the weight is computed from: the highest of
	// HostCPU and every target's CPU, so that the tightest constraint, the
	// host or a container's quota, decides.
	CPU float64 `json:"cpu"`
	// HostCPU is the fraction of all the host's CPU time spent busy (not
	// idle, not waiting for I/O) over the window; CPUs the logical CPUs.
	HostCPU float64 `json:"host_cpu"`
	CPUs    int     `json:"cpus"`
	// Targets are the configured processes, PIDs and cgroups, in the order
	// of the configuration.
	Targets []Target `json:"targets,omitempty"`

	// Load1, Load5 and Load15 are the kernel's load averages (runnable and
	// uninterruptible tasks, averaged over 1, 5 and 15 minutes).
	Load1  float64 `json:"load1"`
	Load5  float64 `json:"load5"`
	Load15 float64 `json:"load15"`

	// Memory in use is total minus what the kernel reports available
	// (MemAvailable): page cache that can be dropped does not count.
	MemoryUsedBytes    uint64  `json:"memory_used_bytes"`
	MemoryTotalBytes   uint64  `json:"memory_total_bytes"`
	MemoryUsedFraction float64 `json:"memory_used_fraction"`

	// Inflight is the origin's own count of requests in progress, read
	// from --inflight-url; nil when not configured or when reading it
	// failed, and then InflightError says why.
	Inflight      *float64 `json:"inflight,omitempty"`
	InflightError string   `json:"inflight_error,omitempty"`

	// Received is when Client.Fetch received the document, on the
	// client's clock. It is not part of the document.
	Received time.Time `json:"-"`
}

// Target is the CPU use of one configured target over the window.
type Target struct {
	// Kind is "process" (every process with that command name), "pid" or
	// "cgroup" (a cgroup v2 directory); Name the name, PID or path given.
	Kind string `json:"kind"`
	Name string `json:"name"`
	// PIDs are the processes counted (kinds process and pid).
	PIDs []int32 `json:"pids,omitempty"`
	// Cores is CPU time used per second of wall time: 1.5 is one and a
	// half cores kept busy.
	Cores float64 `json:"cores"`
	// LimitCores is the cgroup's CPU quota (cpu.max) in cores; 0 = none.
	LimitCores float64 `json:"limit_cores,omitempty"`
	// CPU is Cores as a fraction of what the target may use: LimitCores
	// when set, else all the host's CPUs (0..1).
	CPU float64 `json:"cpu"`
	// Error says why the target could not be measured; the agent is down.
	Error string `json:"error,omitempty"`
}

// Age is how old the sample is at now, on the client's clock: the time
// since it was received plus its age when it was served. For a Load that
// did not come through Client (Received zero) it falls back to the agent's
// own Time, which is only right when both clocks agree.
func (l Load) Age(now time.Time) time.Duration {
	if l.Received.IsZero() {
		return now.Sub(l.Time)
	}
	return now.Sub(l.Received) + time.Duration(l.AgeSeconds*float64(time.Second))
}

// Down reports whether the agent says its backend is not running.
func (l Load) Down() bool { return l.State == StateDown }

// ErrInvalidLoad wraps every reason a document is refused by Validate.
var ErrInvalidLoad = errors.New("invalid load document")

// Validate checks what a decoder cannot: the version, that the required
// fields are there, and that every figure is in its range. A zero Time
// or a CPU of 1.7 is more likely a wrong URL or a broken agent than a
// measurement, and an idle-looking backend attracts traffic, so such a
// document is refused rather than believed.
func (l Load) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidLoad, fmt.Sprintf(format, args...))
	}
	if l.Version != Version {
		return bad("version %d, want %d", l.Version, Version)
	}
	if l.Time.IsZero() {
		return bad("time missing")
	}
	if !(l.IntervalSeconds > 0) {
		return bad("interval_seconds %v, want > 0", l.IntervalSeconds)
	}
	if !(l.AgeSeconds >= 0) || !(l.WindowSeconds >= 0) {
		return bad("age_seconds %v / window_seconds %v, want >= 0", l.AgeSeconds, l.WindowSeconds)
	}
	switch l.State {
	case StateUp, StateDrain:
	case StateDown:
		if l.Error == "" {
			return bad("state down without error")
		}
	default:
		return bad("state %q, want up, drain or down", l.State)
	}
	if l.Weight < 0 || l.Weight > 100 {
		return bad("weight %d, want 0..100", l.Weight)
	}
	for name, f := range map[string]float64{"cpu": l.CPU, "host_cpu": l.HostCPU, "memory_used_fraction": l.MemoryUsedFraction} {
		if !isFraction(f) {
			return bad("%s %v, want 0..1", name, f)
		}
	}
	if l.CPUs < 1 {
		return bad("cpus %d, want >= 1", l.CPUs)
	}
	if l.Load1 < 0 || l.Load5 < 0 || l.Load15 < 0 {
		return bad("negative load average")
	}
	if l.MemoryUsedBytes > l.MemoryTotalBytes {
		return bad("memory_used_bytes %d above memory_total_bytes %d", l.MemoryUsedBytes, l.MemoryTotalBytes)
	}
	if l.Inflight != nil && !(*l.Inflight >= 0) {
		return bad("inflight %v, want >= 0", *l.Inflight)
	}
	for i, t := range l.Targets {
		switch t.Kind {
		case "process", "pid", "cgroup":
		default:
			return bad("targets[%d].kind %q", i, t.Kind)
		}
		if !isFraction(t.CPU) || !(t.Cores >= 0) || !(t.LimitCores >= 0) {
			return bad("targets[%d] (%s %s): cpu %v, cores %v, limit_cores %v", i, t.Kind, t.Name, t.CPU, t.Cores, t.LimitCores)
		}
	}
	return nil
}

func isFraction(f float64) bool { return f >= 0 && f <= 1 && !math.IsNaN(f) }
