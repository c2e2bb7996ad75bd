package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

func okHandler(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }

func mustSchedule(t *testing.T, s string) Schedule {
	t.Helper()
	sch, err := ParseSchedule(s)
	require.NoError(t, err)
	return sch
}

func run(t *testing.T, cfg Config) *Report {
	t.Helper()
	rep, err := Run(context.Background(), cfg, nil)
	require.NoError(t, err)
	checkInvariants(t, rep)
	return rep
}

// checkInvariants holds for every report: each sent request ends as exactly
// one response or one error, and classes add up to the total.
func checkInvariants(t *testing.T, rep *Report) {
	t.Helper()
	require.Equal(t, rep.Sent, rep.Completed+sum(rep.Errors))
	require.Equal(t, rep.Completed, sum(rep.Status))
	var sent, fromSeries int64
	for _, c := range rep.Classes {
		sent += c.Sent
	}
	for _, s := range rep.Series {
		fromSeries += s.Sent
	}
	require.Equal(t, rep.Sent, sent)
	require.Equal(t, rep.Sent, fromSeries)
}

func TestRateHeld(t *testing.T) {
	var hits atomic.Int64
	url := startFast(t, func(ctx *fasthttp.RequestCtx) { hits.Add(1); okHandler(ctx) })
	for _, poisson := range []bool{false, true} {
		hits.Store(0)
		rep := run(t, Config{Target: url, Rate: mustSchedule(t, "400:500ms"), Poisson: poisson})
		if !poisson {
			// Constant spacing issues exactly rate × duration requests.
			require.Equal(t, int64(200), rep.Sent)
		} else {
			require.InDelta(t, 200, rep.Sent, 60)
		}
		require.Equal(t, rep.Sent, hits.Load(), "the server saw every request")
		require.Equal(t, rep.Sent, rep.Status[200])
		require.Equal(t, 1.0, rep.SuccessRatio)
		require.Equal(t, "open", rep.Mode)
		require.InDelta(t, 400, rep.Requested, 1e-9)
		require.Equal(t, 500*time.Millisecond, rep.Duration)
	}
}

func TestStepScheduleSeries(t *testing.T) {
	url := startFast(t, okHandler)
	rep := run(t, Config{Target: url, Rate: mustSchedule(t, "100:1s,300:1s")})
	require.Equal(t, int64(400), rep.Sent)
	require.GreaterOrEqual(t, len(rep.Series), 2)
	// Bounds are generous: on a loaded machine requests due late in a
	// second may go out in the next one.
	require.InDelta(t, 100, rep.Series[0].Sent, 50)
	require.Greater(t, rep.Series[1].Sent, int64(200))
}

// A server that stalls once for 200 ms, behind a single connection: the
// requests scheduled during the stall wait in the generator, and their
// latency counts from when they were due, not from when they went out.
func TestLatencyFromScheduledTime(t *testing.T) {
	var n atomic.Int64
	url := startFast(t, func(ctx *fasthttp.RequestCtx) {
		if n.Add(1) == 5 {
			time.Sleep(200 * time.Millisecond)
		}
		okHandler(ctx)
	})
	rep := run(t, Config{Target: url, Rate: mustSchedule(t, "100:1s"), MaxConns: 1})
	require.Equal(t, int64(100), rep.Sent)
	require.Equal(t, int64(100), rep.Status[200])
	require.Equal(t, 1, rep.Conns)
	require.GreaterOrEqual(t, rep.Latency.Max, 200*time.Millisecond)
	// About 20 requests were due during the stall, waiting 200ms down to
	// 0ms; at least 8 of them waited 100ms or more, so the 90th percentile
	// is far above the server's service time. A tool that timed from the
	// actual send would show one slow request.
	require.GreaterOrEqual(t, rep.Latency.P90, 80*time.Millisecond)
	require.GreaterOrEqual(t, rep.SendLag.P90, 80*time.Millisecond)
}

