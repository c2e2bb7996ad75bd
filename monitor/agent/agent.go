package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Probe takes one sample at now. *Sampler is the real one; tests give the
// Agent their own to report any CPU they like without burning it.
type Probe interface {
	Sample(ctx context.Context, now time.Time) (Load, error)
}

// Agent-check connection bounds. HAProxy sends at most a short agent-send
// string and expects the reply at once, so a connection that lingers is
// not HAProxy and is cut.
const (
	agentCheckTimeout  = time.Second
	maxAgentCheckConns = 64
)

// firstWindow is how long Start waits between its baseline reading and the
// first sample it publishes: long enough for the CPU counters (10 ms
// ticks) to say something, short enough not to delay start-up.
const firstWindow = 200 * time.Millisecond

// Agent samples its Probe every interval in a goroutine of its own and
// serves the latest sample: as JSON (Handler) and as HAProxy agent-check
// replies (ServeAgentCheck). Readers never wait for a sample: the latest
// one is swapped whole through an atomic pointer.
type Agent struct {
	// immutable
	cfg     Config
	probe   Probe
	log     zerolog.Logger
	now     func() time.Time
	started time.Time

	// written by the sampling goroutine, read by every server
	latest atomic.Pointer[snapshot]
	done   chan struct{}
}

// snapshot is one published verdict.
type snapshot struct {
	load      Load
	lastNotUp time.Time // the last sample that was not up; zero: none yet
}

// New returns an agent that samples probe as cfg says. cfg is filled with
// its defaults and validated.
func New(cfg Config, probe Probe, log zerolog.Logger) (*Agent, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Agent{cfg: cfg, probe: probe, log: log, now: time.Now, done: make(chan struct{})}, nil
}

// Start takes a baseline reading and the first sample (about 200 ms, or
// the interval if shorter) and then samples every interval until ctx is
// done; Done is closed when the sampling goroutine has returned. Servers
// may start once Start returns: there is always a sample to serve. An
// error means even the first sample failed, and nothing was started.
func (a *Agent) Start(ctx context.Context) error {
	a.started = a.now()
	if _, err := a.probe.Sample(ctx, a.started); err != nil {
		return err
	}
	t := time.NewTimer(min(a.cfg.Interval, firstWindow))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	if err := a.sample(ctx); err != nil {
		return err
	}
	go a.loop(ctx)
	return nil
}

// Done is closed when the sampling goroutine started by Start returns.
func (a *Agent) Done() <-chan struct{} { return a.done }

func (a *Agent) loop(ctx context.Context) {
	defer close(a.done)
	tick := time.NewTicker(a.cfg.Interval)
	defer tick.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// On an error the previous sample stays published and ages, which
		// is how a client recognises that the agent is not keeping up.
		// Logged once per distinct error, not once a second.
		if err := a.sample(ctx); err != nil {
			if err.Error() != lastErr && ctx.Err() == nil {
				a.log.Warn().Err(err).Msg("sample failed; serving the previous one")
			}
			lastErr = err.Error()
			continue
		}
		if lastErr != "" {
			a.log.Info().Msg("sampling again")
			lastErr = ""
		}
	}
}

// sample takes a sample, judges it and publishes it.
func (a *Agent) sample(ctx context.Context) error {
	l, err := a.probe.Sample(ctx, a.now())
	if err != nil {
		return err
	}
	prev := a.latest.Load()
	prevState, lastNotUp := StateUp, time.Time{}
	if prev != nil {
		prevState, lastNotUp = prev.load.State, prev.lastNotUp
	}
	l.State, l.Weight, l.Error = a.cfg.Policy.Decide(prevState, &l)
	if l.State != StateUp {
		lastNotUp = l.Time
	}
	if prev == nil || l.State != prevState {
		ev := a.log.Info()
		if l.State != StateUp {
			ev = a.log.Warn()
		}
		ev = ev.Str("state", string(l.State)).Int("weight", l.Weight).Float64("cpu", l.CPU)
		if l.Error != "" {
			ev = ev.Str("error", l.Error)
		}
		ev.Msg("state")
	}
	a.latest.Store(&snapshot{load: l, lastNotUp: lastNotUp})
	return nil
}

// Latest returns the latest published sample, with AgeSeconds as of now.
// Before Start has returned it is the zero Load.
func (a *Agent) Latest() Load {
	s := a.latest.Load()
	if s == nil {
		return Load{}
	}
	l := s.load
	l.Targets = append([]Target(nil), l.Targets...)
	l.AgeSeconds = max(0, a.now().Sub(l.Time).Seconds())
	return l
}

// Reply returns the agent-check reply for the latest sample, as of now.
func (a *Agent) Reply() string {
	s := a.latest.Load()
	if s == nil {
		// Not started: say nothing HAProxy would act on. An empty line
		// changes no state.
		return "\n"
	}
	ready := needReady(a.now(), a.started, s.lastNotUp, a.cfg.Policy.ReadyHold)
	return AgentReply(s.load.State, s.load.Weight, s.load.Error, ready)
}

// Handler serves GET /load: the latest sample as a Load document, status
// 200 whatever the state (a down agent is still a valid answer). Other
// paths are 404, other methods 405.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/load", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		body, err := json.Marshal(a.Latest())
		if err != nil { // cannot happen: every float is finite
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		body = append(body, '\n')
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		w.Write(body)
	})
	return mux
}

// NewHTTPServer returns an http.Server for Handler with timeouts that
// bound what a slow or idle client can hold.
func (a *Agent) NewHTTPServer() *http.Server {
	return &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 2 * time.Second,
		ReadTimeout:       5 * time.Second,
		WriteTimeout:      5 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    8 << 10,
	}
}

// ServeAgentCheck answers HAProxy agent checks on ln until ln is closed,
// then waits for the connections in progress (each bounded to a second)
// and returns nil. Each connection gets the reply at once, then the
// agent half-closes, reads and drops whatever HAProxy sent (agent-send),
// and closes: closing with unread data would reset the connection, and a
// reset can destroy the reply before HAProxy reads it.
func (a *Agent) ServeAgentCheck(ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, maxAgentCheckConns)
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: back off as
			// net/http does, rather than spin.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			a.log.Warn().Err(err).Dur("retry_in", delay).Msg("agent-check accept")
			time.Sleep(delay)
			continue
		}
		delay = 0
		select {
		case sem <- struct{}{}:
		default:
			c.Close() // over the bound: HAProxy reads a failed check, which changes nothing
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			a.answer(c)
		}()
	}
}

func (a *Agent) answer(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(agentCheckTimeout))
	if _, err := io.WriteString(c, a.Reply()); err != nil {
		return
	}
	if tc, ok := c.(interface{ CloseWrite() error }); ok {
		tc.CloseWrite()
	}
	io.Copy(io.Discard, io.LimitReader(c, 4<<10))
}
