package cache

import (
	"fmt"
	"time"
)

// Defaults for Config; see the field comments.
const (
	DefaultMaxBytes        = 64 << 20
	DefaultMaxObjectBytes  = 1 << 20
	DefaultCoalesceTimeout = 5 * time.Second
	DefaultMaxStale        = time.Hour
)

// Config is one service's cache. Zero means the default.
type Config struct {
	// Enabled turns the cache on for the service's routes (a route may
	// say otherwise). Default false: nothing is cached.
	Enabled bool `yaml:"enabled"`
	// MaxBytes bounds the memory the stored responses take, bodies,
	// headers and bookkeeping counted; the least recently used go first.
	// Default 64 MiB.
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxObjectBytes: a response whose body is larger is relayed and not
	// stored. Default 1 MiB; at most MaxBytes.
	MaxObjectBytes int64 `yaml:"max_object_bytes"`
	// CoalesceTimeout bounds how long a request waits for another one
	// fetching the same resource before it goes to the origin itself.
	// Default 5s.
	CoalesceTimeout time.Duration `yaml:"coalesce_timeout"`
	// StaleOnOverload: when the scheduler refuses a request (queue full,
	// queue timeout, deadline, tenant share, no backend), answer with a
	// stale stored copy if the response allows it. Default true.
	StaleOnOverload *bool `yaml:"stale_on_overload"`
	// MaxStale bounds how stale a copy served on overload may be.
	// Default 1h.
	MaxStale time.Duration `yaml:"max_stale"`
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxObjectBytes == 0 {
		c.MaxObjectBytes = min(DefaultMaxObjectBytes, c.MaxBytes)
	}
	if c.CoalesceTimeout == 0 {
		c.CoalesceTimeout = DefaultCoalesceTimeout
	}
	if c.StaleOnOverload == nil {
		on := true
		c.StaleOnOverload = &on
	}
	if c.MaxStale == 0 {
		c.MaxStale = DefaultMaxStale
	}
	return c
}

// Validate reports the first invalid field, naming it and its value.
func (c *Config) Validate() error {
	switch {
	case c.MaxBytes < 0:
		return fmt.Errorf("max_bytes: must be >= 0, got %d", c.MaxBytes)
	case c.MaxObjectBytes < 0:
		return fmt.Errorf("max_object_bytes: must be >= 0, got %d", c.MaxObjectBytes)
	case c.MaxBytes > 0 && c.MaxObjectBytes > c.MaxBytes:
		return fmt.Errorf("max_object_bytes: %d is larger than max_bytes %d", c.MaxObjectBytes, c.MaxBytes)
	case c.CoalesceTimeout < 0:
		return fmt.Errorf("coalesce_timeout: must be >= 0, got %s", c.CoalesceTimeout)
	case c.MaxStale < 0:
		return fmt.Errorf("max_stale: must be >= 0, got %s", c.MaxStale)
	}
	return nil
}
