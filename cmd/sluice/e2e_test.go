package main

// End-to-end tests: the real binary, started as users start it, in front of
// real loopback backends.

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluiceproxy/sluice/internal/testbin"
)

// sluiceBin is the binary built by TestMain; empty in -short mode.
var sluiceBin string

func TestMain(m *testing.M) {
	flag.Parse()
	cleanup := func() {}
	if !testing.Short() {
		var err error
		if sluiceBin, cleanup, err = testbin.Build(".", "sluice"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	goleak.VerifyTestMain(m,
		// fasthttp's date updater lives for the process, and a stopped
		// server's worker-pool cleaner for up to its idle interval.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		// A Cleanup replaces goleak's own os.Exit: without one here a
		// leak would be printed and the run would still pass.
		goleak.Cleanup(func(code int) {
			cleanup()
			os.Exit(code)
		}))
}

func needBinary(t *testing.T) {
	t.Helper()
	if sluiceBin == "" {
		t.Skip("end-to-end test: not in -short mode")
	}
}

// proc is a running sluice process whose log is read line by line.
type proc struct {
	t     *testing.T
	cmd   *exec.Cmd
	lines chan string // stderr, one log line at a time; closed at EOF
	exit  chan error  // the process's end
	addr  string      // where it listens, from its "listening" line

	mu  sync.Mutex
	log []string // every line seen, for failure messages
}

// startSluice starts the binary with args and waits for it to listen.
func startSluice(t *testing.T, args ...string) *proc {
	t.Helper()
	return startSluiceEnv(t, nil, args...)
}

// startSluiceEnv is startSluice with env ("NAME=value") added to the
// environment the process inherits.
func startSluiceEnv(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	needBinary(t)
	cmd := exec.Command(sluiceBin, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &proc{t: t, cmd: cmd, lines: make(chan string, 1024), exit: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.log = append(p.log, sc.Text())
			p.mu.Unlock()
			p.lines <- sc.Text()
		}
		close(p.lines)
		// Wait only after the pipe is drained, as exec requires.
		p.exit <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // an error only if it already exited
		for range p.lines {
		}
		<-p.exit
	})
	line := p.waitLog("listening")
	var entry struct{ Addr string }
	require.NoError(t, json.Unmarshal([]byte(line), &entry), line)
	require.True(t, strings.HasPrefix(entry.Addr, "127.0.0.1:"), entry.Addr)
	p.addr = entry.Addr
	return p
}

// waitLog returns the first log line whose message is msg. The process
// exiting first, or 10 s passing, fails the test.
func (p *proc) waitLog(msg string) string {
	p.t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("sluice exited before logging %q:\n%s", msg, p.logText())
			}
			var entry struct{ Message string }
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Message == msg {
				return line
			}
		case <-timeout.C:
			p.t.Fatalf("no %q in sluice's log after 10s:\n%s", msg, p.logText())
		}
	}
}

func (p *proc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.log, "\n")
}

// wait returns the exit status once the process ended (bounded).
func (p *proc) wait() int {
	p.t.Helper()
	go func() {
		for range p.lines { // keep draining so the process never blocks on its log
		}
	}()
	select {
	case err := <-p.exit:
		p.exit <- err // for the cleanup
		if err == nil {
			return 0
		}
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		p.t.Fatalf("wait: %v", err)
	case <-time.After(20 * time.Second):
		p.t.Fatalf("sluice did not exit:\n%s", p.logText())
	}
	return -1
}

