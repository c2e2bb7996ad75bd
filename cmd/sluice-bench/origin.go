package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/sluiceproxy/sluice/bench/origin"
)

func originCommand(args []string, stdout, stderr io.Writer) int {
	cfg := origin.Default()
	fs := flag.NewFlagSet("sluice-bench origin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9000", "`address` to serve on (loopback)")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "requests served at full speed at once (capacity = workers/service)")
	fs.DurationVar(&cfg.Service, "service", cfg.Service, "mean service `time` of one request on an idle worker")
	fs.StringVar(&cfg.Dist, "dist", cfg.Dist, "service-time distribution: constant, exp, bimodal or lognormal (all with mean --service)")
	fs.IntVar(&cfg.Knee, "knee", cfg.Knee, "concurrency past which capacity falls (thrashing); 0 = never")
	fs.Float64Var(&cfg.Thrash, "thrash", cfg.Thrash, "capacity loss past the knee: capacity = workers/(1+thrash*(c-knee)/knee)")
	fs.Float64Var(&cfg.ErrorRate, "error-rate", 0, "share of requests answered 500 after their work")
	fs.BoolVar(&cfg.ErrorFast, "error-fast", false, "answer the injected 500s at once, without doing the work")
	fs.Float64Var(&cfg.HangRate, "hang-rate", 0, "share of requests never answered (see --hang-for)")
	fs.Float64Var(&cfg.ResetRate, "reset-rate", 0, "share of requests answered with a TCP reset after their work")
	fs.Float64Var(&cfg.SlowBodyRate, "slow-body-rate", 0, "share of responses whose body trickles over --slow-body-for")
	fs.DurationVar(&cfg.HangFor, "hang-for", 0, "how long a hang lasts before the connection is dropped; 0 = until shutdown")
	fs.DurationVar(&cfg.SlowBodyFor, "slow-body-for", cfg.SlowBodyFor, "how long a slow body takes")
	fs.Float64Var(&cfg.StallRate, "stall-rate", 0, "share of requests held for --stall-for (using no worker) before they are served")
	fs.DurationVar(&cfg.StallFor, "stall-for", cfg.StallFor, "how long a stall lasts")
	fs.IntVar(&cfg.BodySize, "body-size", cfg.BodySize, "response body `bytes`")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed for service times and failure draws")
	sched := fs.String("schedule", "", "capacity changes over time, e.g. '10s:workers=2;30s:workers=4,error-rate=0'")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: sluice-bench origin [flags]

Serves a simulated origin with finite capacity: processor sharing over
--workers, so latency climbs under overload like a CPU-bound server, and it
keeps working on requests whose clients have gone. A request with
?hold=DURATION (e.g. GET /poll?hold=20s) is a long poll: answered 200 after
that long, using no worker.

Admin endpoints:
  GET  /_origin/stats                  counters as JSON (active, completed, ...)
  GET  /_origin/config                 the configuration in effect
  POST /_origin/config?workers=2&...   change settings (names as in --schedule)

flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sluice-bench origin: unexpected arguments %q\n", fs.Args())
		return 2
	}
	schedule, err := origin.ParseSchedule(*sched)
	if err != nil {
		fmt.Fprintln(stderr, "sluice-bench origin:", err)
		return 2
	}
	o, err := origin.New(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "sluice-bench origin:", err)
		return 2
	}
	if err := o.Start(*listen); err != nil {
		fmt.Fprintln(stderr, "sluice-bench origin:", err)
		return 1
	}
	c := o.Config()
	fmt.Fprintf(stdout, "origin listening on http://%s: %d workers × %s (%s) = %.0f req/s\n",
		o.Addr(), c.Workers, c.Service, c.Dist, c.Capacity())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if len(schedule) > 0 {
		go func() {
			if err := o.RunSchedule(ctx, schedule); err != nil && ctx.Err() == nil {
				fmt.Fprintln(stderr, "sluice-bench origin: schedule:", err)
			}
		}()
	}
	<-ctx.Done()
	if err := o.Close(); err != nil {
		fmt.Fprintln(stderr, "sluice-bench origin: close:", err)
		return 1
	}
	return 0
}
