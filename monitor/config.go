package monitor

import (
	"flag"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"time"
)

// Config is how a service's backends are watched. Every zero field means
// "the default" given in its comment, so an empty block (or none) gives
// outlier ejection with Envoy-like defaults, no active health check, and
// the standby policy below (which acts only on a service that lists
// standby backends, or that has a hook to call).
type Config struct {
	Outlier     OutlierConfig     `yaml:"outlier"`
	HealthCheck HealthCheckConfig `yaml:"health_check"`
	Agent       AgentConfig       `yaml:"agent"`
	Standby     StandbyConfig     `yaml:"standby"`
}

// AgentConfig polls sluice-agent on each backend's host for its load
// (GET /load). It runs only when Port or URLs is set. Data older than
// MaxAge stops influencing anything: a silent agent must not freeze the
// last figure it gave.
type AgentConfig struct {
	// Port is the agent's port on each backend's host
	// (http://HOST:PORT/load). 0: only the backends in URLs are polled.
	Port int `yaml:"port"`
	// URLs gives the agent URL of particular backends (by backend URL),
	// overriding Port.
	URLs map[string]string `yaml:"urls"`
	// Interval between polls. Default 1s.
	Interval time.Duration `yaml:"interval"`
	// Timeout of one poll. Default 500ms.
	Timeout time.Duration `yaml:"timeout"`
	// MaxAge is the age past which a sample is ignored. Default 3s.
	MaxAge time.Duration `yaml:"max_age"`
	// CPUTarget is the host CPU (0..1) above which the backend's
	// concurrency limit is pulled down in proportion. Default 0.85.
	CPUTarget float64 `yaml:"cpu_target"`
}

// OutlierConfig ejects a backend whose answers are failures: 5xx from the
// backend, connections refused or reset, timeouts, broken responses. A
// fast failure is still a failure: a backend that answers 500 in 1 ms looks
// like the fastest backend to anything that measures only latency.
type OutlierConfig struct {
	// Disabled turns ejection off. Default false (ejection on).
	Disabled bool `yaml:"disabled"`
	// ConsecutiveFailures ejects a backend after this many failures in a
	// row. Default 5.
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// FailureRate ejects a backend whose share of failures over the last
	// Interval (at least MinRequests requests) reaches this fraction
	// (0..1). Default 0.5.
	FailureRate float64 `yaml:"failure_rate"`
	// MinRequests is how many requests the window needs before its
	// failure rate counts. Default 10.
	MinRequests int `yaml:"min_requests"`
	// Interval is the window of the failure rate, and how often an
	// ejection's multiplier decays while the backend behaves. Default 10s.
	Interval time.Duration `yaml:"interval"`
	// BaseEjectionTime is how long a first ejection lasts; each ejection
	// in a row lasts one more multiple of it, up to MaxEjectionTime.
	// Default 10s.
	BaseEjectionTime time.Duration `yaml:"base_ejection_time"`
	// MaxEjectionTime bounds an ejection. Default 300s.
	MaxEjectionTime time.Duration `yaml:"max_ejection_time"`
	// MaxEjectedPercent bounds the share of a service's backends ejected
	// at once (0..100); at least one may always be, and the last backend
	// taking traffic never is. Default 50.
	MaxEjectedPercent float64 `yaml:"max_ejected_percent"`
	// SlowStart is how long a backend back from ejection (or from a
	// failed health check) takes to be given its full concurrency: its
	// limit is capped at 1 and doubles ten times over this period.
	// Default 5s.
	SlowStart time.Duration `yaml:"slow_start"`
}

// HealthCheckConfig is an active HTTP health check. It runs only when
// Path is set.
type HealthCheckConfig struct {
	// Path is requested with GET on each backend ("/healthz"). Empty: no
	// active check.
	Path string `yaml:"path"`
	// Interval between checks of one backend. Default 2s.
	Interval time.Duration `yaml:"interval"`
	// Timeout of one check. Default 1s.
	Timeout time.Duration `yaml:"timeout"`
	// ExpectStatus is the lowest and highest status that pass. Default
	// 200 and 399.
	ExpectStatusMin int `yaml:"expect_status_min"`
	ExpectStatusMax int `yaml:"expect_status_max"`
	// Rise is how many passes in a row bring an unhealthy backend back;
	// Fall how many failures in a row take a healthy one out. Defaults 2
	// and 3.
	Rise int `yaml:"rise"`
	Fall int `yaml:"fall"`
}

