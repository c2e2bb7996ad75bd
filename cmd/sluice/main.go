// Command sluice runs the Sluice gateway: an admission-control queueing
// reverse proxy.
//
// The quickest start needs no file: every request goes to one service
// named "default" made of the redundant backends given on the command line.
//
//	sluice --listen 127.0.0.1:8080 --backend http://127.0.0.1:9001 --backend http://127.0.0.1:9002
//
// A full configuration (several services, routes by host, path prefix and
// header, queue policies) is a YAML file; docs/configuration.md describes
// every field and configs/example.yaml is a commented example.
//
//	sluice --config configs/example.yaml
//	sluice --check-config configs/example.yaml   # prints "ok" or the error; exit 0 or 1
//	sluice --config configs/example.yaml --print-config   # the effective configuration
//
// # How the configuration is assembled
//
// Each package owns its configuration type (proxy.Config, pool.Config,
// scheduler.Config) with its defaults and its Validate; this command only
// assembles them. The file is decoded strictly: an unknown key or a value of
// the wrong type is an error naming its path in the file and its line,
// because a misspelt key silently ignored is a limit silently not applied.
//
// Flags override the file. The command line is parsed twice: once to find
// --config (and --help, --check-config, --print-config), then, after the
// file is decoded, again with every flag bound to a field of the decoded
// configuration. Only flags actually given change a field, so everything
// else keeps the file's value, and what neither sets stays zero, which every
// Config reads as "the default". --backend replaces the backends of the
// file's first service.
//
// One function, effectiveConfig, turns a command line into the effective
// configuration: file, flags, then every default, then validation, once.
// Start-up, --check-config and --print-config call it, and so will a reload,
// with the same command line: a reload re-reads the file and keeps the
// flags' overrides, and a file --check-config accepts is a file that starts.
// A broken configuration never starts a half-configured proxy.
//
// # The admin listener and sluice ctl
//
// --admin (admin.listen) starts the admin package's listener beside the
// gateway, before the gateway serves, so that its metrics observer sees
// the first request. Its reload call is handed to the same loop that
// handles SIGHUP, so reloads are applied one at a time, in order, whatever
// asked for them. "sluice ctl COMMAND" is a client of that API for the
// terminal (ctl.go); docs/admin.md describes both.
//
// # Signals
//
// SIGTERM or SIGINT stops accepting connections and lets in-flight requests
// finish for up to shutdown_grace; the exit status is 0 when they all did.
// A second signal cuts the grace period short.
//
// SIGHUP reloads: the configuration is computed again exactly as at start
// (the file re-read, the same command-line flags on top, defaults,
// validation) and applied in place (proxy.Server.Reload): no request in
// flight or queued is lost. A file that does not validate is refused with
// the message --check-config would print, and the running configuration
// stays in force.
//
// --version prints the module version, the commit the binary was built
// from and the Go release (package internal/buildinfo), and exits.
//
// Exit status: 0 after a clean shutdown, --version, a valid --check-config or
// --print-config, 1 for an invalid configuration or a runtime failure, 2 for
// a command-line error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/sluiceproxy/sluice/internal/buildinfo"
	"github.com/sluiceproxy/sluice/proxy"
)

func main() {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, sigs))
}

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1 // invalid configuration or runtime failure
	exitUsage   = 2 // command-line error
)

