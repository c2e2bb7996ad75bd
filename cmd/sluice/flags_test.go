package main

import (
	"bytes"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluiceproxy/sluice/proxy"
)

func TestFlagsWithoutFile(t *testing.T) {
	cfg, cf, err := assemble([]string{
		"--listen", "127.0.0.1:8081",
		"--backend", "http://127.0.0.1:9001",
		"--backend", "http://127.0.0.1:9002, http://127.0.0.1:9003",
	}, "")
	require.NoError(t, err)
	assert.Nil(t, cf)
	assert.Equal(t, "127.0.0.1:8081", cfg.Listen)
	require.Len(t, cfg.Services, 1)
	assert.Equal(t, "default", cfg.Services[0].Name)
	assert.Equal(t, []string{"http://127.0.0.1:9001", "http://127.0.0.1:9002", "http://127.0.0.1:9003"},
		cfg.Services[0].Backends)
	assert.Empty(t, cfg.Routes)
}

// What neither the file nor a flag sets stays zero, which every Config
// reads as its default.
func TestDefaultsWhenNeitherFileNorFlag(t *testing.T) {
	cfg, _, err := assemble([]string{"--backend", "http://127.0.0.1:9001"}, "")
	require.NoError(t, err)
	want := sluiceConfig{Config: proxy.Config{Services: []proxy.ServiceConfig{{Name: "default", Backends: []string{"http://127.0.0.1:9001"}}}}}
	assert.Equal(t, want, cfg)

	p := writeFile(t, "min.yaml", "services:\n  - name: a\n    backends: [http://127.0.0.1:1]\n")
	cfg, _, err = assemble([]string{"--config", p}, p)
	require.NoError(t, err)
	want = sluiceConfig{Config: proxy.Config{Services: []proxy.ServiceConfig{{Name: "a", Backends: []string{"http://127.0.0.1:1"}}}}}
	assert.Equal(t, want, cfg)
}

func TestFlagsOverrideFile(t *testing.T) {
	p := writeFile(t, "sluice.yaml", `
listen: 127.0.0.1:7000
shutdown_grace: 20s
services:
  - name: api
    backends: [http://127.0.0.1:1, http://127.0.0.1:2]
  - name: web
    backends: [http://127.0.0.1:3]
routes:
  - {host: api.example.com, service: api}
timeouts: {client_header: 5s, idle: 30s}
limits: {max_url_bytes: 4096}
classify: {tenant_header: X-Customer, priority_header: X-Class}
log: {access_log: true, level: debug}
pool: {max_conns: 100, connect_timeout: 1s}
`)
	args := []string{"--config", p,
		"--idle-timeout", "7s", "--max-conns", "9", "--access-log=false",
		"--tenant-header", "X-Org", "--backend", "http://127.0.0.1:5"}
	cfg, cf, err := assemble(args, p)
	require.NoError(t, err)
	require.NotNil(t, cf)

	// Overridden by flags.
	assert.Equal(t, 7*time.Second, cfg.Timeouts.Idle)
	assert.Equal(t, 9, cfg.Pool.MaxConns)
	require.NotNil(t, cfg.Log.AccessLog)
	assert.False(t, *cfg.Log.AccessLog)
	assert.Equal(t, "X-Org", cfg.Classify.TenantHeader)
	assert.Equal(t, []string{"http://127.0.0.1:5"}, cfg.Services[0].Backends)

	// Kept from the file.
	assert.Equal(t, "127.0.0.1:7000", cfg.Listen)
	assert.Equal(t, 20*time.Second, cfg.ShutdownGrace)
	assert.Equal(t, 5*time.Second, cfg.Timeouts.ClientHeader)
	assert.Equal(t, 4096, cfg.Limits.MaxURLBytes)
	assert.Equal(t, "X-Class", cfg.Classify.PriorityHeader)
	assert.Equal(t, "debug", cfg.Log.Level)
	assert.Equal(t, time.Second, cfg.Pool.ConnectTimeout)
	assert.Equal(t, "api", cfg.Services[0].Name)
	assert.Equal(t, []string{"http://127.0.0.1:3"}, cfg.Services[1].Backends)
	assert.Len(t, cfg.Routes, 1)

	// The decoded file itself is untouched (its slices are not shared).
	assert.Equal(t, []string{"http://127.0.0.1:1", "http://127.0.0.1:2"}, cf.cfg.Services[0].Backends)
}