// StandbyConfig is when a service's standby backends (the proxy's
// services[].standby) are brought in and let go again, and whom to tell
// (standby.go has the rules). The service is under pressure while any one
// criterion holds; a standby is activated when pressure has lasted
// Sustain, and released when the service has stayed quiet for CoolDown.
type StandbyConfig struct {
	// QueueWaitP95: pressure while the 95th percentile of the time
	// admitted requests waited in the queue is above it. Default 100ms.
	QueueWaitP95 time.Duration `yaml:"queue_wait_p95"`
	// RefusalRate: pressure while the share of requests refused for
	// overload (queue full, queue timeout, deadline unreachable, tenant
	// over its share) is above it (0..1; 1 never holds). Default 0.05.
	RefusalRate float64 `yaml:"refusal_rate"`
	// LatencyP95Factor: pressure while the 95th percentile of backend
	// latency (successful answers) is above this multiple of its unloaded
	// level, the lowest such percentile of the last ten minutes, and at
	// least 5ms above it. At least 1. Default 2.
	LatencyP95Factor float64 `yaml:"latency_p95_factor"`
	// AgentCPU: pressure while the mean CPU utilisation the backends'
	// agents report is above it (0..1; 1 never holds). Used only while
	// agent data is there. Default 0.8.
	AgentCPU float64 `yaml:"agent_cpu"`
	// Sustain is how long pressure must last before a standby is
	// activated; after an activation, the next one waits for the new
	// backend's slow start and then for Sustain again. Default 2s.
	Sustain time.Duration `yaml:"sustain"`
	// CoolDown is how long the service must stay quiet (no refusal,
	// queue wait p95 under half its level, and its load would fit the
	// backends left behind) before the standby activated last is
	// released; one release per CoolDown. Default 30s.
	CoolDown time.Duration `yaml:"cool_down"`
	// ReleaseUtilization is the margin of that fit: the service's
	// admitted rate must stay below this fraction of what the remaining
	// backends can carry (0..1). Default 0.7.
	ReleaseUtilization float64 `yaml:"release_utilization"`
	// HookCommand is run (no shell: the first element is the program,
	// the rest its arguments) on every activation, release and
	// need_capacity event, with the event as JSON on its standard input.
	// Empty: none.
	HookCommand []string `yaml:"hook_command"`
	// HookURL receives the same JSON event in a POST. Empty: none.
	HookURL string `yaml:"hook_url"`
	// HookTimeout bounds one run of the command and one POST. Default 10s.
	HookTimeout time.Duration `yaml:"hook_timeout"`
}

// Defaults; see the field comments.
const (
	DefaultConsecutiveFailures = 5
	DefaultFailureRate         = 0.5
	DefaultMinRequests         = 10
	DefaultInterval            = 10 * time.Second
	DefaultBaseEjectionTime    = 10 * time.Second
	DefaultMaxEjectionTime     = 300 * time.Second
	DefaultMaxEjectedPercent   = 50
	DefaultSlowStart           = 5 * time.Second
	DefaultCheckInterval       = 2 * time.Second
	DefaultCheckTimeout        = time.Second
	DefaultExpectStatusMin     = 200
	DefaultExpectStatusMax     = 399
	DefaultRise                = 2
	DefaultFall                = 3
	DefaultAgentInterval       = time.Second
	DefaultAgentTimeout        = 500 * time.Millisecond
	DefaultAgentMaxAge         = 3 * time.Second
	DefaultCPUTarget           = 0.85

	DefaultStandbyQueueWaitP95       = 100 * time.Millisecond
	DefaultStandbyRefusalRate        = 0.05
	DefaultStandbyLatencyP95Factor   = 2
	DefaultStandbyAgentCPU           = 0.8
	DefaultStandbySustain            = 2 * time.Second
	DefaultStandbyCoolDown           = 30 * time.Second
	DefaultStandbyReleaseUtilization = 0.7
	DefaultStandbyHookTimeout        = 10 * time.Second
)

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	o := &c.Outlier
	setInt(&o.ConsecutiveFailures, DefaultConsecutiveFailures)
	if o.FailureRate == 0 {
		o.FailureRate = DefaultFailureRate
	}
	setInt(&o.MinRequests, DefaultMinRequests)
	setDur(&o.Interval, DefaultInterval)
	setDur(&o.BaseEjectionTime, DefaultBaseEjectionTime)
	setDur(&o.MaxEjectionTime, DefaultMaxEjectionTime)
	if o.MaxEjectedPercent == 0 {
		o.MaxEjectedPercent = DefaultMaxEjectedPercent
	}
	setDur(&o.SlowStart, DefaultSlowStart)
	h := &c.HealthCheck
	setDur(&h.Interval, DefaultCheckInterval)
	setDur(&h.Timeout, DefaultCheckTimeout)
	setInt(&h.ExpectStatusMin, DefaultExpectStatusMin)
	setInt(&h.ExpectStatusMax, DefaultExpectStatusMax)
	setInt(&h.Rise, DefaultRise)
	setInt(&h.Fall, DefaultFall)
	a := &c.Agent
	setDur(&a.Interval, DefaultAgentInterval)
	setDur(&a.Timeout, DefaultAgentTimeout)
	setDur(&a.MaxAge, DefaultAgentMaxAge)
	if a.CPUTarget == 0 {
		a.CPUTarget = DefaultCPUTarget
	}
	sb := &c.Standby
	setDur(&sb.QueueWaitP95, DefaultStandbyQueueWaitP95)
	setFloat(&sb.RefusalRate, DefaultStandbyRefusalRate)
	setFloat(&sb.LatencyP95Factor, DefaultStandbyLatencyP95Factor)
	setFloat(&sb.AgentCPU, DefaultStandbyAgentCPU)
	setDur(&sb.Sustain, DefaultStandbySustain)
	setDur(&sb.CoolDown, DefaultStandbyCoolDown)
	setFloat(&sb.ReleaseUtilization, DefaultStandbyReleaseUtilization)
	setDur(&sb.HookTimeout, DefaultStandbyHookTimeout)
	return c
}

