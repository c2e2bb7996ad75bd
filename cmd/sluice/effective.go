package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"go.yaml.in/yaml/v3"

	"github.com/sluiceproxy/sluice/admin"
	"github.com/sluiceproxy/sluice/proxy"
)

// sluiceConfig is everything the file and the flags set: the gateway's
// configuration and the admin listener's, each owned by its package. The
// gateway's keys stay at the top level of the file (inline); the admin
// listener's are under admin:.
type sluiceConfig struct {
	proxy.Config `yaml:",inline"`
	Admin        admin.Config `yaml:"admin"`
}

// The effective configuration is what Sluice runs with: the file, the flags
// given on top of it, then every default, then validation. This file is the
// one place that computes it. Start-up, --check-config, --print-config and a
// reload all go through effectiveConfig, so what --check-config accepts is
// what starts, what --print-config shows is what runs, and a reload re-reads
// the file under the same command-line flags as start-up.

// effectiveConfig computes the effective configuration from a command line.
// The file is the one --check-config names, else the one --config names,
// else none (the flags alone). The result is complete: every default is
// filled in, each service has its own queue and pool, and it has passed
// Validate, so callers need neither WithDefaults nor Validate.
//
// A command-line mistake is a usageErr (exit status 2); a configuration that
// cannot be read or is invalid is any other error, naming the file, the
// field by its path, the bad value and, when the file sets the field, its
// line.
func effectiveConfig(args []string) (sluiceConfig, error) {
	opts, _, err := parseCommandLine(args)
	if err != nil {
		return sluiceConfig{}, err
	}
	path := opts.checkPath
	if path == "" {
		path = opts.configPath
	}
	cfg, cf, err := assemble(args, path)
	if err != nil {
		return sluiceConfig{}, err
	}
	return complete(cf, cfg)
}

// parseCommandLine is the first pass over the command line: it finds the
// options that steer the command (--config, --check-config,
// --print-config) and catches command-line mistakes, before any file is
// read. The flags are bound to the defaults, so that the returned set is
// what --help shows. flag.ErrHelp asks for --help.
func parseCommandLine(args []string) (options, *flag.FlagSet, error) {
	defaults := sluiceConfig{Config: proxy.Config{}.WithDefaults()}
	var opts options
	fs := newFlagSet(&defaults, &opts)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return opts, fs, err
		}
		return opts, fs, usageErr{err.Error()}
	}
	if fs.NArg() > 0 {
		return opts, fs, usageErr{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return opts, fs, nil
}

// assemble builds the configuration as the user wrote it, before defaults:
// the file at configPath (if any), then the flags in args on top of it.
func assemble(args []string, configPath string) (sluiceConfig, *configFile, error) {
	var cfg sluiceConfig
	var cf *configFile
	if configPath != "" {
		var err error
		if cf, err = loadConfigFile(configPath); err != nil {
			return cfg, nil, err
		}
		cfg = cf.cfg
	}

	// The second pass: the flags bound to the file's values, so that only
	// those given change anything.
	var opts options
	fs := newFlagSet(&cfg, &opts)
	if err := fs.Parse(args); err != nil {
		return cfg, cf, usageErr{err.Error()}
	}
	if opts.backends.set {
		if len(cfg.Services) == 0 {
			cfg.Services = []proxy.ServiceConfig{{Name: "default"}}
		}
		// A copy: the file's slice must not share the flag's array.
		cfg.Services = append([]proxy.ServiceConfig(nil), cfg.Services...)
		cfg.Services[0].Backends = opts.backends.urls
	}
	if opts.standby.set && len(cfg.Services) > 0 {
		cfg.Services = append([]proxy.ServiceConfig(nil), cfg.Services...)
		cfg.Services[0].Standby = opts.standby.urls
	}
	if len(cfg.Services) == 0 && cf == nil {
		// With a file, Validate says what the file lacks.
		return cfg, cf, usageErr{"no backends: give --backend URL (repeatable) or --config FILE"}
	}
	return cfg, cf, nil
}

// complete fills in the defaults and validates the result, once. Errors are
// located in cf, the file cfg came from (nil: flags only).
func complete(cf *configFile, cfg sluiceConfig) (sluiceConfig, error) {
	full := sluiceConfig{Config: cfg.Config.WithDefaults(), Admin: cfg.Admin.WithDefaults()}
	if err := full.Config.Validate(); err != nil {
		return sluiceConfig{}, validationError(cf, err)
	}
	if err := full.Admin.Validate(); err != nil {
		return sluiceConfig{}, validationError(cf, err)
	}
	return full, nil
}

// printConfig writes cfg as YAML, in the file's own keys: --print-config.
// The output is itself a configuration that gives the same effective
// configuration.
func printConfig(w io.Writer, cfg sluiceConfig) error {
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(cfg); err != nil {
		return err
	}
	return enc.Close()
}

// usageErr is a command-line mistake (exit status 2), as opposed to an
// invalid configuration (1).
type usageErr struct{ msg string }

func (e usageErr) Error() string { return e.msg }
