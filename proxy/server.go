package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/sluiceproxy/sluice/pool"
	"github.com/sluiceproxy/sluice/scheduler"
)

// prefetchBytes is how much of a request body fasthttp reads before the
// handler runs. Bodies with a Content-Length up to this size are buffered
// whole, which makes them replayable on another backend; larger or chunked
// ones are streamed. fasthttp caps its pre-read at 8 KiB anyway.
const prefetchBytes = 8 << 10

// Server is the gateway: a fasthttp front end, the services' schedulers and
// backend pools.
type Server struct {
	// Immutable after New.
	cfg      Config
	log      zerolog.Logger
	access   zerolog.Logger
	accessOn bool
	alog     *accessWriter
	services []*service
	routes   []route
	fs       *fasthttp.Server
	classify classifier
	maxURL   int
	maxBody  int64

	exchanges sync.Pool
	watch     queueWatch // queued requests' clients, for hang-ups

	// Protected by mu.
	mu     sync.Mutex
	closed bool
}

// service is a group of redundant backends and the scheduler in front of
// them.
type service struct {
	name        string
	sched       *scheduler.Scheduler
	backends    []*pool.Backend
	hostRewrite []byte
}

// New validates cfg (after defaults) and builds a Server: pools are created
// and warm connections dialed, but nothing listens yet.
func New(cfg Config, log zerolog.Logger) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		log:      log,
		accessOn: *cfg.Log.AccessLog,
		maxURL:   cfg.Limits.MaxURLBytes,
		maxBody:  cfg.Limits.MaxBodyBytes,
	}
	s.exchanges.New = func() any { return newExchange(s) }
	s.classify = newClassifier(cfg.Classify)
	byName := make(map[string]*service, len(cfg.Services))
	for _, sc := range cfg.Services {
		svc, err := s.newService(sc)
		if err != nil {
			s.closePools()
			return nil, err
		}
		s.services = append(s.services, svc)
		byName[sc.Name] = svc
	}
	for _, rc := range cfg.Routes {
		s.routes = append(s.routes, newRoute(rc, byName[rc.Service]))
	}
	if s.accessOn {
		s.alog = newAccessWriter(cfg.Log.AccessWriter, cfg.Log.AccessLogBuffer, cfg.Log.AccessLogFlush)
		var w = zerolog.SyncWriter(s.alog)
		if cfg.Log.Format == "console" {
			w = zerolog.ConsoleWriter{Out: s.alog}
		}
		s.access = zerolog.New(w).With().Timestamp().Str("log", "access").Logger()
	}
	s.fs = &fasthttp.Server{
		Handler:      s.handle,
		ErrorHandler: s.handleServerError,
		Logger:       fasthttpLogger{s.log},
		// The read buffer bounds the request line plus headers: a request
		// that does not fit gets 431.
		ReadBufferSize:        cfg.Limits.MaxHeaderBytes,
		WriteBufferSize:       clientWriteBuffer,
		ReadTimeout:           cfg.Timeouts.ClientHeader,
		IdleTimeout:           cfg.Timeouts.Idle,
		MaxRequestBodySize:    prefetchBytes,
		StreamRequestBody:     true,
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		NoDefaultDate:         true,
		CloseOnShutdown:       true,
		// Multipart bodies are forwarded as bytes, never parsed.
		DisablePreParseMultipartForm: true,
		SecureErrorLogMessage:        true,
	}
	return s, nil
}

func (s *Server) newService(sc ServiceConfig) (*service, error) {
	qcfg := s.cfg.Queue
	if sc.Queue != nil {
		qcfg = *sc.Queue
	}
	pcfg := s.cfg.Pool
	if sc.Pool != nil {
		pcfg = *sc.Pool
	}
	sched, err := scheduler.New(qcfg, len(sc.Backends))
	if err != nil {
		return nil, fmt.Errorf("service %q: %w", sc.Name, err)
	}
	svc := &service{name: sc.Name, sched: sched}
	if sc.HostRewrite != "" {
		svc.hostRewrite = []byte(sc.HostRewrite)
	}
	for _, raw := range sc.Backends {
		addr, _ := backendAddr(raw) // validated
		b, err := pool.NewBackend(addr, pcfg)
		if err != nil {
			svc.close()
			return nil, fmt.Errorf("service %q backend %q: %w", sc.Name, raw, err)
		}
		svc.backends = append(svc.backends, b)
		if err := b.Warm(); err != nil {
			// Not fatal: a backend may start after the gateway. The
			// pool keeps trying, and requests see the failures.
			s.log.Warn().Err(err).Str("service", sc.Name).Str("backend", addr).Msg("warming connections failed")
		}
	}
	return svc, nil
}

func (svc *service) close() {
	for _, b := range svc.backends {
		b.Close()
	}
}

func (s *Server) closePools() {
	for _, svc := range s.services {
		svc.close()
	}
}

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		_ = ln.Close()
		return errors.New("proxy: server is shut down")
	}
	return s.fs.Serve(ln)
}

// Shutdown stops accepting, lets in-flight requests finish until ctx ends,
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := s.fs.ShutdownWithContext(ctx)
	// Pools close after the front end: in-flight requests still use them.
	// Any connection still in use when ctx ended is closed on release.
	s.closePools()
	s.watch.close()
	if s.alog != nil {
		s.alog.Close()
	}
	return err
}

// fasthttpLogger routes fasthttp's own messages (broken client
// connections, mostly) to the debug level.
type fasthttpLogger struct{ log zerolog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug().Msg(strings.TrimSpace(fmt.Sprintf(format, args...)))
}

// handleServerError answers a request fasthttp could not parse.
func (s *Server) handleServerError(ctx *fasthttp.RequestCtx, err error) {
	var id [40]byte
	reqID := newRequestID(id[:0])
	var scratch [24]byte
	now := time.Now()
	status, _, _ := writeError(ctx, fromServerError(err), nil, reqID, now, scratch[:0])
	if s.accessOn {
		s.access.Log().Int("status", status).Bytes("request_id", reqID).
			Str("error", err.Error()).Send()
	}
}
