package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/rs/zerolog"

	"github.com/sluiceproxy/sluice/monitor/agent"
)

// options is the parsed command line.
type options struct {
	cfg        agent.Config
	listen     string
	agentCheck string
	logFormat  string
	logLevel   string
	version    bool
	fs         *flag.FlagSet // for --help
}

// flagGroups orders --help. Every flag must be in a group: a test checks
// it, so a new flag cannot be left out of the help.
var flagGroups = []struct {
	title string
	names []string
}{
	{"Serving", []string{"listen", "agent-check", "interval"}},
	{"Targets (each missing one makes the agent report down)", []string{"process", "pid", "cgroup", "rescan"}},
	{"The origin's own in-flight count", []string{"inflight-url", "inflight-field", "inflight-timeout"}},
	{"Verdict (weight, drain)", []string{"target-cpu", "floor-weight", "drain-cpu", "ready-hold"}},
	{"Logging", []string{"log-format", "log-level"}},
	{"Other", []string{"version"}},
}

// newFlagSet binds every flag to a field of o, with the defaults filled in
// first so that --help shows them.
func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("sluice-agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run prints errors and usage itself
	c := &o.cfg
	d := agent.Config{}.WithDefaults()
	c.Interval, c.Rescan, c.Policy = d.Interval, d.Rescan, d.Policy

	fs.StringVar(&o.listen, "listen", "127.0.0.1:9101", "`address` (host:port) to serve GET /load on")
	fs.StringVar(&o.agentCheck, "agent-check", "",
		"`address` (host:port) to answer HAProxy agent checks on (agent-check agent-port ...); empty = off")
	fs.DurationVar(&c.Interval, "interval", c.Interval, "sampling period")

	fs.Var(stringList{&c.Processes}, "process",
		"measure every process with this command `name` (as ps -o comm shows it, or in full), together;\n"+
			"repeatable")
	fs.Var(pidList{&c.PIDs}, "pid", "measure the process with this `PID`; repeatable")
	fs.Var(stringList{&c.Cgroups}, "cgroup",
		"measure this cgroup v2 `directory` (cpu.stat, and cpu.max for a quota), absolute or\n"+
			"relative to /sys/fs/cgroup; repeatable")
	fs.DurationVar(&c.Rescan, "rescan", c.Rescan,
		"how often the process table is searched again for --process names (and whenever one exits)")

	fs.StringVar(&c.InflightURL, "inflight-url", "",
		"read the origin's count of requests in progress from this `URL` (http or https) at each sample")
	fs.StringVar(&c.InflightField, "inflight-field", "",
		"the count is the number at this dot-separated `path` of a JSON body (\"http.active\");\n"+
			"empty = the whole body is the number")
	fs.DurationVar(&c.InflightTimeout, "inflight-timeout", 0,
		"time allowed for each read of --inflight-url (0 = half the interval, at most 500ms)")

	p := &c.Policy
	fs.Float64Var(&p.TargetCPU, "target-cpu", p.TargetCPU,
		"CPU utilisation (a `fraction`, 0.85 = 85%) up to which the weight is 100%; above it the\n"+
			"weight falls linearly to --floor-weight at full CPU")
	fs.IntVar(&p.FloorWeight, "floor-weight", p.FloorWeight, "weight at full CPU, in `percent` (1..100)")
	fs.Float64Var(&p.DrainCPU, "drain-cpu", 0,
		"CPU `fraction` from which to reply drain instead of a weight (above --target-cpu, at most 1);\n"+
			"0 = never drain")
	fs.DurationVar(&p.ReadyHold, "ready-hold", p.ReadyHold,
		"how long after start-up, and after the last reply that was not up, up replies also carry\n"+
			"\"ready\" (which undoes a drain, the agent's or an operator's)")

	fs.StringVar(&o.logFormat, "log-format", "json", "log `format`: json or console")
	fs.StringVar(&o.logLevel, "log-level", "info", "lowest log `level`: debug, info, warn, error")
	fs.BoolVar(&o.version, "version", false,
		"print the version, the commit it was built from and the Go release, and exit")
	return fs
}

