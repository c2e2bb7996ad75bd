package origin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluiceproxy/sluice/internal/peek"
)

// Origin is the live simulated origin: a fasthttp server in front of the PS
// core. Handlers put a job into the core and wait on its completion channel;
// one loop goroutine sleeps until the core's next completion (or until a new
// arrival changes it) and releases finished jobs. A handler never gives up on
// its job when the client goes away: like most real servers, the origin
// keeps burning capacity on abandoned requests, which is exactly the waste a
// gateway in front of it must avoid.
type Origin struct {
	// immutable after New
	body   []byte
	kick   chan struct{} // buffered(1): "the core changed, recompute the timer"
	closed chan struct{} // closed by Close; releases every waiter
	srv    *fasthttp.Server

	// owned by Start/Close
	ln       net.Listener
	loopDone chan struct{}
	serveErr chan error
	once     sync.Once

	// protected by mu
	mu      sync.Mutex
	cfg     Config
	ps      *PS
	rng     *rand.Rand
	nextID  uint64
	waiters map[uint64]chan struct{}
	st      Stats

	// test hooks, set before Start; called with mu held.
	onAdd    func(active int)
	onFinish func(completed int64)
}

// Stats are the origin's counters, served as JSON by GET /_origin/stats.
type Stats struct {
	Active    int   `json:"active"`     // requests in service now
	MaxActive int   `json:"max_active"` // high-water mark of Active
	Hanging   int   `json:"hanging"`    // hung requests now
	Received  int64 `json:"received"`   // requests accepted (admin excluded)
	Completed int64 `json:"completed"`  // requests whose work finished
	OK        int64 `json:"ok"`         // 200s sent (including slow bodies)
	Errors    int64 `json:"errors"`     // injected 500s
	Hangs     int64 `json:"hangs"`      // injected hangs
	Holding   int   `json:"holding"`    // requests held by ?hold= now
	Holds     int64 `json:"holds"`      // requests held by ?hold=, in all
	Resets    int64 `json:"resets"`     // injected connection resets
	SlowBody  int64 `json:"slow_bodies"`
	Stalls    int64 `json:"stalls"` // injected stalls
	// StallsLeft are stalls whose client left before they ended.
	StallsLeft int64 `json:"stalls_left"`
	// MeanResidenceMs is the mean time completed requests spent in service.
	MeanResidenceMs float64 `json:"mean_residence_ms"`
	// The configuration in effect.
	Workers     int     `json:"workers"`
	ServiceMs   float64 `json:"service_ms"`
	Dist        string  `json:"dist"`
	Knee        int     `json:"knee"`
	CapacityRPS float64 `json:"capacity_rps"`

	residence time.Duration
}

// New validates cfg (after WithDefaults) and builds an origin that is not
// yet listening.
func New(cfg Config) (*Origin, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := &Origin{
		body:    makeBody(cfg.BodySize),
		kick:    make(chan struct{}, 1),
		closed:  make(chan struct{}),
		cfg:     cfg,
		ps:      NewPS(time.Now(), float64(cfg.Workers), cfg.Knee, cfg.Thrash),
		rng:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		waiters: make(map[uint64]chan struct{}),
	}
	o.srv = &fasthttp.Server{
		Handler:              o.Handler,
		Name:                 "sluice-origin",
		NoDefaultDate:        true,
		NoDefaultContentType: true,
		IdleTimeout:          30 * time.Second,
		ReadTimeout:          30 * time.Second,
		Concurrency:          1 << 20,
		CloseOnShutdown:      true,
	}
	return o, nil
}

func makeBody(n int) []byte {
	b := []byte(strings.Repeat("x", n))
	if n > 0 {
		b[n-1] = '\n'
	}
	return b
}

// Start listens on addr (use "127.0.0.1:0" for a free port) and serves in
// the background until Close.
func (o *Origin) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	o.ln = ln
	o.loopDone = make(chan struct{})
	o.serveErr = make(chan error, 1)
	go o.loop()
	go func() { o.serveErr <- o.srv.Serve(ln) }()
	return nil
}

