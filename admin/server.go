package admin

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluiceproxy/sluice/proxy"
)

// Server is the admin listener of one gateway.
type Server struct {
	// Immutable after New.
	cfg     Config
	gw      *proxy.Server
	reload  func() error
	token   string
	metrics *metrics
	mux     *http.ServeMux
	hs      *http.Server
}

// New builds the admin server of gw, cfg validated. It adds the metrics
// observer to gw, so call it before gw serves. reload re-applies the
// configuration file (the SIGHUP path); nil when there is none.
func New(cfg Config, gw *proxy.Server, reload func() error) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tok, err := loadToken(cfg.TokenFile)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, gw: gw, reload: reload, token: tok, metrics: newMetrics(gw), mux: http.NewServeMux()}
	gw.AddObserver(s.metrics)

	reg := prometheus.NewRegistry()
	reg.MustRegister(s.metrics, s.metrics.waitVec, s.metrics.latencyVec,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	s.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: nil}))
	s.mux.HandleFunc("GET /api/v1/status", s.handleStatus)
	s.mux.HandleFunc("GET /api/v1/events", s.handleEvents)
	s.mux.HandleFunc("GET /{$}", s.handleDashboard)
	change := func(path string, h http.Handler) { s.mux.Handle("POST "+path, requireToken(tok, h)) }
	mode := func(m proxy.BackendMode) func(Change) error {
		return func(c Change) error { return gw.SetBackendMode(c.Service, c.Backend, m) }
	}
	change("/api/v1/drain", s.changeHandler("", mode(proxy.ModeDrain)))
	change("/api/v1/disable", s.changeHandler("", mode(proxy.ModeDisabled)))
	change("/api/v1/enable", s.changeHandler("", mode(proxy.ModeEnabled)))
	change("/api/v1/weight", s.changeHandler("weight", func(c Change) error {
		return gw.SetBackendWeight(c.Service, c.Backend, *c.Weight)
	}))
	change("/api/v1/limit", s.changeHandler("limit", func(c Change) error {
		return gw.SetBackendLimit(c.Service, c.Backend, *c.Limit)
	}))
	change("/api/v1/add", s.changeHandler("", func(c Change) error {
		if err := checkBackendURL(c.Backend); err != nil {
			return err
		}
		return gw.AddBackend(c.Service, c.Backend)
	}))
	change("/api/v1/remove", s.changeHandler("", func(c Change) error {
		return gw.RemoveBackend(c.Service, c.Backend)
	}))
	change("/api/v1/reload", http.HandlerFunc(s.handleReload))
	change("/api/v1/cache/purge", http.HandlerFunc(s.handlePurge))

	s.hs = &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	return s, nil
}

// Handler serves the admin API (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.mux }

// Serve accepts admin connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	err := s.hs.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops the listener and waits for calls in progress until ctx
// ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.hs.Shutdown(ctx) }