func setFloat(v *float64, def float64) {
	if *v == 0 {
		*v = def
	}
}

func setInt(v *int, def int) {
	if *v == 0 {
		*v = def
	}
}

func setDur(v *time.Duration, def time.Duration) {
	if *v == 0 {
		*v = def
	}
}

// Validate reports the first invalid field, naming it (as in YAML) and its
// value. Zero fields are valid: they mean the default.
func (c *Config) Validate() error {
	o, h := &c.Outlier, &c.HealthCheck
	switch {
	case o.ConsecutiveFailures < 0:
		return fmt.Errorf("outlier.consecutive_failures: must be >= 0, got %d", o.ConsecutiveFailures)
	case o.FailureRate < 0 || o.FailureRate > 1:
		return fmt.Errorf("outlier.failure_rate: must be in [0, 1], got %v", o.FailureRate)
	case o.MinRequests < 0:
		return fmt.Errorf("outlier.min_requests: must be >= 0, got %d", o.MinRequests)
	case o.Interval < 0:
		return fmt.Errorf("outlier.interval: must be >= 0, got %v", o.Interval)
	case o.BaseEjectionTime < 0:
		return fmt.Errorf("outlier.base_ejection_time: must be >= 0, got %v", o.BaseEjectionTime)
	case o.MaxEjectionTime < 0:
		return fmt.Errorf("outlier.max_ejection_time: must be >= 0, got %v", o.MaxEjectionTime)
	case o.MaxEjectionTime != 0 && o.MaxEjectionTime < o.BaseEjectionTime:
		return fmt.Errorf("outlier.max_ejection_time: must be >= base_ejection_time (%v), got %v", o.BaseEjectionTime, o.MaxEjectionTime)
	case o.MaxEjectedPercent < 0 || o.MaxEjectedPercent > 100:
		return fmt.Errorf("outlier.max_ejected_percent: must be in [0, 100], got %v", o.MaxEjectedPercent)
	case o.SlowStart < 0:
		return fmt.Errorf("outlier.slow_start: must be >= 0, got %v", o.SlowStart)
	case h.Path != "" && h.Path[0] != '/':
		return fmt.Errorf("health_check.path: %q must start with /", h.Path)
	case h.Interval < 0:
		return fmt.Errorf("health_check.interval: must be >= 0, got %v", h.Interval)
	case h.Timeout < 0:
		return fmt.Errorf("health_check.timeout: must be >= 0, got %v", h.Timeout)
	case h.ExpectStatusMin < 0 || h.ExpectStatusMin > 599:
		return fmt.Errorf("health_check.expect_status_min: must be a status, got %d", h.ExpectStatusMin)
	case h.ExpectStatusMax < 0 || h.ExpectStatusMax > 599:
		return fmt.Errorf("health_check.expect_status_max: must be a status, got %d", h.ExpectStatusMax)
	case h.ExpectStatusMax != 0 && h.ExpectStatusMax < h.ExpectStatusMin:
		return fmt.Errorf("health_check.expect_status_max: must be >= expect_status_min (%d), got %d", h.ExpectStatusMin, h.ExpectStatusMax)
	case h.Rise < 0:
		return fmt.Errorf("health_check.rise: must be >= 0, got %d", h.Rise)
	case h.Fall < 0:
		return fmt.Errorf("health_check.fall: must be >= 0, got %d", h.Fall)
	case c.Agent.Port < 0 || c.Agent.Port > 65535:
		return fmt.Errorf("agent.port: must be a port, got %d", c.Agent.Port)
	case c.Agent.Interval < 0:
		return fmt.Errorf("agent.interval: must be >= 0, got %v", c.Agent.Interval)
	case c.Agent.Timeout < 0:
		return fmt.Errorf("agent.timeout: must be >= 0, got %v", c.Agent.Timeout)
	case c.Agent.MaxAge < 0:
		return fmt.Errorf("agent.max_age: must be >= 0, got %v", c.Agent.MaxAge)
	case c.Agent.CPUTarget < 0 || c.Agent.CPUTarget > 1:
		return fmt.Errorf("agent.cpu_target: must be in [0, 1], got %v", c.Agent.CPUTarget)
	}
	for _, k := range slices.Sorted(maps.Keys(c.Agent.URLs)) {
		if u, err := url.Parse(c.Agent.URLs[k]); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("agent.urls: %q: %q is not an http URL", k, c.Agent.URLs[k])
		}
	}
	return c.Standby.validate()
}

