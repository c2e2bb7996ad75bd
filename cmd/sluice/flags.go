package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
)

// options are the flags that steer the command itself rather than the
// gateway's configuration.
type options struct {
	configPath  string // --config
	checkPath   string // --check-config
	printConfig bool   // --print-config
	version     bool   // --version
	backends    backendsValue
	standby     backendsValue
}

// flagGroup names a section of the --help output. Flags are listed in the
// order given here; flags registered by other packages (the queue policy)
// and not named in any group land in the last group, so a new scheduler
// setting shows up in --help without a change here.
type flagGroup struct {
	title string
	names []string
}

var flagGroups = []flagGroup{
	{"General", []string{"config", "check-config", "print-config", "version", "listen", "backend", "standby", "shutdown-grace"}},
	{"TLS", []string{"tls-listen", "tls-cert", "tls-key", "backend-ca-file"}},
	{"Client side", []string{"client-header-timeout", "client-body-timeout", "client-write-timeout", "idle-timeout",
		"tunnel-idle-timeout",
		"max-header-bytes", "max-url-bytes", "max-body-bytes",
		"max-conns-per-ip", "rate-per-ip", "burst-per-ip", "max-client-conns"}},
	{"Buffering", []string{"response-buffering", "request-buffering", "buffer-memory-per-request",
		"buffer-file-per-request", "buffer-memory-max", "buffer-disk-max", "buffer-temp-dir"}},
	{"Backend channels (default for services whose pool is not set in the file)", []string{
		"max-conns", "warm-conns", "connect-timeout", "response-header-timeout", "backend-idle-timeout"}},
	{"Classification", []string{"priority-header", "tenant-header", "tenant-from", "api-key-header",
		"deadline-header"}},
	{"Logging", []string{"log-format", "log-level", "access-log", "access-log-sample"}},
	{"Admin listener", []string{"admin", "admin-token-file"}},
	{"Backend health (default for services whose monitor is not set in the file)", []string{
		"outlier-disabled", "outlier-consecutive-failures", "outlier-failure-rate", "outlier-min-requests",
		"outlier-interval", "outlier-base-ejection-time", "outlier-max-ejection-time",
		"outlier-max-ejected-percent", "slow-start", "health-check-path", "health-check-interval",
		"health-check-timeout", "health-check-status-min", "health-check-status-max",
		"health-check-rise", "health-check-fall", "agent-port", "agent-interval", "agent-timeout",
		"agent-max-age", "agent-cpu-target"}},
	{"Standby backends (default for services whose monitor is not set in the file)", []string{
		"standby-queue-wait-p95", "standby-refusal-rate", "standby-latency-p95-factor", "standby-agent-cpu",
		"standby-sustain", "standby-cool-down", "standby-release-utilization", "standby-hook-url",
		"standby-hook-timeout"}},
	{"Queue policy (default for services whose queue is not set in the file)", []string{
		"queue-max", "queue-timeout", "queue-discipline", "class-timeout", "class-min-share",
		"tenant-weights", "limit", "limit-min", "limit-max", "codel-target", "codel-interval"}},
}

