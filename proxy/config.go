package proxy

import (
	"io"
	"time"

	"github.com/sluiceproxy/sluice/cache"
	"github.com/sluiceproxy/sluice/monitor"
	"github.com/sluiceproxy/sluice/pool"
	"github.com/sluiceproxy/sluice/scheduler"
)

// Config is the whole gateway: where it listens, the services behind it and
// the routes that lead to them. cmd/sluice assembles it from a YAML file and
// flags; each nested Config belongs to its own package.
type Config struct {
	Listen   string          `yaml:"listen"`   // default "127.0.0.1:8080"
	Services []ServiceConfig `yaml:"services"` // at least one
	Routes   []RouteConfig   `yaml:"routes"`   // empty: everything goes to the first service
	TLS      TLSConfig       `yaml:"tls"`      // TLS termination (tls.go); off by default
	Timeouts TimeoutsConfig  `yaml:"timeouts"`
	Limits   LimitsConfig    `yaml:"limits"`
	Classify ClassifyConfig  `yaml:"classify"`
	Log      LogConfig       `yaml:"log"`
	// Buffering holds responses (and request bodies) between a backend and
	// a slow client, so that the backend is free once it has sent them.
	Buffering BufferingConfig `yaml:"buffering"`
	// Clients limits what one client IP, and all clients together, may
	// take of the gateway. Off by default.
	Clients ClientsConfig `yaml:"clients"`
	// Queue is the default queue policy for services that set none.
	Queue scheduler.Config `yaml:"queue"`
	// Pool is the default channel policy for services that set none.
	Pool pool.Config `yaml:"pool"`
	// Monitor is the default backend watch (outlier ejection, health
	// check) for services that set none.
	Monitor monitor.Config `yaml:"monitor"`
	// Cache is the default cache for services that set none; off unless
	// enabled.
	Cache cache.Config `yaml:"cache"`
	// Hedge is the hedging policy of routes that set none; off unless
	// enabled.
	Hedge HedgeConfig `yaml:"hedge"`
	// ShutdownGrace bounds how long in-flight requests may finish after
	// SIGTERM. Default 15s.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
}

// ServiceConfig is a named group of redundant backends serving the same
// resources.
type ServiceConfig struct {
	Name     string   `yaml:"name"`
	Backends []string `yaml:"backends"` // URLs: http://host:port
	// Standby backends are brought in, in this order, when the service's
	// QoS falls, and let go when the pressure is over (monitor.standby
	// says when). URLs as for Backends; none may also be a backend.
	Standby []string `yaml:"standby"`
	// HostRewrite, when set, replaces the Host header sent to backends.
	HostRewrite string            `yaml:"host_rewrite"`
	Queue       *scheduler.Config `yaml:"queue"`   // nil: the top-level queue
	Pool        *pool.Config      `yaml:"pool"`    // nil: the top-level pool
	Monitor     *monitor.Config   `yaml:"monitor"` // nil: the top-level monitor
	Cache       *cache.Config     `yaml:"cache"`   // nil: the top-level cache
}

// RouteConfig sends matching requests to a service. Every set matcher must
// match; routes are tried in order and the first match wins.
type RouteConfig struct {
	Host       string            `yaml:"host"`        // exact, case-insensitive, port ignored; "" matches any
	PathPrefix string            `yaml:"path_prefix"` // "" matches any
	Headers    map[string]string `yaml:"headers"`     // exact values
	Service    string            `yaml:"service"`
	// Priority is the class for requests on this route when the request
	// does not name one ("" = normal).
	Priority string `yaml:"priority"`
	// Timeout is the whole-request deadline for this route (0 = none).
	Timeout time.Duration `yaml:"timeout"`
	// Cache turns the service's cache on (true) or off (false) for this
	// route; unset, the route follows the service's cache.enabled.
	Cache *bool `yaml:"cache"`
	// Buffering is "on" or "off": whether this route's responses are
	// buffered (BufferingConfig). "" follows buffering.responses.
	Buffering string `yaml:"buffering"`
	// RequestBuffering is "on" or "off": whether this route's request
	// bodies are read whole before the request is admitted. "" follows
	// buffering.requests.
	RequestBuffering string `yaml:"request_buffering"`
	// Hedge is this route's hedging policy; nil: the top-level hedge.
	// A route's block stands whole: its enabled says, and its zero
	// fields take the defaults.
	Hedge *HedgeConfig `yaml:"hedge"`
}