func (sb *StandbyConfig) validate() error {
	switch {
	case sb.QueueWaitP95 < 0:
		return fmt.Errorf("standby.queue_wait_p95: must be >= 0, got %v", sb.QueueWaitP95)
	case !(sb.RefusalRate >= 0 && sb.RefusalRate <= 1):
		return fmt.Errorf("standby.refusal_rate: must be in [0, 1], got %v", sb.RefusalRate)
	case sb.LatencyP95Factor != 0 && !(sb.LatencyP95Factor >= 1):
		return fmt.Errorf("standby.latency_p95_factor: must be >= 1, got %v", sb.LatencyP95Factor)
	case !(sb.AgentCPU >= 0 && sb.AgentCPU <= 1):
		return fmt.Errorf("standby.agent_cpu: must be in [0, 1], got %v", sb.AgentCPU)
	case sb.Sustain < 0:
		return fmt.Errorf("standby.sustain: must be >= 0, got %v", sb.Sustain)
	case sb.CoolDown < 0:
		return fmt.Errorf("standby.cool_down: must be >= 0, got %v", sb.CoolDown)
	case !(sb.ReleaseUtilization >= 0 && sb.ReleaseUtilization <= 1):
		return fmt.Errorf("standby.release_utilization: must be in [0, 1], got %v", sb.ReleaseUtilization)
	case sb.HookTimeout < 0:
		return fmt.Errorf("standby.hook_timeout: must be >= 0, got %v", sb.HookTimeout)
	case len(sb.HookCommand) > 0 && sb.HookCommand[0] == "":
		return fmt.Errorf("standby.hook_command: the first element is the program to run, got an empty one")
	}
	if sb.HookURL != "" {
		u, err := url.Parse(sb.HookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("standby.hook_url: %q is not an http:// or https:// URL", sb.HookURL)
		}
	}
	return nil
}

