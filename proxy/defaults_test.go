package proxy

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluiceproxy/sluice/monitor"
	"github.com/sluiceproxy/sluice/pool"
	"github.com/sluiceproxy/sluice/scheduler"
)

// WithDefaults spells out what each service runs with: a copy of the
// top-level queue and pool when it has none of its own, its own block with
// the built-in defaults otherwise. The caller's services are not written to.
func TestWithDefaultsResolvesServiceQueueAndPool(t *testing.T) {
	own := pool.Config{WarmConns: 2}
	in := Config{
		Queue: scheduler.Config{QueueMax: 50},
		Pool:  pool.Config{MaxConns: 100},
		Services: []ServiceConfig{
			{Name: "inherits", Backends: []string{"http://127.0.0.1:1"}},
			{Name: "own", Backends: []string{"http://127.0.0.1:2"}, Pool: &own},
		},
	}
	c := in.WithDefaults()
	require.NoError(t, c.Validate())
	inh, o := c.Services[0], c.Services[1]
	require.NotNil(t, inh.Queue)
	require.NotNil(t, inh.Pool)
	assert.Equal(t, c.Queue, *inh.Queue)
	assert.Equal(t, c.Pool, *inh.Pool)
	assert.Equal(t, 50, inh.Queue.QueueMax)
	assert.Equal(t, scheduler.DefaultQueueTimeout, inh.Queue.QueueTimeout)
	assert.Equal(t, 100, inh.Pool.MaxConns)

	assert.Equal(t, 2, o.Pool.WarmConns)
	assert.Equal(t, pool.DefaultMaxConns, o.Pool.MaxConns, "built-in default, not the top-level value")
	assert.Equal(t, pool.DefaultConnectTimeout, o.Pool.ConnectTimeout)
	assert.Equal(t, c.Queue, *o.Queue)

	assert.Nil(t, in.Services[0].Pool, "the caller's slice is untouched")
	assert.Equal(t, pool.Config{WarmConns: 2}, own)
	assert.Equal(t, c, c.WithDefaults(), "idempotent")
}

// An invalid top-level queue or pool is reported as such, not as the copy
// that a service inherits.
func TestValidateNamesTopLevelSection(t *testing.T) {
	c := Config{
		Queue:    scheduler.Config{LimitMin: 10, LimitMax: 5},
		Services: []ServiceConfig{{Name: "a", Backends: []string{"http://127.0.0.1:1"}}},
	}.WithDefaults()
	err := c.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "queue: limit_max")
	assert.NotContains(t, err.Error(), "services[0]")

	c = Config{
		Pool:     pool.Config{MaxConns: -1},
		Services: []ServiceConfig{{Name: "a", Backends: []string{"http://127.0.0.1:1"}}},
	}.WithDefaults()
	err = c.Validate()
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "pool: max_conns"), err.Error())
}

// A standby is a URL like a backend, listed once, and never also one of
// the service's backends; the standby policy is validated with the
// monitor's.
func TestValidateStandby(t *testing.T) {
	for _, tc := range []struct {
		standby []string
		mon     *monitor.Config
		want    string
	}{
		{standby: []string{"http://127.0.0.1:2", "http://127.0.0.1:3"}},
		{standby: []string{"ftp://127.0.0.1:2"}, want: `services[0].standby[0]: "ftp://127.0.0.1:2": scheme "ftp"`},
		{standby: []string{"http://127.0.0.1:1"}, want: `services[0].standby[0]: "http://127.0.0.1:1" is also one of the service's backends`},
		{standby: []string{"http://127.0.0.1:2", "http://127.0.0.1:2"}, want: `services[0].standby[1]: "http://127.0.0.1:2" is listed twice`},
		{mon: &monitor.Config{Standby: monitor.StandbyConfig{RefusalRate: 2}}, want: "services[0].monitor: standby.refusal_rate: must be in [0, 1], got 2"},
		{mon: &monitor.Config{Standby: monitor.StandbyConfig{LatencyP95Factor: 0.5}}, want: "standby.latency_p95_factor: must be >= 1"},
		{mon: &monitor.Config{Standby: monitor.StandbyConfig{HookCommand: []string{""}}}, want: "standby.hook_command"},
		{mon: &monitor.Config{Standby: monitor.StandbyConfig{HookURL: "localhost:9"}}, want: `standby.hook_url: "localhost:9" is not an http:// or https:// URL`},
		{mon: &monitor.Config{Standby: monitor.StandbyConfig{CoolDown: -1}}, want: "standby.cool_down: must be >= 0"},
	} {
		c := Config{Services: []ServiceConfig{{Name: "a", Backends: []string{"http://127.0.0.1:1"},
			Standby: tc.standby, Monitor: tc.mon}}}.WithDefaults()
		err := c.Validate()
		if tc.want == "" {
			assert.NoError(t, err)
			continue
		}
		assert.ErrorContains(t, err, tc.want)
	}
}
