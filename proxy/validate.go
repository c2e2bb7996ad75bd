package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/sluiceproxy/sluice/scheduler"
)

// Defaults for Config; see the field comments.
const (
	DefaultListen          = "127.0.0.1:8080"
	DefaultClientHeader    = 10 * time.Second
	DefaultClientBody      = 60 * time.Second
	DefaultIdle            = 60 * time.Second
	DefaultClientWrite     = 60 * time.Second
	DefaultMaxHeaderBytes  = 64 << 10
	DefaultMaxURLBytes     = 8 << 10
	DefaultPriorityHeader  = "X-Priority"
	DefaultTenantHeader    = "X-Tenant"
	DefaultTenantFrom      = "header"
	DefaultAPIKeyHeader    = "X-Api-Key"
	DefaultDeadlineHeader  = "X-Sluice-Timeout"
	DefaultLogFormat       = "json"
	DefaultLogLevel        = "info"
	DefaultShutdownGrace   = 15 * time.Second
	DefaultAccessLogFlush  = time.Second
	DefaultAccessLogBuffer = 64 << 10
	DefaultBufferMemory    = 256 << 10
	DefaultBufferFile      = 1 << 30
	DefaultBufferMemoryMax = 64 << 20
	DefaultBufferDiskMax   = 8 << 30
	DefaultHedgePercentile = 95
	DefaultHedgeBudget     = 0.05
	DefaultHedgeMinDelay   = 5 * time.Millisecond
)