// newFlagSet binds every flag to a field of cfg (or of opts), with the
// field's current value as the flag's default. Binding the flags to a
// configuration already loaded from a file is what makes flags override
// the file: Parse only touches the fields whose flags were given.
func newFlagSet(cfg *sluiceConfig, opts *options) *flag.FlagSet {
	fs := flag.NewFlagSet("sluice", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run prints errors and usage itself

	fs.StringVar(&opts.configPath, "config", opts.configPath,
		"load the configuration from this YAML `file`; flags given as well override its values")
	fs.StringVar(&opts.checkPath, "check-config", opts.checkPath,
		"validate this YAML `file` with the other flags applied, print \"ok\" or the first error, and exit (0 valid, 1 invalid)")
	fs.BoolVar(&opts.printConfig, "print-config", opts.printConfig,
		"print the effective configuration (file, flags and every default) as YAML, and exit")
	fs.BoolVar(&opts.version, "version", opts.version,
		"print the version, the commit it was built from and the Go release, and exit")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "`address` (host:port) to accept clients on")
	opts.backends.list = &opts.backends.urls
	fs.Var(&opts.backends, "backend",
		"backend `URL` (http://host:port or https://host:port); repeat the flag or separate with commas for redundant backends.\n"+
			"Without --config they form one service named \"default\" that receives every request;\n"+
			"with --config they replace the backends of the file's first service")
	opts.standby.list = &opts.standby.urls
	fs.Var(&opts.standby, "standby",
		"standby backend `URL` of the first service, brought in when its QoS falls and let go when the\n"+
			"pressure is over; repeat the flag or separate with commas, in the order they are to be used.\n"+
			"With --config they replace the standbys of the file's first service")
	tl := &cfg.TLS
	fs.StringVar(&tl.Listen, "tls-listen", tl.Listen,
		"`address` (host:port) to accept TLS clients on, beside --listen;\n"+
			"when unset and a certificate is given, 127.0.0.1:8443")
	fs.StringVar(&tl.CertFile, "tls-cert", tl.CertFile,
		"PEM `file` of the default TLS certificate (the chain after the leaf); with --tls-key, turns the TLS listener on")
	fs.StringVar(&tl.KeyFile, "tls-key", tl.KeyFile, "PEM `file` of the default TLS certificate's key")
	fs.StringVar(&cfg.Pool.TLS.CAFile, "backend-ca-file", cfg.Pool.TLS.CAFile,
		"PEM `file` of the authorities that sign https:// backends' certificates, instead of the system roots")
	fs.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", cfg.ShutdownGrace,
		"on SIGTERM or SIGINT, how long in-flight requests may still finish")

	t := &cfg.Timeouts
	fs.DurationVar(&t.ClientHeader, "client-header-timeout", t.ClientHeader,
		"time a client has to send the request headers")
	fs.DurationVar(&t.ClientBody, "client-body-timeout", t.ClientBody,
		"time a client has for each read of the request body")
	fs.DurationVar(&t.ClientWrite, "client-write-timeout", t.ClientWrite,
		"time allowed for each write of the response to a client, so a client that stops reading frees its backend channel")
	fs.DurationVar(&t.Idle, "idle-timeout", t.Idle,
		"how long an idle client keep-alive connection is kept open")
	fs.DurationVar(&t.TunnelIdle, "tunnel-idle-timeout", t.TunnelIdle,
		"close an upgraded connection (a WebSocket) on which nothing has moved either way for this long")

	l := &cfg.Limits
	fs.IntVar(&l.MaxHeaderBytes, "max-header-bytes", l.MaxHeaderBytes,
		"largest request header block accepted, in bytes (larger: 431)")
	fs.IntVar(&l.MaxURLBytes, "max-url-bytes", l.MaxURLBytes,
		"longest request URL accepted, in bytes (longer: 414)")
	fs.Int64Var(&l.MaxBodyBytes, "max-body-bytes", l.MaxBodyBytes,
		"largest request body accepted, in bytes (larger: 413); 0 means unlimited")

	cl := &cfg.Clients
	fs.IntVar(&cl.MaxConnsPerIP, "max-conns-per-ip", cl.MaxConnsPerIP,
		"most connections open at once from one client IP (more: 429 client-conns); 0 means no limit")
	fs.Float64Var(&cl.RatePerIP, "rate-per-ip", cl.RatePerIP,
		"average `requests` per second one client IP may send (more: 429 client-rate); 0 means no limit")
	fs.IntVar(&cl.BurstPerIP, "burst-per-ip", cl.BurstPerIP,
		"requests one client IP may send at once above --rate-per-ip; 0: the rate, at least 1")
	fs.IntVar(&cl.MaxConns, "max-client-conns", cl.MaxConns,
		"most client connections open at once in all (more: 503 conn-limit, and a log line); 0 means no limit")

	bf := &cfg.Buffering
	fs.Var(boolPtrValue{&bf.Responses}, "response-buffering",
		"hold a response in a buffer while the client reads it, so the backend and its slot are free once it has\n"+
			"sent it (--response-buffering=false to stream every response at the client's pace; routes may say)")
	fs.Var(boolPtrValue{&bf.Requests}, "request-buffering",
		"read a request body whole, into the same buffers, before the request is admitted, so a slow upload\n"+
			"holds no backend (--request-buffering=false to stream bodies; routes may say)")
	fs.Int64Var(&bf.MemoryPerRequest, "buffer-memory-per-request", bf.MemoryPerRequest,
		"memory one request's buffer may use, in bytes; beyond it the buffer goes on in a temporary file")
	fs.Int64Var(&bf.FilePerRequest, "buffer-file-per-request", bf.FilePerRequest,
		"size one request's temporary file may reach, in bytes (-1: no file); beyond it the rest streams")
	fs.Int64Var(&bf.MemoryMax, "buffer-memory-max", bf.MemoryMax,
		"buffer memory of all requests together, in bytes; when it is used up buffers go to temporary files")
	fs.Int64Var(&bf.DiskMax, "buffer-disk-max", bf.DiskMax,
		"temporary-file space of all requests together, in bytes; when it is used up the rest streams")
	fs.StringVar(&bf.TempDir, "buffer-temp-dir", bf.TempDir,
		"`directory` for temporary buffer files (each removed from it as soon as it is open); \"\" = $TMPDIR or /tmp")

	p := &cfg.Pool
	fs.IntVar(&p.MaxConns, "max-conns", p.MaxConns, "most connections open to one backend")
	fs.IntVar(&p.WarmConns, "warm-conns", p.WarmConns,
		"connections to each backend dialed ahead of need and kept open")
	fs.DurationVar(&p.ConnectTimeout, "connect-timeout", p.ConnectTimeout,
		"time allowed to dial a backend")
	fs.DurationVar(&p.ResponseHeaderTimeout, "response-header-timeout", p.ResponseHeaderTimeout,
		"time a backend has from the end of the request to its response headers")
	fs.DurationVar(&p.IdleTimeout, "backend-idle-timeout", p.IdleTimeout,
		"close a pooled backend connection unused this long; keep it below the origin's own keep-alive timeout")

	k := &cfg.Cache
	fs.BoolVar(&k.Enabled, "cache", k.Enabled,
		"cache responses (RFC 9111) for every service without its own cache: block (docs/cache.md)")
	fs.Int64Var(&k.MaxBytes, "cache-max-bytes", k.MaxBytes,
		"memory bound of each service's cache, in bytes; the least recently used responses go first")
	fs.Int64Var(&k.MaxObjectBytes, "cache-max-object-bytes", k.MaxObjectBytes,
		"largest response body stored, in bytes; larger ones are relayed and not stored")

	hg := &cfg.Hedge
	fs.BoolVar(&hg.Enabled, "hedge", hg.Enabled,
		"hedge idempotent requests on every route without its own hedge: block: a second backend gets the request when the first is slow (docs/cache.md)")
	fs.Float64Var(&hg.Percentile, "hedge-percentile", hg.Percentile,
		"`percentile` of the backend's recent latency after which a hedge is sent, in (0, 100)")
	fs.Float64Var(&hg.Budget, "hedge-budget", hg.Budget,
		"most hedges as a `fraction` of a route's eligible requests, in (0, 1]")
	fs.DurationVar(&hg.MinDelay, "hedge-min-delay", hg.MinDelay,
		"shortest wait before a hedge, whatever the percentile")
	fs.DurationVar(&hg.MaxDelay, "hedge-max-delay", hg.MaxDelay,
		"longest wait before a hedge, whatever the percentile (0: no cap)")

	c := &cfg.Classify
	fs.StringVar(&c.PriorityHeader, "priority-header", c.PriorityHeader,
		"request `header` naming the priority class: critical, high, normal or low")
	fs.StringVar(&c.TenantHeader, "tenant-header", c.TenantHeader,
		"request `header` naming the tenant, for fair sharing")
	fs.StringVar(&c.TenantFrom, "tenant-from", c.TenantFrom,
		"`source` of the tenant identity: header (falls back to the client IP), api-key or client-ip")
	fs.StringVar(&c.APIKeyHeader, "api-key-header", c.APIKeyHeader,
		"request `header` carrying the API key, used as tenant with --tenant-from=api-key")
	fs.StringVar(&c.DeadlineHeader, "deadline-header", c.DeadlineHeader,
		"request `header` carrying the client's time budget as a Go duration (\"250ms\")")

	lg := &cfg.Log
	fs.StringVar(&lg.Format, "log-format", lg.Format, "log `format`: json or console")
	fs.StringVar(&lg.Level, "log-level", lg.Level, "lowest log `level`: trace, debug, info, warn, error")
	fs.Var(boolPtrValue{&lg.AccessLog}, "access-log", "log one line per request (--access-log=false to turn off)")

	fs.Float64Var(&lg.AccessLogSample, "access-log-sample", lg.AccessLogSample,
		"`fraction` of requests that get an access-log line, in (0, 1]: 0.01 logs one in a hundred, evenly spread")

	cfg.Queue.RegisterFlags(fs)
	cfg.Monitor.RegisterFlags(fs)
	cfg.Admin.RegisterFlags(fs)
	return fs
}