func TestMixSplitAndContent(t *testing.T) {
	type seen struct {
		method, path, prio, tenant, body, host string
	}
	var mu sync.Mutex
	var reqs []seen
	url := startHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		reqs = append(reqs, seen{r.Method, r.URL.RequestURI(), r.Header.Get("X-Priority"), r.Header.Get("X-Tenant"), string(b), r.Host})
		mu.Unlock()
	}))
	mix := []Class{
		{Name: "crit", Share: 0.5, Path: "/c", Headers: map[string]string{"X-Priority": "critical", "X-Tenant": "a"}},
		{Name: "bulk", Share: 0.3, Method: "POST", Path: "/b?x=1", Headers: map[string]string{"X-Tenant": "b"}, Body: []byte("payload")},
		{Name: "head", Share: 0.2, Method: "HEAD", Path: "/h"},
	}
	cfg := Config{Target: url, Rate: mustSchedule(t, "1000:500ms"), Mix: mix, Seed: 42}
	rep := run(t, cfg)
	require.Equal(t, int64(500), rep.Sent)
	require.Equal(t, int64(500), rep.Status[200])

	byClass := map[string]int64{}
	for _, c := range rep.Classes {
		byClass[c.Name] = c.Sent
	}
	// Shares hold within 4 standard deviations of a binomial over 500.
	require.InDelta(t, 250, byClass["crit"], 45)
	require.InDelta(t, 150, byClass["bulk"], 42)
	require.InDelta(t, 100, byClass["head"], 36)

	got := map[string]int64{}
	for _, s := range reqs {
		switch s.path {
		case "/c":
			require.Equal(t, seen{"GET", "/c", "critical", "a", "", s.host}, s)
		case "/b?x=1":
			require.Equal(t, seen{"POST", "/b?x=1", "", "b", "payload", s.host}, s)
		case "/h":
			require.Equal(t, "HEAD", s.method)
		}
		require.Equal(t, strings.TrimPrefix(url, "http://"), s.host)
		got[s.path]++
	}
	require.Equal(t, map[string]int64{"/c": byClass["crit"], "/b?x=1": byClass["bulk"], "/h": byClass["head"]}, got)

	// The same seed splits the same way.
	reqs = nil
	rep2 := run(t, cfg)
	for i := range rep.Classes {
		require.Equal(t, rep.Classes[i].Sent, rep2.Classes[i].Sent)
	}
}

func TestTargetsCycled(t *testing.T) {
	var mu sync.Mutex
	paths := map[string]int{}
	url := startFast(t, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		paths[string(ctx.RequestURI())]++
		mu.Unlock()
	})
	run(t, Config{Target: url, Rate: mustSchedule(t, "300:100ms"), Targets: []string{"/a", "/b", "/c?d=1"}})
	require.Equal(t, map[string]int{"/a": 10, "/b": 10, "/c?d=1": 10}, paths)
}

func TestShedCounted(t *testing.T) {
	var n atomic.Int64
	url := startFast(t, func(ctx *fasthttp.RequestCtx) {
		switch n.Add(1) % 4 {
		case 0:
			ctx.Response.Header.Set(ShedHeader, "queue-full")
			ctx.SetStatusCode(503)
		case 1:
			ctx.Response.Header.Set(ShedHeader, "tenant-limit")
			ctx.SetStatusCode(429)
		case 2:
			ctx.SetStatusCode(500)
		}
	})
	rep := run(t, Config{Target: url, Rate: mustSchedule(t, "400:200ms")})
	require.Equal(t, int64(80), rep.Sent)
	require.Equal(t, map[string]int64{"queue-full": 20, "tenant-limit": 20}, rep.Shed)
	require.Equal(t, map[int]int64{200: 20, 429: 20, 500: 20, 503: 20}, rep.Status)
	require.InDelta(t, 0.25, rep.SuccessRatio, 1e-9)
	var shed, other, ok int64
	for _, s := range rep.Series {
		shed, other, ok = shed+s.Shed, other+s.Other, ok+s.OK
	}
	require.Equal(t, [3]int64{40, 20, 20}, [3]int64{shed, other, ok})
}