// backend is a loopback origin that answers with its name.
func backend(t *testing.T, name string, hits *atomic.Int64) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func newClient(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, url string, hdr map[string]string, host string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// Both redundant backends get traffic. The backends hold each request until
// both have one in flight, so a request can only complete once the proxy
// spread the load: any selection that always picks one backend hangs
// (bounded by the handler's 5 s timeout) and fails the count.
func TestE2EBackendFlags(t *testing.T) {
	needBinary(t)
	var hits [2]atomic.Int64
	both := make(chan struct{})
	var once sync.Once
	mk := func(i int) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
			if hits[0].Load() > 0 && hits[1].Load() > 0 {
				once.Do(func() { close(both) })
			}
			select {
			case <-both:
			case <-time.After(5 * time.Second):
			}
			fmt.Fprintf(w, "b%d", i)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	b0, b1 := mk(0), mk(1)
	p := startSluice(t, "--listen", "127.0.0.1:0", "--backend", b0.URL, "--backend", b1.URL,
		"--access-log=false")

	c := newClient(t)
	const n = 8
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get("http://" + p.addr + "/x")
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	for i, code := range codes {
		assert.Equal(t, http.StatusOK, code, "request %d", i)
	}
	assert.Positive(t, hits[0].Load(), "backend 0 got traffic")
	assert.Positive(t, hits[1].Load(), "backend 1 got traffic")
	assert.Equal(t, int64(n), hits[0].Load()+hits[1].Load())

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, p.wait())
}

func TestE2EConfigRouting(t *testing.T) {
	needBinary(t)
	var apiHits, webHits, adminHits, canaryHits atomic.Int64
	api := backend(t, "api", &apiHits)
	web := backend(t, "web", &webHits)
	admin := backend(t, "admin", &adminHits)
	canary := backend(t, "canary", &canaryHits)
	cfgPath := writeFile(t, "sluice.yaml", fmt.Sprintf(`
listen: 127.0.0.1:1   # replaced by --listen below
log: {access_log: false}
services:
  - name: web
    backends: [%s]
  - name: api
    backends: [%s]
  - name: admin
    backends: [%s]
  - name: canary
    backends: [%s]
routes:
  - headers: {X-Canary: "yes"}
    service: canary
  - host: api.example.com
    path_prefix: /admin/
    service: admin
  - host: api.example.com
    service: api
  - service: web
`, web.URL, api.URL, admin.URL, canary.URL))

	p := startSluice(t, "--config", cfgPath, "--listen", "127.0.0.1:0")
	c := newClient(t)
	base := "http://" + p.addr
	cases := []struct {
		path, host string
		hdr        map[string]string
		want       string
	}{
		{"/", "", nil, "web /"},
		{"/index.html", "www.example.com", nil, "web /index.html"},
		{"/v1/users", "api.example.com", nil, "api /v1/users"},
		{"/v1/users", "API.example.com:8080", nil, "api /v1/users"}, // case and port ignored
		{"/admin/users", "api.example.com", nil, "admin /admin/users"},
		{"/admin/users", "www.example.com", nil, "web /admin/users"},
		{"/v1/users", "api.example.com", map[string]string{"X-Canary": "yes"}, "canary /v1/users"},
		{"/", "", map[string]string{"X-Canary": "no"}, "web /"},
	}
	for _, tc := range cases {
		code, body := get(t, c, base+tc.path, tc.hdr, tc.host)
		assert.Equal(t, http.StatusOK, code, "%+v", tc)
		assert.Equal(t, tc.want, body, "%+v", tc)
	}
	assert.Equal(t, int64(2), apiHits.Load())
	assert.Equal(t, int64(1), adminHits.Load())
	assert.Equal(t, int64(1), canaryHits.Load())
	assert.Equal(t, int64(4), webHits.Load())

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGINT))
	assert.Equal(t, 0, p.wait())
}

// --backend with a file replaces the first service's backends.
func TestE2EBackendFlagOverridesFile(t *testing.T) {
	needBinary(t)
	var fileHits, flagHits atomic.Int64
	fromFile := backend(t, "file", &fileHits)
	fromFlag := backend(t, "flag", &flagHits)
	cfgPath := writeFile(t, "sluice.yaml", fmt.Sprintf(
		"log: {access_log: false}\nservices:\n  - name: main\n    backends: [%s]\n", fromFile.URL))
	p := startSluice(t, "--config", cfgPath, "--listen", "127.0.0.1:0", "--backend", fromFlag.URL)
	code, body := get(t, newClient(t), "http://"+p.addr+"/a", nil, "")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "flag /a", body)
	assert.Zero(t, fileHits.Load())
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, p.wait())
}

