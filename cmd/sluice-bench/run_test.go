package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sluiceproxy/sluice/bench/loadgen"
)

func startCounting(t *testing.T) (string, func() map[string]int) {
	t.Helper()
	var mu sync.Mutex
	seen := map[string]int{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("X-Priority")]++
		mu.Unlock()
		if r.URL.Path == "/shed" {
			w.Header().Set(loadgen.ShedHeader, "queue-full")
			w.WriteHeader(503)
		}
	})}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Close(); <-done })
	return "http://" + ln.Addr().String(), func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for k, v := range seen {
			out[k] = v
		}
		return out
	}
}

func TestRunCommandUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--help"}, 0, "--rate 200:10s,600:20s,200:10s"},
		{nil, 2, "a target is required: sluice-bench run URL, or --target URL"},
		{[]string{"--target", "http://127.0.0.1:1", "--rate", "x"}, 2, "--rate: rate schedule"},
		{[]string{"--target", "http://127.0.0.1:1", "--class", "colour=red"}, 2, `unknown key "colour"`},
		{[]string{"--target", "http://127.0.0.1:1", "--class", "path=/a", "--path", "/b"}, 2, "with --class put them in the class spec"},
		{[]string{"--target", "http://127.0.0.1:1", "--header", "nocolon"}, 2, "not K:V"},
		{[]string{"--target", "https://127.0.0.1:1"}, 2, "scheme must be http"},
		{[]string{"--target", "http://127.0.0.1:1", "--rate", "10:1s", "--duration", "2s"}, 2, "conflicts"},
		{[]string{"--target", "http://127.0.0.1:1", "extra"}, 2, `argument "extra" is not a URL`},
		{[]string{"--target", "http://127.0.0.1:1", "--targets", "/nonexistent/file"}, 1, "--targets"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := runCommand(tt.args, &out, &errb)
		all := out.String() + errb.String()
		if code != tt.code || !strings.Contains(all, tt.want) {
			t.Errorf("%q: exit %d, want %d; output lacks %q:\n%s", tt.args, code, tt.code, tt.want, all)
		}
	}
}

func TestRunCommandJSONAndPlot(t *testing.T) {
	url, seen := startCounting(t)
	dir := t.TempDir()
	plot := filepath.Join(dir, "out.svg")
	var out, errb bytes.Buffer
	code := runCommand([]string{"--target", url, "--rate", "100:200ms", "--quiet", "--json", "--plot", plot,
		"--class", "name=crit,share=1,path=/c,priority=critical", "--class", "name=shed,share=1,path=/shed"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if errb.Len() != 0 {
		t.Errorf("--quiet printed %q", errb.String())
	}
	var rep loadgen.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	got := seen()
	if rep.Sent != 20 || int(rep.Shed["queue-full"]) != got["GET /shed "] || got["GET /c critical"]+got["GET /shed "] != 20 {
		t.Errorf("report %+v, server saw %v", rep, got)
	}
	svg, err := os.ReadFile(plot)
	if err != nil || !bytes.HasPrefix(svg, []byte("<?xml")) || !bytes.Contains(svg, []byte("</svg>")) {
		t.Errorf("plot: %v %.100s", err, svg)
	}
}

func TestRunCommandDefaultClassAndTargets(t *testing.T) {
	url, seen := startCounting(t)
	tf := filepath.Join(t.TempDir(), "targets.txt")
	if err := os.WriteFile(tf, []byte("# paths\n/a\n/b?x=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := runCommand([]string{"--target", url, "--rate", "50", "--duration", "200ms", "--method", "post",
		"--header", "X-Priority: low", "--body", "hi", "--targets", tf}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if want := map[string]int{"POST /a low": 5, "POST /b?x=1 low": 5}; !equalMaps(seen(), want) {
		t.Errorf("server saw %v, want %v", seen(), want)
	}
	for _, want := range []string{"throughput", "p99.99", "200: 10"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

// A target that refuses connections is a completed run with errors, not a
// failure of the command.
func TestRunCommandRefusedIsCompletedRun(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var out, errb bytes.Buffer
	code := runCommand([]string{"--target", "http://" + addr, "--rate", "20:100ms", "--quiet"}, &out, &errb)
	if code != 0 || !strings.Contains(out.String(), "refused: 2") {
		t.Errorf("exit %d:\n%s%s", code, out.String(), errb.String())
	}
}

func equalMaps(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
