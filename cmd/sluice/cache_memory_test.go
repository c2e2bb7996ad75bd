package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// The cache's memory bound, through the real binary: many more distinct
// cacheable responses than fit, and the process's peak RSS must stay
// within the bound plus a fixed margin. The cache's own count
// (sluice_cache_bytes) must never pass the bound; RSS is the figure that
// says the count is honest (a count that left out the bodies, or evicted
// entries still referenced, would pass the first check and fail this
// one).
//
// Evicted responses are garbage until the collector runs, and with
// GOGC=100 alone it lets the heap grow to twice what is live: the peak is
// then about 2.7 times the bound at 64 MiB (docs/benchmarks.md). A soft
// memory limit (GOMEMLIMIT) of the bound plus what Sluice needs without a
// cache makes the collector run before that, which is how an operator
// holds the process to its cache bound (docs/cache.md); the test runs it
// so. SLUICE_CACHE_GOMEMLIMIT=off runs without it, and then checks the
// looser bound that GOGC alone gives.

// cacheMemoryCase is the run's size: SLUICE_CACHE_MIB (the bound) and
// SLUICE_CACHE_KEYS, else a case quick enough for every run.
func cacheMemoryCase(t *testing.T) (bound int64, keys int) {
	return int64(envInt(t, "SLUICE_CACHE_MIB", 8)) << 20, envInt(t, "SLUICE_CACHE_KEYS", 20000)
}

const (
	// cacheBaseBytes is Sluice's own memory besides the cache at this
	// load (runtime, fasthttp's buffers, pools): about 13 MiB RSS idle,
	// more with 16 clients and the responses in flight.
	cacheBaseBytes = 40 << 20
	// cacheRSSMargin is the fixed margin over the bound with the memory
	// limit: the base and what the limit, soft, lets through.
	cacheRSSMargin = 64 << 20
)

// cacheRSSLimit is the most the peak RSS may be: the bound plus the fixed
// margin under GOMEMLIMIT; without it, the bound twice (GOGC=100), a
// quarter more (size classes and spans the count leaves out), and the
// base.
func cacheRSSLimit(bound int64, memLimit bool) int64 {
	if memLimit {
		return bound + cacheRSSMargin
	}
	return bound*5/2 + 48<<20
}

const cacheObjectBytes = 4 << 10

func TestE2ECacheMemoryBound(t *testing.T) {
	needBinary(t)
	bound, keys := cacheMemoryCase(t)
	body := strings.Repeat("x", cacheObjectBytes)
	var fetches atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Cache-Control", "max-age=3600")
		io.WriteString(w, body) //nolint:errcheck
	}))
	t.Cleanup(origin.Close)
	memLimit := os.Getenv("SLUICE_CACHE_GOMEMLIMIT") != "off"
	var env []string
	if memLimit {
		env = []string{fmt.Sprintf("GOMEMLIMIT=%dMiB", (bound+cacheBaseBytes)>>20)}
	}
	p := startSluiceEnv(t, env, "--listen", "127.0.0.1:0", "--backend", origin.URL, "--access-log=false",
		"--admin", "127.0.0.1:0", "--cache", "--cache-max-bytes", strconv.FormatInt(bound, 10))
	admin := adminAddr(t, p)
	pid := p.cmd.Process.Pid
	c := newClient(t)
	st, _ := get(t, c, "http://"+p.addr+"/warm", nil, "")
	require.Equal(t, 200, st)
	rss0 := procStatus(t, pid, "VmRSS")

	// Every key once, from 16 clients; then the first keys again, long
	// since evicted, which must be misses that the origin answers.
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Value
	fail := func(why string) {
		failed.Add(1)
		firstErr.CompareAndSwap(nil, why)
	}
	work := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				resp, err := c.Get(fmt.Sprintf("http://%s/obj/%d", p.addr, i))
				if err != nil {
					fail(err.Error())
					continue
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || n != cacheObjectBytes {
					fail(fmt.Sprintf("/obj/%d: status %d, %d bytes (%v), %s", i, resp.StatusCode, n, err, resp.Header.Get("X-Sluice-Shed")))
				}
			}
		}()
	}
	for i := range keys {
		work <- i
	}
	close(work)
	wg.Wait()
	require.Zero(t, failed.Load(), "every request answered in full; the first failure: %v\n%s", firstErr.Load(), lastLines(p.logText(), 20))

	stored, entries := cacheMetric(t, admin, "sluice_cache_bytes"), cacheMetric(t, admin, "sluice_cache_entries")
	before := fetches.Load()
	st, _ = get(t, c, "http://"+p.addr+"/obj/0", nil, "")
	require.Equal(t, 200, st)
	require.Equal(t, before+1, fetches.Load(), "the first key was evicted long ago: a miss")

	rss, hwm := procStatus(t, pid, "VmRSS"), procStatus(t, pid, "VmHWM")
	t.Logf("cache bound %d MiB, %d keys of %d B (%d MiB offered), %v: stored %d B in %d entries; RSS %d MiB (%d MiB before), peak %d MiB; limit %d MiB",
		bound>>20, keys, cacheObjectBytes, int64(keys)*cacheObjectBytes>>20, env, stored, entries, rss>>20, rss0>>20, hwm>>20,
		cacheRSSLimit(bound, memLimit)>>20)
	require.LessOrEqual(t, stored, bound, "sluice_cache_bytes within the bound")
	require.Greater(t, entries, int64(0), "the cache stored responses")
	require.LessOrEqual(t, hwm, cacheRSSLimit(bound, memLimit), "peak RSS within the bound and the margin")
}

// adminAddr is the admin listener's address from the process's log (it
// logs "admin listening" before the gateway's "listening").
func adminAddr(t *testing.T, p *proc) string {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(p.logText()))
	for sc.Scan() {
		var entry struct{ Message, Addr string }
		if json.Unmarshal(sc.Bytes(), &entry) == nil && entry.Message == "admin listening" {
			return entry.Addr
		}
	}
	t.Fatalf("no admin listening line:\n%s", p.logText())
	return ""
}

// cacheMetric sums a metric over the services in /metrics, the samples
// whose labels contain every one of labels (`result="stale"`).
func cacheMetric(t *testing.T, admin, name string, labels ...string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		require.NoError(t, err, line)
		sum += v
		found = true
	}
	require.True(t, found, "no %s%v in /metrics", name, labels)
	return int64(sum)
}

// lastLines is the last n lines of text.
func lastLines(text string, n int) string {
	lines := strings.Split(text, "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
