package origin

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config is the simulated origin's behaviour. Every field except Seed and
// BodySize can be changed while it runs (Origin.Update, the admin endpoint,
// a Schedule). Zero values take the documented defaults through
// WithDefaults; Validate names the field and the bad value.
type Config struct {
	// Workers is the number of requests the origin serves at full speed at
	// once; capacity is Workers/Service requests per second. 0 stalls the
	// origin (nothing progresses), which is a meaningful setting, so zero is
	// not replaced by a default: start from Default() (4).
	Workers int
	// Service is the mean service time of one request on an idle worker.
	// Default 20ms.
	Service time.Duration
	// Dist is the service-time distribution, all with mean Service:
	// "constant" (default), "exp", "bimodal" (90% at 0.5×, 10% at 5.5×)
	// or "lognormal" (σ = 1).
	Dist string
	// Knee is the concurrency past which the origin thrashes; 0 (default)
	// means never. Past it, total capacity is
	// Workers / (1 + Thrash·(c−Knee)/Knee).
	Knee int
	// Thrash is the capacity loss factor past Knee. Default 0.5 (at twice
	// the knee the origin has 2/3 of its capacity).
	Thrash float64

	// Failure injection, each a probability in [0,1] drawn per request:
	ErrorRate    float64 // respond 500 after doing the work
	HangRate     float64 // never answer (until HangFor, or shutdown); uses no worker
	ResetRate    float64 // reset the connection (TCP RST) after the work, no response
	SlowBodyRate float64 // answer 200 but trickle the body over SlowBodyFor
	// StallRate holds a request for StallFor, using no worker, before it
	// is served as any other: a backend that now and then stalls (a GC
	// pause, a lock, a cold cache) and then answers. A client that leaves
	// meanwhile ends the stall and the request.
	StallRate float64
	// ErrorFast answers an injected 500 at once, without doing the work: a
	// backend that fails fast (a dependency down, a bad deploy). To
	// anything that reads only latency it is the fastest backend of all,
	// which is what makes it dangerous. Default false: the 500 comes
	// after the work.
	ErrorFast bool
	// HangFor bounds a hang; 0 (default) hangs until the origin closes.
	HangFor time.Duration
	// SlowBodyFor is how long a slow body takes to arrive. Default 1s.
	SlowBodyFor time.Duration
	// StallFor is how long a stall lasts. Default 1s.
	StallFor time.Duration

	// BodySize is the size of the 200 response body in bytes. Default 64.
	BodySize int
	// Seed seeds service times and failure draws. Default 1.
	Seed uint64
}

// Default is the scenarios' origin: 4 workers × 20 ms ≈ 200 requests/s.
// (The demo uses 8 × 40 ms, the same capacity; see scenario.DemoOrigin.)
func Default() Config {
	return Config{Workers: 4, Service: 20 * time.Millisecond, Dist: "constant", Thrash: 0.5,
		SlowBodyFor: time.Second, StallFor: time.Second, BodySize: 64, Seed: 1}
}

// WithDefaults fills zero fields (other than Workers, Knee and the rates,
// whose zero is meaningful) with their defaults.
func (c Config) WithDefaults() Config {
	d := Default()
	if c.Service == 0 {
		c.Service = d.Service
	}
	if c.Dist == "" {
		c.Dist = d.Dist
	}
	if c.Thrash == 0 {
		c.Thrash = d.Thrash
	}
	if c.SlowBodyFor == 0 {
		c.SlowBodyFor = d.SlowBodyFor
	}
	if c.StallFor == 0 {
		c.StallFor = d.StallFor
	}
	if c.BodySize == 0 {
		c.BodySize = d.BodySize
	}
	if c.Seed == 0 {
		c.Seed = d.Seed
	}
	return c
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if c.Workers < 0 {
		return fmt.Errorf("origin: Workers must be >= 0, got %d", c.Workers)
	}
	if c.Service <= 0 {
		return fmt.Errorf("origin: Service must be > 0, got %s", c.Service)
	}
	switch c.Dist {
	case "constant", "exp", "bimodal", "lognormal":
	default:
		return fmt.Errorf("origin: Dist must be constant, exp, bimodal or lognormal, got %q", c.Dist)
	}
	if c.Knee < 0 {
		return fmt.Errorf("origin: Knee must be >= 0, got %d", c.Knee)
	}
	if c.Thrash < 0 || math.IsNaN(c.Thrash) {
		return fmt.Errorf("origin: Thrash must be >= 0, got %g", c.Thrash)
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"ErrorRate", c.ErrorRate}, {"HangRate", c.HangRate}, {"ResetRate", c.ResetRate}, {"SlowBodyRate", c.SlowBodyRate}, {"StallRate", c.StallRate}} {
		if !(r.v >= 0 && r.v <= 1) {
			return fmt.Errorf("origin: %s must be in [0,1], got %g", r.name, r.v)
		}
	}
	if sum := c.ErrorRate + c.HangRate + c.ResetRate + c.SlowBodyRate + c.StallRate; sum > 1+1e-9 {
		return fmt.Errorf("origin: ErrorRate+HangRate+ResetRate+SlowBodyRate+StallRate must be <= 1, got %g", sum)
	}
	if c.HangFor < 0 {
		return fmt.Errorf("origin: HangFor must be >= 0, got %s", c.HangFor)
	}
	if c.SlowBodyFor <= 0 {
		return fmt.Errorf("origin: SlowBodyFor must be > 0, got %s", c.SlowBodyFor)
	}
	if c.StallFor <= 0 {
		return fmt.Errorf("origin: StallFor must be > 0, got %s", c.StallFor)
	}
	if c.BodySize < 0 || c.BodySize > 1<<20 {
		return fmt.Errorf("origin: BodySize must be in [0, 1MiB], got %d", c.BodySize)
	}
	return nil
}

