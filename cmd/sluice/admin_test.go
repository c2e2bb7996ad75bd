package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The admin listener is wired: it serves /metrics and the API next to the
// gateway, its reload goes through the same loop as SIGHUP, and sluice
// ctl drives it with a readable table.
func TestAdminListenerAndCtl(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the gateway")
	}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(origin.Close)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "sluice.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte("services:\n  - name: web\n    backends: [\""+origin.URL+"\"]\n"), 0o644))
	tokenPath := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenPath, []byte("tok\n"), 0o600))

	r := startRunAdmin(t, "--config", cfgPath, "--listen", "127.0.0.1:0", "--access-log=false",
		"--admin", "127.0.0.1:0", "--admin-token-file", tokenPath)
	c := newClient(t)
	code, _ := get(t, c, "http://"+r.addr+"/", nil, "")
	require.Equal(t, http.StatusOK, code)

	resp, err := http.Get("http://" + r.admin + "/metrics")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	ctl := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"ctl", "--admin", r.admin, "--admin-token-file", tokenPath}, args...), &stdout, &stderr, nil)
		return code, stdout.String(), stderr.String()
	}
	code, out, errOut := ctl("status")
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "service web")
	assert.Contains(t, out, "BACKEND")
	assert.Contains(t, out, origin.URL)

	code, out, errOut = ctl("drain", "web", origin.URL)
	require.Equal(t, exitOK, code, errOut)
	assert.Equal(t, "ok\n", out)
	_, out, _ = ctl("status")
	assert.Contains(t, out, "drain")
	code, _, errOut = ctl("enable", "web", "http://127.0.0.1:1")
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, errOut, "unknown backend (404)")
	code, _, errOut = ctl("weight", "web", origin.URL, "x")
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, errOut, "weight: want a number")
	code, _, _ = ctl("frobnicate")
	assert.Equal(t, exitUsage, code)

	code, out, errOut = ctl("reload")
	require.Equal(t, exitOK, code, errOut)
	r.waitLog("reloaded")
	_, out, _ = ctl("events")
	assert.Contains(t, out, "reload")
	assert.Contains(t, out, "drain")

	// Without the token the change is refused.
	var stdout, stderr bytes.Buffer
	assert.Equal(t, exitFailure, run([]string{"ctl", "--admin", r.admin, "enable", "web", origin.URL}, &stdout, &stderr, nil))
	assert.Contains(t, stderr.String(), "(401)")

	r.signals <- syscall.SIGTERM
	assert.Equal(t, exitOK, r.exitCode())
}

// A non-loopback admin address without a token file does not start.
func TestAdminOffLoopbackNeedsToken(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"--backend", "http://127.0.0.1:1", "--admin", "0.0.0.0:9901"}, &stdout, &stderr, nil)
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, stderr.String(), "admin.listen")
	assert.Contains(t, stderr.String(), "--admin-token-file")
}

// startRunAdmin is startRun that also keeps the admin listener's
// address; it listens before the gateway does.
func startRunAdmin(t *testing.T, args ...string) *running {
	t.Helper()
	r := launch(t, args...)
	var entry struct{ Addr string }
	require.NoError(t, json.Unmarshal([]byte(r.waitLog("admin listening")), &entry))
	r.admin = entry.Addr
	require.NoError(t, json.Unmarshal([]byte(r.waitLog("listening")), &entry))
	r.addr = entry.Addr
	return r
}
