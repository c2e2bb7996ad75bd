package agent

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeProbe reports whatever the test sets: the seam that lets tests (and
// the HAProxy test) make the agent report a high CPU without burning one.
type fakeProbe struct {
	mu        sync.Mutex
	cpu       float64
	targetErr string // non-empty: the one target is missing
	err       error  // non-nil: sampling fails
	calls     int
}

func (f *fakeProbe) set(cpu float64, targetErr string) {
	f.mu.Lock()
	f.cpu, f.targetErr = cpu, targetErr
	f.mu.Unlock()
}

func (f *fakeProbe) fail(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *fakeProbe) Sample(_ context.Context, now time.Time) (Load, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return Load{}, f.err
	}
	return Load{
		Version: Version, Time: now, IntervalSeconds: 0.05, WindowSeconds: 0.05,
		CPU: f.cpu, HostCPU: f.cpu, CPUs: 2,
		Targets: []Target{{Kind: "process", Name: "origin", PIDs: []int32{42}, Cores: 2 * f.cpu, CPU: f.cpu, Error: f.targetErr}},
		Load1:   1.5, Load5: 1, Load15: 0.5,
		MemoryUsedBytes: 1 << 30, MemoryTotalBytes: 4 << 30, MemoryUsedFraction: 0.25,
	}, nil
}

// testAgent is an Agent serving /load and agent-check on loopback.
type testAgent struct {
	*Agent
	loadURL   string
	checkAddr string
}

func startAgent(t *testing.T, cfg Config, probe Probe) *testAgent {
	t.Helper()
	a, err := New(cfg, probe, zerolog.New(io.Discard))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, a.Start(ctx))

	hl, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cl, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := a.NewHTTPServer()
	httpDone, checkDone := make(chan error, 1), make(chan error, 1)
	go func() { httpDone <- srv.Serve(hl) }()
	go func() { checkDone <- a.ServeAgentCheck(cl) }()
	t.Cleanup(func() {
		cancel()
		<-a.Done()
		cl.Close()
		require.NoError(t, <-checkDone)
		require.NoError(t, srv.Shutdown(context.Background()))
		require.True(t, errors.Is(<-httpDone, http.ErrServerClosed))
		defaultHTTP.CloseIdleConnections()
	})
	return &testAgent{Agent: a, loadURL: "http://" + hl.Addr().String() + "/load", checkAddr: cl.Addr().String()}
}

// agentCheck does what HAProxy does: connect, send the agent-send string
// if any, read the reply until the agent closes.
func agentCheck(t *testing.T, addr, send string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(2*time.Second)))
	if send != "" {
		_, err := io.WriteString(c, send)
		require.NoError(t, err)
	}
	b, err := io.ReadAll(c)
	require.NoError(t, err)
	return string(b)
}

// eventually polls cond every 20 ms for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func zerologDiscard() zerolog.Logger { return zerolog.New(io.Discard) }

func dialTCP(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, time.Second) }
