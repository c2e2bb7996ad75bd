package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/sluiceproxy/sluice/bench/origin"
	"github.com/sluiceproxy/sluice/bench/scenario"
)

// benchFlags are the flags demo and scenario share.
type benchFlags struct {
	opt        scenario.Options
	inProcess  bool
	sluiceArgs string
}

func addBenchFlags(fs *flag.FlagSet, b *benchFlags, peers bool) {
	fs.StringVar(&b.opt.Sluice, "sluice", filepath.Join("bin", "sluice"), "`path` of the sluice binary")
	if peers {
		fs.StringVar(&b.opt.HAProxy, "haproxy", "haproxy", "haproxy `binary` (name in PATH or path); absent = peer skipped")
		fs.StringVar(&b.opt.Nginx, "nginx", "nginx", "nginx `binary` (name in PATH or path); absent = peer skipped")
	}
	fs.StringVar(&b.sluiceArgs, "sluice-args", "--access-log=false", "extra `flags` for sluice, space-separated")
	fs.StringVar(&b.opt.CPU, "cpu", "", "run each proxy under taskset -c `CPUS` (default: no pinning)")
	fs.BoolVar(&b.opt.Quick, "quick", false, "short runs, for a smoke test")
	fs.BoolVar(&b.inProcess, "in-process-origin", false, "run the origin inside this process instead of as a child")
	fs.Uint64Var(&b.opt.Seed, "seed", 1, "seed of the arrival process")
}

// finish resolves what the flags leave open: the origin runs as a child
// `sluice-bench origin` so its goroutines and GC do not share a runtime
// with the load generator.
func (b *benchFlags) finish() error {
	b.opt.SluiceArgs = strings.Fields(b.sluiceArgs)
	if b.opt.SluiceArgs == nil {
		b.opt.SluiceArgs = []string{}
	}
	if !b.inProcess {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("locating sluice-bench for the origin: %w", err)
		}
		b.opt.Origin = scenario.ChildOrigin(exe)
	}
	return nil
}

func parseFlags(fs *flag.FlagSet, args []string) (ok bool, code int) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return false, 0
		}
		return false, 2
	}
	return true, 0
}

func scenarioCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice-bench scenario", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var b benchFlags
	addBenchFlags(fs, &b, true)
	jsonPath := fs.String("json", "", "also write every report and floor to this JSON `file`")
	fs.StringVar(&b.opt.Plot, "plot", "sweep.svg", "where the sweep writes its SVG `file` of p99 and goodput against load (\"\" = none)")
	workers := fs.Int("workers", 0, "the origin's workers for overload, sweep, priority and fairness (0 = 4)")
	service := fs.Duration("service", 0, "the origin's mean service `time` for those scenarios (0 = 20ms)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: sluice-bench scenario [flags] overload|sweep|priority|fairness|qos|all

Puts Sluice (default flags), HAProxy (tuned and untuned), nginx and no proxy
in front of the same simulated origin (4 workers × 20ms = 200 req/s) under the
same open-loop load, and prints them side by side with Sluice's floors:
  overload  0.3x, 3x and 6x capacity: goodput within a 500ms SLO, p50/p99
  sweep     Sluice and haproxy-tuned (maxconn = workers, timeout queue
            100ms) from 0.5x to 10x, a fresh origin and proxy per load:
            goodput, admitted p99 against the unloaded one, refusal p99;
            writes sweep.svg (about 5 minutes; --quick about 1)
  priority  critical (X-Priority) at 0.5x on top of low at 2.5x
  fairness  tenant t1 (X-Tenant) at 10x its share, t2..t5 within theirs
  qos       Sluice and HAProxy leastconn in front of redundant origins, one
            of which fails (500s), hangs or is 4x slower; 40 long polls
            beside 100 quick requests; and one backend with a standby
            offered 1.8x its capacity (about 4 minutes; --quick about 2).
            Its parts alone: qos-fail, qos-hang, qos-slow, qos-longpoll,
            qos-standby
  hedge     Sluice without and with --hedge in front of three origins, one
            stalling 5% of its requests by 1 s (then each 1.7%), at 300
            req/s: p99 and origin requests per request (about 30 s)
  all       overload, sweep, priority, fairness and qos (about 14 minutes;
            --quick about 4)
A missing haproxy or nginx is skipped. Exits 1 when a floor for Sluice fails
or cannot be measured (Sluice missing or failed to start).

flags:
`)
		fs.PrintDefaults()
	}
	// Accept the scenario name before or after the flags.
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if ok, code := parseFlags(fs, args); !ok {
		return code
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
	} else if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sluice-bench scenario: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if name == "" {
		fs.Usage()
		return 2
	}
	if err := b.finish(); err != nil {
		fmt.Fprintln(stderr, "sluice-bench scenario:", err)
		return 1
	}
	if *workers != 0 || *service != 0 {
		o := origin.Default()
		if *workers != 0 {
			o.Workers = *workers
		}
		if *service != 0 {
			o.Service = *service
		}
		b.opt.OriginConfig = o
	}
	b.opt.Out = stdout

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	sum, err := scenario.Run(ctx, name, b.opt)
	if sum != nil && *jsonPath != "" {
		if werr := writeJSONFile(*jsonPath, sum.WriteJSON); werr != nil {
			fmt.Fprintln(stderr, "sluice-bench scenario:", werr)
			return 1
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "sluice-bench scenario:", err)
		return 1
	}
	if sum.Failed() {
		return 1
	}
	return 0
}

func writeJSONFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	werr := write(f)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	return werr
}

func demoCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice-bench demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var b benchFlags
	addBenchFlags(fs, &b, false)
	out := fs.String("out", "demo-out", "`directory` for direct.svg, sluice.svg and the JSON reports")
	load := fs.Float64("load", 3, "offered load as a multiple of the origin's capacity")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: sluice-bench demo [flags]

Starts a simulated origin (8 workers × 40ms = 200 req/s), sends it 3x its
capacity (Poisson, 20s) directly and then through Sluice with default flags,
and prints the two side by side. Sluice is not told the capacity: its
limiter starts at 4 in flight and finds the 8. About a minute (--quick: 5s
per side, about 15s).

flags:
`)
		fs.PrintDefaults()
	}
	if ok, code := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sluice-bench demo: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if err := b.finish(); err != nil {
		fmt.Fprintln(stderr, "sluice-bench demo:", err)
		return 1
	}
	b.opt.Out = stdout
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if _, err := scenario.Demo(ctx, scenario.DemoOptions{Options: b.opt, OutDir: *out, Load: *load}); err != nil {
		fmt.Fprintln(stderr, "sluice-bench demo:", err)
		return 1
	}
	return 0
}
