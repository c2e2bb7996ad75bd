package main

// run in-process: the same wiring as the binary, with the signal channel in
// the test's hands.

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type running struct {
	t       *testing.T
	signals chan os.Signal
	code    chan int
	lines   chan string
	addr    string
	admin   string // the admin listener's address, when one was asked for
}

func startRun(t *testing.T, args ...string) *running {
	t.Helper()
	r := launch(t, args...)
	line := r.waitLog("listening")
	var entry struct{ Addr string }
	require.NoError(t, json.Unmarshal([]byte(line), &entry))
	r.addr = entry.Addr
	return r
}

// launch starts run in-process without waiting for anything.
func launch(t *testing.T, args ...string) *running {
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
		case <-time.After(20 * time.Second):
			t.Error("run did not return")
		}
	})
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

func (r *running) exitCode() int {
	r.t.Helper()
	select {
	case c := <-r.code:
		r.code <- c // for the cleanup
		return c
	case <-time.After(20 * time.Second):
		r.t.Fatal("run did not return")
	}
	return -1
}

func TestRunServesUntilSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the gateway")
	}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	defer origin.Close()
	r := startRun(t, "--listen", "127.0.0.1:0", "--backend", origin.URL, "--access-log=false")

	c := newClient(t)
	code, body := get(t, c, "http://"+r.addr+"/", nil, "")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "hello", body)
	c.Transport.(*http.Transport).CloseIdleConnections()

	r.signals <- syscall.SIGINT
	assert.Equal(t, exitOK, r.exitCode())
}

// A second signal ends the wait for in-flight requests: run returns at
// once, with status 1 because a request was cut off.
func TestRunSecondSignalCutsGraceShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the gateway")
	}
	arrived := make(chan struct{})
	release := make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
	}))
	defer origin.Close()
	r := startRun(t, "--listen", "127.0.0.1:0", "--backend", origin.URL, "--shutdown-grace", "1m",
		"--access-log=false")

	c := newClient(t)
	errc := make(chan error, 1)
	go func() {
		resp, err := c.Get("http://" + r.addr + "/hang")
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		errc <- err
	}()
	<-arrived
	r.signals <- syscall.SIGTERM
	r.waitLog("shutting down")
	r.signals <- syscall.SIGTERM
	assert.Equal(t, exitFailure, r.exitCode())
	close(release)
	<-errc // whatever the client saw; it must not hang
}

func TestRunRefusesInvalidConfiguration(t *testing.T) {
	for _, args := range [][]string{
		{"--backend", "http://127.0.0.1:1", "--log-format", "xml"},
		{"--backend", "http://127.0.0.1:1", "--tenant-from", "cookie"},
		{"--backend", "http://127.0.0.1:1", "--warm-conns", "10", "--max-conns", "5"},
		{"--backend", "http://127.0.0.1:1", "--limit-min", "10", "--limit-max", "5"},
	} {
		var stderr safeBuffer
		code := run(args, io.Discard, &stderr, nil)
		assert.Equal(t, exitFailure, code, "%v", args)
		assert.Contains(t, stderr.String(), "invalid configuration: ", "%v", args)
		assert.NotContains(t, stderr.String(), "listening")
	}
}

// safeBuffer collects what run writes before it returns.
type safeBuffer struct{ b []byte }

func (s *safeBuffer) Write(p []byte) (int, error) { s.b = append(s.b, p...); return len(p), nil }
func (s *safeBuffer) String() string              { return string(s.b) }
