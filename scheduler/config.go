package scheduler

import (
	"flag"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is the queue policy of one service. Every field's zero value means
// "the default", so an empty `queue:` block in YAML, or no flags at all,
// gives a scheduler that needs no tuning for an origin of unknown capacity.
// The defaults were chosen with the simulation in sim_test.go; doc.go
// explains each choice.
type Config struct {
	// QueueMax bounds the number of requests waiting in the gateway for this
	// service (all classes and tenants together): a memory guard. Above
	// 1024 requests the queue is bounded by the time its work will take to
	// drain (queueBoundLocked). Requests; default 16384; 0 means the
	// default.
	QueueMax int `yaml:"queue_max"`
	// QueueTimeout is the longest a request may wait in the queue before it
	// is refused with ErrQueueTimeout (503). Default 500ms, the time after
	// which most clients have given up anyway; 0 means the default.
	QueueTimeout time.Duration `yaml:"queue_timeout"`
	// Discipline orders waiting requests of one tenant and decides when to
	// shed: fifo, codel or adaptive-lifo. Default adaptive-lifo (best
	// goodput under sustained overload in the simulation); empty means the
	// default.
	Discipline Discipline `yaml:"queue_discipline"`
	// Limit is how each backend's concurrency limit is found: adaptive
	// (gradient, the default), aimd, vegas, or static:N (N requests in
	// flight per backend, like HAProxy's maxconn). Empty means adaptive.
	Limit LimitSpec `yaml:"limit"`
	// LimitMin is the lowest concurrency an adaptive limiter may choose per
	// backend, and the concurrency it drops to while it measures the
	// backend's unloaded latency. Requests; default 2; 0 means the default.
	LimitMin int `yaml:"limit_min"`
	// LimitMax is the highest concurrency an adaptive limiter may choose per
	// backend. Requests; default 1000; 0 means the default.
	LimitMax int `yaml:"limit_max"`
	// ClassTimeout overrides QueueTimeout per class, e.g. a longer wait for
	// critical and a shorter one for low. Missing classes use QueueTimeout.
	ClassTimeout ClassDurations `yaml:"class_timeout"`
	// ClassMinShare bounds starvation: a class with waiting requests is
	// guaranteed at least this fraction (0..1) of recent releases, even while
	// more important classes are waiting. Missing classes get 0 (strict
	// priority).
	ClassMinShare ClassShares `yaml:"class_min_share"`
	// TenantWeights gives tenants (by identity, as hashed with TenantKey)
	// weights for the fair queue and for their share of the queue. Missing
	// tenants have weight 1.
	TenantWeights TenantWeights `yaml:"tenant_weights"`
	// CoDelTarget is, with codel, the sojourn time above which requests
	// are shed from the head once the queue stands. Default 5ms; 0 means
	// the default.
	CoDelTarget time.Duration `yaml:"codel_target"`
	// CoDelInterval is, with codel, how long the queue must stay non-empty
	// before it counts as standing and codel starts shedding; with
	// adaptive-lifo, how long a class must have been left empty before an
	// overload is forgotten. Default 100ms; 0 means the default.
	CoDelInterval time.Duration `yaml:"codel_interval"`
	// StandingTimeout is, with adaptive-lifo, the longest a flooding
	// tenant's request may wait while its class is overloaded (its backlog
	// is more than the backends serve in half the class's queue timeout):
	// older ones are shed (ErrQueueTimeout) instead of served, as in
	// Facebook's adaptive LIFO with CoDel, where a standing queue's timeout
	// drops to a short value. Without it, whatever is left when the
	// pressure stops is served newest first down to requests nearly
	// QueueTimeout old. Default 25ms; 0 means the default.
	StandingTimeout time.Duration `yaml:"standing_timeout"`
}

// Defaults. doc.go explains where each comes from.
const (
	DefaultQueueMax        = 16384
	DefaultQueueTimeout    = 500 * time.Millisecond
	DefaultDiscipline      = DisciplineAdaptiveLIFO
	DefaultLimitMin        = 2
	DefaultLimitMax        = 1000
	DefaultCoDelTarget     = 5 * time.Millisecond
	DefaultCoDelInterval   = 100 * time.Millisecond
	DefaultStandingTimeout = 25 * time.Millisecond
)

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.QueueMax == 0 {
		c.QueueMax = DefaultQueueMax
	}
	if c.QueueTimeout == 0 {
		c.QueueTimeout = DefaultQueueTimeout
	}
	if c.Discipline == DisciplineDefault {
		c.Discipline = DefaultDiscipline
	}
	if c.LimitMin == 0 {
		c.LimitMin = DefaultLimitMin
	}
	if c.LimitMax == 0 {
		c.LimitMax = DefaultLimitMax
		if c.LimitMax < c.LimitMin {
			c.LimitMax = c.LimitMin
		}
	}
	if c.CoDelTarget == 0 {
		c.CoDelTarget = DefaultCoDelTarget
	}
	if c.CoDelInterval == 0 {
		c.CoDelInterval = DefaultCoDelInterval
	}
	if c.StandingTimeout == 0 {
		c.StandingTimeout = DefaultStandingTimeout
	}
	return c
}

