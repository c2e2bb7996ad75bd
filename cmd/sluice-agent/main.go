// Command sluice-agent runs on a backend host and reports how loaded it
// is, to Sluice and to HAProxy alike.
//
//	sluice-agent --listen 127.0.0.1:9101 --agent-check 127.0.0.1:9102 --process nginx
//
// It samples the host (CPU, load average, memory) and the configured
// targets (processes by name, PIDs, cgroup v2 directories) once per
// --interval, and serves the latest sample: as JSON on GET /load, and as
// HAProxy agent-check replies ("up 75%", "drain", "down #reason") on the
// --agent-check port. docs/agent.md describes every flag, every field and
// what sampling costs; package monitor/agent holds the design.
//
// A configured target that is missing is not an error of the agent: it
// keeps running and reports down, with the reason, until the target is
// back.
//
// SIGTERM or SIGINT stops it: both listeners close, requests in progress
// finish (a few milliseconds: every answer comes from memory), and it
// exits 0.
//
// --version prints the module version, the commit the binary was built
// from and the Go release (package internal/buildinfo), and exits.
//
// Exit status: 0 after a clean stop, --help or --version, 1 when it cannot listen or
// cannot read the host's counters at all, 2 for a command-line error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sluiceproxy/sluice/internal/buildinfo"
	"github.com/sluiceproxy/sluice/monitor/agent"
)

func main() {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, sigs))
}

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1 // cannot listen, cannot sample
	exitUsage   = 2 // command-line error
)

// shutdownTimeout bounds the wait for HTTP requests in progress at a stop.
const shutdownTimeout = 5 * time.Second

// run is the whole command, minus the process: it returns the exit status
// after a signal arrives on signals and the agent has stopped, or at once
// for --help, --version and errors.
func run(args []string, stdout, stderr io.Writer, signals <-chan os.Signal) int {
	opts, err := parseCommandLine(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout, opts.fs)
			return exitOK
		}
		return usageError(stderr, err.Error())
	}
	if opts.version {
		fmt.Fprintln(stdout, buildinfo.Read().Line("sluice-agent"))
		return exitOK
	}
	log, err := newLogger(stderr, opts.logFormat, opts.logLevel)
	if err != nil {
		return usageError(stderr, err.Error())
	}
	sampler, err := agent.NewSampler(opts.cfg)
	if err != nil {
		// Every setting comes from a flag, and Validate names it.
		return usageError(stderr, "--"+err.Error())
	}
	defer sampler.Close()
	a, err := agent.New(opts.cfg, sampler, log)
	if err != nil {
		return usageError(stderr, "--"+err.Error())
	}

	ln, err := net.Listen("tcp", opts.listen)
	if err != nil {
		log.Error().Err(err).Str("listen", opts.listen).Msg("cannot listen")
		return exitFailure
	}
	defer ln.Close()
	var checkLn net.Listener
	if opts.agentCheck != "" {
		if checkLn, err = net.Listen("tcp", opts.agentCheck); err != nil {
			log.Error().Err(err).Str("agent_check", opts.agentCheck).Msg("cannot listen")
			return exitFailure
		}
		defer checkLn.Close()
	}

	ctx, stopSampling := context.WithCancel(context.Background())
	defer stopSampling()
	if err := a.Start(ctx); err != nil {
		log.Error().Err(err).Msg("cannot sample")
		return exitFailure
	}

	srv := a.NewHTTPServer()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	checked := make(chan error, 1)
	ev := log.Info().Str("addr", ln.Addr().String()).Stringer("interval", opts.cfg.WithDefaults().Interval)
	if checkLn != nil {
		go func() { checked <- a.ServeAgentCheck(checkLn) }()
		ev = ev.Str("agent_check", checkLn.Addr().String())
	} else {
		checked <- nil
	}
	ev.Msg("listening")

	code := exitOK
	select {
	case err := <-served:
		// Serve returns before Shutdown only when it fails.
		log.Error().Err(err).Msg("serve")
		code = exitFailure
	case sig := <-signals:
		log.Info().Str("signal", sig.String()).Msg("stopping")
	}

	if checkLn != nil {
		checkLn.Close()
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Error().Err(err).Msg("shutdown")
		code = exitFailure
	}
	if code == exitOK {
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("serve")
			code = exitFailure
		}
	}
	if err := <-checked; err != nil {
		log.Error().Err(err).Msg("agent-check")
		code = exitFailure
	}
	stopSampling()
	<-a.Done()
	log.Info().Msg("stopped")
	return code
}

func usageError(stderr io.Writer, msg string) int {
	fmt.Fprintf(stderr, "sluice-agent: %s\nRun 'sluice-agent --help' for usage.\n", msg)
	return exitUsage
}
