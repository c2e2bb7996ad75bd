package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluiceproxy/sluice/proxy"
)

var examplePath = filepath.Join("..", "..", "configs", "example.yaml")

// The effective configuration is complete: applying the defaults again
// changes nothing, and every service spells out its queue and pool.
func TestEffectiveConfigIsComplete(t *testing.T) {
	for _, args := range [][]string{
		{"--backend", "http://127.0.0.1:1"},
		{"--config", examplePath},
		{"--config", examplePath, "--max-conns", "9", "--queue-max", "7"},
	} {
		cfg, err := effectiveConfig(args)
		require.NoError(t, err, "%v", args)
		assert.Equal(t, cfg.Config, cfg.WithDefaults(), "%v: defaults left to fill in", args)
		require.NoError(t, cfg.Validate(), "%v", args)
		for i, s := range cfg.Services {
			assert.NotNil(t, s.Queue, "%v: services[%d].queue", args, i)
			assert.NotNil(t, s.Pool, "%v: services[%d].pool", args, i)
		}
	}
}

// A service without its own pool or queue runs with the top-level one,
// flags included; a service with its own block keeps it, with the built-in
// defaults (not the top-level values) for what it leaves out.
func TestEffectiveConfigServiceInheritance(t *testing.T) {
	p := writeFile(t, "s.yaml", `
pool: {max_conns: 100, connect_timeout: 1s}
queue: {queue_max: 50}
services:
  - name: plain
    backends: [http://127.0.0.1:1]
  - name: own
    backends: [http://127.0.0.1:2]
    pool: {warm_conns: 3}
    queue: {queue_timeout: 1s}
`)
	cfg, err := effectiveConfig([]string{"--config", p, "--max-conns", "40"})
	require.NoError(t, err)
	plain, own := cfg.Services[0], cfg.Services[1]
	assert.Equal(t, cfg.Pool, *plain.Pool)
	assert.Equal(t, cfg.Queue, *plain.Queue)
	assert.Equal(t, 40, plain.Pool.MaxConns, "flag over the file, inherited")
	assert.Equal(t, time.Second, plain.Pool.ConnectTimeout)
	assert.Equal(t, 50, plain.Queue.QueueMax)

	assert.Equal(t, 3, own.Pool.WarmConns)
	assert.Equal(t, 512, own.Pool.MaxConns, "built-in default, not the top-level 100 nor the flag")
	assert.Equal(t, 2*time.Second, own.Pool.ConnectTimeout)
	assert.Equal(t, time.Second, own.Queue.QueueTimeout)
	assert.Equal(t, 16384, own.Queue.QueueMax)
}

// What a reload does: the same command line, the file read again. The new
// file's values take effect and the flags still override them.
func TestEffectiveConfigRereadsFileUnderSameFlags(t *testing.T) {
	p := writeFile(t, "r.yaml", "pool: {max_conns: 10}\nservices:\n  - name: a\n    backends: [http://127.0.0.1:1]\n")
	args := []string{"--config", p, "--listen", "127.0.0.1:7001"}
	first, err := effectiveConfig(args)
	require.NoError(t, err)
	assert.Equal(t, 10, first.Pool.MaxConns)

	require.NoError(t, os.WriteFile(p, []byte(
		"listen: 127.0.0.1:1\npool: {max_conns: 20}\nservices:\n  - name: a\n    backends: [http://127.0.0.1:1, http://127.0.0.1:2]\n"), 0o644))
	second, err := effectiveConfig(args)
	require.NoError(t, err)
	assert.Equal(t, 20, second.Pool.MaxConns)
	assert.Len(t, second.Services[0].Backends, 2)
	assert.Equal(t, "127.0.0.1:7001", second.Listen, "the flag keeps overriding the file")

	// A broken file is refused with the message --check-config prints.
	require.NoError(t, os.WriteFile(p, []byte("pool: {max_conns: -1}\nservices: []\n"), 0o644))
	_, err = effectiveConfig(args)
	require.Error(t, err)
	var stdout, stderr bytes.Buffer
	require.Equal(t, exitFailure, run([]string{"--check-config", p}, &stdout, &stderr, nil))
	assert.Equal(t, err.Error()+"\n", stderr.String())
	assert.Contains(t, err.Error(), "r.yaml: pool: max_conns: must be >= 0, got -1 (line 1)")
}

// --check-config applies the flags given with it, as start-up would.
func TestCheckConfigAppliesFlags(t *testing.T) {
	p := writeFile(t, "c.yaml", "pool: {max_conns: 5}\nservices:\n  - name: a\n    backends: [http://127.0.0.1:1]\n")
	var stdout, stderr bytes.Buffer
	require.Equal(t, exitOK, run([]string{"--check-config", p}, &stdout, &stderr, nil), stderr.String())
	assert.Equal(t, "ok\n", stdout.String())

	stdout.Reset()
	code := run([]string{"--check-config", p, "--warm-conns", "10"}, &stdout, &stderr, nil)
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, stderr.String(), "c.yaml: pool: warm_conns: 10 exceeds max_conns 5")
	assert.Empty(t, stdout.String())
}

// --print-config prints the effective configuration, flags included, as a
// file that gives the same effective configuration again.
func TestPrintConfig(t *testing.T) {
	args := []string{"--config", examplePath, "--max-conns", "77", "--queue-discipline", "codel", "--print-config"}
	var stdout, stderr bytes.Buffer
	require.Equal(t, exitOK, run(args, &stdout, &stderr, nil), stderr.String())
	assert.Empty(t, stderr.String())
	printed := stdout.String()
	for _, want := range []string{"\npool:\n  max_conns: 77\n", "\nqueue:\n  queue_max: 16384\n", "queue_discipline: codel\n",
		"standing_timeout: 25ms\n", "access_log_buffer: 65536\n", "read_buffer_size: 16384\n"} {
		assert.Contains(t, printed, want)
	}

	again := writeFile(t, "printed.yaml", printed)
	cfg, err := effectiveConfig([]string{"--config", again})
	require.NoError(t, err, "the printed configuration loads")
	var reprinted bytes.Buffer
	require.NoError(t, printConfig(&reprinted, cfg))
	assert.Equal(t, printed, reprinted.String(), "the printed configuration is a fixed point")

	stdout.Reset()
	stderr.Reset()
	code := run([]string{"--backend", "http://127.0.0.1:1", "--limit-min", "9", "--limit-max", "3", "--print-config"},
		&stdout, &stderr, nil)
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, stderr.String(), "invalid configuration: queue: limit_max")
	assert.Empty(t, stdout.String())

	// Without a file, the flags' service is the configuration.
	stdout.Reset()
	code = run([]string{"--backend", "http://127.0.0.1:1", "--print-config"}, &stdout, &stderr, nil)
	require.Equal(t, exitOK, code, stderr.String())
	assert.True(t, strings.HasPrefix(stdout.String(), "listen: "+proxy.DefaultListen+"\nservices:\n  - name: default\n"),
		stdout.String())
}