// Addr is the listening address after Start.
func (o *Origin) Addr() string { return o.ln.Addr().String() }

// URL is "http://" + Addr().
func (o *Origin) URL() string { return "http://" + o.Addr() }

// Close stops the origin: waiting and hung requests are released (they get
// a 503 or a closed connection), the listener and idle connections close.
func (o *Origin) Close() error {
	var err error
	o.once.Do(func() {
		close(o.closed)
		if o.ln == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = o.srv.ShutdownWithContext(ctx)
		if serr := <-o.serveErr; err == nil {
			err = serr
		}
		<-o.loopDone
	})
	return err
}

// Done is closed when Close starts.
func (o *Origin) Done() <-chan struct{} { return o.closed }

// Config returns the configuration in effect.
func (o *Origin) Config() Config {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cfg
}

// Update changes the configuration at run time. Work already done is
// accounted at the old capacity; Seed and BodySize keep their values.
func (o *Origin) Update(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	o.mu.Lock()
	cfg.Seed, cfg.BodySize = o.cfg.Seed, o.cfg.BodySize
	o.cfg = cfg
	o.finishLocked(o.ps.SetCapacity(time.Now(), float64(cfg.Workers), cfg.Knee, cfg.Thrash))
	o.mu.Unlock()
	o.poke()
	return nil
}

// Stats returns a snapshot of the counters.
func (o *Origin) Stats() Stats {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.st
	s.Active = o.ps.Active()
	if s.Completed > 0 {
		s.MeanResidenceMs = float64(s.residence) / float64(s.Completed) / 1e6
	}
	s.Workers, s.ServiceMs, s.Dist, s.Knee = o.cfg.Workers, float64(o.cfg.Service)/1e6, o.cfg.Dist, o.cfg.Knee
	s.CapacityRPS = o.cfg.Capacity()
	return s
}

// RunSchedule applies the changes of s at their offsets from now. It blocks
// until the schedule is done, ctx ends or the origin closes; a change that
// fails validation stops it with that error.
func (o *Origin) RunSchedule(ctx context.Context, s Schedule) error {
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for _, ch := range s {
		t.Reset(time.Until(start.Add(ch.At)))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-o.closed:
			return nil
		case <-t.C:
		}
		cfg := o.Config()
		for _, kv := range ch.Settings {
			if err := cfg.Set(kv[0], kv[1]); err != nil {
				return err
			}
		}
		if err := o.Update(cfg); err != nil {
			return err
		}
	}
	return nil
}

func (o *Origin) poke() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// loop releases jobs as the core completes them. It sleeps until the next
// completion the core predicts; an arrival or a capacity change pokes it to
// recompute, since either moves every active job's finish time.
func (o *Origin) loop() {
	defer close(o.loopDone)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		o.mu.Lock()
		now := time.Now()
		o.finishLocked(o.ps.Advance(now))
		next, ok := o.ps.NextCompletion()
		o.mu.Unlock()
		wait := time.Hour
		if ok {
			wait = max(next.Sub(now), 0)
		}
		t.Reset(wait)
		select {
		case <-o.closed:
			return
		case <-o.kick:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		case <-t.C:
		}
	}
}

func (o *Origin) finishLocked(done []*Job) {
	for _, j := range done {
		o.st.Completed++
		o.st.residence += j.Finish.Sub(j.Start)
		if ch, ok := o.waiters[j.ID]; ok {
			close(ch)
			delete(o.waiters, j.ID)
		}
		if o.onFinish != nil {
			o.onFinish(o.st.Completed)
		}
	}
}

var adminPrefix = []byte("/_origin/")

