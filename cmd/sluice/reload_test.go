package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRunReloadsOnSIGHUP: a SIGHUP re-reads the file under the same flags
// and applies it; a broken file is refused with the field and line, and
// the running configuration stays in force.
func TestRunReloadsOnSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the gateway")
	}
	origin := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, name)
		}))
		t.Cleanup(s.Close)
		return s
	}
	a, b := origin("a"), origin("b")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	write := func(body string) { require.NoError(t, os.WriteFile(path, []byte(body), 0o644)) }
	service := func(url string) string {
		return fmt.Sprintf("services:\n  - name: web\n    backends: [%q]\n", url)
	}
	write(service(a.URL))
	// The flag keeps overriding the file across reloads.
	r := startRun(t, "--config", path, "--listen", "127.0.0.1:0", "--access-log=false")
	c := newClient(t)
	body := func() string {
		t.Helper()
		code, body := get(t, c, "http://"+r.addr+"/", nil, "")
		require.Equal(t, http.StatusOK, code)
		return body
	}
	assert.Equal(t, "a", body())

	write(service(b.URL))
	r.signals <- syscall.SIGHUP
	r.waitLog("reloaded")
	assert.Equal(t, "b", body())

	write(service(b.URL) + "    bakends: []\n")
	r.signals <- syscall.SIGHUP
	line := r.waitLog("reload refused: the running configuration stays in force")
	var entry struct{ Error string }
	require.NoError(t, json.Unmarshal([]byte(line), &entry))
	assert.Contains(t, entry.Error, "bakends")
	assert.Contains(t, entry.Error, "line 4")
	assert.Equal(t, "b", body(), "the running configuration stays")

	r.signals <- syscall.SIGTERM
	assert.Equal(t, exitOK, r.exitCode())
}