// run is the whole command, minus the process: it returns the exit status.
// It returns after a signal arrives on signals and the gateway has shut
// down, or at once for --help, --version, --check-config, --print-config
// and errors.
func run(args []string, stdout, stderr io.Writer, signals <-chan os.Signal) int {
	if len(args) > 0 && args[0] == "ctl" {
		return runCtl(args[1:], stdout, stderr)
	}
	opts, fs, err := parseCommandLine(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout, fs)
			return exitOK
		}
		return usageError(stderr, err.Error())
	}
	if opts.version {
		// Before any configuration is read: the version is what to report
		// when a configuration does not load.
		fmt.Fprintln(stdout, buildinfo.Read().Line("sluice"))
		return exitOK
	}

	// load computes the effective configuration from the command line: once
	// here, and again for every reload, which thus re-reads the file under
	// the same flags and refuses a broken file with --check-config's message.
	loadAll := func() (sluiceConfig, error) {
		cfg, err := effectiveConfig(args)
		if err == nil {
			cfg.Log.AccessWriter = stderr // where the access log goes is wiring, not configuration
		}
		return cfg, err
	}
	load := func() (proxy.Config, error) {
		cfg, err := loadAll()
		return cfg.Config, err
	}
	full, err := loadAll()
	if err != nil {
		var ue usageErr
		switch {
		case errors.As(err, &ue):
			return usageError(stderr, ue.msg)
		case opts.checkPath != "":
			fmt.Fprintln(stderr, err) // file: field: message (line n), as a compiler would
		default:
			fmt.Fprintf(stderr, "sluice: %v\n", err)
		}
		return exitFailure
	}
	switch {
	case opts.printConfig:
		if err := printConfig(stdout, full); err != nil {
			fmt.Fprintf(stderr, "sluice: print-config: %v\n", err)
			return exitFailure
		}
		return exitOK
	case opts.checkPath != "":
		fmt.Fprintln(stdout, "ok")
		return exitOK
	}
	if full.Listen == "" {
		// Never fall back to net.Listen's "every interface".
		fmt.Fprintln(stderr, "sluice: listen: no address")
		return exitFailure
	}

	log, err := newLogger(stderr, full.Log)
	if err != nil {
		fmt.Fprintf(stderr, "sluice: %v\n", err)
		return exitFailure
	}

	srv, err := proxy.New(full.Config, log)
	if err != nil {
		log.Error().Err(err).Msg("cannot start")
		return exitFailure
	}
	// An admin API reload is carried out by the loop below, as SIGHUP is:
	// one place applies reloads, in order.
	reloads := make(chan chan error)
	adm, err := startAdmin(log, full.Admin, srv, reloads)
	if err != nil {
		log.Error().Err(err).Str("admin", full.Admin.Listen).Msg("cannot start the admin listener")
		if err := srv.Shutdown(context.Background()); err != nil {
			log.Error().Err(err).Msg("shutdown")
		}
		return exitFailure
	}
	ln, err := net.Listen("tcp", full.Listen)
	if err != nil {
		log.Error().Err(err).Str("listen", full.Listen).Msg("cannot listen")
		adm.shutdown(log)
		// Nothing was served, but warm connections may be open.
		if err := srv.Shutdown(context.Background()); err != nil {
			log.Error().Err(err).Msg("shutdown")
		}
		return exitFailure
	}
	var tln net.Listener
	if full.TLS.Enabled() {
		if tln, err = net.Listen("tcp", full.TLS.Listen); err != nil {
			log.Error().Err(err).Str("tls_listen", full.TLS.Listen).Msg("cannot listen")
			_ = ln.Close()
			adm.shutdown(log)
			if err := srv.Shutdown(context.Background()); err != nil {
				log.Error().Err(err).Msg("shutdown")
			}
			return exitFailure
		}
	}
	names := make([]string, len(full.Services))
	for i, s := range full.Services {
		names[i] = s.Name
	}
	ev := log.Info().Str("addr", ln.Addr().String()).Strs("services", names)
	if tln != nil {
		ev = ev.Str("tls_addr", tln.Addr().String())
	}
	ev.Msg("listening")

	// One result per listener: one arriving before Shutdown is a listener
	// that failed, which ends the process; at the end each is collected.
	listeners := 1
	served := make(chan error, 2)
	go func() { served <- srv.Serve(ln) }()
	if tln != nil {
		listeners++
		go func() { served <- srv.ServeTLS(tln) }()
	}

wait:
	for {
		select {
		case err := <-served:
			// Serve returns before Shutdown only when it fails.
			if err == nil {
				err = errors.New("server stopped unexpectedly")
			}
			log.Error().Err(err).Msg("serve")
			adm.shutdown(log)
			if err := srv.Shutdown(context.Background()); err != nil {
				log.Error().Err(err).Msg("shutdown")
			}
			return exitFailure
		case done := <-reloads:
			cfg, err := srv.ReloadFrom(load)
			if err == nil {
				full.Config = cfg
			}
			done <- err
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				if cfg, err := srv.ReloadFrom(load); err == nil {
					full.Config = cfg
				}
				continue
			}
			log.Info().Str("signal", sig.String()).Stringer("grace", full.ShutdownGrace).Msg("shutting down")
			break wait
		}
	}
	adm.shutdown(log)

	ctx, cancel := context.WithTimeout(context.Background(), full.ShutdownGrace)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	var shutErr error
shutdown:
	for {
		select {
		case shutErr = <-shut:
			break shutdown
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				continue // no reason to cut the grace period short
			}
			log.Warn().Str("signal", sig.String()).Msg("second signal: not waiting for in-flight requests")
			cancel()
			shutErr = <-shut
			break shutdown
		}
	}
	for range listeners {
		if err := <-served; err != nil && shutErr == nil {
			shutErr = err
		}
	}
	if shutErr != nil {
		log.Error().Err(shutErr).Msg("shutdown incomplete")
		return exitFailure
	}
	log.Info().Msg("stopped")
	return exitOK
}

func usageError(stderr io.Writer, msg string) int {
	fmt.Fprintf(stderr, "sluice: %s\nRun 'sluice --help' for usage.\n", msg)
	return exitUsage
}

// newLogger builds the process logger from the log section.
func newLogger(w io.Writer, lc proxy.LogConfig) (zerolog.Logger, error) {
	level := zerolog.InfoLevel
	if lc.Level != "" {
		l, err := zerolog.ParseLevel(strings.ToLower(lc.Level))
		if err != nil {
			return zerolog.Logger{}, fmt.Errorf("log.level: unknown level %q", lc.Level)
		}
		level = l
	}
	switch lc.Format {
	case "", "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, NoColor: true}
	default:
		return zerolog.Logger{}, fmt.Errorf("log.format: want json or console, got %q", lc.Format)
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}
