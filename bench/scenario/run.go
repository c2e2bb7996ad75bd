package scenario

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/sluiceproxy/sluice/bench/loadgen"
	"github.com/sluiceproxy/sluice/bench/origin"
)

// OriginStarter starts a fresh simulated origin with cfg on a free loopback
// port and returns its host:port and how to stop it. Every run gets a fresh
// origin: the origin keeps working on requests whose clients gave up, so
// after an overloaded run it can owe minutes of abandoned work, and the next
// peer must not inherit that.
type OriginStarter func(ctx context.Context, cfg origin.Config, dir string) (addr string, stop func(), err error)

// InProcessOrigin runs the origin inside this process. It shares the Go
// runtime with the load generator, which is fine for tests and smoke runs;
// ChildOrigin isolates it for measurements.
func InProcessOrigin(_ context.Context, cfg origin.Config, _ string) (string, func(), error) {
	o, err := origin.New(cfg)
	if err != nil {
		return "", nil, err
	}
	if err := o.Start("127.0.0.1:0"); err != nil {
		return "", nil, err
	}
	return o.Addr(), func() { _ = o.Close() }, nil
}

// ChildOrigin runs `bin origin ...` (the sluice-bench binary) as a child
// process.
func ChildOrigin(bin string) OriginStarter {
	return func(ctx context.Context, cfg origin.Config, dir string) (string, func(), error) {
		addr, err := FreeAddr()
		if err != nil {
			return "", nil, err
		}
		argv := []string{bin, "origin", "--listen", addr,
			"--workers", strconv.Itoa(cfg.Workers), "--service", cfg.Service.String(),
			"--dist", cfg.Dist, "--knee", strconv.Itoa(cfg.Knee),
			"--seed", strconv.FormatUint(cfg.Seed, 10)}
		if cfg.StallRate > 0 {
			// Faults are otherwise set on a running origin (its admin
			// endpoint); a stall is part of this origin from the start.
			argv = append(argv, "--stall-rate", strconv.FormatFloat(cfg.StallRate, 'g', -1, 64),
				"--stall-for", cfg.StallFor.String())
		}
		p, err := startProc("origin", dir, argv)
		if err != nil {
			return "", nil, err
		}
		if err := waitListening(ctx, p, addr, 10*time.Second); err != nil {
			p.stop()
			return "", nil, err
		}
		return addr, p.stop, nil
	}
}

// Options configure a scenario or demo run.
type Options struct {
	Binaries
	// Origin starts each run's origin; nil runs it in-process.
	Origin OriginStarter
	// OriginConfig is the origin; zero means origin.Default() (4 × 20 ms)
	// for the scenarios, DemoOrigin() (8 × 40 ms) for the demo.
	OriginConfig origin.Config
	// Quick shortens every run for a smoke test.
	Quick bool
	// Out receives progress lines and the tables; nil discards.
	Out io.Writer
	// Dir holds generated configs and logs; "" makes (and removes) a
	// temporary directory.
	Dir string
	// Plot is where the sweep writes its SVG plot; "" writes none.
	Plot string
	// Seed seeds the load generator's arrivals. Default 1.
	Seed uint64
}

// Result is one load run: a peer under one load in one scenario.
type Result struct {
	Scenario    string          `json:"scenario"`
	Peer        string          `json:"peer"`
	Load        string          `json:"load"` // e.g. "3x" of capacity, "unloaded"
	Rate        float64         `json:"rate"` // requested arrivals/s
	CapacityRPS float64         `json:"capacity_rps"`
	Skipped     string          `json:"skipped,omitempty"`
	Error       string          `json:"error,omitempty"`
	Report      *loadgen.Report `json:"report,omitempty"`

	// Of the qos runs, in front of several origins:
	Pool    string         `json:"pool,omitempty"`     // which origins, when a scenario compares pools
	Change  string         `json:"change,omitempty"`   // what was done to an origin during the run, and when
	After   time.Duration  `json:"after_ns,omitempty"` // Report.After counts requests sent from here on
	Origins []origin.Stats `json:"origins,omitempty"`  // each origin's counters at the end of the run
	// Samples are one origin's counters during the run: the origin
	// numbered SampleOrigin (from 0) in Origins.
	Samples      []Sample        `json:"samples,omitempty"`
	SampleOrigin int             `json:"sample_origin,omitempty"`
	LongPolls    *loadgen.Report `json:"long_polls,omitempty"`
	// Events are the monitor's events in the peer's log (Sluice's), with
	// when they appeared.
	Events []PeerEvent `json:"events,omitempty"`
}

// durations are the lengths of the runs.
type durations struct {
	unloaded, overload, priority, fairness, demo time.Duration
	timeout                                      time.Duration // client timeout
	// qos: the fail and hang runs (the fault comes at 3 s), the slow
	// runs, the long polls' hold, and the client timeout of all but the
	// long polls. A fail run of 15 s sees Sluice's first ejection (10 s by
	// default) end, and what follows.
	qos, qosSlow, longHold, qosTimeout time.Duration
	// hedge: each of its two runs.
	hedge time.Duration
	// qos-standby: the overload step, the low step after it, and
	// Sluice's --standby-cool-down. The low step holds the cool-down
	// several times over: the release comes a cool-down after the last
	// sample that was not quiet, and on a busy machine the first quiet
	// stretch can be cut short (one run released 11.4 s after the fall).
	standbyHigh, standbyLow, standbyCoolDown time.Duration
}

