package pool

import (
	"fmt"
	"net"
	"time"
)

// Config is how Sluice keeps channels to one backend. The zero value of a
// field means "use the default" given in its comment.
type Config struct {
	// MaxConns bounds the connections open to one backend. Default 512.
	MaxConns int `yaml:"max_conns"`
	// WarmConns is how many connections are dialed ahead of need and kept
	// open, so a burst does not pay connection set-up. Default 0 (none).
	WarmConns int `yaml:"warm_conns"`
	// IdleTimeout closes a pooled connection unused for this long. It must
	// stay below the origin's own keep-alive timeout (commonly 60 s for
	// nginx, 5 s for Node), or the origin closes connections under us.
	// Default 4s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// ConnectTimeout bounds dialing a backend. Default 2s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// ResponseHeaderTimeout bounds the wait from the request's last byte to
	// the response headers. Default 30s.
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"`
	// ReadBufferSize and WriteBufferSize size each connection's buffers, in
	// bytes. The read buffer also bounds a backend's response header block.
	// Default 16 KiB each.
	ReadBufferSize  int `yaml:"read_buffer_size"`
	WriteBufferSize int `yaml:"write_buffer_size"`
	// TLS secures the connections to https:// backends (tls.go).
	TLS TLSConfig `yaml:"tls"`

	// Dial, when set, opens connections instead of TCP (in-memory listeners
	// in benchmarks and tests). Not configurable from YAML.
	Dial func(addr string, timeout time.Duration) (net.Conn, error) `yaml:"-"`
}

// Defaults for Config; see the field comments.
const (
	DefaultMaxConns              = 512
	DefaultIdleTimeout           = 4 * time.Second
	DefaultConnectTimeout        = 2 * time.Second
	DefaultResponseHeaderTimeout = 30 * time.Second
	DefaultBufferSize            = 16 << 10
)

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.ResponseHeaderTimeout == 0 {
		c.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	if c.ReadBufferSize == 0 {
		c.ReadBufferSize = DefaultBufferSize
	}
	if c.WriteBufferSize == 0 {
		c.WriteBufferSize = DefaultBufferSize
	}
	return c
}

// Validate reports the first invalid field, naming it and its value.
func (c *Config) Validate() error {
	switch {
	case c.MaxConns < 0:
		return fmt.Errorf("max_conns: must be >= 0, got %d", c.MaxConns)
	case c.WarmConns < 0:
		return fmt.Errorf("warm_conns: must be >= 0, got %d", c.WarmConns)
	case c.MaxConns > 0 && c.WarmConns > c.MaxConns:
		return fmt.Errorf("warm_conns: %d exceeds max_conns %d", c.WarmConns, c.MaxConns)
	case c.IdleTimeout < 0:
		return fmt.Errorf("idle_timeout: must be >= 0, got %s", c.IdleTimeout)
	case c.ConnectTimeout < 0:
		return fmt.Errorf("connect_timeout: must be >= 0, got %s", c.ConnectTimeout)
	case c.ResponseHeaderTimeout < 0:
		return fmt.Errorf("response_header_timeout: must be >= 0, got %s", c.ResponseHeaderTimeout)
	case c.ReadBufferSize < 0:
		return fmt.Errorf("read_buffer_size: must be >= 0, got %d", c.ReadBufferSize)
	case c.WriteBufferSize < 0:
		return fmt.Errorf("write_buffer_size: must be >= 0, got %d", c.WriteBufferSize)
	}
	return nil
}