// Report.After counts requests by the time they were scheduled, so a
// request sent before the mark that fails after it is not in it, and one
// sent after it that times out is.
func TestAfterWindowBySendTime(t *testing.T) {
	var n atomic.Int64
	release := make(chan struct{})
	url := startFast(t, func(ctx *fasthttp.RequestCtx) {
		switch i := n.Add(1); {
		case i == 1:
			// The first request, sent at t=0, fails long after the
			// mark: it belongs to the whole run only.
			select {
			case <-release:
			case <-time.After(300 * time.Millisecond):
			}
			ctx.SetStatusCode(500)
		case i%2 == 0 && i > 10:
			ctx.SetStatusCode(503)
		}
	})
	defer close(release)
	// 20 requests at 0, 10ms, ... 190ms; the mark at 100ms takes the last 10.
	rep := run(t, Config{Target: url, Rate: mustSchedule(t, "100:200ms"), After: 100 * time.Millisecond, MaxConns: 4})
	require.Equal(t, int64(20), rep.Sent)
	require.Equal(t, int64(1), rep.Status[500])
	require.NotNil(t, rep.After)
	a := rep.After
	require.Equal(t, "after", a.Name)
	require.Equal(t, int64(10), a.Sent)
	require.Zero(t, a.Status[500], "the request sent at 0 failed after the mark but was sent before it")
	require.Equal(t, a.Status[200]+a.Status[503], int64(10))
	require.InDelta(t, float64(a.Status[200])/10, a.SuccessRatio, 1e-9)
	// Without After there is no window.
	rep = run(t, Config{Target: url, Rate: mustSchedule(t, "100:50ms")})
	require.Nil(t, rep.After)
}

func TestTimeoutsCounted(t *testing.T) {
	release := make(chan struct{})
	url := startHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer close(release)
	rep := run(t, Config{Target: url, Rate: mustSchedule(t, "100:100ms"), Timeout: 50 * time.Millisecond})
	require.Equal(t, int64(10), rep.Sent)
	require.Equal(t, map[string]int64{"timeout": 10}, rep.Errors)
	require.Zero(t, rep.Completed)
	// With every connection stuck, new ones were opened for the arrivals
	// (about five are stuck at any time) rather than queueing them.
	require.GreaterOrEqual(t, rep.Conns, 4)
	require.Zero(t, rep.Goodput)
}

func TestRefusedCounted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	rep := run(t, Config{Target: "http://" + addr, Rate: mustSchedule(t, "100:100ms")})
	require.Equal(t, map[string]int64{"refused": 10}, rep.Errors)
}

func TestGoodputSLO(t *testing.T) {
	var n atomic.Int64
	url := startFast(t, func(ctx *fasthttp.RequestCtx) {
		if n.Add(1)%2 == 0 {
			time.Sleep(30 * time.Millisecond)
		}
	})
	rep := run(t, Config{Target: url, Rate: mustSchedule(t, "100:200ms"), SLO: 20 * time.Millisecond})
	require.Equal(t, int64(20), rep.Status[200])
	// Half the responses are slower than the SLO; goodput counts at most
	// the fast half (requests waiting behind nothing: connections are free).
	require.LessOrEqual(t, rep.Goodput, 50.0)
	require.Equal(t, 100.0, rep.Throughput)
}

func TestClosedLoop(t *testing.T) {
	var hits atomic.Int64
	url := startFast(t, func(ctx *fasthttp.RequestCtx) { hits.Add(1) })
	rep := run(t, Config{Target: url, Conns: 3, Duration: 200 * time.Millisecond})
	require.Equal(t, "closed", rep.Mode)
	require.Equal(t, 3, rep.Conns)
	require.Positive(t, rep.Sent)
	require.Equal(t, rep.Sent, hits.Load())
	require.Equal(t, rep.Sent, rep.Status[200])
	require.Equal(t, Percentiles{}, rep.SendLag)
}

func TestCancel(t *testing.T) {
	release := make(chan struct{})
	url := startHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	var p lineWriter
	p.onLine = func() { cancel() } // cancel at the first progress line
	rep, err := Run(ctx, Config{Target: url, Rate: mustSchedule(t, "50:1h")}, &p)
	require.NoError(t, err)
	checkInvariants(t, rep)
	require.Less(t, rep.Duration, time.Hour)
	require.Positive(t, rep.Sent)
	require.Equal(t, rep.Sent, rep.Errors["canceled"])
}