// WithDefaults returns c with every zero field set to its default. A
// service without its own queue or pool gets a copy of the top-level one,
// so that the result spells out what each service runs with; a service
// with its own block gets that block's defaults, not the top-level values.
func (c Config) WithDefaults() Config {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	c.TLS = c.TLS.withDefaults()
	t := &c.Timeouts
	setDur(&t.ClientHeader, DefaultClientHeader)
	setDur(&t.ClientBody, DefaultClientBody)
	setDur(&t.Idle, DefaultIdle)
	setDur(&t.ClientWrite, DefaultClientWrite)
	setDur(&t.TunnelIdle, DefaultTunnelIdle)
	if c.Limits.MaxHeaderBytes == 0 {
		c.Limits.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.Limits.MaxURLBytes == 0 {
		c.Limits.MaxURLBytes = DefaultMaxURLBytes
	}
	k := &c.Classify
	setStr(&k.PriorityHeader, DefaultPriorityHeader)
	setStr(&k.TenantHeader, DefaultTenantHeader)
	setStr(&k.TenantFrom, DefaultTenantFrom)
	setStr(&k.APIKeyHeader, DefaultAPIKeyHeader)
	setStr(&k.DeadlineHeader, DefaultDeadlineHeader)
	setStr(&c.Log.Format, DefaultLogFormat)
	setStr(&c.Log.Level, DefaultLogLevel)
	if c.Log.AccessLog == nil {
		on := true
		c.Log.AccessLog = &on
	}
	setDur(&c.Log.AccessLogFlush, DefaultAccessLogFlush)
	if c.Log.AccessLogSample == 0 {
		c.Log.AccessLogSample = 1
	}
	if c.Log.AccessLogBuffer == 0 {
		c.Log.AccessLogBuffer = DefaultAccessLogBuffer
	}
	if c.Log.AccessWriter == nil {
		c.Log.AccessWriter = os.Stderr
	}
	setDur(&c.ShutdownGrace, DefaultShutdownGrace)
	b := &c.Buffering
	on := true
	if b.Responses == nil {
		b.Responses = &on
	}
	if b.Requests == nil {
		b.Requests = &on
	}
	setInt64(&b.MemoryPerRequest, DefaultBufferMemory)
	setInt64(&b.FilePerRequest, DefaultBufferFile)
	setInt64(&b.MemoryMax, DefaultBufferMemoryMax)
	setInt64(&b.DiskMax, DefaultBufferDiskMax)
	c.Queue = c.Queue.WithDefaults()
	c.Pool = c.Pool.WithDefaults()
	c.Monitor = c.Monitor.WithDefaults()
	c.Cache = c.Cache.WithDefaults()
	c.Hedge = c.Hedge.withDefaults()
	// Routes are copied as services are below: each gets the top-level
	// hedge unless it has its own, which gets its own defaults.
	if c.Routes != nil {
		routes := make([]RouteConfig, len(c.Routes))
		copy(routes, c.Routes)
		for i := range routes {
			h := c.Hedge
			if routes[i].Hedge != nil {
				h = routes[i].Hedge.withDefaults()
			}
			routes[i].Hedge = &h
		}
		c.Routes = routes
	}
	// Services are copied so that filling in their defaults does not write
	// through to the caller's slice.
	svcs := make([]ServiceConfig, len(c.Services))
	copy(svcs, c.Services)
	for i := range svcs {
		q, p, m, k := c.Queue, c.Pool, c.Monitor, c.Cache
		if svcs[i].Cache != nil {
			k = svcs[i].Cache.WithDefaults()
		}
		svcs[i].Cache = &k
		if svcs[i].Queue != nil {
			q = svcs[i].Queue.WithDefaults()
		}
		if svcs[i].Pool != nil {
			p = svcs[i].Pool.WithDefaults()
		}
		if svcs[i].Monitor != nil {
			m = svcs[i].Monitor.WithDefaults()
		}
		svcs[i].Queue, svcs[i].Pool, svcs[i].Monitor = &q, &p, &m
	}
	c.Services = svcs
	return c
}

func (h HedgeConfig) withDefaults() HedgeConfig {
	if h.Percentile == 0 {
		h.Percentile = DefaultHedgePercentile
	}
	if h.Budget == 0 {
		h.Budget = DefaultHedgeBudget
	}
	setDur(&h.MinDelay, DefaultHedgeMinDelay)
	return h
}

// validate checks h, its keys named under prefix ("hedge",
// "routes[2].hedge").
func (h HedgeConfig) validate(prefix string) error {
	switch {
	case !(h.Percentile >= 0 && h.Percentile < 100): // 0: the default
		return fmt.Errorf("%s.percentile: want a percentile in (0, 100), got %v", prefix, h.Percentile)
	case !(h.Budget >= 0 && h.Budget <= 1):
		return fmt.Errorf("%s.budget: want a fraction in (0, 1], got %v", prefix, h.Budget)
	case h.MinDelay < 0:
		return fmt.Errorf("%s.min_delay: must be >= 0, got %s", prefix, h.MinDelay)
	case h.MaxDelay < 0:
		return fmt.Errorf("%s.max_delay: must be >= 0, got %s", prefix, h.MaxDelay)
	case h.MaxDelay > 0 && h.MaxDelay < h.MinDelay:
		return fmt.Errorf("%s.max_delay: %s is below min_delay %s", prefix, h.MaxDelay, h.MinDelay)
	}
	return nil
}

func setDur(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

func setInt64(n *int64, def int64) {
	if *n == 0 {
		*n = def
	}
}

func setStr(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

// Validate reports the first invalid field, naming it and its value.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); c.Listen != "" && err != nil {
		return fmt.Errorf("listen: %q is not host:port", c.Listen)
	}
	if err := c.TLS.validate(c.Listen); err != nil {
		return err
	}
	// The top-level queue and pool first: services without their own
	// inherit them, and an error belongs to the section the value is in.
	if err := c.Queue.Validate(); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if err := c.Pool.Validate(); err != nil {
		return fmt.Errorf("pool: %w", err)
	}
	if err := c.Monitor.Validate(); err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	if err := c.Cache.Validate(); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	if len(c.Services) == 0 {
		return fmt.Errorf("services: at least one service is required")
	}
	names := make(map[string]bool, len(c.Services))
	for i, s := range c.Services {
		if s.Name == "" {
			return fmt.Errorf("services[%d].name: must not be empty", i)
		}
		if names[s.Name] {
			return fmt.Errorf("services[%d].name: %q is used twice", i, s.Name)
		}
		names[s.Name] = true
		if len(s.Backends) == 0 {
			return fmt.Errorf("services[%d].backends: service %q has no backends", i, s.Name)
		}
		seen := make(map[string]bool, len(s.Backends))
		for j, b := range s.Backends {
			if _, err := backendAddr(b); err != nil {
				return fmt.Errorf("services[%d].backends[%d]: %w", i, j, err)
			}
			// The URL is the backend's identity: listed twice, it would
			// be one backend with two of everything.
			if seen[b] {
				return fmt.Errorf("services[%d].backends[%d]: %q is listed twice", i, j, b)
			}
			seen[b] = true
		}
		for j, b := range s.Standby {
			if _, err := backendAddr(b); err != nil {
				return fmt.Errorf("services[%d].standby[%d]: %w", i, j, err)
			}
			if slices.Contains(s.Backends, b) {
				return fmt.Errorf("services[%d].standby[%d]: %q is also one of the service's backends", i, j, b)
			}
			if seen[b] {
				return fmt.Errorf("services[%d].standby[%d]: %q is listed twice", i, j, b)
			}
			seen[b] = true
		}
		if s.Queue != nil {
			if err := s.Queue.Validate(); err != nil {
				return fmt.Errorf("services[%d].queue: %w", i, err)
			}
		}
		if s.Pool != nil {
			if err := s.Pool.Validate(); err != nil {
				return fmt.Errorf("services[%d].pool: %w", i, err)
			}
		}
		if s.Monitor != nil {
			if err := s.Monitor.Validate(); err != nil {
				return fmt.Errorf("services[%d].monitor: %w", i, err)
			}
		}
		if s.Cache != nil {
			if err := s.Cache.Validate(); err != nil {
				return fmt.Errorf("services[%d].cache: %w", i, err)
			}
		}
		if strings.ContainsAny(s.HostRewrite, " \t\r\n\x00/") {
			return fmt.Errorf("services[%d].host_rewrite: %q is not a host", i, s.HostRewrite)
		}
	}
	for i, r := range c.Routes {
		if !names[r.Service] {
			return fmt.Errorf("routes[%d].service: no service named %q", i, r.Service)
		}
		if r.Priority != "" {
			if _, ok := scheduler.ParseClass(r.Priority); !ok {
				return fmt.Errorf("routes[%d].priority: %q is not critical|high|normal|low", i, r.Priority)
			}
		}
		if r.Timeout < 0 {
			return fmt.Errorf("routes[%d].timeout: must be >= 0, got %s", i, r.Timeout)
		}
		if r.PathPrefix != "" && r.PathPrefix[0] != '/' {
			return fmt.Errorf("routes[%d].path_prefix: %q must start with /", i, r.PathPrefix)
		}
		switch r.Buffering {
		case "", "on", "off":
		default:
			return fmt.Errorf("routes[%d].buffering: %q is not on|off", i, r.Buffering)
		}
		switch r.RequestBuffering {
		case "", "on", "off":
		default:
			return fmt.Errorf("routes[%d].request_buffering: %q is not on|off", i, r.RequestBuffering)
		}
		if r.Hedge != nil {
			if err := r.Hedge.validate(fmt.Sprintf("routes[%d].hedge", i)); err != nil {
				return err
			}
		}
	}
	t := c.Timeouts
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"timeouts.client_header", t.ClientHeader},
		{"timeouts.client_body", t.ClientBody},
		{"timeouts.idle", t.Idle},
		{"timeouts.client_write", t.ClientWrite},
		{"timeouts.tunnel_idle", t.TunnelIdle},
		{"shutdown_grace", c.ShutdownGrace},
		{"log.access_log_flush", c.Log.AccessLogFlush},
	} {
		if d.v < 0 {
			return fmt.Errorf("%s: must be >= 0, got %s", d.name, d.v)
		}
	}
	switch {
	case c.Limits.MaxHeaderBytes < 0:
		return fmt.Errorf("limits.max_header_bytes: must be >= 0, got %d", c.Limits.MaxHeaderBytes)
	case c.Limits.MaxHeaderBytes > 0 && c.Limits.MaxHeaderBytes < 1024:
		return fmt.Errorf("limits.max_header_bytes: must be at least 1024, got %d", c.Limits.MaxHeaderBytes)
	case c.Limits.MaxURLBytes < 0:
		return fmt.Errorf("limits.max_url_bytes: must be >= 0, got %d", c.Limits.MaxURLBytes)
	case c.Limits.MaxBodyBytes < 0:
		return fmt.Errorf("limits.max_body_bytes: must be >= 0, got %d", c.Limits.MaxBodyBytes)
	case !(c.Log.AccessLogSample >= 0 && c.Log.AccessLogSample <= 1): // 0: the default
		return fmt.Errorf("log.access_log_sample: want a fraction in (0, 1], got %v", c.Log.AccessLogSample)
	case c.Log.AccessLogBuffer < 0:
		return fmt.Errorf("log.access_log_buffer: must be >= 0, got %d", c.Log.AccessLogBuffer)
	}
	if err := c.Hedge.validate("hedge"); err != nil {
		return err
	}
	b := c.Buffering
	switch {
	case b.MemoryPerRequest < 0:
		return fmt.Errorf("buffering.memory_per_request: must be >= 0, got %d", b.MemoryPerRequest)
	case b.FilePerRequest < -1:
		return fmt.Errorf("buffering.file_per_request: must be >= 0, or -1 for no file, got %d", b.FilePerRequest)
	case b.MemoryMax < 0:
		return fmt.Errorf("buffering.memory_max: must be >= 0, got %d", b.MemoryMax)
	case b.DiskMax < 0:
		return fmt.Errorf("buffering.disk_max: must be >= 0, got %d", b.DiskMax)
	}
	cl := c.Clients
	switch {
	case cl.MaxConnsPerIP < 0:
		return fmt.Errorf("clients.max_conns_per_ip: must be >= 0, got %d", cl.MaxConnsPerIP)
	case !(cl.RatePerIP >= 0) || cl.RatePerIP > 1e9:
		return fmt.Errorf("clients.rate_per_ip: want requests per second >= 0, got %v", cl.RatePerIP)
	case cl.BurstPerIP < 0:
		return fmt.Errorf("clients.burst_per_ip: must be >= 0, got %d", cl.BurstPerIP)
	case cl.MaxConns < 0:
		return fmt.Errorf("clients.max_conns: must be >= 0, got %d", cl.MaxConns)
	}
	switch c.Classify.TenantFrom {
	case "", "header", "api-key", "client-ip":
	default:
		return fmt.Errorf("classify.tenant_from: %q is not header|api-key|client-ip", c.Classify.TenantFrom)
	}
	switch c.Log.Format {
	case "", "json", "console":
	default:
		return fmt.Errorf("log.format: %q is not json|console", c.Log.Format)
	}
	if c.Log.Level != "" {
		if _, err := zerolog.ParseLevel(c.Log.Level); err != nil {
			return fmt.Errorf("log.level: %q is not a zerolog level", c.Log.Level)
		}
	}
	return nil
}

// backendAddr turns a backend URL ("http://host:port", "http://host",
// "https://host" or "host:port") into a dial address. Errors quote the
// value as given, not the URL it was completed to.
func backendAddr(given string) (string, error) {
	addr, _, err := parseBackend(given)
	return addr, err
}

// parseBackend is backendAddr that also tells whether the backend is
// reached over TLS (an https:// URL; port 443 by default).
func parseBackend(given string) (addr string, https bool, err error) {
	raw := given
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // without url.Error's copy of the completed URL
		}
		return "", false, fmt.Errorf("%q is not a URL: %v", given, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", false, fmt.Errorf("%q: scheme %q is not supported (http or https)", given, u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", false, fmt.Errorf("%q has no host", given)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return "", false, fmt.Errorf("%q: a backend URL has no path or query", given)
	}
	https = u.Scheme == "https"
	port := u.Port()
	switch {
	case port != "":
	case https:
		port = "443"
	default:
		port = "80"
	}
	return net.JoinHostPort(u.Hostname(), port), https, nil
}
