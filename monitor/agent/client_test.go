package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func validLoad() Load {
	inflight := 3.0
	return Load{
		Version: Version, Time: t0, AgeSeconds: 0.25, IntervalSeconds: 1, WindowSeconds: 1,
		State: StateUp, Weight: 100, CPU: 0.5, HostCPU: 0.4, CPUs: 4,
		Targets: []Target{{Kind: "cgroup", Name: "origin.slice", Cores: 0.25, LimitCores: 0.5, CPU: 0.5}},
		Load1:   1, Load5: 1, Load15: 1,
		MemoryUsedBytes: 1 << 30, MemoryTotalBytes: 8 << 30, MemoryUsedFraction: 0.125,
		Inflight: &inflight,
	}
}

func encode(t *testing.T, l Load) string {
	t.Helper()
	b, err := json.Marshal(l)
	require.NoError(t, err)
	return string(b)
}

func TestDecodeLoad(t *testing.T) {
	want := validLoad()
	got, err := DecodeLoad([]byte(encode(t, want) + "\n"))
	require.NoError(t, err)
	assert.Equal(t, want, got)

	doc := encode(t, want)
	mutate := func(f func(*Load)) string { l := validLoad(); f(&l); return encode(t, l) }
	for _, tc := range []struct{ name, doc, msg string }{
		{"unknown field", strings.Replace(doc, `"cpu":`, `"cpu_percent":50,"cpu":`, 1), "unknown field"},
		{"second document", doc + doc, "data after"},
		{"trailing garbage", doc + "}", "data after"},
		{"not an object", `[1,2]`, "cannot unmarshal"},
		{"null", `null`, "version 0"},
		{"empty object", `{}`, "version 0"},
		{"other version", mutate(func(l *Load) { l.Version = 2 }), "version 2"},
		{"no time", mutate(func(l *Load) { l.Time = time.Time{} }), "time missing"},
		{"no interval", mutate(func(l *Load) { l.IntervalSeconds = 0 }), "interval_seconds"},
		{"cpu as percent", mutate(func(l *Load) { l.CPU = 50 }), "cpu 50"},
		{"host cpu negative", mutate(func(l *Load) { l.HostCPU = -0.1 }), "host_cpu"},
		{"memory fraction", mutate(func(l *Load) { l.MemoryUsedFraction = 1.5 }), "memory_used_fraction"},
		{"memory used above total", mutate(func(l *Load) { l.MemoryUsedBytes = 9 << 30 }), "memory_used_bytes"},
		{"unknown state", mutate(func(l *Load) { l.State = "maint" }), `state "maint"`},
		{"down without reason", mutate(func(l *Load) { l.State = StateDown }), "without error"},
		{"weight", mutate(func(l *Load) { l.Weight = 101 }), "weight 101"},
		{"no cpus", mutate(func(l *Load) { l.CPUs = 0 }), "cpus 0"},
		{"target kind", mutate(func(l *Load) { l.Targets[0].Kind = "container" }), "kind"},
		{"target cpu", mutate(func(l *Load) { l.Targets[0].CPU = 2 }), "targets[0]"},
		{"inflight", mutate(func(l *Load) { n := -1.0; l.Inflight = &n }), "inflight -1"},
		{"negative age", mutate(func(l *Load) { l.AgeSeconds = -1 }), "age_seconds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeLoad([]byte(tc.doc))
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrInvalidLoad), "%v", err)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

func TestLoadAge(t *testing.T) {
	l := validLoad()
	// On the client's clock: received 2 s ago, 0.25 s old when served.
	// The agent's own Time (far in the past here: skew) plays no part.
	l.Received = time.Now().Add(-2 * time.Second)
	assert.InDelta(t, 2.25, l.Age(time.Now()).Seconds(), 0.05)
	l.Received = time.Time{}
	assert.Equal(t, 10*time.Second, l.Age(t0.Add(10*time.Second)), "not fetched: the agent's clock")
}

func TestClientFetch(t *testing.T) {
	body := encode(t, validLoad())
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/load":
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			io.WriteString(w, body)
		case "/text":
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, body)
		case "/error":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, body)
		case "/huge":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"version":1,"error":"`+strings.Repeat("x", maxLoadBytes)+`"}`)
		case "/slow":
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		}
	}))
	defer srv.Close()
	defer close(hang)
	defer defaultHTTP.CloseIdleConnections()

	c := &Client{Timeout: 200 * time.Millisecond}
	before := time.Now()
	l, err := c.Fetch(context.Background(), srv.URL+"/load")
	require.NoError(t, err)
	assert.Equal(t, 0.5, l.CPU)
	assert.False(t, l.Received.Before(before))

	for path, msg := range map[string]string{
		"/text":  "content type",
		"/error": "status 503",
		"/huge":  "larger than",
		"/slow":  "deadline exceeded",
	} {
		start := time.Now()
		_, err := c.Fetch(context.Background(), srv.URL+path)
		require.Error(t, err, path)
		assert.Contains(t, err.Error(), msg, path)
		assert.Contains(t, err.Error(), srv.URL+path, "the error names the agent")
		assert.Less(t, time.Since(start), 2*time.Second, path)
	}
	_, err = c.Fetch(context.Background(), "http://127.0.0.1:1/load")
	assert.Error(t, err, "nothing listening")
}

// DecodeLoad reads what an agent on another host sends: it must never
// panic, and what it accepts must be valid and survive a round trip.
func FuzzDecodeLoad(f *testing.F) {
	b, _ := json.Marshal(validLoad())
	f.Add(b)
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":1,"time":"2026-03-01T12:00:00Z","interval_seconds":1,"state":"down","error":"x","cpus":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := DecodeLoad(b)
		if err != nil {
			return
		}
		if err := l.Validate(); err != nil {
			t.Fatalf("accepted an invalid document %q: %v", b, err)
		}
		again, err := json.Marshal(l)
		if err != nil {
			t.Fatalf("cannot re-encode %q: %v", b, err)
		}
		if _, err := DecodeLoad(again); err != nil {
			t.Fatalf("round trip of %q: %v", b, err)
		}
	})
}
