package origin

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// fasthttp's worker-pool cleaner sleeps up to MaxIdleWorkerDuration
	// before it notices the server stopped; it is not ours to wait for.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"))
}

// start runs an origin on a free loopback port; the hooks (may be nil) are
// installed before it serves.
func start(t *testing.T, cfg Config, onAdd func(int), onFinish func(int64)) (*Origin, *http.Client) {
	t.Helper()
	o, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	o.onAdd, o.onFinish = onAdd, onFinish
	if err := o.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		if err := o.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return o, c
}

func get(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestOneRequest(t *testing.T) {
	cfg := Default()
	o, c := start(t, cfg, nil, nil)
	begin := time.Now()
	code, body, err := get(c, o.URL()+"/anything")
	if err != nil || code != 200 || len(body) != cfg.BodySize {
		t.Fatalf("got %d %q %v, want 200 with %d bytes", code, body, err, cfg.BodySize)
	}
	// A request cannot finish before its work is done; the upper bound is
	// the PS core's business (ps_test.go) and the benchmarks'.
	if el := time.Since(begin); el < cfg.Service {
		t.Fatalf("request took %v, less than the service time %v", el, cfg.Service)
	}
	st := o.Stats()
	if st.Received != 1 || st.Completed != 1 || st.OK != 1 || st.Active != 0 || st.CapacityRPS != 200 {
		t.Fatalf("stats %+v", st)
	}
}

func TestOverloadSharesWorkers(t *testing.T) {
	cfg := Default()
	cfg.Workers, cfg.Service = 2, 30*time.Millisecond
	all := make(chan struct{})
	var once sync.Once
	o, c := start(t, cfg, func(active int) {
		if active == 4 {
			once.Do(func() { close(all) })
		}
	}, nil)
	var wg sync.WaitGroup
	begin := time.Now()
	lat := make([]time.Duration, 4)
	for i := range 4 {
		wg.Go(func() {
			if code, _, err := get(c, o.URL()); err != nil || code != 200 {
				t.Errorf("request %d: %d %v", i, code, err)
			}
			lat[i] = time.Since(begin)
		})
	}
	wg.Wait()
	<-all // all four were in service at once
	// Four requests' work on two workers cannot be done in less than 2×S.
	slowest := max(lat[0], lat[1], lat[2], lat[3])
	if slowest < 2*cfg.Service {
		t.Fatalf("slowest of 2N concurrent requests took %v, want >= %v", slowest, 2*cfg.Service)
	}
	if st := o.Stats(); st.MaxActive != 4 || st.Completed != 4 {
		t.Fatalf("stats %+v", st)
	}
}

func TestFailureInjection(t *testing.T) {
	tests := []struct {
		name  string
		set   func(*Config)
		check func(t *testing.T, code int, body string, err error, st Stats)
	}{
		{"error", func(c *Config) { c.ErrorRate = 1 }, func(t *testing.T, code int, _ string, err error, st Stats) {
			if err != nil || code != 500 || st.Errors != 1 || st.Completed != 1 {
				t.Fatalf("got %d %v, stats %+v; want 500 after the work", code, err, st)
			}
		}},
		{"fast error", func(c *Config) { c.ErrorRate, c.ErrorFast, c.Service = 1, true, time.Hour }, func(t *testing.T, code int, _ string, err error, st Stats) {
			// An hour of work per request: only a 500 that skips it
			// arrives before the client's timeout.
			if err != nil || code != 500 || st.Errors != 1 || st.Completed != 0 || st.Active != 0 {
				t.Fatalf("got %d %v, stats %+v; want 500 without the work", code, err, st)
			}
		}},
		{"reset", func(c *Config) { c.ResetRate = 1 }, func(t *testing.T, _ int, _ string, err error, st Stats) {
			if err == nil || st.Resets != 1 {
				t.Fatalf("got err %v, stats %+v; want a connection error", err, st)
			}
		}},
		{"hang", func(c *Config) { c.HangRate, c.HangFor = 1, 20*time.Millisecond }, func(t *testing.T, _ int, _ string, err error, st Stats) {
			if err == nil || st.Hangs != 1 || st.Hanging != 0 || st.Completed != 0 {
				t.Fatalf("got err %v, stats %+v; want a dropped connection and no work", err, st)
			}
		}},
		{"slow body", func(c *Config) { c.SlowBodyRate, c.SlowBodyFor = 1, 40*time.Millisecond }, func(t *testing.T, code int, body string, err error, st Stats) {
			if err != nil || code != 200 || len(body) != 64 || st.SlowBody != 1 {
				t.Fatalf("got %d %d bytes %v, stats %+v; want the whole body", code, len(body), err, st)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Default()
			cfg.Service = time.Millisecond
			tt.set(&cfg)
			o, c := start(t, cfg, nil, nil)
			c.Transport.(*http.Transport).DisableKeepAlives = true
			code, body, err := get(c, o.URL())
			tt.check(t, code, body, err, o.Stats())
		})
	}
}

func TestCapacityChangeTakesEffect(t *testing.T) {
	cfg := Default()
	cfg.Workers = 0 // stalled: nothing completes until capacity returns
	arrived := make(chan struct{}, 1)
	o, c := start(t, cfg, func(int) { arrived <- struct{}{} }, nil)

	done := make(chan int, 1)
	go func() {
		code, _, _ := get(c, o.URL())
		done <- code
	}()
	<-arrived
	select {
	case <-done:
		t.Fatal("a request completed on a stalled origin")
	default:
	}
	// Bad settings are refused with the field named, and change nothing.
	resp, err := c.Post(o.URL()+"/_origin/config?workers=-1", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(b), "Workers") {
		t.Fatalf("bad workers: %d %s", resp.StatusCode, b)
	}
	resp, err = c.Post(o.URL()+"/_origin/config?workers=2&service=5ms", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"workers":2`) {
		t.Fatalf("config update: %d %s", resp.StatusCode, b)
	}
	if code := <-done; code != 200 {
		t.Fatalf("after capacity returned: %d", code)
	}
	if st := o.Stats(); st.Workers != 2 || st.ServiceMs != 5 {
		t.Fatalf("stats after update %+v", st)
	}
	code, body, err := get(c, o.URL()+"/_origin/stats")
	if err != nil || code != 200 || !strings.Contains(body, `"completed":1`) {
		t.Fatalf("stats endpoint: %d %s %v", code, body, err)
	}
}

func TestKeepsWorkingOnAbandonedRequests(t *testing.T) {
	cfg := Default()
	cfg.Service = 100 * time.Millisecond
	arrived := make(chan struct{}, 1)
	finished := make(chan int64, 1)
	o, c := start(t, cfg, func(int) { arrived <- struct{}{} }, func(n int64) { finished <- n })
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", o.URL(), nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-arrived
	cancel() // the client goes away
	if err := <-errc; err == nil {
		t.Fatal("cancelled request succeeded")
	}
	if n := <-finished; n != 1 {
		t.Fatalf("completed %d", n)
	}
}

func TestRunSchedule(t *testing.T) {
	o, _ := start(t, Default(), nil, nil)
	s, err := ParseSchedule("0s:workers=1;5ms:workers=3,error-rate=0.5")
	if err != nil {
		t.Fatal(err)
	}
	if err := o.RunSchedule(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if cfg := o.Config(); cfg.Workers != 3 || cfg.ErrorRate != 0.5 {
		t.Fatalf("after schedule: %+v", cfg)
	}
	bad, _ := ParseSchedule("0s:workers=1")
	bad[0].Settings[0][1] = "-3"
	if err := o.RunSchedule(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "Workers") {
		t.Fatalf("invalid change: %v", err)
	}
}

// A long poll (?hold=) is answered after its hold, holds no worker, and is
// exempt from faults: with every worker stalled and every other request
// failing, held requests still come back 200 on time.
func TestHold(t *testing.T) {
	cfg := Default()
	cfg.Workers, cfg.ErrorRate = 0, 1 // no capacity at all, and every request fails
	o, c := start(t, cfg, nil, nil)
	const hold = 60 * time.Millisecond
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			begin := time.Now()
			code, body, err := get(c, o.URL()+"/poll?hold=60ms")
			if err != nil || code != 200 || len(body) != cfg.BodySize {
				t.Errorf("hold %d: got %d %q %v, want 200 with the body", i, code, body, err)
			}
			if el := time.Since(begin); el < hold {
				t.Errorf("hold %d: answered after %v, before its %v", i, el, hold)
			}
		})
	}
	// While they are held the origin counts them, and nothing is in service.
	deadline := time.Now().Add(time.Second)
	for o.Stats().Holding != 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if st := o.Stats(); st.Holding != 3 || st.Active != 0 {
		t.Errorf("while held: stats %+v, want 3 holding, none active", st)
	}
	wg.Wait()
	if st := o.Stats(); st.Holds != 3 || st.Holding != 0 || st.OK != 3 || st.Errors != 0 || st.Received != 3 {
		t.Fatalf("after: stats %+v", st)
	}
	for _, bad := range []string{"soon", "-1s", "11m"} {
		code, body, err := get(c, o.URL()+"/poll?hold="+bad)
		if err != nil || code != 400 || !strings.Contains(body, "hold") {
			t.Errorf("hold=%s: got %d %q %v, want 400 naming hold", bad, code, body, err)
		}
	}
}

// Close releases held requests at once with a 503.
func TestHoldReleasedByClose(t *testing.T) {
	o, err := New(Default())
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	done := make(chan int, 1)
	go func() {
		code, _, _ := get(c, o.URL()+"/?hold=1m")
		done <- code
	}()
	deadline := time.Now().Add(time.Second)
	for o.Stats().Holding != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	begin := time.Now()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if code := <-done; code != 503 && code != 0 {
		t.Fatalf("held request at close: %d, want 503 or a closed connection", code)
	}
	if el := time.Since(begin); el > 2*time.Second {
		t.Fatalf("close waited %v for the held request", el)
	}
}

// A healthy origin switched at run time to failing everything fast: what
// the QoS scenario does to one of its origins.
func TestSwitchToFastErrorsAtRunTime(t *testing.T) {
	cfg := Default()
	cfg.Service = time.Hour // any request that does its work never returns in this test
	o, c := start(t, cfg, nil, nil)
	post := func(q string) (int, string) {
		t.Helper()
		resp, err := c.Post(o.URL()+"/_origin/config?"+q, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post("error-fast=maybe"); code != 400 || !strings.Contains(body, "error-fast") {
		t.Fatalf("bad error-fast: %d %s", code, body)
	}
	if code, body := post("error-rate=1&error-fast=true"); code != 200 || !strings.Contains(body, `"error-fast":true`) {
		t.Fatalf("switch: %d %s", code, body)
	}
	for range 3 {
		if code, _, err := get(c, o.URL()+"/x"); err != nil || code != 500 {
			t.Fatalf("after the switch: %d %v, want 500", code, err)
		}
	}
	if st := o.Stats(); st.Errors != 3 || st.Completed != 0 || st.Active != 0 {
		t.Fatalf("stats %+v: want 3 errors and no work", st)
	}
}

// TestStall: a stalled request is answered after StallFor; one whose
// client leaves first ends there, and the origin counts it.
func TestStall(t *testing.T) {
	cfg := Default()
	cfg.StallRate, cfg.StallFor = 1, 200*time.Millisecond
	o, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, o.Start("127.0.0.1:0"))
	defer o.Close()

	start := time.Now()
	resp, err := http.Get(o.URL() + "/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond)

	c, err := net.Dial("tcp", o.Addr())
	require.NoError(t, err)
	_, err = c.Write([]byte("GET / HTTP/1.1\r\nHost: o\r\n\r\n"))
	require.NoError(t, err)
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return o.Stats().StallsLeft == 1 }, time.Second, 5*time.Millisecond)
	require.Equal(t, int64(2), o.Stats().Stalls)
}