// Validate reports the first invalid field, naming it (as in YAML) and its
// value. Zero fields are valid: they mean the default.
func (c *Config) Validate() error {
	switch {
	case c.QueueMax < 0:
		return fmt.Errorf("queue_max: must be >= 0, got %d", c.QueueMax)
	case c.QueueTimeout < 0:
		return fmt.Errorf("queue_timeout: must be > 0, got %v", c.QueueTimeout)
	case c.Discipline > DisciplineAdaptiveLIFO:
		return fmt.Errorf("queue_discipline: unknown discipline %d", uint8(c.Discipline))
	case c.Limit.Kind > LimitStatic:
		return fmt.Errorf("limit: unknown kind %d", uint8(c.Limit.Kind))
	case c.Limit.Kind == LimitStatic && c.Limit.N <= 0:
		return fmt.Errorf("limit: static limit must be > 0, got %d", c.Limit.N)
	case c.LimitMin < 0:
		return fmt.Errorf("limit_min: must be >= 0, got %d", c.LimitMin)
	case c.LimitMax < 0:
		return fmt.Errorf("limit_max: must be >= 0, got %d", c.LimitMax)
	case c.LimitMax != 0 && c.LimitMax < c.LimitMin:
		return fmt.Errorf("limit_max: must be >= limit_min (%d), got %d", c.LimitMin, c.LimitMax)
	case c.CoDelTarget < 0:
		return fmt.Errorf("codel_target: must be > 0, got %v", c.CoDelTarget)
	case c.CoDelInterval < 0:
		return fmt.Errorf("codel_interval: must be > 0, got %v", c.CoDelInterval)
	case c.StandingTimeout < 0:
		return fmt.Errorf("standing_timeout: must be > 0, got %v", c.StandingTimeout)
	}
	for _, cl := range sortedKeys(c.ClassTimeout) {
		d := c.ClassTimeout[cl]
		if int(cl) >= NumClasses {
			return fmt.Errorf("class_timeout: unknown class %d", uint8(cl))
		}
		if d <= 0 {
			return fmt.Errorf("class_timeout: %s must be > 0, got %v", cl, d)
		}
	}
	sum := 0.0
	for _, cl := range sortedKeys(c.ClassMinShare) {
		f := c.ClassMinShare[cl]
		if int(cl) >= NumClasses {
			return fmt.Errorf("class_min_share: unknown class %d", uint8(cl))
		}
		if !(f >= 0 && f <= 1) {
			return fmt.Errorf("class_min_share: %s must be in [0, 1], got %v", cl, f)
		}
		sum += f
	}
	if sum > 1 {
		return fmt.Errorf("class_min_share: shares must add up to at most 1, got %v", sum)
	}
	for _, name := range sortedKeys(c.TenantWeights) {
		if w := c.TenantWeights[name]; w <= 0 || w > maxTenantWeight {
			return fmt.Errorf("tenant_weights: %q must be in [1, %d], got %d", name, maxTenantWeight, w)
		}
	}
	return nil
}

const maxTenantWeight = 1 << 20