// parseCommandLine parses args strictly: an unknown flag, a bad value or
// an argument that is not a flag is an error. opts.fs is set even then,
// for --help.
func parseCommandLine(args []string) (*options, error) {
	o := &options{}
	o.fs = newFlagSet(o)
	if err := o.fs.Parse(args); err != nil {
		return o, err
	}
	if o.fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (every setting is a --flag)", o.fs.Arg(0))
	}
	if o.listen == "" {
		// Never fall back to net.Listen's "every interface".
		return o, fmt.Errorf("--listen: no address")
	}
	return o, nil
}

// printUsage writes --help: a synopsis, then every flag by group.
func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, `Usage:
  sluice-agent [--listen ADDR] [--agent-check ADDR] [--interval D]
               [--process NAME]... [--pid N]... [--cgroup PATH]... [--inflight-url URL] [flags]
  sluice-agent --version

sluice-agent runs on a backend host and reports its load: host CPU, load
average, memory, the CPU of the configured processes or cgroups and the
origin's in-flight count, as JSON on GET /load, and as HAProxy agent-check
replies ("up 75%", "drain", "down #reason") on --agent-check. Durations are
Go durations (500ms, 1s, 1m); CPU figures are fractions (0.85 = 85%).
`)
	for _, g := range flagGroups {
		fmt.Fprintf(w, "\n%s:\n", g.title)
		for _, name := range g.names {
			if f := fs.Lookup(name); f != nil {
				printFlag(w, f)
			}
		}
	}
}

// printFlag formats one flag like flag.PrintDefaults does, with the double
// dash users type.
func printFlag(w io.Writer, f *flag.Flag) {
	name, usage := flag.UnquoteUsage(f)
	var b strings.Builder
	fmt.Fprintf(&b, "  --%s", f.Name)
	if name != "" {
		b.WriteString(" " + name)
	}
	b.WriteString("\n    \t")
	b.WriteString(strings.ReplaceAll(usage, "\n", "\n    \t"))
	switch {
	case f.DefValue == "" || f.DefValue == "0" || f.DefValue == "0s" || f.DefValue == "[]":
	case strings.Contains(usage, "(0 = "):
	default:
		fmt.Fprintf(&b, " (default %s)", f.DefValue)
	}
	b.WriteByte('\n')
	io.WriteString(w, b.String())
}

// stringList is a repeatable string flag.
type stringList struct{ p *[]string }

func (s stringList) String() string {
	if s.p == nil {
		return ""
	}
	return strings.Join(*s.p, ",")
}

func (s stringList) Set(v string) error {
	if v == "" {
		return fmt.Errorf("empty value")
	}
	*s.p = append(*s.p, v)
	return nil
}

// pidList is the repeatable --pid flag.
type pidList struct{ p *[]int }

func (l pidList) String() string {
	if l.p == nil {
		return ""
	}
	parts := make([]string, len(*l.p))
	for i, n := range *l.p {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}

func (l pidList) Set(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return fmt.Errorf("want a process ID (a positive integer), got %q", v)
	}
	*l.p = append(*l.p, n)
	return nil
}

// newLogger builds the process logger.
func newLogger(w io.Writer, format, level string) (zerolog.Logger, error) {
	lv, err := zerolog.ParseLevel(strings.ToLower(level))
	if err != nil || level == "" {
		return zerolog.Logger{}, fmt.Errorf("--log-level: unknown level %q", level)
	}
	switch format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, NoColor: true}
	default:
		return zerolog.Logger{}, fmt.Errorf("--log-format: want json or console, got %q", format)
	}
	return zerolog.New(w).Level(lv).With().Timestamp().Logger(), nil
}
