package main

// run in-process: the same wiring as the binary, with the signal channel in
// the test's hands.

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluiceproxy/sluice/monitor/agent"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fetch reads the agent's /load with the gateway's Client, on a transport
// of its own that is closed afterwards.
func fetch(t *testing.T, addr string) agent.Load {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := agent.Client{HTTP: &http.Client{Transport: tr}}
	l, err := c.Fetch(context.Background(), "http://"+addr+"/load")
	require.NoError(t, err)
	return l
}

type running struct {
	t          *testing.T
	signals    chan os.Signal
	code       chan int
	lines      chan string
	addr       string
	agentCheck string
}

func startRun(t *testing.T, args ...string) *running {
	t.Helper()
	pr, pw := io.Pipe()
	r := &running{t: t, signals: make(chan os.Signal, 2), code: make(chan int, 1), lines: make(chan string, 256)}
	go func() {
		r.code <- run(args, io.Discard, pw, r.signals)
		pw.Close()
	}()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			select {
			case r.lines <- sc.Text():
			default: // nobody is waiting for more log lines; keep the pipe flowing
			}
		}
		close(r.lines)
	}()
	t.Cleanup(func() {
		select {
		case r.signals <- syscall.SIGTERM:
		default:
		}
		select {
		case <-r.code:
		case <-time.After(10 * time.Second):
			t.Error("run did not return")
		}
	})
	line := r.waitLog("listening")
	var entry struct {
		Addr       string
		AgentCheck string `json:"agent_check"`
	}
	require.NoError(t, json.Unmarshal([]byte(line), &entry))
	r.addr, r.agentCheck = entry.Addr, entry.AgentCheck
	return r
}

func (r *running) waitLog(msg string) string {
	r.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case line, ok := <-r.lines:
			require.True(r.t, ok, "run ended before logging %q", msg)
			var entry struct{ Message string }
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Message == msg {
				return line
			}
		case <-timeout:
			r.t.Fatalf("no %q logged", msg)
		}
	}
}

func (r *running) stop(sig os.Signal) int {
	r.t.Helper()
	r.signals <- sig
	select {
	case c := <-r.code:
		r.code <- c // for the cleanup
		return c
	case <-time.After(10 * time.Second):
		r.t.Fatal("run did not return")
	}
	return -1
}

func agentCheck(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(2*time.Second)))
	b, err := io.ReadAll(c)
	require.NoError(t, err)
	return string(b)
}

// The real sampler, measuring this test process by PID and by name (as
// ps -o comm shows it, cut to 15 bytes, and in full: the test binary's
// name is longer) and the host, read back over both protocols.
func TestRunServesLoad(t *testing.T) {
	comm, err := os.ReadFile("/proc/self/comm")
	require.NoError(t, err)
	r := startRun(t, "--listen", "127.0.0.1:0", "--agent-check", "127.0.0.1:0", "--interval", "100ms",
		"--pid", strconv.Itoa(os.Getpid()), "--process", strings.TrimSpace(string(comm)),
		"--process", filepath.Base(os.Args[0]))

	l := fetch(t, r.addr)
	assert.Equal(t, agent.StateUp, l.State)
	assert.Equal(t, 0.1, l.IntervalSeconds)
	require.Len(t, l.Targets, 3)
	for _, tg := range l.Targets {
		assert.Empty(t, tg.Error)
		assert.Contains(t, tg.PIDs, int32(os.Getpid()))
	}
	assert.Positive(t, l.MemoryTotalBytes)
	assert.Less(t, l.Age(time.Now()), time.Second)

	reply := agentCheck(t, r.agentCheck)
	assert.Regexp(t, `^up ready \d{1,3}%\n$`, reply)
	assert.Equal(t, exitOK, r.stop(syscall.SIGINT))
	r.waitLog("stopped")
	_, err = net.DialTimeout("tcp", r.agentCheck, 200*time.Millisecond)
	assert.Error(t, err, "the agent-check port is closed after a stop")
}