// Handler serves the simulated workload and, under /_origin/, the admin
// endpoints.
func (o *Origin) Handler(ctx *fasthttp.RequestCtx) {
	if bytes.HasPrefix(ctx.Path(), adminPrefix) {
		o.admin(ctx)
		return
	}
	if h := ctx.QueryArgs().Peek("hold"); h != nil {
		o.hold(ctx, h)
		return
	}
	o.mu.Lock()
	o.st.Received++
	cfg := o.cfg
	f := cfg.drawFault(o.rng)
	if f == faultError && cfg.ErrorFast {
		o.st.Errors++
		o.mu.Unlock()
		ctx.SetStatusCode(fasthttp.StatusInternalServerError)
		ctx.SetBodyString("injected error\n")
		return
	}
	if f == faultHang {
		o.st.Hangs++
		o.st.Hanging++
		o.mu.Unlock()
		o.hang(ctx, cfg.HangFor)
		return
	}
	if f == faultStall {
		o.st.Stalls++
		o.mu.Unlock()
		if !o.stall(ctx, cfg.StallFor) {
			return
		}
		o.mu.Lock()
	}
	o.nextID++
	j := &Job{ID: o.nextID, Work: cfg.sample(o.rng)}
	ch := make(chan struct{})
	o.waiters[j.ID] = ch
	o.finishLocked(o.ps.Add(time.Now(), j))
	if a := o.ps.Active(); a > o.st.MaxActive {
		o.st.MaxActive = a
	}
	if o.onAdd != nil {
		o.onAdd(o.ps.Active())
	}
	o.mu.Unlock()
	o.poke()

	select {
	case <-ch:
	case <-o.closed:
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetConnectionClose()
		return
	}

	switch f {
	case faultError:
		o.count(&o.st.Errors)
		ctx.SetStatusCode(fasthttp.StatusInternalServerError)
		ctx.SetBodyString("injected error\n")
	case faultReset:
		o.count(&o.st.Resets)
		reset(ctx)
	case faultSlowBody:
		o.count(&o.st.SlowBody)
		o.count(&o.st.OK)
		o.slowBody(ctx, cfg.SlowBodyFor)
	default:
		o.count(&o.st.OK)
		ctx.SetContentType("text/plain")
		ctx.SetBody(o.body)
	}
}

func (o *Origin) count(c *int64) {
	o.mu.Lock()
	*c++
	o.mu.Unlock()
}

// maxHold bounds ?hold=, so that a typo cannot park a connection for a
// day.
const maxHold = 10 * time.Minute

// hold serves GET ...?hold=D: a long poll. The request is answered 200
// with the usual body after D, and in the meantime uses no worker, the way
// a server waiting for an event to push holds a connection and next to no
// CPU. Fault injection does not apply to it: a held request stands for
// the requests that are slow because they are long-lived, not because the
// origin is failing. Close answers it at once with 503.
func (o *Origin) hold(ctx *fasthttp.RequestCtx, raw []byte) {
	d, err := time.ParseDuration(string(raw))
	if err != nil || d < 0 || d > maxHold {
		ctx.SetStatusCode(fasthttp.StatusBadRequest)
		ctx.SetBodyString("hold: want a duration in [0, " + maxHold.String() + "], got " + strconv.Quote(string(raw)) + "\n")
		return
	}
	o.mu.Lock()
	o.st.Received++
	o.st.Holds++
	o.st.Holding++
	o.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	closed := false
	select {
	case <-t.C:
	case <-o.closed:
		closed = true
	}
	o.mu.Lock()
	o.st.Holding--
	if !closed {
		o.st.OK++
	}
	o.mu.Unlock()
	if closed {
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetConnectionClose()
		return
	}
	ctx.SetContentType("text/plain")
	ctx.SetBody(o.body)
}

// hang holds the request without a worker (a deadlocked thread, a lost
// upstream call) and then drops the connection without answering.
func (o *Origin) hang(ctx *fasthttp.RequestCtx, d time.Duration) {
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-timeout:
	case <-o.closed:
	}
	o.mu.Lock()
	o.st.Hanging--
	o.mu.Unlock()
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(net.Conn) {})
}

