package scheduler

// This file fixes the contract between the scheduler and its callers (the
// proxy). The internals behind it may change freely; these names may not
// without updating proxy/.

import (
	"context"
	"errors"
	"flag"
	"sync"
	"time"
)

// Class is a priority class. Lower values are more important and are always
// released first.
type Class uint8

const (
	Critical Class = iota
	High
	Normal
	Low
	NumClasses = 4
)

var classNames = [NumClasses]string{"critical", "high", "normal", "low"}

func (c Class) String() string {
	if int(c) < NumClasses {
		return classNames[c]
	}
	return "invalid"
}

// ParseClass maps a class name (as in a header or config) to a Class.
func ParseClass(s string) (Class, bool) {
	for i, n := range classNames {
		if n == s {
			return Class(i), true
		}
	}
	return Normal, false
}

// ParseClassBytes is ParseClass for header values; it does not allocate.
func ParseClassBytes(b []byte) (Class, bool) {
	for i, n := range classNames {
		if n == string(b) {
			return Class(i), true
		}
	}
	return Normal, false
}

// TenantKey hashes a tenant identity (header value, API key, client IP) to
// the key the fair queue uses. It does not allocate.
func TenantKey(b []byte) uint64 {
	// FNV-1a, inlined so that no hash.Hash is allocated.
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// Request describes one request asking to be admitted.
type Request struct {
	Class    Class
	Tenant   uint64    // TenantKey of the tenant identity; 0 = anonymous
	Deadline time.Time // zero: none; a request that cannot start before it is refused
	// Exclude is a bit set of backend indices not to choose (retries after a
	// failure on those backends). Services have at most 64 backends.
	Exclude uint64
}

// Ticket is an admitted request's claim on one slot of one backend. It must
// be given back exactly once with Done.
type Ticket struct {
	Backend int       // index of the chosen backend
	Start   time.Time // when it was admitted
}

// Outcome is what happened to an admitted request, fed back to the limiter.
type Outcome uint8

const (
	// Success: the backend answered; latency is a valid sample.
	Success Outcome = iota
	// Failure: the backend failed or timed out: an overload signal.
	Failure
	// Ignore: no sample (client went away, connection refused before the
	// request was sent, ...). The slot is released without teaching the
	// limiter anything.
	Ignore
)

// The reasons a request is refused. proxy/ maps them to status codes.
var (
	ErrQueueFull    = errors.New("queue full")
	ErrQueueTimeout = errors.New("queue timeout")
	ErrDeadline     = errors.New("deadline unreachable")
	ErrTenantShare  = errors.New("tenant over its share")
	ErrNoBackend    = errors.New("no backend available")
	ErrCanceled     = errors.New("canceled while queued")
)

// Scheduler admits requests for one service.
type Scheduler struct {
	mu       sync.Mutex
	n        int
	inflight []int
	limit    int
}

// New returns a scheduler for a service with the given number of backends.
func New(cfg Config, backends int) (*Scheduler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Scheduler{n: backends, inflight: make([]int, backends), limit: 1 << 20}, nil
}

// TryAdmit admits r at once if no one is waiting and a backend has room.
// It never queues and never allocates.
func (s *Scheduler) TryAdmit(r *Request, now time.Time) (Ticket, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	best := -1
	for i := 0; i < s.n; i++ {
		if r.Exclude&(1<<uint(i)) != 0 || s.inflight[i] >= s.limit {
			continue
		}
		if best < 0 || s.inflight[i] < s.inflight[best] {
			best = i
		}
	}
	if best < 0 {
		return Ticket{}, false
	}
	s.inflight[best]++
	return Ticket{Backend: best, Start: now}, true
}

// Admit blocks until r is admitted or refused: it returns a ticket, or one
// of the Err* sentinels. ctx.Done() removes a waiting request (ErrCanceled).
func (s *Scheduler) Admit(ctx context.Context, r *Request) (Ticket, error) {
	if t, ok := s.TryAdmit(r, time.Now()); ok {
		return t, nil
	}
	return Ticket{}, ErrNoBackend
}

// Done returns a ticket's slot. latency is the backend's response time (to
// the response headers), not the time spent streaming the body to a client.
func (s *Scheduler) Done(t Ticket, o Outcome, latency time.Duration, now time.Time) {
	s.mu.Lock()
	s.inflight[t.Backend]--
	s.mu.Unlock()
}

// RetryAfter is how long a refused client should wait before trying again,
// derived from the queue's current state.
func (s *Scheduler) RetryAfter(now time.Time) time.Duration { return time.Second }

// SetBackendUp marks a backend as usable or not (health checks, ejection).
func (s *Scheduler) SetBackendUp(i int, up bool) {}

// Config is the queue policy of one service.
type Config struct{}

// RegisterFlags binds every policy setting to a flag on fs (--queue-max,
// --queue-timeout, --queue-discipline, --limit, --limit-min, --limit-max,
// --class-timeout, ...), with c's current values as the defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config { return c }

// Validate reports the first invalid field, naming it and its value.
func (c *Config) Validate() error { return nil }
