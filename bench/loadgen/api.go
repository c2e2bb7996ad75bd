package loadgen

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Config describes one load run. Zero values take the documented defaults;
// Validate names the field and the value it rejects.
type Config struct {
	Target   string        // base URL, e.g. http://127.0.0.1:8080 (required; plain http)
	Rate     Schedule      // open-loop arrival rate over time; ParseSchedule("200:10s,600:20s,200:10s"), or "600" with Duration
	Duration time.Duration // total when Rate is a single step without its own duration; the run length in closed loop
	Poisson  bool          // exponential inter-arrivals instead of constant spacing
	Conns    int           // >0: closed-loop mode with this many connections (Rate ignored)
	Mix      []Class       // request classes with shares; empty = one GET / class
	Targets  []string      // optional target list (paths) cycled through (from a file); overrides the classes' paths
	SLO      time.Duration // goodput threshold; 0 = 500ms
	Timeout  time.Duration // per-request client timeout, counted from the scheduled send time; 0 = 5s
	MaxConns int           // connection cap for open loop; 0 = 20000
	Seed     uint64        // seeds class choice and Poisson gaps; 0 = 1
	// After, when positive, also reports the requests scheduled at or after
	// this offset from the start on their own, in Report.After: the figures
	// from a moment of the run on (from two seconds after a backend
	// failed, say). The per-second series cannot give them, since it
	// counts outcomes by the second they finished, and a request that
	// times out finishes seconds after it was sent.
	After time.Duration
}

// Defaults.
const (
	DefaultSLO      = 500 * time.Millisecond
	DefaultTimeout  = 5 * time.Second
	DefaultMaxConns = 20000
)

// Class is one kind of request in a traffic mix.
type Class struct {
	Name    string            `json:"name"`
	Share   float64           `json:"share"`  // relative weight; shares need not sum to 1
	Method  string            `json:"method"` // default GET
	Path    string            `json:"path"`   // default "/"; may carry a query string
	Headers map[string]string `json:"headers,omitempty"`
	Body    []byte            `json:"body,omitempty"`
}

// Step is one segment of a Schedule: the rate goes linearly from From to To
// requests per second over Dur (From == To for a constant step).
type Step struct {
	From, To float64
	Dur      time.Duration
}

// Schedule is a sequence of rate steps.
type Schedule []Step

// Percentiles are latency quantiles. Max is exact; the others come from an
// HDR histogram with three significant digits.
type Percentiles struct {
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p99_9_ns"`
	P9999 time.Duration `json:"p99_99_ns"`
	Max   time.Duration `json:"max_ns"`
}

// ClassReport holds the figures of one class; see Report for their meaning.
type ClassReport struct {
	Name           string           `json:"name"`
	Sent           int64            `json:"sent"`
	Completed      int64            `json:"completed"`
	Throughput     float64          `json:"throughput"`
	Goodput        float64          `json:"goodput"`
	SuccessRatio   float64          `json:"success_ratio"`
	Status         map[int]int64    `json:"status"`
	Errors         map[string]int64 `json:"errors"`
	Shed           map[string]int64 `json:"shed"`
	Latency        Percentiles      `json:"latency"`
	SuccessLatency Percentiles      `json:"success_latency"`
	RefusalLatency Percentiles      `json:"refusal_latency"` // 503 and 429 responses
}

// Second is one point of the per-second time series. Sent counts requests by
// the second they went out; the other fields by the second they finished.
// P50..Max cover every response (refusals included, client errors not);
// OKP50 and OKP99 only the 2xx ones. A percentile is 0 when the second had no
// response of its kind.
type Second struct {
	T      int           `json:"t"` // seconds since the start
	Sent   int64         `json:"sent"`
	OK     int64         `json:"ok"`     // 2xx responses
	Good   int64         `json:"good"`   // 2xx responses within the SLO: the second's goodput
	Errors int64         `json:"errors"` // client-side errors (timeouts, resets, ...)
	Shed   int64         `json:"shed"`   // responses carrying X-Sluice-Shed
	Other  int64         `json:"other"`  // other non-2xx responses
	P50    time.Duration `json:"p50_ns"`
	P90    time.Duration `json:"p90_ns"`
	P99    time.Duration `json:"p99_ns"`
	Max    time.Duration `json:"max_ns"`
	OKP50  time.Duration `json:"ok_p50_ns"` // 2xx responses only
	OKP99  time.Duration `json:"ok_p99_ns"` // 2xx responses only
}

