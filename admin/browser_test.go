//go:build browser

package admin

// The dashboard in a real headless browser (Debian's chromium, driven
// over the DevTools protocol): `make test-browser`. Kept out of `make
// test` because it needs the browser and takes about fifteen seconds.

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluiceproxy/sluice/scheduler"
)

// findBrowser is the chromium binary; without one the test skips, except
// under CI=true, where a missing browser is a broken install.
func findBrowser(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium on PATH (apt-get install chromium)")
	}
	t.Skip("no chromium on PATH (apt-get install chromium)")
	return ""
}

// TestBrowserDashboard loads the dashboard while the gateway serves
// traffic through a queue, and checks that its numbers move and, once the
// load is over, equal /metrics. It saves a screenshot.
func TestBrowserDashboard(t *testing.T) {
	browser := findBrowser(t)
	var q scheduler.Config
	require.NoError(t, q.Limit.UnmarshalText([]byte("static:2")))
	// 2 backends × 2 in flight × 20 ms: 200/s, offered 260/s, so that
	// requests queue and some are refused.
	r := newRig(t, rigOptions{workers: 4, service: 20 * time.Millisecond, queue: q})

	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		runLoad(t, r.addr, "260", 6*time.Second)
	}()

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.NoSandbox, // root in CI containers
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 1400),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// The first call starts the browser, which lives as long as that
	// call's context: no timeout on it; the test's own timeout bounds it.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(r.admin+"/")))

	sel := func(k string) string {
		return `section[data-service="web"] tr[data-row="admitted"] [data-k="` + k + `"]`
	}
	// Read in one evaluation: the page re-renders every second, so a
	// node found by one protocol call may be gone by the next.
	text := func(selector string) string {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		q, _ := json.Marshal(selector)
		s, err := chromedp.Run(actx, chromedp.Evaluate[string](`(document.querySelector(`+string(q)+`) || {}).textContent || ""`))
		require.NoError(t, err, selector)
		return strings.TrimSpace(s)
	}
	number := func(selector string) float64 {
		v, err := strconv.ParseFloat(text(selector), 64)
		require.NoError(t, err, selector)
		return v
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	require.NoError(t, chromedp.Do(wctx, chromedp.WaitVisible(sel("admitted-total"))))

	// The numbers move while the load runs.
	first := number(sel("admitted-total"))
	time.Sleep(2 * time.Second)
	second := number(sel("admitted-total"))
	assert.Greater(t, second, first, "admitted total moves")
	assert.Positive(t, number(sel("admitted-rate")), "admitted rate while the load runs")
	var sawQueue bool
	for range 20 {
		if text(`section[data-service="web"] tr[data-class="normal"] [data-k="queue"]`) != "0" {
			sawQueue = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	assert.True(t, sawQueue, "the page shows requests queued")
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	require.NoError(t, err)

	// Once the load is over and the page has polled again, its totals
	// are those of /metrics.
	<-loadDone
	m := r.scrape()
	admitted, _ := m.sum("sluice_admissions_total", map[string]string{"service": "web"})
	eventually(t, 5*time.Second, func() bool { return number(sel("admitted-total")) == admitted },
		"the page's admitted total never reached /metrics' %v", admitted)
	for _, reason := range []string{"queue-full", "queue-timeout", "deadline"} {
		want, _ := m.sum("sluice_refusals_total", map[string]string{"service": "web", "reason": reason})
		got := number(`section[data-service="web"] tr[data-reason="` + reason + `"] [data-k="refused-total"]`)
		assert.Equal(t, want, got, reason)
	}
	for i := range r.origins {
		id := r.backend(i)
		limit, _ := m.sum("sluice_backend_limit", map[string]string{"backend": id})
		got := number(`section[data-service="web"] tr[data-backend="` + id + `"] [data-k="limit"]`)
		assert.Equal(t, limit, got, "limit of %s", id)
	}
	samples, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.dataset.samples || "0"`))
	require.NoError(t, err)
	n, _ := strconv.Atoi(samples)
	assert.GreaterOrEqual(t, n, 5, "the page keeps its samples for the charts")

	dir, err := os.MkdirTemp("", "sluice-dashboard-") // kept, for a person to look at
	require.NoError(t, err)
	shot := filepath.Join(dir, "dashboard.png")
	require.NoError(t, os.WriteFile(shot, buf, 0o644))
	t.Logf("screenshot during the load: %s", shot)
}
