package monitor

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The hook command in these tests is the test binary itself: with
// hookHelperEnv set, TestMain does what the variable says instead of
// running tests. No shell, and nothing that may be missing from the host.
const hookHelperEnv = "SLUICE_MONITOR_HOOK_HELPER"

// hookHelper plays the hook command when asked to and reports whether it
// did: "echo" copies its standard input to its standard output, "fail"
// writes a line and exits 3, "hang" sleeps far past any timeout.
func hookHelper() bool {
	mode := os.Getenv(hookHelperEnv)
	switch mode {
	case "":
		return false
	case "echo":
		_, _ = io.Copy(os.Stdout, os.Stdin)
	case "fail":
		_, _ = io.WriteString(os.Stderr, "no cloud today\n")
		os.Exit(3)
	case "hang":
		time.Sleep(time.Minute)
	}
	os.Exit(0)
	return true
}

func testEvent() HookEvent {
	return HookEvent{
		Service: "api", Event: "activated", Backend: "http://10.0.0.9:8080",
		Reason: "refusal rate 44.4% above 5.0% for 2s",
		Figures: Figures{QueueWaitP95: 12500 * time.Microsecond, RefusalRate: 0.4444444,
			LatencyP95: 25 * time.Millisecond, LatencyUnloaded: 21 * time.Millisecond,
			AdmittedRate: 100, Capacity: 104.5, BackendsUp: 1, StandbyActive: 1, StandbyLeft: 0},
		Time: t0,
	}
}

const wantEventJSON = `{"service":"api","event":"activated","backend":"http://10.0.0.9:8080",` +
	`"reason":"refusal rate 44.4% above 5.0% for 2s",` +
	`"figures":{"queue_wait_p95_ms":12.5,"refusal_rate":0.444,"latency_p95_ms":25,"latency_unloaded_p95_ms":21,` +
	`"agent_cpu":null,"admitted_rps":100,"capacity_rps":104.5,"backends_up":1,"standby_active":1,"standby_left":0},` +
	`"time":"2026-01-01T00:00:00Z"}`

// TestHookCommandGetsEventOnStdin: the command is run without a shell,
// with the JSON event on its standard input; its output is returned for
// the log.
func TestHookCommandGetsEventOnStdin(t *testing.T) {
	t.Setenv(hookHelperEnv, "echo")
	res := CallHooks(context.Background(), StandbyConfig{HookCommand: []string{os.Args[0], "-test.run=^$"}}, testEvent())
	require.Len(t, res, 1)
	require.NoError(t, res[0].Err)
	assert.Equal(t, "command", res[0].Hook)
	assert.JSONEq(t, wantEventJSON, res[0].Output)
}

// TestHookCommandFailsOrHangs: a failing command's error and output are
// returned; a hanging one is killed at the timeout.
func TestHookCommandFailsOrHangs(t *testing.T) {
	t.Setenv(hookHelperEnv, "fail")
	res := CallHooks(context.Background(), StandbyConfig{HookCommand: []string{os.Args[0]}}, testEvent())
	require.Len(t, res, 1)
	require.ErrorContains(t, res[0].Err, "exit status 3")
	assert.Equal(t, "no cloud today\n", res[0].Output)

	t.Setenv(hookHelperEnv, "hang")
	start := time.Now()
	res = CallHooks(context.Background(), StandbyConfig{HookCommand: []string{os.Args[0]}, HookTimeout: 200 * time.Millisecond}, testEvent())
	require.Len(t, res, 1)
	require.ErrorContains(t, res[0].Err, "killed after 200ms")
	assert.Less(t, time.Since(start), 5*time.Second)

	res = CallHooks(context.Background(), StandbyConfig{HookCommand: []string{"/nonexistent/provision"}}, testEvent())
	require.Len(t, res, 1)
	assert.Error(t, res[0].Err)
}

// TestHookURLGetsEventPosted: the URL receives the event as a JSON POST;
// a status other than 2xx is an error, and so is a server that does not
// answer within the timeout.
func TestHookURLGetsEventPosted(t *testing.T) {
	got := make(chan string, 1)
	status := http.StatusAccepted
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		assert.Equal(t, http.MethodPost, r.Method)
		assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
		got <- string(body)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, "queued")
	}))
	defer srv.Close()
	cfg := StandbyConfig{HookURL: srv.URL + "/provision"}
	res := CallHooks(context.Background(), cfg, testEvent())
	require.Len(t, res, 1)
	require.NoError(t, res[0].Err)
	assert.Equal(t, "queued", res[0].Output)
	assert.JSONEq(t, wantEventJSON, <-got)

	status = http.StatusInternalServerError
	res = CallHooks(context.Background(), cfg, testEvent())
	<-got
	require.ErrorContains(t, res[0].Err, "500")

	stop := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-stop }))
	defer hang.Close()
	defer close(stop)
	res = CallHooks(context.Background(), StandbyConfig{HookURL: hang.URL, HookTimeout: 100 * time.Millisecond}, testEvent())
	require.Error(t, res[0].Err)
}

// TestHookNone: no hook configured, nothing is called.
func TestHookNone(t *testing.T) {
	assert.Nil(t, CallHooks(context.Background(), StandbyConfig{}, testEvent()))
}

// TestFiguresJSONWithCPU: agent CPU appears once agent data exists.
func TestFiguresJSONWithCPU(t *testing.T) {
	b, err := json.Marshal(Figures{CPU: 0.8734, HasCPU: true})
	require.NoError(t, err)
	assert.Contains(t, string(b), `"agent_cpu":0.873`)
}