type lineWriter struct {
	once   sync.Once
	onLine func()
	buf    bytes.Buffer
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	w.once.Do(w.onLine)
	return len(p), nil
}

func TestReportOutputs(t *testing.T) {
	var n atomic.Int64
	url := startFast(t, func(ctx *fasthttp.RequestCtx) {
		if n.Add(1)%5 == 0 {
			ctx.Response.Header.Set(ShedHeader, "queue-timeout")
			ctx.SetStatusCode(503)
		}
	})
	mix := []Class{{Name: "a", Share: 1}, {Name: "b", Share: 1, Path: "/b"}}
	rep := run(t, Config{Target: url, Rate: mustSchedule(t, "200:300ms,400:300ms"), Mix: mix})

	t.Run("json round trip", func(t *testing.T) {
		var buf bytes.Buffer
		require.NoError(t, rep.WriteJSON(&buf))
		var back Report
		require.NoError(t, json.Unmarshal(buf.Bytes(), &back))
		require.Equal(t, *rep, back)
		for _, f := range []string{`"p99_ns"`, `"ok_p50_ns"`, `"ok_p99_ns"`} {
			require.Contains(t, buf.String(), f)
		}
		var withOK int
		for _, s := range back.Series {
			if s.OK > 0 {
				withOK++
				require.Positive(t, s.OKP50, "second %d", s.T)
				require.LessOrEqual(t, s.OKP50, s.OKP99, "second %d", s.T)
			}
		}
		require.Positive(t, withOK)
	})
	t.Run("table", func(t *testing.T) {
		var buf bytes.Buffer
		rep.WriteTable(&buf)
		out := buf.String()
		for _, want := range []string{"throughput", "goodput", "p99.99", "queue-timeout: ", "200: ", "503: ", "\n        a ", "b 2xx"} {
			require.Contains(t, out, want)
		}
	})
	t.Run("svg", func(t *testing.T) {
		var buf bytes.Buffer
		require.NoError(t, rep.PlotSVG(&buf))
		series := seriesPoints(t, buf.Bytes())
		for _, want := range []string{"2xx p50", "2xx p99", "all p99", "sent", "2xx", "shed"} {
			require.Contains(t, series, want, "series drawn")
		}
		require.Contains(t, buf.String(), "2xx p99 "+fmtDur(rep.SuccessLatency.P99), "subtitle quotes the p99 of successes")
	})
}

func TestProgressLine(t *testing.T) {
	url := startFast(t, okHandler)
	var p lineWriter
	p.onLine = func() {}
	_, err := Run(context.Background(), Config{Target: url, Rate: mustSchedule(t, "50:300ms")}, &p)
	require.NoError(t, err)
	require.Contains(t, p.buf.String(), "sent")
	require.Contains(t, p.buf.String(), "p99")
}

// A kept-alive connection the server closed while idle is retried once,
// transparently; a connection dropped in answer to a request is that
// request's error and is not retried.
func TestStaleConnectionRetriedDroppedNot(t *testing.T) {
	var hits atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &http.Server{IdleTimeout: 200 * time.Millisecond, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/drop" {
			c, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				c.Close()
			}
		}
	})}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	defer func() { _ = s.Close(); <-done }()
	url := "http://" + ln.Addr().String()

	// One connection, idle for 1.2s between two bursts: the server has
	// closed it by then.
	rep := run(t, Config{Target: url, Rate: mustSchedule(t, "20:100ms,0:1200ms,20:100ms"), MaxConns: 1})
	require.Equal(t, int64(4), rep.Sent)
	require.Equal(t, map[int]int64{200: 4}, rep.Status)
	require.Equal(t, int64(4), hits.Load())

	hits.Store(0)
	rep = run(t, Config{Target: url, Rate: mustSchedule(t, "20:200ms"), Mix: []Class{{Name: "d", Share: 1, Path: "/drop"}}})
	require.Equal(t, int64(4), rep.Sent)
	require.Equal(t, map[string]int64{"closed": 4}, rep.Errors)
	require.Equal(t, int64(4), hits.Load(), "no request resent")
}