// Capacity is the origin's throughput in requests per second below the knee.
func (c Config) Capacity() float64 {
	if c.Service <= 0 {
		return 0
	}
	return float64(c.Workers) / c.Service.Seconds()
}

// sample draws one service time with mean c.Service.
func (c Config) sample(r *rand.Rand) time.Duration {
	m := float64(c.Service)
	var d float64
	switch c.Dist {
	case "exp":
		d = r.ExpFloat64() * m
	case "bimodal":
		if r.Float64() < 0.1 {
			d = 5.5 * m
		} else {
			d = 0.5 * m
		}
	case "lognormal":
		const sigma = 1.0
		mu := math.Log(m) - sigma*sigma/2
		d = math.Exp(mu + sigma*r.NormFloat64())
	default:
		d = m
	}
	if d < 1 {
		d = 1
	}
	if d > float64(time.Hour) {
		d = float64(time.Hour)
	}
	return time.Duration(d)
}

// fault is what failure injection decided for one request.
type fault int

const (
	faultNone fault = iota
	faultError
	faultHang
	faultReset
	faultSlowBody
	faultStall
)

func (c Config) drawFault(r *rand.Rand) fault {
	if c.ErrorRate+c.HangRate+c.ResetRate+c.SlowBodyRate+c.StallRate == 0 {
		return faultNone
	}
	x := r.Float64()
	for _, f := range []struct {
		p float64
		f fault
	}{{c.ErrorRate, faultError}, {c.HangRate, faultHang}, {c.ResetRate, faultReset}, {c.SlowBodyRate, faultSlowBody}, {c.StallRate, faultStall}} {
		if x < f.p {
			return f.f
		}
		x -= f.p
	}
	return faultNone
}

// Set applies one "key=value" setting, with the flag names used on the
// command line and the admin endpoint (workers, service, dist, knee,
// thrash, error-rate, error-fast, hang-rate, reset-rate, slow-body-rate,
// stall-rate, hang-for, slow-body-for, stall-for). The result is not validated; call Validate.
func (c *Config) Set(key, value string) error {
	var err error
	switch key {
	case "workers":
		c.Workers, err = strconv.Atoi(value)
	case "service":
		c.Service, err = time.ParseDuration(value)
	case "dist":
		c.Dist = value
	case "knee":
		c.Knee, err = strconv.Atoi(value)
	case "thrash":
		c.Thrash, err = strconv.ParseFloat(value, 64)
	case "error-rate":
		c.ErrorRate, err = strconv.ParseFloat(value, 64)
	case "error-fast":
		c.ErrorFast, err = strconv.ParseBool(value)
	case "hang-rate":
		c.HangRate, err = strconv.ParseFloat(value, 64)
	case "reset-rate":
		c.ResetRate, err = strconv.ParseFloat(value, 64)
	case "slow-body-rate":
		c.SlowBodyRate, err = strconv.ParseFloat(value, 64)
	case "hang-for":
		c.HangFor, err = time.ParseDuration(value)
	case "slow-body-for":
		c.SlowBodyFor, err = time.ParseDuration(value)
	case "stall-rate":
		c.StallRate, err = strconv.ParseFloat(value, 64)
	case "stall-for":
		c.StallFor, err = time.ParseDuration(value)
	default:
		return fmt.Errorf("origin: unknown setting %q", key)
	}
	if err != nil {
		return fmt.Errorf("origin: setting %s=%q: %w", key, value, err)
	}
	return nil
}

// ApplyValues applies URL query values (the admin endpoint's form) and
// validates the result.
func (c Config) ApplyValues(v url.Values) (Config, error) {
	for k, vals := range v {
		for _, val := range vals {
			if err := c.Set(k, val); err != nil {
				return c, err
			}
		}
	}
	return c, c.Validate()
}

// Change is one entry of a Schedule: at At after the schedule starts, apply
// Settings (in order).
type Change struct {
	At       time.Duration
	Settings [][2]string // key, value
}

// Schedule is a list of changes in time order.
type Schedule []Change

// ParseSchedule parses "AT:key=value,key=value;AT:key=value", e.g.
// "10s:workers=2;20s:workers=4,error-rate=0". Offsets are from the start of
// the schedule and must not decrease. Every key must be a known setting.
func ParseSchedule(s string) (Schedule, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out Schedule
	var prev time.Duration
	for i, entry := range strings.Split(s, ";") {
		entry = strings.TrimSpace(entry)
		at, rest, ok := strings.Cut(entry, ":")
		if !ok {
			return nil, fmt.Errorf("origin: schedule entry %d %q: want AT:key=value[,key=value]", i+1, entry)
		}
		d, err := time.ParseDuration(strings.TrimSpace(at))
		if err != nil || d < 0 {
			return nil, fmt.Errorf("origin: schedule entry %d: bad offset %q", i+1, at)
		}
		if d < prev {
			return nil, fmt.Errorf("origin: schedule entry %d: offset %s before the previous %s", i+1, d, prev)
		}
		prev = d
		ch := Change{At: d}
		for _, kv := range strings.Split(rest, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("origin: schedule entry %d: setting %q: want key=value", i+1, kv)
			}
			var probe Config
			if err := probe.Set(k, v); err != nil {
				return nil, fmt.Errorf("origin: schedule entry %d: %w", i+1, err)
			}
			ch.Settings = append(ch.Settings, [2]string{k, v})
		}
		out = append(out, ch)
	}
	return out, nil
}