// printUsage writes --help: a synopsis, then the flags by group.
func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, `Usage:
  sluice --listen ADDR --backend URL [--backend URL ...] [flags]
  sluice --config FILE [flags]
  sluice --check-config FILE [flags]
  sluice --config FILE [flags] --print-config
  sluice --version
  sluice ctl [--admin ADDR] COMMAND [ARGS]     (the admin API; sluice ctl --help)

Sluice is an admission-control queueing reverse proxy. It holds requests in
priority and fair queues and releases each one only when a backend has room
for it. Flags override the values of the configuration file; durations are Go
durations (500ms, 10s, 1m). A flag left at 0 or "" means the built-in default.
`)
	listed := map[string]bool{}
	for i, g := range flagGroups {
		names := g.names
		if i == len(flagGroups)-1 {
			// The catch-all group: every flag no other group names.
			fs.VisitAll(func(f *flag.Flag) {
				if !listed[f.Name] && !contains(names, f.Name) {
					names = append(names, f.Name)
				}
			})
		}
		if len(names) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", g.title)
		for _, name := range names {
			f := fs.Lookup(name)
			if f == nil {
				continue
			}
			listed[name] = true
			printFlag(w, f)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
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
	case f.DefValue == "" || f.DefValue == "0" || f.DefValue == "0s" || f.DefValue == "false":
	case strings.Contains(usage, "(default ") || strings.Contains(usage, "(0 = "):
		// The usage string names the default itself.
	default:
		if quoted(f) {
			fmt.Fprintf(&b, " (default %q)", f.DefValue)
		} else {
			fmt.Fprintf(&b, " (default %s)", f.DefValue)
		}
	}
	b.WriteByte('\n')
	io.WriteString(w, b.String())
}