// stall holds the request for d without a worker; false when the origin
// closes or the client leaves first (then nothing is answered). fasthttp
// does not say when a client leaves, so the connection is peeked at
// every few milliseconds, as a server that polls for cancellation would.
func (o *Origin) stall(ctx *fasthttp.RequestCtx, d time.Duration) bool {
	end := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(end) {
		select {
		case <-o.closed:
			return false
		case <-tick.C:
		}
		if peek.Gone(ctx.Conn()) {
			o.count(&o.st.StallsLeft)
			ctx.HijackSetNoResponse(true)
			ctx.Hijack(func(net.Conn) {})
			return false
		}
	}
	return true
}

// reset closes the connection with SO_LINGER 0, so the client sees a TCP RST
// instead of a response.
func reset(ctx *fasthttp.RequestCtx) {
	raw := ctx.Conn()
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(net.Conn) {
		if tc, ok := raw.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
	})
}

// slowBody answers 200 at once but trickles the body over d in eight pieces,
// the way an origin stuck behind a slow disk or upstream does.
func (o *Origin) slowBody(ctx *fasthttp.RequestCtx, d time.Duration) {
	body := o.body
	closed := o.closed
	ctx.SetContentType("text/plain")
	ctx.Response.Header.SetContentLength(len(body))
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		const pieces = 8
		t := time.NewTimer(d / pieces)
		defer t.Stop()
		for i := range pieces {
			lo, hi := len(body)*i/pieces, len(body)*(i+1)/pieces
			if _, err := w.Write(body[lo:hi]); err != nil {
				return
			}
			if err := w.Flush(); err != nil {
				return
			}
			if i == pieces-1 {
				return
			}
			select {
			case <-t.C:
				t.Reset(d / pieces)
			case <-closed:
				// Finish quickly so shutdown is not held up.
				_, _ = w.Write(body[hi:])
				return
			}
		}
	})
}

// admin serves GET /_origin/stats, GET /_origin/config and
// POST /_origin/config?workers=2&... (settings as in Config.Set, in the
// query or a form body).
func (o *Origin) admin(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("application/json")
	switch string(ctx.Path()) {
	case "/_origin/stats":
		writeJSON(ctx, o.Stats())
	case "/_origin/config":
		if ctx.IsPost() || ctx.IsPut() {
			v := url.Values{}
			ctx.QueryArgs().VisitAll(func(k, val []byte) { v.Add(string(k), string(val)) })
			ctx.PostArgs().VisitAll(func(k, val []byte) { v.Add(string(k), string(val)) })
			cfg, err := o.Config().ApplyValues(v)
			if err == nil {
				err = o.Update(cfg)
			}
			if err != nil {
				ctx.SetStatusCode(fasthttp.StatusBadRequest)
				writeJSON(ctx, map[string]string{"error": err.Error()})
				return
			}
		}
		writeJSON(ctx, configJSON(o.Config()))
	default:
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		writeJSON(ctx, map[string]string{"error": "unknown admin path"})
	}
}

func writeJSON(ctx *fasthttp.RequestCtx, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		ctx.SetStatusCode(fasthttp.StatusInternalServerError)
		return
	}
	ctx.SetBody(append(b, '\n'))
}

// configJSON is the wire form of Config, with the same keys as Config.Set.
func configJSON(c Config) map[string]any {
	return map[string]any{
		"workers": c.Workers, "service": c.Service.String(), "dist": c.Dist,
		"knee": c.Knee, "thrash": c.Thrash,
		"error-rate": c.ErrorRate, "error-fast": c.ErrorFast, "hang-rate": c.HangRate, "reset-rate": c.ResetRate,
		"slow-body-rate": c.SlowBodyRate, "hang-for": c.HangFor.String(),
		"slow-body-for": c.SlowBodyFor.String(), "stall-rate": c.StallRate, "stall-for": c.StallFor.String(),
		"capacity_rps": c.Capacity(),
	}
}
