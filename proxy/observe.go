package proxy

import (
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/sluiceproxy/sluice/scheduler"
)

// Record is what one finished request reports: every request the handler
// sees reports exactly once, whether a backend answered it, it was refused
// or it failed, after its response was written (or abandoned). The access
// log is one Observer; the monitor and the metrics are others.
//
// A Record and the byte slices in it are valid only during Observe: they
// belong to a pooled exchange, so that reporting allocates nothing.
type Record struct {
	Service string // "" when no route matched
	Route   string // the route's host and path prefix, or its service
	Backend string // the last backend tried (its URL); "" when none was
	Class   scheduler.Class
	Status  int    // sent to the client
	Shed    string // the X-Sluice-Shed reason of a refusal; "" otherwise
	// Hedge is HedgeWon when a hedge answered (Backend is the hedge's),
	// HedgeSent when one was sent and the first backend won, "" else.
	Hedge string
	// Outcome is what the scheduler was told: Success and Failure are
	// the backend's doing; Ignore when no backend answered or the client
	// went away.
	Outcome scheduler.Outcome
	// Err is why the request got no backend response, or why its
	// response stopped short; nil for a complete exchange.
	Err error

	Method, Path, RequestID []byte
	BytesIn, BytesOut       int64 // body bytes from the client, to the client

	Arrival        time.Time
	Queue          time.Duration // waiting for admission
	BackendLatency time.Duration // from the request sent to the response headers
	Total          time.Duration // from arrival to the end of the response

	// For the proxy's own observers.
	svc      *service
	attempts []attemptResult
	admitted bool // given a backend at some point (Queue is its wait)
}

// Admitted reports whether the request was given a backend at some
// point, so that Queue is its wait for admission.
func (r *Record) Admitted() bool { return r.admitted }

// attemptResult is what one attempt on a backend says about it: a failure
// (5xx, refused, reset, timeout, broken response) or a success and its
// latency.
type attemptResult struct {
	up      *upstream
	failed  bool
	latency time.Duration
}

// Observer receives the Record of every finished request. Observe runs on
// the request's goroutine, so it must be quick and must not block: count
// atomically, or copy what is needed.
type Observer interface {
	Observe(r *Record)
}

// AddObserver adds o to the observers. Call it before Serve.
func (s *Server) AddObserver(o Observer) { s.observers = append(s.observers, o) }

func (s *Server) report(r *Record) {
	for _, o := range s.observers {
		o.Observe(r)
	}
}

// record fills the exchange's Record at the end of the request and
// reports it.
func (x *exchange) record(now time.Time, o scheduler.Outcome, err error) {
	r := &x.rec
	*r = Record{
		Class: x.sreq.Class, Status: x.status, Shed: x.shed, Hedge: x.hedgeLog, Outcome: o, Err: err,
		Method: x.method, Path: x.path, RequestID: x.reqID,
		BytesIn: x.bodyIn, BytesOut: x.bytesOut(),
		Arrival: x.arrival, BackendLatency: x.latency, Total: now.Sub(x.arrival),
	}
	if x.svc != nil {
		r.Service = x.svc.name
		r.Route = x.route.name
		r.svc = x.svc
	}
	r.attempts = x.attempts
	if x.up != nil {
		r.Backend = x.up.id
	}
	if !x.admitted0.IsZero() {
		r.Queue = x.admitted0.Sub(x.arrival)
		r.admitted = true
	}
	x.s.report(r)
}

// monitorFeed is the observer that reports every attempt on a backend to
// its service's monitor, the passive half of the QoS measurement, and
// records the queue wait and latency the standby decisions are fed.
type monitorFeed struct{}

func (monitorFeed) Observe(r *Record) {
	svc := r.svc
	if svc == nil || svc.mon == nil {
		return
	}
	if r.admitted {
		svc.feed.wait.Observe(r.Queue)
	}
	now := r.Arrival.Add(r.Total)
	for _, a := range r.attempts {
		if !a.failed {
			svc.feed.latency.Observe(a.latency)
		}
		svc.mon.Report(a.up.id, a.failed, a.latency, now)
	}
}

// accessLog is the observer that writes one line per request, or per
// sampled request: zerolog appends into its pooled buffer and the
// accessWriter copies it, so this neither allocates nor makes a syscall.
type accessLog struct {
	l      zerolog.Logger
	sample sampler
}

func (a *accessLog) Observe(r *Record) {
	if !a.sample.take() {
		return
	}
	e := a.l.Log()
	if r.Service != "" {
		e = e.Str("service", r.Service)
	}
	if r.Backend != "" {
		e = e.Str("backend", r.Backend)
	}
	if r.Err != nil {
		e = e.Str("error", r.Err.Error())
	}
	if r.Hedge != "" {
		e = e.Str("hedge", r.Hedge)
	}
	e.Bytes("method", r.Method).
		Bytes("path", r.Path).
		Int("status", r.Status).
		Int64("bytes_in", r.BytesIn).
		Int64("bytes_out", r.BytesOut).
		Dur("queue", r.Queue).
		Dur("backend_latency", r.BackendLatency).
		Dur("total", r.Total).
		Bytes("request_id", r.RequestID).
		Str("shed", r.Shed).
		Send()
}

// sampler picks a fraction of the requests, evenly spread: request n is
// taken when n·rate crosses an integer, so 0.25 takes every fourth and 0.3
// three in ten. A counter rather than a random draw: one atomic add, no
// shared generator, and the figure is exact over any long run.
type sampler struct {
	// Immutable: the rate in units of 2^-32; 0 takes every request.
	step uint64

	n atomic.Uint64
}

func newSampler(rate float64) sampler {
	if rate >= 1 {
		return sampler{}
	}
	return sampler{step: uint64(rate * (1 << 32))}
}

func (s *sampler) take() bool {
	if s.step == 0 {
		return true
	}
	n := s.n.Add(1)
	return (n*s.step)>>32 != ((n-1)*s.step)>>32
}
