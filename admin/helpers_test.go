package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluiceproxy/sluice/bench/origin"
	"github.com/sluiceproxy/sluice/cache"
	"github.com/sluiceproxy/sluice/proxy"
	"github.com/sluiceproxy/sluice/scheduler"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		// Keep-alive connections of the test's own HTTP client.
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
	)
}

// rig is a real gateway on loopback in front of simulated origins, with
// its admin listener.
type rig struct {
	t       *testing.T
	gw      *proxy.Server
	adm     *Server
	addr    string // the gateway's
	admin   string // base URL of the admin listener
	origins []*origin.Origin
	token   string
	reload  func() error
}

type rigOptions struct {
	origins  int
	workers  int
	service  time.Duration
	queue    scheduler.Config
	token    string
	reloadFn func(gw *proxy.Server) func() error
	cache    bool // the service caches (docs/cache.md)
}

func startOrigins(t *testing.T, n, workers int, service time.Duration) []*origin.Origin {
	t.Helper()
	var out []*origin.Origin
	for range n {
		cfg := origin.Default()
		cfg.Workers, cfg.Service = workers, service
		o, err := origin.New(cfg)
		require.NoError(t, err)
		require.NoError(t, o.Start("127.0.0.1:0"))
		t.Cleanup(func() { _ = o.Close() })
		out = append(out, o)
	}
	return out
}

func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	if o.origins == 0 {
		o.origins = 2
	}
	if o.workers == 0 {
		o.workers = 8
	}
	if o.service == 0 {
		o.service = 5 * time.Millisecond
	}
	r := &rig{t: t, origins: startOrigins(t, o.origins, o.workers, o.service), token: o.token}
	var urls []string
	for _, og := range r.origins {
		urls = append(urls, og.URL())
	}
	off := false
	cfg := proxy.Config{
		Listen:        "127.0.0.1:0",
		Services:      []proxy.ServiceConfig{{Name: "web", Backends: urls}},
		Queue:         o.queue,
		Log:           proxy.LogConfig{AccessLog: &off},
		ShutdownGrace: 5 * time.Second,
	}
	if o.cache {
		cfg.Services[0].Cache = &cache.Config{Enabled: true}
	}
	gw, err := proxy.New(cfg, zerolog.Nop())
	require.NoError(t, err)
	r.gw = gw
	acfg := Config{Listen: "127.0.0.1:0"}
	if o.token != "" {
		acfg.TokenFile = filepath.Join(t.TempDir(), "token")
		require.NoError(t, os.WriteFile(acfg.TokenFile, []byte(o.token+"\n"), 0o600))
	}
	if o.reloadFn != nil {
		r.reload = o.reloadFn(gw)
	}
	r.adm, err = New(acfg, gw, r.reload)
	require.NoError(t, err)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r.addr = ln.Addr().String()
	served := make(chan struct{})
	go func() { defer close(served); _ = gw.Serve(ln) }()
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r.admin = "http://" + aln.Addr().String()
	adone := make(chan struct{})
	go func() { defer close(adone); _ = r.adm.Serve(aln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.adm.Shutdown(ctx)
		<-adone
		_ = gw.Shutdown(ctx)
		<-served
		http.DefaultClient.CloseIdleConnections()
	})
	return r
}

func (r *rig) backend(i int) string { return r.origins[i].URL() }

// call makes an admin call and returns the status and the decoded body.
func (r *rig) call(method, path, body, token string) (int, map[string]any) {
	r.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, r.admin+path, rd)
	require.NoError(r.t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(r.t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(r.t, err)
	var out map[string]any
	if len(bytes.TrimSpace(data)) > 0 && data[0] == '{' {
		require.NoError(r.t, json.Unmarshal(data, &out), "%s", data)
	}
	return resp.StatusCode, out
}

// change posts a change with the rig's token.
func (r *rig) change(path string, c Change) (int, map[string]any) {
	r.t.Helper()
	b, err := json.Marshal(c)
	require.NoError(r.t, err)
	return r.call(http.MethodPost, path, string(b), r.token)
}

// get reads a page of the admin listener that must answer 200.
func (r *rig) get(path string) []byte {
	r.t.Helper()
	resp, err := http.Get(r.admin + path)
	require.NoError(r.t, err)
	defer resp.Body.Close()
	require.Equal(r.t, http.StatusOK, resp.StatusCode, path)
	data, err := io.ReadAll(resp.Body)
	require.NoError(r.t, err)
	return data
}

func (r *rig) status() Status {
	r.t.Helper()
	var st Status
	require.NoError(r.t, json.Unmarshal(r.get("/api/v1/status"), &st))
	return st
}

func (r *rig) backendStatus(id string) BackendStatus {
	r.t.Helper()
	for _, b := range r.status().Services[0].Backends {
		if b.ID == id {
			return b
		}
	}
	r.t.Fatalf("backend %s not in the status", id)
	return BackendStatus{}
}

func (r *rig) scrape() metricsText {
	r.t.Helper()
	return metricsText(r.get("/metrics"))
}

// metricsText is a Prometheus text exposition.
type metricsText string

var reSample = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)
var reLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// sum adds the samples of name whose labels include want.
func (m metricsText) sum(name string, want map[string]string) (float64, bool) {
	total, found := 0.0, false
	sc := bufio.NewScanner(strings.NewReader(string(m)))
	for sc.Scan() {
		s := reSample.FindStringSubmatch(sc.Text())
		if s == nil || s[1] != name {
			continue
		}
		labels := map[string]string{}
		for _, l := range reLabel.FindAllStringSubmatch(s[2], -1) {
			labels[l[1]] = l[2]
		}
		ok := true
		for k, v := range want {
			if labels[k] != v {
				ok = false
			}
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(s[3], 64)
		if err == nil {
			total += v
			found = true
		}
	}
	return total, found
}

// eventually polls cond every 20 ms until it holds or d has passed.
func eventually(t *testing.T, d time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf(msg, args...)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