// Each flag lands in its field. One table, so that a flag bound to the
// wrong field cannot hide.
func TestEveryFlagSetsItsField(t *testing.T) {
	f := false
	cases := []struct {
		flag, value string
		get         func(c *sluiceConfig) any
		want        any
	}{
		{"listen", "127.0.0.1:1", func(c *sluiceConfig) any { return c.Listen }, "127.0.0.1:1"},
		{"shutdown-grace", "3s", func(c *sluiceConfig) any { return c.ShutdownGrace }, 3 * time.Second},
		{"client-header-timeout", "1s", func(c *sluiceConfig) any { return c.Timeouts.ClientHeader }, time.Second},
		{"client-body-timeout", "2s", func(c *sluiceConfig) any { return c.Timeouts.ClientBody }, 2 * time.Second},
		{"client-write-timeout", "4s", func(c *sluiceConfig) any { return c.Timeouts.ClientWrite }, 4 * time.Second},
		{"idle-timeout", "3s", func(c *sluiceConfig) any { return c.Timeouts.Idle }, 3 * time.Second},
		{"max-header-bytes", "100", func(c *sluiceConfig) any { return c.Limits.MaxHeaderBytes }, 100},
		{"max-url-bytes", "200", func(c *sluiceConfig) any { return c.Limits.MaxURLBytes }, 200},
		{"max-body-bytes", "300", func(c *sluiceConfig) any { return c.Limits.MaxBodyBytes }, int64(300)},
		{"max-conns", "4", func(c *sluiceConfig) any { return c.Pool.MaxConns }, 4},
		{"warm-conns", "2", func(c *sluiceConfig) any { return c.Pool.WarmConns }, 2},
		{"connect-timeout", "4s", func(c *sluiceConfig) any { return c.Pool.ConnectTimeout }, 4 * time.Second},
		{"response-header-timeout", "5s", func(c *sluiceConfig) any { return c.Pool.ResponseHeaderTimeout }, 5 * time.Second},
		{"backend-idle-timeout", "6s", func(c *sluiceConfig) any { return c.Pool.IdleTimeout }, 6 * time.Second},
		{"priority-header", "X-P", func(c *sluiceConfig) any { return c.Classify.PriorityHeader }, "X-P"},
		{"tenant-header", "X-T", func(c *sluiceConfig) any { return c.Classify.TenantHeader }, "X-T"},
		{"tenant-from", "api-key", func(c *sluiceConfig) any { return c.Classify.TenantFrom }, "api-key"},
		{"api-key-header", "X-K", func(c *sluiceConfig) any { return c.Classify.APIKeyHeader }, "X-K"},
		{"deadline-header", "X-D", func(c *sluiceConfig) any { return c.Classify.DeadlineHeader }, "X-D"},
		{"log-format", "console", func(c *sluiceConfig) any { return c.Log.Format }, "console"},
		{"log-level", "warn", func(c *sluiceConfig) any { return c.Log.Level }, "warn"},
		{"access-log", "false", func(c *sluiceConfig) any { return c.Log.AccessLog }, &f},
		{"access-log-sample", "0.25", func(c *sluiceConfig) any { return c.Log.AccessLogSample }, 0.25},
		{"admin", "127.0.0.1:9901", func(c *sluiceConfig) any { return c.Admin.Listen }, "127.0.0.1:9901"},
		{"admin-token-file", "t", func(c *sluiceConfig) any { return c.Admin.TokenFile }, "t"},
		{"queue-max", "77", func(c *sluiceConfig) any { return c.Queue.QueueMax }, 77},
		{"queue-timeout", "1s", func(c *sluiceConfig) any { return c.Queue.QueueTimeout }, time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.flag, func(t *testing.T) {
			cfg, _, err := assemble([]string{"--backend", "http://127.0.0.1:1", "--" + tc.flag + "=" + tc.value}, "")
			require.NoError(t, err)
			assert.Equal(t, tc.want, tc.get(&cfg))
		})
	}
}

func TestAccessLogFlagForms(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want *bool
	}{
		{nil, nil},
		{[]string{"--access-log"}, ptr(true)},
		{[]string{"--access-log=true"}, ptr(true)},
		{[]string{"--access-log=false"}, ptr(false)},
		{[]string{"--access-log=off"}, ptr(false)},
	} {
		cfg, _, err := assemble(append([]string{"--backend", "http://127.0.0.1:1"}, tc.args...), "")
		require.NoError(t, err)
		assert.Equal(t, tc.want, cfg.Log.AccessLog, "%v", tc.args)
	}
}

func ptr[T any](v T) *T { return &v }

func TestCommandLineErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{}, "no backends: give --backend URL"},
		{[]string{"--backend", "127.0.0.1:9001"}, `want http://host:port or https://host:port, got "127.0.0.1:9001"`},
		{[]string{"--backend", "http://127.0.0.1:1", "--max-conns", "many"}, "max-conns"},
		{[]string{"--backend", "http://127.0.0.1:1", "--idle-timeout", "5"}, "idle-timeout"},
		{[]string{"--backend", "http://127.0.0.1:1", "--access-log=maybe"}, "access-log"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"--backend", "http://127.0.0.1:1", "extra"}, `unexpected argument "extra"`},
	}
	for _, tc := range cases {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr, nil)
		assert.Equal(t, exitUsage, code, "%v: %s", tc.args, stderr.String())
		assert.Contains(t, stderr.String(), tc.want, "%v", tc.args)
		assert.Contains(t, stderr.String(), "sluice --help")
	}
}

