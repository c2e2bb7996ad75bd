package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/sluiceproxy/sluice/scheduler"
	"github.com/valyala/fasthttp"
)

// prefetchBytes is how much of a request body fasthttp reads before the
// handler runs. Bodies with a Content-Length up to this size are buffered
// whole, which makes them replayable on another backend; larger or chunked
// ones are streamed. fasthttp caps its pre-read at 8 KiB anyway.
const prefetchBytes = 8 << 10

// Server is the gateway: a fasthttp front end, the services' schedulers and
// backend pools. What a reload may change lives in a liveConfig snapshot that
// each request loads once (live.go); the rest is fixed at New.
type Server struct {
	// Immutable after New.
	start     Config // the configuration New was given, defaults applied
	log       zerolog.Logger
	alog      *accessWriter
	observers []Observer // the access log first; AddObserver before Serve
	fs        *fasthttp.Server

	exchanges sync.Pool
	hedgePool sync.Pool // *hedge (hedge.go)
	// hedgeTimers counts the hedges whose timer or goroutine may still
	// run, which Shutdown waits for before the pools close.
	hedgeTimers atomic.Int64
	watch       queueWatch // queued requests' clients, for hang-ups
	// relays counts responses streamed on hijacked connections (relay.go),
	// which fasthttp's Shutdown no longer waits for.
	relays relaySet
	// tunnels are the upgraded connections (upgrade.go), hijacked too.
	tunnels relaySet
	// spools bounds the memory and disk of buffered responses and
	// request bodies together (spool.go); nil when nothing may buffer.
	spools *spoolBudget
	// rates is the per-client-IP request rate limit; nil when off.
	rates *rateLimiter

	// The live configuration, swapped whole by Reload.
	rt atomic.Pointer[liveConfig]
	// TLS termination: the certificates, swapped whole by Reload (tls.go).
	tls tlsState

	// Protected by reloadMu: the services by name, and those left by a
	// reload that still finish their work.
	reloadMu sync.Mutex
	services map[string]*service
	retiring map[*service]bool
	retired  sync.WaitGroup // retire goroutines, standby warm-ups
	// poolsClosed: Shutdown has closed every pool; a standby warm-up
	// finishing later closes its own.
	poolsClosed bool

	events eventLog // the event sink's ring and counts (events.go)

	hooks     sync.WaitGroup // provisioning hooks running (standby.go)
	hookSlots chan struct{}  // one token per hook running, at most maxHooks

	tickStop chan struct{} // stops tickMonitors
	tickDone chan struct{}
	live     *livenessProber // probes of stalled backends (liveness.go)

	// Protected by mu.
	mu     sync.Mutex
	closed bool
	// idle parks idle client connections off their goroutines (idle.go);
	// made by the first Serve, nil before it or where it cannot be.
	idle *idleParker
}

// New validates cfg (after defaults) and builds a Server: pools are created
// and warm connections dialed, but nothing listens yet.
func New(cfg Config, log zerolog.Logger) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		start:     cfg,
		log:       log,
		services:  make(map[string]*service),
		retiring:  make(map[*service]bool),
		hookSlots: make(chan struct{}, maxHooks),
		live:      newLivenessProber(),
	}
	s.exchanges.New = func() any { return newExchange(s) }
	s.hedgePool.New = func() any { return newHedge(s) }
	if err := s.tls.init(cfg); err != nil {
		return nil, err
	}
	b := cfg.Buffering
	s.spools = &spoolBudget{memMax: b.MemoryMax, diskMax: b.DiskMax, dir: b.TempDir}
	if cfg.Clients.RatePerIP > 0 {
		s.rates = newRateLimiter(cfg.Clients, log)
	}
	if err := s.apply(cfg, time.Now()); err != nil {
		s.closePools()
		return nil, err
	}
	s.tickStop, s.tickDone = make(chan struct{}), make(chan struct{})
	go s.tickMonitors(s.tickStop, s.tickDone)
	s.AddObserver(monitorFeed{})
	if *cfg.Log.AccessLog {
		s.alog = newAccessWriter(cfg.Log.AccessWriter, cfg.Log.AccessLogBuffer, cfg.Log.AccessLogFlush)
		var w = zerolog.SyncWriter(s.alog)
		if cfg.Log.Format == "console" {
			w = zerolog.ConsoleWriter{Out: s.alog}
		}
		s.AddObserver(&accessLog{l: zerolog.New(w).With().Timestamp().Str("log", "access").Logger(),
			sample: newSampler(cfg.Log.AccessLogSample)})
	}
	s.fs = &fasthttp.Server{
		Handler:      func(ctx *fasthttp.RequestCtx) { served(ctx, s.handle) },
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
		// An idle keep-alive connection gives its write buffer back to
		// the pool between requests (docs/benchmarks.md: 10,000 idle
		// connections, 219 MiB RSS without it, 176 MiB with it). The
		// read buffer stays with the connection: fasthttp keeps it when
		// request bodies stream.
		ReduceMemoryUsage: true,
		// A connection that parks (idle.go) gives its goroutine back to
		// fasthttp's worker pool; workers idle for longer than this exit,
		// so that a crowd of clients gone idle holds no goroutines either.
		MaxIdleWorkerDuration: 2 * time.Second,
	}
	return s, nil
}

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	closed := s.closed
	if !closed && s.idle == nil {
		s.idle = newIdleParker(s.fs, s.log)
	}
	idle := s.idle
	s.mu.Unlock()
	if closed {
		_ = ln.Close()
		return errors.New("proxy: server is shut down")
	}
	if c := s.start.Clients; c.MaxConns > 0 || c.MaxConnsPerIP > 0 {
		ln = newClientListener(ln, c, s.log)
	}
	if idle != nil {
		ln = idleListener{Listener: ln, p: idle}
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
	idle := s.idle
	s.mu.Unlock()
	if idle != nil {
		// Parked connections are idle ones: closed at once, as fasthttp
		// closes its own idle connections on shutdown.
		idle.close()
		idle.wait()
	}
	err := s.fs.ShutdownWithContext(ctx)
	s.relays.wait(ctx)
	s.tunnels.wait(ctx)
	s.waitHedges(ctx)
	// Pools close after the front end: in-flight requests still use them.
	// Any connection still in use when ctx ended is closed on release.
	close(s.tickStop)
	<-s.tickDone
	s.live.close()
	s.closePools()
	s.retired.Wait()
	s.hooks.Wait() // each bounded by its timeout
	s.watch.close()
	if s.alog != nil {
		s.alog.Close()
	}
	return err
}

// waitHedges waits for the hedges still running, each bounded by its
// backend's response header timeout, or until ctx ends. A poll: they are
// rare at shutdown, and a WaitGroup's Add may not race its Wait.
func (s *Server) waitHedges(ctx context.Context) {
	for s.hedgeTimers.Load() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
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
	status, shed, _ := writeError(ctx, fromServerError(err), nil, reqID, now, scratch[:0])
	s.report(&Record{Status: status, Shed: shed, Outcome: scheduler.Ignore, Err: err,
		RequestID: reqID, Arrival: ctx.Time(), Total: now.Sub(ctx.Time())})
}
