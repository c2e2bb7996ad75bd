package agent

// A real HAProxy (Debian's package) with agent-check pointed at the agent:
// the weight and state HAProxy gives the server follow what the agent
// reports, read back through HAProxy's stats socket.

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// haproxyBinary finds haproxy. On a developer's machine a missing one
// skips the test; under CI (CI=true, which .ci/run sets after installing
// it) it is a broken install, and the test fails rather than pass
// unchecked.
func haproxyBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, "haproxy")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatal("haproxy not found, and CI is set: the CI run must install it so agent-check is tested against it")
	}
	t.Skip("haproxy not installed; agent-check not tested against it")
	return ""
}

// haproxy is one HAProxy process run by a test.
type haproxy struct {
	t    *testing.T
	sock string
}

// startHAProxy runs HAProxy in the foreground with one backend whose one
// server is checked only by the agent at agentAddr, every 200 ms. HAProxy
// is killed when the test ends, and in any case after a minute.
func startHAProxy(t *testing.T, agentAddr string) *haproxy {
	bin := haproxyBinary(t)
	_, port, err := net.SplitHostPort(agentAddr)
	require.NoError(t, err)
	dir := t.TempDir()
	sock := filepath.Join(dir, "haproxy.sock")
	// The server's own address is never dialed: no traffic and no "check",
	// so only the agent changes its weight and state.
	cfg := fmt.Sprintf(`global
    stats socket %s level admin
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
backend be
    server s1 127.0.0.1:1 weight 100 agent-check agent-addr 127.0.0.1 agent-port %s agent-inter 200ms
`, sock, port)
	path := filepath.Join(dir, "haproxy.cfg")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o644))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel() // kills it
		<-exited
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})

	h := &haproxy{t: t, sock: sock}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := h.command("show info"); err == nil {
			return h
		}
		select {
		case err := <-exited:
			t.Fatalf("haproxy exited: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy's stats socket did not answer\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// command sends one command to the stats socket and returns the answer.
func (h *haproxy) command(cmd string) (string, error) {
	c, err := net.DialTimeout("unix", h.sock, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// server reads the server's row of "show stat": status, weight, and what
// the agent last said.
func (h *haproxy) server() map[string]string {
	h.t.Helper()
	out, err := h.command("show stat")
	require.NoError(h.t, err)
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(out, "# ")))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	require.NoError(h.t, err, out)
	require.NotEmpty(h.t, rows)
	for _, row := range rows[1:] {
		if len(row) >= 2 && row[0] == "be" && row[1] == "s1" {
			m := map[string]string{}
			for i, name := range rows[0] {
				if i < len(row) {
					m[name] = row[i]
				}
			}
			return m
		}
	}
	h.t.Fatalf("no be/s1 in show stat:\n%s", out)
	return nil
}

// waitServer waits until HAProxy shows the server with a status and
// weight that satisfy ok.
func (h *haproxy) waitServer(what string, ok func(status, weight string) bool) map[string]string {
	h.t.Helper()
	var last map[string]string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		last = h.server()
		if ok(last["status"], last["weight"]) {
			h.t.Logf("%s: status %q weight %q, agent said %q", what, last["status"], last["weight"], last["last_agt"])
			return last
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("%s: haproxy shows status %q weight %q, agent said %q (%s)",
		what, last["status"], last["weight"], last["last_agt"], last["agent_status"])
	return nil
}

// The states as "show stat" names them. A server with no health check of
// its own is "no check" while the agent says up; HAProxy appends who set
// a state: "DRAIN (agent)".
func inRotation(status string) bool { return status == "no check" || status == "UP" }
func draining(status string) bool   { return strings.HasPrefix(status, "DRAIN") }
func down(status string) bool       { return strings.HasPrefix(status, "DOWN") }

func weightIs(w string, status func(string) bool) func(string, string) bool {
	return func(s, weight string) bool { return status(s) && (w == "" || weight == w) }
}

func TestHAProxyFollowsAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("runs haproxy")
	}
	probe := &fakeProbe{cpu: 0.97}
	a := startAgent(t, Config{Interval: 50 * time.Millisecond, Policy: Policy{DrainCPU: 0.98}}, probe)
	h := startHAProxy(t, a.checkAddr)

	// The first reply already differs from the configured weight (100),
	// so a change proves HAProxy is reading the agent.
	h.waitServer("high CPU lowers the weight", weightIs("28", inRotation))
	probe.set(0.3, "")
	h.waitServer("CPU back under the target", weightIs("100", inRotation))
	probe.set(0.99, "")
	h.waitServer("CPU above the drain threshold", weightIs("", draining))
	probe.set(0.9, "")
	h.waitServer("out of drain (ready)", weightIs("70", inRotation))

	probe.set(0.1, `process "origin": no running process has this name`)
	s := h.waitServer("origin missing", weightIs("", down))
	require.Contains(t, s["last_agt"], `process "origin": no running process has this name`, "the reason reaches HAProxy's stats")
	probe.set(0.925, "")
	h.waitServer("origin back", weightIs("55", inRotation))
}

// "ready" undoes an operator's drain as well as the agent's, so the agent
// sends it only for ReadyHold after it starts or last reported something
// other than up. Past that, a drain set on HAProxy's CLI stays.
func TestHAProxyKeepsOperatorDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("runs haproxy")
	}
	probe := &fakeProbe{cpu: 0.3}
	hold := 300 * time.Millisecond
	a := startAgent(t, Config{Interval: 50 * time.Millisecond, Policy: Policy{ReadyHold: hold}}, probe)
	h := startHAProxy(t, a.checkAddr)
	h.waitServer("agent up", weightIs("100", inRotation))
	eventually(t, "the ready hold to end", func() bool { return a.Reply() == "up 100%\n" })

	out, err := h.command("set server be/s1 state drain")
	require.NoError(t, err)
	require.Empty(t, strings.TrimSpace(out))
	h.waitServer("operator's drain", weightIs("", draining))
	// Five agent checks later it still holds.
	time.Sleep(time.Second)
	s := h.server()
	require.True(t, draining(s["status"]), "status %q after the agent said %q", s["status"], s["last_agt"])

	_, err = h.command("set server be/s1 state ready")
	require.NoError(t, err)
	h.waitServer("operator's ready", weightIs("100", inRotation))
}