func TestConfigFileErrorExitsOne(t *testing.T) {
	p := writeFile(t, "bad.yaml", "services:\n  - name: a\n    bakends: []\n")
	var stdout, stderr bytes.Buffer
	code := run([]string{"--config", p}, &stdout, &stderr, nil)
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, stderr.String(), "bad.yaml: services[0].bakends: unknown key (line 3)")
}

func TestCheckConfigReportsFileErrors(t *testing.T) {
	p := writeFile(t, "bad.yaml", "timeouts:\n  idle: 5\n")
	var stdout, stderr bytes.Buffer
	code := run([]string{"--check-config", p}, &stdout, &stderr, nil)
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, stderr.String(), `bad.yaml: timeouts.idle: invalid value "5"`)
	assert.NotContains(t, stdout.String(), "ok")

	code = run([]string{"--check-config"}, &stdout, &stderr, nil)
	assert.Equal(t, exitUsage, code)
}

func TestHelpListsEveryFlagInGroups(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"--help"}, &stdout, &stderr, nil)
	require.Equal(t, exitOK, code)
	out := stdout.String()
	assert.Empty(t, stderr.String())

	var cfg sluiceConfig
	var opts options
	fs := newFlagSet(&cfg, &opts)
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		assert.Equal(t, 1, strings.Count(out, "\n  --"+f.Name+" ")+strings.Count(out, "\n  --"+f.Name+"\n"),
			"--%s listed once", f.Name)
		assert.NotEmpty(t, f.Usage, "--%s has a usage string", f.Name)
	})
	assert.GreaterOrEqual(t, n, 30)
	for _, g := range flagGroups[:len(flagGroups)-1] {
		assert.Contains(t, out, "\n"+g.title+":\n")
	}
	// Groups appear in order: general first, logging after the backends.
	assert.Less(t, strings.Index(out, "General:"), strings.Index(out, "Logging:"))
	assert.Contains(t, out, "--access-log")
	assert.Contains(t, out, "(default true)")
}

// Every name a group lists is a real flag: a renamed flag must not vanish
// from --help.
func TestFlagGroupsNameRealFlags(t *testing.T) {
	var cfg sluiceConfig
	var opts options
	fs := newFlagSet(&cfg, &opts)
	for _, g := range flagGroups {
		for _, name := range g.names {
			assert.NotNil(t, fs.Lookup(name), "group %q lists unknown flag %q", g.title, name)
		}
	}
}

// --standby replaces the standby backends of the first service, as
// --backend replaces its backends; without a file they belong to the
// service --backend makes.
func TestStandbyFlag(t *testing.T) {
	p := writeFile(t, "standby.yaml", `
services:
  - name: a
    backends: [http://127.0.0.1:1]
    standby: [http://127.0.0.1:2]
  - name: b
    backends: [http://127.0.0.1:3]
    standby: [http://127.0.0.1:4]
`)
	cfg, err := effectiveConfig([]string{"--config", p,
		"--standby", "http://127.0.0.1:5", "--standby", "http://127.0.0.1:6,http://127.0.0.1:7"})
	require.NoError(t, err)
	assert.Equal(t, []string{"http://127.0.0.1:5", "http://127.0.0.1:6", "http://127.0.0.1:7"}, cfg.Services[0].Standby)
	assert.Equal(t, []string{"http://127.0.0.1:4"}, cfg.Services[1].Standby)

	cfg, err = effectiveConfig([]string{"--config", p})
	require.NoError(t, err)
	assert.Equal(t, []string{"http://127.0.0.1:2"}, cfg.Services[0].Standby, "the file's, without the flag")

	cfg, err = effectiveConfig([]string{"--backend", "http://127.0.0.1:1", "--standby", "http://127.0.0.1:2",
		"--standby-cool-down", "1m", "--standby-hook-url", "http://127.0.0.1:9/hook"})
	require.NoError(t, err)
	assert.Equal(t, []string{"http://127.0.0.1:2"}, cfg.Services[0].Standby)
	assert.Equal(t, time.Minute, cfg.Services[0].Monitor.Standby.CoolDown)
	assert.Equal(t, "http://127.0.0.1:9/hook", cfg.Services[0].Monitor.Standby.HookURL)

	_, err = effectiveConfig([]string{"--backend", "http://127.0.0.1:1", "--standby", "http://127.0.0.1:1"})
	assert.ErrorContains(t, err, `services[0].standby[0]: "http://127.0.0.1:1" is also one of the service's backends`)
	_, err = effectiveConfig([]string{"--backend", "http://127.0.0.1:1", "--standby", "127.0.0.1:2"})
	assert.ErrorContains(t, err, "want http://host:port")
}