func TestE2ECheckConfig(t *testing.T) {
	needBinary(t)
	good := writeFile(t, "good.yaml", "services:\n  - name: a\n    backends: [http://127.0.0.1:9001]\n")
	badURL := writeFile(t, "bad.yaml",
		"services:\n  - name: a\n    backends: [http://127.0.0.1:9001]\n  - name: b\n    backends:\n      - htp:/x\n")
	unknown := writeFile(t, "unknown.yaml", "services:\n  - name: a\n    backend: [http://127.0.0.1:9001]\n")
	cases := []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"--check-config", good}, 0, []string{"ok"}},
		{[]string{"--check-config", filepath.Join("..", "..", "configs", "example.yaml")}, 0, []string{"ok"}},
		{[]string{"--check-config", badURL}, 1, []string{"bad.yaml: services[1].backends[0]:", "htp:/x", "(line 6)"}},
		{[]string{"--check-config", unknown}, 1, []string{"unknown.yaml: services[0].backend: unknown key (line 3)"}},
		{[]string{"--check-config", filepath.Join(t.TempDir(), "none.yaml")}, 1, []string{"none.yaml"}},
		{[]string{"--check-config"}, 2, []string{"flag needs an argument"}},
		{[]string{"--check-config", good, "stray"}, 2, []string{`unexpected argument "stray"`}},
	}
	for _, tc := range cases {
		out, err := exec.Command(sluiceBin, tc.args...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		assert.Equal(t, tc.code, code, "%v: %s", tc.args, out)
		for _, w := range tc.want {
			assert.Contains(t, string(out), w, "%v", tc.args)
		}
	}
}

// A broken configuration never starts a proxy: the process exits 1 before
// listening.
func TestE2EInvalidConfigDoesNotStart(t *testing.T) {
	needBinary(t)
	bad := writeFile(t, "bad.yaml", "services:\n  - name: a\n    backends: [http://127.0.0.1:9001]\nroutes:\n  - service: nope\n")
	out, err := exec.Command(sluiceBin, "--config", bad, "--listen", "127.0.0.1:0").CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "%s", out)
	assert.Equal(t, 1, ee.ExitCode())
	assert.Contains(t, string(out), `bad.yaml: routes[0].service:`)
	assert.Contains(t, string(out), `"nope"`)
	assert.NotContains(t, string(out), "listening")
}

func TestE2EHelp(t *testing.T) {
	needBinary(t)
	out, err := exec.Command(sluiceBin, "--help").CombinedOutput()
	require.NoError(t, err)
	for _, w := range []string{"Usage:", "--backend URL", "--queue-timeout", "Logging:"} {
		assert.Contains(t, string(out), w)
	}
}

// SIGTERM while a slow request is in flight: the request completes, then
// the process exits 0.
func TestE2ESigtermDrainsInFlight(t *testing.T) {
	needBinary(t)
	arrived := make(chan struct{})
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		io.WriteString(w, "finished")
	}))
	t.Cleanup(slow.Close)

	p := startSluice(t, "--listen", "127.0.0.1:0", "--backend", slow.URL, "--shutdown-grace", "15s",
		"--access-log=false")
	type result struct {
		code int
		body string
		err  error
	}
	done := make(chan result, 1)
	c := newClient(t)
	go func() {
		resp, err := c.Get("http://" + p.addr + "/slow")
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- result{resp.StatusCode, string(b), err}
	}()
	<-arrived

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	p.waitLog("shutting down")
	close(release)

	r := <-done
	require.NoError(t, r.err)
	assert.Equal(t, http.StatusOK, r.code)
	assert.Equal(t, "finished", r.body)
	assert.Equal(t, 0, p.wait())
}

// envInt is the integer in the environment variable name, else def: the
// size of the e2e runs that measure (SLUICE_IDLE_CONNS, SLUICE_CACHE_KEYS,
// ...), small by default so that every run can afford them.
func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	require.NoError(t, err, name)
	return n
}
