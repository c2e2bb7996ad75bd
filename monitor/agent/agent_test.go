package agent

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The agent in-process on loopback, read back with the Client: the
// document is what the probe measured plus the policy's verdict.
func TestAgentServesLoad(t *testing.T) {
	probe := &fakeProbe{cpu: 0.4}
	a := startAgent(t, Config{Interval: 20 * time.Millisecond}, probe)
	var c Client
	l, err := c.Fetch(context.Background(), a.loadURL)
	require.NoError(t, err)
	assert.Equal(t, StateUp, l.State)
	assert.Equal(t, 100, l.Weight)
	assert.Equal(t, 0.4, l.CPU)
	assert.Equal(t, 2, l.CPUs)
	require.Len(t, l.Targets, 1)
	assert.Equal(t, []int32{42}, l.Targets[0].PIDs)
	assert.Less(t, l.Age(time.Now()), time.Second)
	assert.False(t, l.Received.IsZero())

	probe.set(0.97, "")
	eventually(t, "weight to fall", func() bool {
		l, err := c.Fetch(context.Background(), a.loadURL)
		return err == nil && l.Weight == 28
	})

	// Only GET and HEAD, only /load.
	resp, err := http.Post(a.loadURL, "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	resp, err = http.Get(strings.TrimSuffix(a.loadURL, "load") + "other")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	http.DefaultClient.CloseIdleConnections()
}

// A missing target is a down verdict with its reason, in the document and
// over agent-check, and the agent recovers when the target is back.
func TestAgentDownWhenTargetMissing(t *testing.T) {
	probe := &fakeProbe{cpu: 0.1, targetErr: `process "origin": no running process has this name`}
	a := startAgent(t, Config{Interval: 20 * time.Millisecond}, probe)
	var c Client
	l, err := c.Fetch(context.Background(), a.loadURL)
	require.NoError(t, err)
	assert.True(t, l.Down())
	assert.Equal(t, `process "origin": no running process has this name`, l.Error)
	assert.Equal(t, "down #process \"origin\": no running process has this name\n", agentCheck(t, a.checkAddr, ""))

	probe.set(0.1, "")
	eventually(t, "up again", func() bool { return a.Latest().State == StateUp })
	assert.Equal(t, "up ready 100%\n", agentCheck(t, a.checkAddr, ""))
}

// The agent-check port, spoken to as HAProxy does, with and without an
// agent-send string; "ready" comes and goes with the hold.
func TestAgentCheckReplies(t *testing.T) {
	probe := &fakeProbe{cpu: 0.2}
	hold := 300 * time.Millisecond
	a := startAgent(t, Config{Interval: 20 * time.Millisecond, Policy: Policy{DrainCPU: 0.95, ReadyHold: hold}}, probe)

	assert.Equal(t, "up ready 100%\n", agentCheck(t, a.checkAddr, ""), "just started: ready")
	eventually(t, "the start hold to end", func() bool { return agentCheck(t, a.checkAddr, "") == "up 100%\n" })
	assert.Equal(t, "up 100%\n", agentCheck(t, a.checkAddr, "hello haproxy\n"), "agent-send is read and ignored")

	probe.set(0.97, "")
	eventually(t, "drain", func() bool { return agentCheck(t, a.checkAddr, "") == "drain\n" })
	probe.set(0.93, "") // inside the hysteresis band
	time.Sleep(100 * time.Millisecond)
	assert.Equal(t, "drain\n", agentCheck(t, a.checkAddr, ""))
	probe.set(0.88, "")
	eventually(t, "up after drain", func() bool { return agentCheck(t, a.checkAddr, "") == "up ready 82%\n" })
	eventually(t, "the drain hold to end", func() bool { return agentCheck(t, a.checkAddr, "") == "up 82%\n" })
}

// A failing probe leaves the last sample published: it ages, so a client
// sees stale data rather than fresh zeros.
func TestAgentKeepsLastSampleWhenSamplingFails(t *testing.T) {
	probe := &fakeProbe{cpu: 0.5}
	a := startAgent(t, Config{Interval: 20 * time.Millisecond}, probe)
	before := a.Latest()
	probe.fail(errors.New("/proc/stat: permission denied"))
	time.Sleep(150 * time.Millisecond)
	l, err := (&Client{}).Fetch(context.Background(), a.loadURL)
	require.NoError(t, err)
	assert.False(t, l.Time.Before(before.Time))
	assert.Greater(t, l.Age(time.Now()), 100*time.Millisecond, "the sample ages while sampling fails")
	probe.fail(nil)
	eventually(t, "fresh samples", func() bool { return a.Latest().Age(time.Now()) < 50*time.Millisecond })
}

func TestAgentStartFails(t *testing.T) {
	probe := &fakeProbe{err: errors.New("no /proc")}
	a, err := New(Config{}, probe, zerologDiscard())
	require.NoError(t, err)
	assert.ErrorContains(t, a.Start(context.Background()), "no /proc")
	assert.Equal(t, "\n", a.Reply(), "nothing to say before the first sample")

	_, err = New(Config{Interval: time.Millisecond}, probe, zerologDiscard())
	assert.ErrorContains(t, err, "interval")
}

func TestAgentCheckConnectionBound(t *testing.T) {
	a := startAgent(t, Config{Interval: 20 * time.Millisecond}, &fakeProbe{})
	// A client that connects and never reads nor closes holds a slot for
	// at most the check timeout; the others still get their answer.
	idle := make([]io.Closer, 0, 8)
	for range 8 {
		c, err := dialTCP(a.checkAddr)
		require.NoError(t, err)
		idle = append(idle, c)
	}
	assert.Equal(t, "up ready 100%\n", agentCheck(t, a.checkAddr, ""))
	for _, c := range idle {
		c.Close()
	}
}