// RegisterFlags binds the settings to flags on fs, with c's current values
// as the defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	o, h := &c.Outlier, &c.HealthCheck
	fs.BoolVar(&o.Disabled, "outlier-disabled", o.Disabled,
		"turn off outlier ejection (backends answering failures keep getting traffic)")
	fs.IntVar(&o.ConsecutiveFailures, "outlier-consecutive-failures", o.ConsecutiveFailures,
		"eject a backend after this many failures in a row (5xx, refused, reset, timeout) (0 = 5)")
	fs.Float64Var(&o.FailureRate, "outlier-failure-rate", o.FailureRate,
		"eject a backend whose failures over the interval reach this `fraction` (0 = 0.5)")
	fs.IntVar(&o.MinRequests, "outlier-min-requests", o.MinRequests,
		"requests an interval needs before its failure rate counts (0 = 10)")
	fs.DurationVar(&o.Interval, "outlier-interval", o.Interval,
		"window of the failure rate, and of the ejection multiplier's decay (0 = 10s)")
	fs.DurationVar(&o.BaseEjectionTime, "outlier-base-ejection-time", o.BaseEjectionTime,
		"length of a first ejection; repeated ones last a multiple of it (0 = 10s)")
	fs.DurationVar(&o.MaxEjectionTime, "outlier-max-ejection-time", o.MaxEjectionTime,
		"longest ejection (0 = 5m0s)")
	fs.Float64Var(&o.MaxEjectedPercent, "outlier-max-ejected-percent", o.MaxEjectedPercent,
		"most `percent` of a service's backends ejected at once; at least one may be (0 = 50)")
	fs.DurationVar(&o.SlowStart, "slow-start", o.SlowStart,
		"time a backend back from ejection or a failed health check takes to reach its full concurrency (0 = 5s)")
	fs.StringVar(&h.Path, "health-check-path", h.Path,
		"active health check: GET this `path` on every backend (empty = no active check)")
	fs.DurationVar(&h.Interval, "health-check-interval", h.Interval, "time between health checks of a backend (0 = 2s)")
	fs.DurationVar(&h.Timeout, "health-check-timeout", h.Timeout, "timeout of one health check (0 = 1s)")
	fs.IntVar(&h.ExpectStatusMin, "health-check-status-min", h.ExpectStatusMin, "lowest passing status (0 = 200)")
	fs.IntVar(&h.ExpectStatusMax, "health-check-status-max", h.ExpectStatusMax, "highest passing status (0 = 399)")
	fs.IntVar(&h.Rise, "health-check-rise", h.Rise, "passes in a row that bring a backend back (0 = 2)")
	fs.IntVar(&h.Fall, "health-check-fall", h.Fall, "failures in a row that take a backend out (0 = 3)")
	a := &c.Agent
	fs.IntVar(&a.Port, "agent-port", a.Port, "poll sluice-agent at http://BACKEND-HOST:`port`/load; 0 polls no agent")
	fs.DurationVar(&a.Interval, "agent-interval", a.Interval, "time between agent polls (0 = 1s)")
	fs.DurationVar(&a.Timeout, "agent-timeout", a.Timeout, "timeout of one agent poll (0 = 500ms)")
	fs.DurationVar(&a.MaxAge, "agent-max-age", a.MaxAge, "age past which an agent's sample is ignored (0 = 3s)")
	fs.Float64Var(&a.CPUTarget, "agent-cpu-target", a.CPUTarget,
		"host CPU `fraction` above which a backend's concurrency limit is pulled down (0 = 0.85)")

	sb := &c.Standby
	fs.DurationVar(&sb.QueueWaitP95, "standby-queue-wait-p95", sb.QueueWaitP95,
		"standby: pressure while the p95 of queue wait is above this (0 = 100ms)")
	fs.Float64Var(&sb.RefusalRate, "standby-refusal-rate", sb.RefusalRate,
		"standby: pressure while this `fraction` of requests is refused for overload (0 = 0.05)")
	fs.Float64Var(&sb.LatencyP95Factor, "standby-latency-p95-factor", sb.LatencyP95Factor,
		"standby: pressure while the p95 of backend latency is this `multiple` of its unloaded level (0 = 2)")
	fs.Float64Var(&sb.AgentCPU, "standby-agent-cpu", sb.AgentCPU,
		"standby: pressure while the backends' mean agent-reported CPU is above this `fraction` (0 = 0.8)")
	fs.DurationVar(&sb.Sustain, "standby-sustain", sb.Sustain,
		"standby: how long pressure must last before a standby backend is activated (0 = 2s)")
	fs.DurationVar(&sb.CoolDown, "standby-cool-down", sb.CoolDown,
		"standby: how long the service must stay quiet before an active standby is released (0 = 30s)")
	fs.Float64Var(&sb.ReleaseUtilization, "standby-release-utilization", sb.ReleaseUtilization,
		"standby: release only while the load is below this `fraction` of what the remaining backends carry (0 = 0.7)")
	fs.StringVar(&sb.HookURL, "standby-hook-url", sb.HookURL,
		"standby: POST a JSON event to this `URL` on every activation, release and need for capacity")
	fs.DurationVar(&sb.HookTimeout, "standby-hook-timeout", sb.HookTimeout,
		"standby: time allowed to the hook command and to the hook URL (0 = 10s)")
}
