package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluiceproxy/sluice/bench/loadgen"
)

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

const runUsage = `usage: sluice-bench run URL [flags]
       sluice-bench run --target URL [flags]

Sends HTTP load to a target and reports throughput, goodput, status codes,
errors, shed reasons and latency percentiles (measured from each request's
scheduled send time, so a stalled server cannot hide its queueing delay).

Open loop (default): requests arrive at --rate whatever the server does.
  --rate 600 --duration 30s              constant 600 req/s for 30s
  --rate 200:10s,600:20s,200:10s          steps
  --rate 0-2000:60s                       linear ramp
Closed loop: --conns N keeps N connections busy for --duration.

Traffic mix: --class is repeatable, e.g.
  --class name=crit,share=0.2,path=/api,priority=critical,tenant=a
  --class name=bulk,share=0.8,method=POST,path=/upload,header=X-Tenant:b,body=xyz
Without --class, one class is built from --method, --path, --header, --body.

Flags:
`

// runCommand implements "sluice-bench run". Exit codes: 0 when the run
// completed (whatever the status codes), 1 on an error, 2 on bad usage.
func runCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, runUsage)
		fs.PrintDefaults()
	}
	var (
		target   = fs.String("target", "", "base URL of the server under test, e.g. http://127.0.0.1:8080 (required, here or as the argument)")
		rate     = fs.String("rate", "100", "open-loop arrival rate in req/s: RATE, RATE:DUR,... or FROM-TO:DUR ramps")
		duration = fs.Duration("duration", 0, "run length; default 10s unless --rate gives durations")
		poisson  = fs.Bool("poisson", false, "exponential inter-arrival times instead of constant spacing")
		conns    = fs.Int("conns", 0, "closed loop with this many connections (--rate is ignored)")
		maxConns = fs.Int("max-conns", 0, "open loop: connection cap (default 20000)")
		method   = fs.String("method", "", "request method for the default class (default GET)")
		path     = fs.String("path", "", "request path for the default class (default /)")
		body     = fs.String("body", "", "request body for the default class")
		bodyFile = fs.String("body-file", "", "file holding the request body for the default class")
		targets  = fs.String("targets", "", "file of request paths (one per line, optionally \"METHOD /path\"), cycled through")
		slo      = fs.Duration("slo", loadgen.DefaultSLO, "goodput counts 2xx responses within this latency")
		timeout  = fs.Duration("timeout", loadgen.DefaultTimeout, "per-request timeout, from the scheduled send time")
		seed     = fs.Uint64("seed", 1, "seed for class choice and Poisson arrivals")
		jsonOut  = fs.Bool("json", false, "print the report as JSON instead of a table")
		plot     = fs.String("plot", "", "write an SVG of latency, throughput and errors over time to this file")
		quiet    = fs.Bool("quiet", false, "no progress line each second")
		classes  multiFlag
		headers  multiFlag
	)
	fs.Var(&classes, "class", "request class spec (repeatable), e.g. name=crit,share=0.2,path=/x,header=X-Priority:critical")
	fs.Var(&headers, "header", "K:V header for the default class (repeatable)")
	positional, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "sluice-bench run: "+format+"\n", a...)
		fmt.Fprintln(stderr, "run 'sluice-bench run -h' for help")
		return 2
	}
	targetURL, err := resolveTarget(*target, positional)
	if err != nil {
		return usage("%v", err)
	}

	cfg := loadgen.Config{
		Target:   targetURL,
		Duration: *duration,
		Poisson:  *poisson,
		Conns:    *conns,
		MaxConns: *maxConns,
		SLO:      *slo,
		Timeout:  *timeout,
		Seed:     *seed,
	}
	if *conns == 0 {
		sch, err := loadgen.ParseSchedule(*rate)
		if err != nil {
			return usage("--rate: %v", err)
		}
		cfg.Rate = sch
		if sch.Total() == 0 && cfg.Duration == 0 {
			cfg.Duration = 10 * time.Second
		}
	} else if cfg.Duration == 0 {
		cfg.Duration = 10 * time.Second
	}

	defaultSet := *method != "" || *path != "" || *body != "" || *bodyFile != "" || len(headers) > 0
	if len(classes) > 0 && defaultSet {
		return usage("--method, --path, --header, --body and --body-file describe the default class; with --class put them in the class spec")
	}
	for _, spec := range classes {
		c, err := loadgen.ParseClass(spec)
		if err != nil {
			return usage("--class: %v", err)
		}
		cfg.Mix = append(cfg.Mix, c)
	}
	if len(classes) == 0 {
		c := loadgen.Class{Name: "default", Share: 1, Method: strings.ToUpper(*method), Path: *path}
		for _, h := range headers {
			k, v, err := loadgen.ParseHeader(h)
			if err != nil {
				return usage("--header: %v", err)
			}
			if c.Headers == nil {
				c.Headers = make(map[string]string)
			}
			c.Headers[k] = v
		}
		if *body != "" && *bodyFile != "" {
			return usage("--body and --body-file are exclusive")
		}
		if *body != "" {
			c.Body = []byte(*body)
		}
		if *bodyFile != "" {
			b, err := os.ReadFile(*bodyFile)
			if err != nil {
				fmt.Fprintf(stderr, "sluice-bench run: --body-file: %v\n", err)
				return 1
			}
			c.Body = b
		}
		cfg.Mix = []loadgen.Class{c}
	}
	if *targets != "" {
		f, err := os.Open(*targets)
		if err != nil {
			fmt.Fprintf(stderr, "sluice-bench run: --targets: %v\n", err)
			return 1
		}
		paths, m, err := loadgen.ReadTargets(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(stderr, "sluice-bench run: --targets %s: %v\n", *targets, err)
			return 1
		}
		cfg.Targets = paths
		if m != "" {
			for i := range cfg.Mix {
				cfg.Mix[i].Method = m
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		return usage("%v", err)
	}

	// Create the plot file before the run so a bad path fails in a second,
	// not after a long run.
	var plotFile *os.File
	if *plot != "" {
		f, err := os.Create(*plot)
		if err != nil {
			fmt.Fprintf(stderr, "sluice-bench run: --plot: %v\n", err)
			return 1
		}
		plotFile = f
		defer plotFile.Close()
	}

	// Ctrl-C ends the run early; the report covers what was done.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var progress io.Writer
	if !*quiet {
		progress = stderr
	}
	rep, err := loadgen.Run(ctx, cfg, progress)
	if err != nil {
		fmt.Fprintf(stderr, "sluice-bench run: %v\n", err)
		return 1
	}
	if *jsonOut {
		if err := rep.WriteJSON(stdout); err != nil {
			fmt.Fprintf(stderr, "sluice-bench run: %v\n", err)
			return 1
		}
	} else {
		rep.WriteTable(stdout)
	}
	if plotFile != nil {
		if err := rep.PlotSVG(plotFile); err != nil {
			fmt.Fprintf(stderr, "sluice-bench run: --plot: %v\n", err)
			return 1
		}
		if err := plotFile.Close(); err != nil {
			fmt.Fprintf(stderr, "sluice-bench run: --plot: %v\n", err)
			return 1
		}
	}
	return 0
}