// Report is the outcome of a run. Every sent request ends as exactly one
// response (Completed, counted in Status) or one client-side error (Errors),
// so Sent == Completed + sum(Errors).
type Report struct {
	Target    string        `json:"target"`
	Mode      string        `json:"mode"`               // "open" or "closed"
	Schedule  string        `json:"schedule,omitempty"` // open loop: the rate schedule
	Requested float64       `json:"requested_rate"`     // open loop: mean requested arrivals/s
	Conns     int           `json:"conns"`              // connections opened (peak)
	SLO       time.Duration `json:"slo_ns"`
	// Duration is the measured span over which requests were issued: the
	// schedule's length (or until cancelled) in open loop, the run length in
	// closed loop. Rates are per second of Duration.
	Duration time.Duration `json:"duration_ns"`
	// Elapsed also includes draining the requests still in flight.
	Elapsed        time.Duration    `json:"elapsed_ns"`
	Sent           int64            `json:"sent"`
	Completed      int64            `json:"completed"`
	Throughput     float64          `json:"throughput"`    // completed responses/s
	Goodput        float64          `json:"goodput"`       // 2xx within SLO per second
	SuccessRatio   float64          `json:"success_ratio"` // 2xx / sent
	Status         map[int]int64    `json:"status"`        // by status code
	Errors         map[string]int64 `json:"errors"`        // client-side errors by kind (timeout, refused, reset, ...)
	Shed           map[string]int64 `json:"shed"`          // refusals by the X-Sluice-Shed header value
	Latency        Percentiles      `json:"latency"`       // all responses, from the scheduled send time
	SuccessLatency Percentiles      `json:"success_latency"`
	RefusalLatency Percentiles      `json:"refusal_latency"` // 503 and 429 responses
	// SendLag is how late requests went out against their schedule (open
	// loop): the generator's own contribution to Latency.
	SendLag Percentiles   `json:"send_lag"`
	Classes []ClassReport `json:"classes"`
	Series  []Second      `json:"series"`
	// After covers the requests scheduled at or after Config.After, when
	// set; its rates are per second of the span from After to the end of
	// Duration.
	After *ClassReport `json:"after,omitempty"`
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.Target == "" {
		return fmt.Errorf("target: required")
	}
	if _, _, err := parseTarget(c.Target); err != nil {
		return err
	}
	if c.Duration < 0 {
		return fmt.Errorf("duration: %v must not be negative", c.Duration)
	}
	if c.Conns < 0 {
		return fmt.Errorf("conns: %d must not be negative", c.Conns)
	}
	if c.Conns > 0 {
		if c.runLength() <= 0 {
			return fmt.Errorf("duration: closed loop (conns %d) needs a positive duration", c.Conns)
		}
	} else {
		if len(c.Rate) == 0 {
			return fmt.Errorf("rate: required in open loop (or set conns for closed loop)")
		}
		for i, st := range c.Rate {
			if !(st.From >= 0 && st.To >= 0) || st.From > maxRate || st.To > maxRate {
				return fmt.Errorf("rate: step %d rate %v-%v out of range [0, %d]", i, st.From, st.To, maxRate)
			}
			if st.Dur < 0 {
				return fmt.Errorf("rate: step %d duration %v is negative", i, st.Dur)
			}
			if st.Dur == 0 && (len(c.Rate) > 1 || st.From != st.To) {
				return fmt.Errorf("rate: step %d (%v) needs a duration", i, c.Rate)
			}
		}
		if total := c.Rate.Total(); total == 0 && c.Duration == 0 {
			return fmt.Errorf("duration: rate %v has no duration of its own; set duration", c.Rate)
		} else if total > 0 && c.Duration > 0 && total != c.Duration {
			return fmt.Errorf("duration: %v conflicts with rate schedule %v of length %v", c.Duration, c.Rate, total)
		}
	}
	if c.SLO < 0 {
		return fmt.Errorf("slo: %v must not be negative", c.SLO)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("timeout: %v must not be negative", c.Timeout)
	}
	if c.After < 0 {
		return fmt.Errorf("after: %v must not be negative", c.After)
	}
	if c.MaxConns < 0 {
		return fmt.Errorf("max conns: %d must not be negative", c.MaxConns)
	}
	if len(c.Mix) > 1000 {
		return fmt.Errorf("mix: %d classes, at most 1000", len(c.Mix))
	}
	var total float64
	for i := range c.Mix {
		cl := &c.Mix[i]
		if !(cl.Share >= 0) {
			return fmt.Errorf("mix: class %q share %v must not be negative", cl.Name, cl.Share)
		}
		total += cl.Share
		if err := cl.validate(); err != nil {
			return fmt.Errorf("mix: %v", err)
		}
	}
	if len(c.Mix) > 0 && !(total > 0) {
		return fmt.Errorf("mix: shares sum to %v, need a positive total", total)
	}
	for i, p := range c.Targets {
		if err := validPath(p); err != nil {
			return fmt.Errorf("targets: entry %d: %v", i, err)
		}
	}
	return nil
}

// runLength is how long arrivals are generated for.
func (c *Config) runLength() time.Duration {
	if c.Conns == 0 {
		if t := c.Rate.Total(); t > 0 {
			return t
		}
	}
	return c.Duration
}

// withDefaults returns a copy with zero fields replaced by their defaults and
// the single duration-less step stretched to Duration.
func (c Config) withDefaults() Config {
	if c.SLO == 0 {
		c.SLO = DefaultSLO
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Conns == 0 && len(c.Rate) == 1 && c.Rate[0].Dur == 0 {
		c.Rate = Schedule{{From: c.Rate[0].From, To: c.Rate[0].To, Dur: c.Duration}}
	}
	if len(c.Mix) == 0 {
		c.Mix = []Class{{Name: "default", Share: 1}}
	}
	mix := make([]Class, len(c.Mix))
	copy(mix, c.Mix)
	for i := range mix {
		if mix[i].Name == "" {
			mix[i].Name = fmt.Sprintf("class%d", i+1)
		}
	}
	c.Mix = mix
	return c
}

// parseTarget returns the dial address and the Host header value.
func parseTarget(target string) (addr, host string, err error) {
	u, err := url.Parse(target)
	if err != nil {
		return "", "", fmt.Errorf("target: %q: %v", target, err)
	}
	if u.Scheme != "http" {
		return "", "", fmt.Errorf("target: %q: scheme must be http", target)
	}
	if u.Host == "" {
		return "", "", fmt.Errorf("target: %q: no host", target)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return "", "", fmt.Errorf("target: %q: give the path with a class or --path, not in the target", target)
	}
	addr = u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return addr, strings.ToLower(u.Host), nil
}