func sortedKeys[K interface{ ~uint8 | ~string }, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// RegisterFlags binds every policy setting to a flag on fs, with c's current
// values as the defaults. The flags and YAML share one parser per setting.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.QueueMax, "queue-max", c.QueueMax,
		"maximum `requests` waiting per service, all classes together: a memory guard; between 1024 and it, the queue holds what the backends serve within the queue timeout (0 = 16384)")
	fs.DurationVar(&c.QueueTimeout, "queue-timeout", c.QueueTimeout,
		"longest a request may wait in the queue before a 503 (0 = 500ms)")
	fs.TextVar(&c.Discipline, "queue-discipline", c.Discipline,
		"queue order: fifo, codel (shed waits over --codel-target once the queue stands) or adaptive-lifo (newest first while overloaded: more queued than the backends serve in half the queue timeout) (default adaptive-lifo)")
	fs.TextVar(&c.Limit, "limit", c.Limit,
		"per-backend concurrency limit: adaptive (gradient), aimd, vegas, or static:N (default adaptive)")
	fs.IntVar(&c.LimitMin, "limit-min", c.LimitMin,
		"lowest concurrency an adaptive limit may choose per backend (0 = 2)")
	fs.IntVar(&c.LimitMax, "limit-max", c.LimitMax,
		"highest concurrency an adaptive limit may choose per backend (0 = 1000)")
	fs.Var(&c.ClassTimeout, "class-timeout",
		"queue timeout per priority class, e.g. critical=2s,low=200ms (others use --queue-timeout)")
	fs.Var(&c.ClassMinShare, "class-min-share",
		"minimum fraction of releases per class while it waits, e.g. low=0.05 (bounds starvation)")
	fs.Var(&c.TenantWeights, "tenant-weights",
		"fair-queue weights per tenant identity, e.g. a=2,b=1 (others weigh 1)")
	fs.DurationVar(&c.CoDelTarget, "codel-target", c.CoDelTarget,
		"codel: queue wait above which requests are shed once the queue stands (0 = 5ms)")
	fs.DurationVar(&c.CoDelInterval, "codel-interval", c.CoDelInterval,
		"codel: how long the queue must stay non-empty to count as standing; adaptive-lifo: how long a class must stay empty to end an overload (0 = 100ms)")
	fs.DurationVar(&c.StandingTimeout, "standing-timeout", c.StandingTimeout,
		"adaptive-lifo: longest a flooding tenant's request may wait while its class is overloaded; older ones get a 503 (0 = 25ms)")
}

// Discipline orders the waiting requests of one tenant within a class.
type Discipline uint8

const (
	// DisciplineDefault resolves to DefaultDiscipline in WithDefaults.
	DisciplineDefault Discipline = iota
	// DisciplineFIFO serves the oldest first and sheds only on timeout.
	DisciplineFIFO
	// DisciplineCoDel serves the oldest first and, once the queue has
	// stood for CoDelInterval, sheds requests that waited over CoDelTarget.
	DisciplineCoDel
	// DisciplineAdaptiveLIFO serves the oldest first while the queue can
	// be served in time and the newest first once it is overloaded, so
	// admitted requests are fresh.
	DisciplineAdaptiveLIFO
)

var disciplineNames = [...]string{"", "fifo", "codel", "adaptive-lifo"}

func (d Discipline) String() string {
	if int(d) < len(disciplineNames) {
		if d == DisciplineDefault {
			return DefaultDiscipline.String()
		}
		return disciplineNames[d]
	}
	return "invalid"
}

// MarshalText writes the discipline's name ("" for the default).
func (d Discipline) MarshalText() ([]byte, error) {
	if int(d) >= len(disciplineNames) {
		return nil, fmt.Errorf("invalid discipline %d", uint8(d))
	}
	return []byte(disciplineNames[d]), nil
}

// UnmarshalText parses fifo, codel or adaptive-lifo ("" = default).
func (d *Discipline) UnmarshalText(b []byte) error {
	for i, n := range disciplineNames {
		if n == string(b) {
			*d = Discipline(i)
			return nil
		}
	}
	return fmt.Errorf("unknown queue discipline %q (want fifo, codel or adaptive-lifo)", b)
}

// LimitKind names a concurrency limiter.
type LimitKind uint8

const (
	// LimitAdaptive is the gradient limiter (the default).
	LimitAdaptive LimitKind = iota
	// LimitAIMD grows by one per window of successes and backs off by a
	// factor on failures and on latency well above the baseline.
	LimitAIMD
	// LimitVegas keeps the estimated number of requests queued inside the
	// backend between two small bounds.
	LimitVegas
	// LimitStatic is a fixed limit (LimitSpec.N).
	LimitStatic
)

var limitNames = [...]string{"adaptive", "aimd", "vegas", "static"}

// LimitSpec is the --limit / limit: setting: a limiter kind and, for
// static, its limit. The zero value is adaptive.
type LimitSpec struct {
	Kind LimitKind
	N    int // static only: requests in flight per backend
}

