package agent

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Config defaults.
const (
	DefaultInterval = time.Second
	// MinInterval bounds how often the agent may sample: below it the
	// sampling itself starts to be the load it reports.
	MinInterval = 10 * time.Millisecond
	// DefaultRescan is how often the process table is searched again for
	// processes named by Processes, to find workers started since.
	DefaultRescan = 10 * time.Second
	// maxInflightTimeout caps the default in-flight URL timeout.
	maxInflightTimeout = 500 * time.Millisecond
)

// Config is what an agent samples and how it judges the samples. Field
// names in Validate's messages are the sluice-agent flags that set them.
type Config struct {
	// Interval is the sampling period. 0 = DefaultInterval (1s).
	Interval time.Duration
	// Processes names processes to measure by command name: the kernel's
	// comm as ps -o comm shows it (cut to 15 bytes), or the full name of a
	// longer one. All processes with the name count together, as one
	// target.
	Processes []string
	// PIDs are processes to measure by PID.
	PIDs []int
	// Cgroups are cgroup v2 directories to measure (their cpu.stat, and
	// cpu.max for a quota): absolute, or relative to /sys/fs/cgroup.
	Cgroups []string
	// Rescan is how often processes named by Processes are searched for
	// again (also at once when one exits). 0 = DefaultRescan (10s).
	Rescan time.Duration
	// InflightURL, when set, is an http or https URL on the origin whose
	// body holds its count of requests in progress: a number, or a JSON
	// object with the number at InflightField (dot-separated path).
	InflightURL   string
	InflightField string
	// InflightTimeout bounds each read of InflightURL. 0 = half the
	// interval, at most 500ms.
	InflightTimeout time.Duration
	// Policy turns a sample into up with a weight, drain or down.
	Policy Policy
}

// WithDefaults returns c with every zero field that has a default set.
func (c Config) WithDefaults() Config {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Rescan == 0 {
		c.Rescan = DefaultRescan
	}
	if c.InflightTimeout == 0 {
		c.InflightTimeout = min(c.Interval/2, maxInflightTimeout)
	}
	c.Policy = c.Policy.withDefaults()
	return c
}

// Validate checks a configuration with its defaults filled
// (WithDefaults). The message names the setting and the bad value.
func (c Config) Validate() error {
	if c.Interval < MinInterval {
		return fmt.Errorf("interval: %v is below the minimum %v", c.Interval, MinInterval)
	}
	if c.Rescan < c.Interval {
		return fmt.Errorf("rescan: %v is shorter than the interval %v", c.Rescan, c.Interval)
	}
	for _, name := range c.Processes {
		if name == "" || strings.ContainsAny(name, "/\x00\n") {
			return fmt.Errorf("process: %q is not a command name", name)
		}
	}
	for _, pid := range c.PIDs {
		if pid <= 0 || pid > 1<<22 { // PID_MAX_LIMIT on 64-bit Linux
			return fmt.Errorf("pid: %d is not a process ID", pid)
		}
	}
	for _, path := range c.Cgroups {
		if path == "" || strings.Contains(path, "\x00") {
			return fmt.Errorf("cgroup: %q is not a path", path)
		}
	}
	if c.InflightURL != "" {
		u, err := url.Parse(c.InflightURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("inflight-url: want http://host:port/path, got %q", c.InflightURL)
		}
	} else if c.InflightField != "" {
		return fmt.Errorf("inflight-field: %q given without inflight-url", c.InflightField)
	}
	if c.InflightTimeout <= 0 || c.InflightTimeout > c.Interval {
		return fmt.Errorf("inflight-timeout: %v, want > 0 and at most the interval %v", c.InflightTimeout, c.Interval)
	}
	p := c.Policy
	if !(p.TargetCPU > 0 && p.TargetCPU < 1) {
		return fmt.Errorf("target-cpu: %v, want a fraction between 0 and 1 (0.85 is 85%%)", p.TargetCPU)
	}
	if p.FloorWeight < 1 || p.FloorWeight > 100 {
		return fmt.Errorf("floor-weight: %d, want a percentage 1..100", p.FloorWeight)
	}
	if p.DrainCPU != 0 && !(p.DrainCPU > p.TargetCPU && p.DrainCPU <= 1) {
		return fmt.Errorf("drain-cpu: %v, want 0 (never) or above target-cpu %v and at most 1", p.DrainCPU, p.TargetCPU)
	}
	if p.ReadyHold < 0 {
		return fmt.Errorf("ready-hold: %v, want >= 0", p.ReadyHold)
	}
	return nil
}
