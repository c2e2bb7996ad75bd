package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	return p
}

func TestParseConfigDecodes(t *testing.T) {
	cf, err := parseConfig("x.yaml", []byte(`
listen: 127.0.0.1:9999
shutdown_grace: 3s
services:
  - name: api
    backends: [http://127.0.0.1:1, http://127.0.0.1:2]
    host_rewrite: api.internal
    pool: {max_conns: 7}
  - name: web
    backends: [http://127.0.0.1:3]
routes:
  - host: api.example.com
    path_prefix: /v1/
    headers: {X-Canary: "1"}
    service: api
    priority: high
    timeout: 250ms
timeouts: {client_header: 5s}
limits: {max_body_bytes: 1048576}
log: {access_log: false, format: console}
pool: {warm_conns: 2}
`))
	require.NoError(t, err)
	c := cf.cfg
	assert.Equal(t, "127.0.0.1:9999", c.Listen)
	assert.Equal(t, 3*time.Second, c.ShutdownGrace)
	require.Len(t, c.Services, 2)
	assert.Equal(t, []string{"http://127.0.0.1:1", "http://127.0.0.1:2"}, c.Services[0].Backends)
	assert.Equal(t, "api.internal", c.Services[0].HostRewrite)
	require.NotNil(t, c.Services[0].Pool)
	assert.Equal(t, 7, c.Services[0].Pool.MaxConns)
	assert.Nil(t, c.Services[1].Pool)
	require.Len(t, c.Routes, 1)
	assert.Equal(t, map[string]string{"X-Canary": "1"}, c.Routes[0].Headers)
	assert.Equal(t, 250*time.Millisecond, c.Routes[0].Timeout)
	assert.Equal(t, 5*time.Second, c.Timeouts.ClientHeader)
	assert.Equal(t, int64(1<<20), c.Limits.MaxBodyBytes)
	require.NotNil(t, c.Log.AccessLog)
	assert.False(t, *c.Log.AccessLog)
	assert.Equal(t, 2, c.Pool.WarmConns)
}

// Every way a file can be broken before validation, and the words the
// error must contain: the file, the field's path, the value and the line.
func TestParseConfigErrors(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown top-level key", "listen: 127.0.0.1:1\nlisten_addr: x\n",
			[]string{"x.yaml: ", "listen_addr: unknown key (line 2)"}},
		{"unknown nested key", "services:\n  - name: a\n    bakends: [http://127.0.0.1:1]\n",
			[]string{"services[0].bakends: unknown key (line 3)"}},
		{"unknown key in a section", "timeouts:\n  idle: 1s\n  read: 2s\n",
			[]string{"timeouts.read: unknown key (line 3)"}},
		{"unknown key in a per-service pool", "services:\n  - name: a\n    pool:\n      max_con: 3\n",
			[]string{"services[0].pool.max_con: unknown key (line 4)"}},
		{"duration not a duration", "timeouts:\n  idle: soon\n",
			[]string{`timeouts.idle: invalid value "soon": want a duration`, "(line 2)"}},
		{"bare number as duration", "shutdown_grace: 15\n",
			[]string{`shutdown_grace: invalid value "15": want a duration`, "(line 1)"}},
		{"string for int", "pool:\n  max_conns: lots\n",
			[]string{`pool.max_conns: invalid value "lots": want an integer (line 2)`}},
		{"list for string", "listen: [a, b]\n",
			[]string{"x.yaml: listen: want a string, got a list (line 1)"}},
		{"mapping for list", "services:\n  name: a\n",
			[]string{"x.yaml: services: want a list, got a mapping (line 2)"}},
		{"scalar for list", "services: api\n",
			[]string{`services: invalid value "api": want a list (line 1)`}},
		{"list inside a flow mapping", "routes:\n  - headers: {X-A: [1]}\n",
			[]string{"x.yaml: routes[0].headers.X-A: want a string, got a list (line 2)"}},
		{"bool", "log:\n  access_log: perhaps\n",
			[]string{`log.access_log: invalid value "perhaps": want true or false (line 2)`}},
		{"syntax", "services:\n  - name: a\n   backends: x\n",
			[]string{"x.yaml: line ", "did not find expected"}},
		{"tab indentation", "listen:\t\n\t- a\n",
			[]string{"x.yaml: ", "line"}},
		{"duplicate key", "listen: a\nlisten: b\n",
			[]string{"x.yaml: ", `"listen" already defined`}},
		{"empty", "", []string{"x.yaml: empty configuration"}},
		{"only comments", "# nothing\n", []string{"x.yaml: empty configuration"}},
		{"null", "~\n", []string{"x.yaml: empty configuration"}},
		{"a list", "- a\n- b\n", []string{"x.yaml: line 1: the configuration must be a mapping", "a list"}},
		{"a scalar", "hello\n", []string{"must be a mapping", `"hello"`}},
		{"two documents", "listen: a\n---\nlisten: b\n", []string{"x.yaml: line 2: a second YAML document"}},
		{"value with its own parser", "queue:\n  queue_discipline: lifo\n",
			[]string{`x.yaml: queue.queue_discipline: unknown queue discipline "lifo"`, "(line 2)"}},
		{"map key with its own parser", "queue:\n  class_timeout:\n    urgent: 1s\n",
			[]string{`x.yaml: queue.class_timeout.urgent: unknown class "urgent"`, "(line 3)"}},
		{"several errors", "listen: a\nfoo: 1\nbar: 2\n",
			[]string{"foo: unknown key (line 2)", "bar: unknown key (line 3)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cf, err := parseConfig("x.yaml", []byte(tc.yaml))
			require.Error(t, err)
			assert.Nil(t, cf)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestLoadConfigFileErrors(t *testing.T) {
	_, err := loadConfigFile(filepath.Join(t.TempDir(), "missing.yaml"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "missing.yaml")

	big := writeFile(t, "big.yaml", "# "+strings.Repeat("x", maxConfigBytes)+"\n")
	_, err = loadConfigFile(big)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "big.yaml: larger than")
}

// Validate belongs to the proxy; the command adds the file name and, when
// the file sets the field, its line.
func TestValidationErrorLocatesField(t *testing.T) {
	cf, err := parseConfig("configs/x.yaml", []byte(`
services:
  - name: a
    backends: [http://127.0.0.1:1]
  - name: b
    backends:
      - htp:/x
`))
	require.NoError(t, err)
	cases := []struct{ in, want string }{
		{`services[1].backends[0]: invalid URL "htp:/x": missing host`,
			`configs/x.yaml: services[1].backends[0]: invalid URL "htp:/x": missing host (line 7)`},
		{`services[1].name: duplicate "b"`, `configs/x.yaml: services[1].name: duplicate "b" (line 5)`},
		{`services[0]: no backends`, `configs/x.yaml: services[0]: no backends (line 3)`},
		{`services[1].backends: limit_max: oops`, `configs/x.yaml: services[1].backends: limit_max: oops (line 6)`},
		// A field the file does not set (a flag or a default put it there).
		{`listen: invalid address ""`, `configs/x.yaml: listen: invalid address ""`},
		{`not a path at all`, `configs/x.yaml: not a path at all`},
	}
	for _, tc := range cases {
		got := validationError(cf, errors.New(tc.in)).Error()
		assert.Equal(t, tc.want, got)
	}
	assert.Equal(t, `invalid configuration: listen: bad`,
		validationError(nil, errors.New("listen: bad")).Error())
}