// HedgeConfig sends an idempotent request that its backend has not
// answered in time to a second backend as well; the first response wins
// and the other request is cancelled (hedge.go). Zero means the default.
type HedgeConfig struct {
	// Enabled turns hedging on. Default false.
	Enabled bool `yaml:"enabled"`
	// Percentile of the chosen backend's recent latency (time to response
	// headers, successful responses only) after which the hedge is sent,
	// in (0, 100). Default 95.
	Percentile float64 `yaml:"percentile"`
	// Budget is the most hedges as a fraction of the route's eligible
	// requests, in (0, 1]: each such request earns Budget of a hedge and a
	// hedge spends one, so 0.05 adds at most 5% to the origins' load.
	// Default 0.05.
	Budget float64 `yaml:"budget"`
	// MinDelay is the shortest wait before a hedge, whatever the
	// percentile says, so that a fast backend's noise never hedges.
	// Default 5ms.
	MinDelay time.Duration `yaml:"min_delay"`
	// MaxDelay caps the wait before a hedge; 0 (the default): no cap.
	MaxDelay time.Duration `yaml:"max_delay"`
}

// BufferingConfig says how much of a response Sluice may hold for a client
// that reads more slowly than the backend sends: in memory up to
// MemoryPerRequest, then in a temporary file up to FilePerRequest, within
// MemoryMax and DiskMax for all requests together. When the memory is
// used up the rest goes to the file; when the file may not grow either,
// the rest is relayed at the client's pace. Zero means the default.
type BufferingConfig struct {
	// Responses turns response buffering on for routes that do not say.
	// Default true.
	Responses *bool `yaml:"responses"`
	// Requests turns request buffering on for routes that do not say: a
	// request body is read (into the same kind of buffer, within the same
	// bounds) before the request is admitted. Default true.
	Requests *bool `yaml:"requests"`
	// MemoryPerRequest is the memory one request's buffer may use, in
	// bytes, rounded up to 16 KiB chunks. Default 256 KiB.
	MemoryPerRequest int64 `yaml:"memory_per_request"`
	// FilePerRequest is the size one request's temporary file may reach, in
	// bytes; -1: no file. Default 1 GiB.
	FilePerRequest int64 `yaml:"file_per_request"`
	// MemoryMax bounds the buffer memory of all requests together, in
	// bytes. Default 64 MiB.
	MemoryMax int64 `yaml:"memory_max"`
	// DiskMax bounds the temporary files of all requests together, in
	// bytes. Default 8 GiB.
	DiskMax int64 `yaml:"disk_max"`
	// TempDir is where temporary files are made; each is removed from the
	// directory as soon as it is open, so none is left behind. "" (the
	// default): the system's, $TMPDIR or else /tmp.
	TempDir string `yaml:"temp_dir"`
}

// TimeoutsConfig bounds each phase of a request. Zero means the default.
// Backend-side timeouts (connect, response headers, idle channels) are in
// pool.Config.
type TimeoutsConfig struct {
	ClientHeader time.Duration `yaml:"client_header"` // reading request headers; default 10s
	ClientBody   time.Duration `yaml:"client_body"`   // reading the request body (per read); default 60s
	Idle         time.Duration `yaml:"idle"`          // client keep-alive idle; default 60s
	// ClientWrite bounds each write of the response to the client, so a
	// client that stops reading does not hold a backend channel forever.
	// Per write, not per response: a large download may take longer in all.
	// Default 60s.
	ClientWrite time.Duration `yaml:"client_write"`
	// TunnelIdle closes an upgraded connection (a WebSocket) on which no
	// byte has moved either way for this long. Default 10m.
	TunnelIdle time.Duration `yaml:"tunnel_idle"`
}