// A target that does not exist: the agent runs, and says down with the
// reason on both protocols.
func TestRunMissingTarget(t *testing.T) {
	missing := t.TempDir() + "/gone.slice"
	r := startRun(t, "--listen", "127.0.0.1:0", "--agent-check", "127.0.0.1:0", "--interval", "100ms",
		"--cgroup", missing)
	l := fetch(t, r.addr)
	assert.True(t, l.Down())
	assert.Equal(t, "cgroup "+missing+": no such cgroup (no cpu.stat)", l.Error)
	assert.Equal(t, "down #cgroup "+missing+": no such cgroup (no cpu.stat)\n", agentCheck(t, r.agentCheck))
	assert.Equal(t, exitOK, r.stop(syscall.SIGTERM))
}

func TestRunCommandLineErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--no-such-flag"}, "flag provided but not defined: -no-such-flag"},
		{[]string{"--interval", "soon"}, `invalid value "soon" for flag -interval`},
		{[]string{"--interval", "1ms"}, "--interval: 1ms is below the minimum 10ms"},
		{[]string{"--pid", "nginx"}, "want a process ID"},
		{[]string{"--pid", "-3"}, "want a process ID"},
		{[]string{"--process", ""}, "empty value"},
		{[]string{"--process", "/usr/sbin/nginx"}, "--process: \"/usr/sbin/nginx\" is not a command name"},
		{[]string{"--target-cpu", "85"}, "--target-cpu: 85, want a fraction"},
		{[]string{"--floor-weight", "101"}, "--floor-weight: 101"},
		{[]string{"--drain-cpu", "0.5"}, "--drain-cpu: 0.5"},
		{[]string{"--inflight-url", "localhost:8080/stats"}, "--inflight-url: want http://host:port/path"},
		{[]string{"--inflight-field", "active"}, "--inflight-field: \"active\" given without inflight-url"},
		{[]string{"--rescan", "100ms"}, "--rescan: 100ms is shorter than the interval 1s"},
		{[]string{"--listen", ""}, "--listen: no address"},
		{[]string{"--log-format", "xml"}, "--log-format: want json or console"},
		{[]string{"--log-level", "loud"}, "--log-level: unknown level"},
		{[]string{"nginx"}, `unexpected argument "nginx"`},
	} {
		var stderr strings.Builder
		code := run(tc.args, io.Discard, &stderr, nil)
		assert.Equal(t, exitUsage, code, "%v", tc.args)
		assert.Contains(t, stderr.String(), tc.msg, "%v", tc.args)
		assert.Contains(t, stderr.String(), "Run 'sluice-agent --help' for usage.", "%v", tc.args)
	}
}

func TestRunCannotListen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	for _, args := range [][]string{
		{"--listen", ln.Addr().String()},
		{"--listen", "127.0.0.1:0", "--agent-check", ln.Addr().String()},
	} {
		var stderr strings.Builder
		assert.Equal(t, exitFailure, run(args, io.Discard, &stderr, nil), "%v", args)
		assert.Contains(t, stderr.String(), "cannot listen", "%v", args)
	}
}

// --help lists every flag, each in a group.
func TestRunHelp(t *testing.T) {
	var stdout strings.Builder
	require.Equal(t, exitOK, run([]string{"--help"}, &stdout, io.Discard, nil))
	help := stdout.String()
	grouped := map[string]bool{}
	for _, g := range flagGroups {
		for _, n := range g.names {
			grouped[n] = true
		}
	}
	newFlagSet(&options{}).VisitAll(func(f *flag.Flag) {
		assert.True(t, grouped[f.Name], "--%s is in no group of --help", f.Name)
		// A flag with a value is followed by its placeholder, a boolean
		// flag by the end of the line.
		assert.Regexp(t, `\n  --`+regexp.QuoteMeta(f.Name)+`[ \n]`, help, "--help lacks --%s", f.Name)
	})
	assert.Contains(t, help, "(default 1s)")
	assert.Contains(t, help, "(default 0.85)")
	assert.Contains(t, help, "(default 127.0.0.1:9101)")
}

func TestRunVersion(t *testing.T) {
	var stdout, stderr strings.Builder
	require.Equal(t, exitOK, run([]string{"--version"}, &stdout, &stderr, nil), stderr.String())
	assert.Regexp(t, `^sluice-agent version \S+, module \S+, commit \S+, go1\.\S+ \S+/\S+\n$`, stdout.String())
}
