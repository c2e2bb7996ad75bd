package scheduler

// This file fixes the contract between the scheduler and its callers (the
// proxy). The internals behind it may change freely; these names may not
// without updating proxy/.

import (
	"errors"
	"time"
)

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
	// Exclude lists backends not to choose (retries after a failure on
	// them). The scheduler only reads it; the caller keeps it unchanged
	// while the request waits.
	Exclude []*Backend
}

// Ticket is an admitted request's claim on one slot of one backend. It must
// be given back exactly once with Done.
type Ticket struct {
	Backend *Backend  // the chosen backend
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