// LimitsConfig bounds request sizes. Zero means the default.
type LimitsConfig struct {
	MaxHeaderBytes int   `yaml:"max_header_bytes"` // default 64 KiB -> 431
	MaxURLBytes    int   `yaml:"max_url_bytes"`    // default 8 KiB -> 414
	MaxBodyBytes   int64 `yaml:"max_body_bytes"`   // default 0 = unlimited (streaming) -> 413
}

// ClassifyConfig says where a request's priority class, tenant and deadline
// come from. Zero means the default.
type ClassifyConfig struct {
	PriorityHeader string `yaml:"priority_header"` // default "X-Priority"; values critical|high|normal|low
	TenantHeader   string `yaml:"tenant_header"`   // default "X-Tenant"
	// TenantFrom picks the tenant identity: "header" (TenantHeader, falling
	// back to the client IP), "api-key" (APIKeyHeader) or "client-ip".
	// Default "header".
	TenantFrom   string `yaml:"tenant_from"`
	APIKeyHeader string `yaml:"api_key_header"` // default "X-Api-Key"
	// DeadlineHeader carries a client's time budget as a Go duration
	// ("250ms") relative to arrival, so clock skew does not matter.
	// Default "X-Sluice-Timeout".
	DeadlineHeader string `yaml:"deadline_header"`
}

// LogConfig controls logging.
type LogConfig struct {
	Format    string `yaml:"format"`     // "json" (default) or "console"
	Level     string `yaml:"level"`      // zerolog level; default "info"
	AccessLog *bool  `yaml:"access_log"` // one line per request; default true
	// AccessLogFlush is how often buffered access-log lines are written out
	// at the latest (they are also written when the buffer fills, and on
	// Shutdown). Default 1s.
	AccessLogFlush time.Duration `yaml:"access_log_flush"`
	// AccessLogBuffer is the access-log buffer size in bytes. Default 64 KiB.
	AccessLogBuffer int `yaml:"access_log_buffer"`
	// AccessLogSample is the fraction of requests that get an access-log
	// line, in (0, 1]: 0.01 logs one request in a hundred, evenly spread
	// (a counter, not a coin toss), so that under very high load logging
	// cannot become the bottleneck. Default 1: every request. Metrics count
	// every request whatever the sample.
	AccessLogSample float64 `yaml:"access_log_sample"`
	// AccessWriter receives the access log. Default os.Stderr. Not
	// configurable from YAML: cmd/sluice sets it.
	AccessWriter io.Writer `yaml:"-"`
}

// ClientsConfig bounds what clients take of the gateway: connections and
// request rate per client IP, and connections in all. Over a limit a
// connection or request is refused with 429 (503 for MaxConns) and an
// X-Sluice-Shed reason, and the process log says so at most once a second.
// Zero means no limit for each, the default. Fixed at start.
type ClientsConfig struct {
	// MaxConnsPerIP is the most connections open at once from one client
	// IP; more get 429 client-conns and are closed.
	MaxConnsPerIP int `yaml:"max_conns_per_ip"`
	// RatePerIP is the average requests per second one client IP may
	// send; more get 429 client-rate.
	RatePerIP float64 `yaml:"rate_per_ip"`
	// BurstPerIP is how many requests above the average rate one client IP
	// may send at once (the token bucket's size). 0: RatePerIP rounded
	// down, at least 1.
	BurstPerIP int `yaml:"burst_per_ip"`
	// MaxConns is the most client connections open at once in all; more
	// get 503 conn-limit and are closed, and the log says the limit was
	// reached.
	MaxConns int `yaml:"max_conns"`
}