func (o Options) durations() durations {
	if o.Quick {
		return durations{unloaded: 2 * time.Second, overload: 3 * time.Second, priority: 4 * time.Second,
			fairness: 4 * time.Second, demo: 5 * time.Second, timeout: 2 * time.Second,
			qos: 7 * time.Second, qosSlow: 4 * time.Second, longHold: 8 * time.Second, qosTimeout: 5 * time.Second,
			hedge:       4 * time.Second,
			standbyHigh: 8 * time.Second, standbyLow: 12 * time.Second, standbyCoolDown: 5 * time.Second}
	}
	return durations{unloaded: 6 * time.Second, overload: 12 * time.Second, priority: 15 * time.Second,
		fairness: 15 * time.Second, demo: 20 * time.Second, timeout: 3 * time.Second,
		qos: 15 * time.Second, qosSlow: 12 * time.Second, longHold: 20 * time.Second, qosTimeout: 5 * time.Second,
		hedge:       6 * time.Second,
		standbyHigh: 15 * time.Second, standbyLow: 20 * time.Second, standbyCoolDown: 5 * time.Second}
}

// env is the state shared by the runs of one invocation.
type env struct {
	opt     Options
	out     io.Writer
	dir     string
	dur     durations
	ocfg    origin.Config
	skipped map[string]bool // peers already reported as skipped
}

func newEnv(opt Options) (*env, func(), error) {
	opt.Binaries = opt.Binaries.withDefaults()
	if opt.Origin == nil {
		opt.Origin = InProcessOrigin
	}
	if opt.OriginConfig == (origin.Config{}) {
		opt.OriginConfig = origin.Default()
	}
	if opt.Seed == 0 {
		opt.Seed = 1
	}
	e := &env{opt: opt, out: opt.Out, dur: opt.durations(), ocfg: opt.OriginConfig.WithDefaults(), skipped: map[string]bool{}}
	if e.out == nil {
		e.out = io.Discard
	}
	if err := e.ocfg.Validate(); err != nil {
		return nil, nil, err
	}
	cleanup := func() {}
	e.dir = opt.Dir
	if e.dir == "" {
		d, err := os.MkdirTemp("", "sluice-bench-")
		if err != nil {
			return nil, nil, err
		}
		e.dir = d
		cleanup = func() { os.RemoveAll(d) }
	}
	return e, cleanup, nil
}

// capacity is the origin's throughput in requests/s.
func (e *env) capacity() float64 { return e.ocfg.Capacity() }

// run measures one peer under one load. A missing peer or a failure to
// start it is recorded in the Result, not returned: the other peers still
// run. Only cancellation is returned as an error.
func (e *env) run(ctx context.Context, scenario, peer, load string, rate float64, dur time.Duration, mix []loadgen.Class) (Result, error) {
	return e.runSchedule(ctx, scenario, peer, load, loadgen.Schedule{{From: rate, To: rate, Dur: dur}}, mix)
}

// runSchedule is run with a rate that follows sched (bursts, ramps);
// Result.Rate is its mean.
func (e *env) runSchedule(ctx context.Context, scenario, peer, load string, sched loadgen.Schedule, mix []loadgen.Class) (Result, error) {
	dur := sched.Total()
	rate := sched.Expected() / dur.Seconds()
	res := Result{Scenario: scenario, Peer: peer, Load: load, Rate: rate, CapacityRPS: e.capacity()}
	if e.skip(peer, &res) {
		return res, nil
	}
	fmt.Fprintf(e.out, "  %-9s %-8s via %-15s %6.0f req/s for %s\n", scenario, load, peer, rate, dur)
	addr, stopOrigin, err := e.opt.Origin(ctx, e.ocfg, e.dir)
	if err != nil {
		return res, fmt.Errorf("start origin: %w", err)
	}
	defer stopOrigin()
	f, err := e.opt.startPeer(ctx, peer, []upstream{{addr: addr, workers: e.ocfg.Workers}}, e.dir)
	if err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		res.Error = err.Error()
		fmt.Fprintf(e.out, "  %s: failed to start: %v\n", peer, err)
		return res, nil
	}
	defer f.stop()
	rep, err := loadgen.Run(ctx, loadgen.Config{
		Target:   f.url,
		Rate:     sched,
		Poisson:  true,
		Mix:      mix,
		SLO:      500 * time.Millisecond,
		Timeout:  e.dur.timeout,
		MaxConns: 4000, // rate × timeout with room; stays under a 20k fd limit with the proxies' own
		Seed:     e.opt.Seed,
	}, nil)
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if err != nil {
		res.Error = err.Error()
		return res, nil
	}
	res.Report = rep
	return res, nil
}