// quoted reports whether a flag holds a string, whose default reads better
// quoted.
func quoted(f *flag.Flag) bool {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return false
	}
	_, isString := g.Get().(string)
	return isString
}

// backendsValue is the repeatable --backend flag. The first use on a command
// line replaces the list (so --backend replaces a file's backends rather than
// adding to them); later uses append.
type backendsValue struct {
	urls []string
	list *[]string
	set  bool
}

func (b *backendsValue) String() string {
	if b == nil || b.list == nil {
		return ""
	}
	return strings.Join(*b.list, ",")
}

func (b *backendsValue) Set(s string) error {
	if !b.set {
		*b.list = nil
		b.set = true
	}
	for _, u := range strings.Split(s, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		// A quick check so that a typo is reported against the flag; the
		// proxy's Validate has the last word on what a backend may be.
		if pu, err := url.Parse(u); err != nil || pu.Scheme == "" || pu.Host == "" {
			return fmt.Errorf("want http://host:port or https://host:port, got %q", u)
		}
		*b.list = append(*b.list, u)
	}
	return nil
}

// boolPtrValue binds a *bool config field (nil = default) to a boolean flag.
type boolPtrValue struct{ p **bool }

func (b boolPtrValue) IsBoolFlag() bool { return true }

func (b boolPtrValue) String() string {
	if b.p == nil || *b.p == nil {
		return "true" // the proxy's default for an unset access_log
	}
	if **b.p {
		return "true"
	}
	return "false"
}

func (b boolPtrValue) Set(s string) error {
	switch strings.ToLower(s) {
	case "1", "t", "true", "yes", "on":
		v := true
		*b.p = &v
	case "0", "f", "false", "no", "off":
		v := false
		*b.p = &v
	default:
		return fmt.Errorf("want true or false, got %q", s)
	}
	return nil
}