func (l LimitSpec) String() string {
	if l.Kind == LimitStatic {
		return "static:" + strconv.Itoa(l.N)
	}
	if int(l.Kind) < len(limitNames) {
		return limitNames[l.Kind]
	}
	return "invalid"
}

// MarshalText writes adaptive, aimd, vegas or static:N.
func (l LimitSpec) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText parses adaptive, aimd, vegas or static:N ("" = adaptive).
func (l *LimitSpec) UnmarshalText(b []byte) error {
	s := string(b)
	if s == "" {
		*l = LimitSpec{}
		return nil
	}
	if n, ok := strings.CutPrefix(s, "static:"); ok {
		v, err := strconv.Atoi(n)
		if err != nil || v <= 0 {
			return fmt.Errorf("bad static limit %q (want static:N with N > 0)", s)
		}
		*l = LimitSpec{Kind: LimitStatic, N: v}
		return nil
	}
	for i, n := range limitNames[:LimitStatic] {
		if n == s {
			*l = LimitSpec{Kind: LimitKind(i)}
			return nil
		}
	}
	return fmt.Errorf("unknown limit %q (want adaptive, aimd, vegas or static:N)", s)
}

// ClassDurations maps classes to durations. In YAML it is a mapping
// ({critical: 2s, low: 200ms}); on the command line "critical=2s,low=200ms".
type ClassDurations map[Class]time.Duration

func (m *ClassDurations) String() string {
	if m == nil || *m == nil {
		return ""
	}
	var parts []string
	for _, c := range sortedKeys(*m) {
		parts = append(parts, c.String()+"="+(*m)[c].String())
	}
	return strings.Join(parts, ",")
}

// Set parses "class=duration,..." (flag.Value); later flags add to it.
func (m *ClassDurations) Set(s string) error {
	return parsePairs(s, func(k, v string) error {
		c, ok := ParseClass(k)
		if !ok {
			return fmt.Errorf("unknown class %q", k)
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("bad duration %q for %s (want e.g. 200ms)", v, k)
		}
		if *m == nil {
			*m = ClassDurations{}
		}
		(*m)[c] = d
		return nil
	})
}

// ClassShares maps classes to fractions in [0, 1]. In YAML a mapping
// ({low: 0.05}); on the command line "low=0.05".
type ClassShares map[Class]float64

func (m *ClassShares) String() string {
	if m == nil || *m == nil {
		return ""
	}
	var parts []string
	for _, c := range sortedKeys(*m) {
		parts = append(parts, c.String()+"="+strconv.FormatFloat((*m)[c], 'g', -1, 64))
	}
	return strings.Join(parts, ",")
}

// Set parses "class=fraction,..." (flag.Value).
func (m *ClassShares) Set(s string) error {
	return parsePairs(s, func(k, v string) error {
		c, ok := ParseClass(k)
		if !ok {
			return fmt.Errorf("unknown class %q", k)
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f >= 0 && f <= 1) || math.IsNaN(f) {
			return fmt.Errorf("bad share %q for %s (want a fraction in [0, 1])", v, k)
		}
		if *m == nil {
			*m = ClassShares{}
		}
		(*m)[c] = f
		return nil
	})
}

// TenantWeights maps tenant identities to fair-queue weights. In YAML a
// mapping ({acme: 2}); on the command line "acme=2,beta=1".
type TenantWeights map[string]int

func (m *TenantWeights) String() string {
	if m == nil || *m == nil {
		return ""
	}
	var parts []string
	for _, k := range sortedKeys(*m) {
		parts = append(parts, k+"="+strconv.Itoa((*m)[k]))
	}
	return strings.Join(parts, ",")
}

// Set parses "tenant=weight,..." (flag.Value).
func (m *TenantWeights) Set(s string) error {
	return parsePairs(s, func(k, v string) error {
		w, err := strconv.Atoi(v)
		if err != nil || w <= 0 || w > maxTenantWeight {
			return fmt.Errorf("bad weight %q for tenant %q (want an integer in [1, %d])", v, k, maxTenantWeight)
		}
		if *m == nil {
			*m = TenantWeights{}
		}
		(*m)[k] = w
		return nil
	})
}

// parsePairs splits "k=v,k=v" and hands each pair to set.
func parsePairs(s string, set func(k, v string) error) error {
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok || k == "" {
			return fmt.Errorf("bad pair %q (want name=value)", part)
		}
		if err := set(strings.TrimSpace(k), strings.TrimSpace(v)); err != nil {
			return err
		}
	}
	return nil
}
