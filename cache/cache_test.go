package cache

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// t0 is the fake clock's start; every test moves time by hand.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func httpDate(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

// hdr builds a Header from "Name: value" lines.
func hdr(lines ...string) Header {
	var h Header
	for _, l := range lines {
		k, v, _ := strings.Cut(l, ":")
		h = append(h, Field{strings.TrimSpace(k), strings.TrimSpace(v)})
	}
	return h
}

func get(key string, lines ...string) *Request {
	return &Request{Method: "GET", Key: key, Header: hdr(lines...)}
}

func resp(status int, lines ...string) *Response {
	return &Response{Status: status, Header: hdr(lines...), Body: []byte("body")}
}

// store stores r for a GET of key with the given request header lines,
// request and response at t0.
func store(t *testing.T, c *Cache, key string, r *Response, reqLines ...string) StoreResult {
	t.Helper()
	return c.Store(get(key, reqLines...), nil, r, t0, t0)
}

func TestStorability(t *testing.T) {
	date := "Date: " + httpDate(t0)
	for _, tc := range []struct {
		name   string
		method string
		req    []string
		status int
		resp   []string
		want   StoreResult
	}{
		{"max-age", "GET", nil, 200, []string{date, "Cache-Control: max-age=60"}, Stored},
		{"heuristic status without freshness", "GET", nil, 200, []string{date}, Stored},
		{"404 by default", "GET", nil, 404, []string{date}, Stored},
		{"not heuristic without freshness", "GET", nil, 302, []string{date}, NotStorable},
		{"302 with max-age", "GET", nil, 302, []string{date, "Cache-Control: max-age=5"}, Stored},
		{"500 without freshness", "GET", nil, 500, []string{date}, NotStorable},
		{"503 with Expires", "GET", nil, 503, []string{date, "Expires: " + httpDate(t0.Add(time.Minute))}, Stored},
		{"206 never", "GET", nil, 206, []string{date, "Cache-Control: max-age=60"}, NotStorable},
		{"304 never", "GET", nil, 304, []string{date, "Cache-Control: max-age=60"}, NotStorable},
		{"POST never", "POST", nil, 200, []string{date, "Cache-Control: max-age=60"}, NotStorable},
		{"HEAD not stored", "HEAD", nil, 200, []string{date, "Cache-Control: max-age=60"}, NotStorable},
		{"no-store response", "GET", nil, 200, []string{"Cache-Control: max-age=60, no-store"}, NotStorable},
		{"no-store request", "GET", []string{"Cache-Control: no-store"}, 200, []string{"Cache-Control: max-age=60"}, NotStorable},
		{"private", "GET", nil, 200, []string{"Cache-Control: private, max-age=60"}, NotStorable},
		{"qualified private", "GET", nil, 200, []string{`Cache-Control: private="X-A", max-age=60`}, NotStorable},
		{"no-cache is storable", "GET", nil, 200, []string{"Cache-Control: no-cache"}, Stored},
		{"authorization", "GET", []string{"Authorization: Basic x"}, 200, []string{"Cache-Control: max-age=60"}, NotStorable},
		{"authorization public", "GET", []string{"Authorization: Basic x"}, 200, []string{"Cache-Control: public, max-age=60"}, Stored},
		{"authorization s-maxage", "GET", []string{"Authorization: Basic x"}, 200, []string{"Cache-Control: s-maxage=60"}, Stored},
		{"authorization must-revalidate", "GET", []string{"Authorization: Basic x"}, 200, []string{"Cache-Control: must-revalidate, max-age=60"}, Stored},
		{"vary star", "GET", nil, 200, []string{"Cache-Control: max-age=60", "Vary: Accept, *"}, NotStorable},
		{"set-cookie", "GET", nil, 200, []string{"Cache-Control: max-age=60", "Set-Cookie: a=b"}, NotStorable},
		{"public on a 500", "GET", nil, 500, []string{"Cache-Control: public"}, Stored},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(Config{})
			req := &Request{Method: tc.method, Key: "h/a", Header: hdr(tc.req...)}
			require.Equal(t, tc.want, c.Store(req, nil, resp(tc.status, tc.resp...), t0, t0))
		})
	}
}

func TestFreshnessLifetime(t *testing.T) {
	date := "Date: " + httpDate(t0)
	for _, tc := range []struct {
		name   string
		status int
		resp   []string
		want   time.Duration
	}{
		{"s-maxage wins", 200, []string{date, "Cache-Control: max-age=10, s-maxage=20", "Expires: " + httpDate(t0.Add(time.Hour))}, 20 * time.Second},
		{"max-age over Expires", 200, []string{date, "Cache-Control: max-age=10", "Expires: " + httpDate(t0.Add(time.Hour))}, 10 * time.Second},
		{"Expires minus Date", 200, []string{date, "Expires: " + httpDate(t0.Add(90*time.Second))}, 90 * time.Second},
		{"Expires in the past", 200, []string{date, "Expires: " + httpDate(t0.Add(-time.Hour))}, 0},
		{"invalid Expires", 200, []string{date, "Expires: 0"}, 0},
		{"first max-age counts", 200, []string{date, "Cache-Control: max-age=5", "Cache-Control: max-age=50"}, 5 * time.Second},
		{"quoted max-age", 200, []string{date, `Cache-Control: max-age="7"`}, 7 * time.Second},
		{"invalid max-age is stale", 200, []string{date, "Cache-Control: max-age=abc"}, 0},
		{"huge max-age", 200, []string{date, "Cache-Control: max-age=99999999999999999999"}, maxDelta},
		{"heuristic 10%", 200, []string{date, "Last-Modified: " + httpDate(t0.Add(-100*time.Hour))}, 10 * time.Hour},
		{"heuristic capped", 200, []string{date, "Last-Modified: " + httpDate(t0.Add(-1000*time.Hour))}, HeuristicMax},
		{"no heuristic for 302", 302, []string{date, "Cache-Control: no-cache", "Last-Modified: " + httpDate(t0.Add(-100*time.Hour))}, 0},
		{"no heuristic without Last-Modified", 200, []string{date}, 0},
		{"heuristic for public", 302, []string{date, "Cache-Control: public", "Last-Modified: " + httpDate(t0.Add(-10*time.Hour))}, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEntry("k", get("k"), resp(tc.status, tc.resp...), t0, t0)
			require.Equal(t, tc.want, e.Lifetime())
		})
	}
}

// Age per RFC 9111 4.2.3: the larger of the apparent age and the Age
// field corrected by the response delay, plus the resident time.
func TestAgeCalculation(t *testing.T) {
	for _, tc := range []struct {
		name              string
		date              time.Time
		age               string
		reqTime, respTime time.Time
		now               time.Time
		want              time.Duration
	}{
		{"fresh from origin", t0, "", t0, t0, t0, 0},
		{"resident time", t0, "", t0, t0, t0.Add(30 * time.Second), 30 * time.Second},
		{"apparent age", t0.Add(-20 * time.Second), "", t0, t0, t0, 20 * time.Second},
		{"Age field plus delay", t0, "100", t0, t0.Add(2 * time.Second), t0.Add(2 * time.Second), 102 * time.Second},
		{"date in the future", t0.Add(time.Hour), "", t0, t0, t0, 0},
		{"bad Age ignored", t0, "x", t0, t0, t0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := []string{"Date: " + httpDate(tc.date), "Cache-Control: max-age=1000"}
			if tc.age != "" {
				lines = append(lines, "Age: "+tc.age)
			}
			e := newEntry("k", get("k"), resp(200, lines...), tc.reqTime, tc.respTime)
			require.Equal(t, tc.want, e.Age(tc.now))
		})
	}
	e := newEntry("k", get("k"), resp(200, "Cache-Control: max-age=10"), t0, t0)
	require.Equal(t, "61", e.AgeHeader(t0.Add(61500*time.Millisecond)))
	require.True(t, e.Header.Has("Date"), "a Date is added when the origin sent none")
}

// Request and response directives decide between hit, revalidate and
// only-if-cached.
func TestLookupDirectives(t *testing.T) {
	date := "Date: " + httpDate(t0)
	fresh60 := []string{date, "Cache-Control: max-age=60", `ETag: "v1"`}
	for _, tc := range []struct {
		name   string
		resp   []string
		req    []string
		at     time.Duration
		want   Decision
		stale  bool
		swr    bool
		absent bool // nothing stored
	}{
		{"fresh hit", fresh60, nil, 10 * time.Second, Hit, false, false, false},
		{"stale revalidates", fresh60, nil, 61 * time.Second, Revalidate, false, false, false},
		{"miss", nil, nil, 0, Miss, false, false, true},
		{"only-if-cached miss", nil, []string{"Cache-Control: only-if-cached"}, 0, OnlyIfCached, false, false, true},
		{"only-if-cached stale", fresh60, []string{"Cache-Control: only-if-cached"}, 61 * time.Second, OnlyIfCached, false, false, false},
		{"only-if-cached fresh", fresh60, []string{"Cache-Control: only-if-cached"}, time.Second, Hit, false, false, false},
		{"request no-cache", fresh60, []string{"Cache-Control: no-cache"}, time.Second, Revalidate, false, false, false},
		{"pragma no-cache", fresh60, []string{"Pragma: no-cache"}, time.Second, Revalidate, false, false, false},
		{"pragma ignored with cache-control", fresh60, []string{"Pragma: no-cache", "Cache-Control: max-stale"}, time.Second, Hit, false, false, false},
		{"request max-age exceeded", fresh60, []string{"Cache-Control: max-age=5"}, 10 * time.Second, Revalidate, false, false, false},
		{"request max-age met", fresh60, []string{"Cache-Control: max-age=50"}, 10 * time.Second, Hit, false, false, false},
		{"min-fresh not met", fresh60, []string{"Cache-Control: min-fresh=55"}, 10 * time.Second, Revalidate, false, false, false},
		{"min-fresh met", fresh60, []string{"Cache-Control: min-fresh=40"}, 10 * time.Second, Hit, false, false, false},
		{"max-stale any", fresh60, []string{"Cache-Control: max-stale"}, time.Hour, Hit, true, false, false},
		{"max-stale within", fresh60, []string{"Cache-Control: max-stale=10"}, 65 * time.Second, Hit, true, false, false},
		{"max-stale beyond", fresh60, []string{"Cache-Control: max-stale=10"}, 75 * time.Second, Revalidate, false, false, false},
		{"max-stale vs must-revalidate", []string{date, "Cache-Control: max-age=60, must-revalidate"}, []string{"Cache-Control: max-stale"}, 65 * time.Second, Revalidate, false, false, false},
		{"max-stale vs proxy-revalidate", []string{date, "Cache-Control: max-age=60, proxy-revalidate"}, []string{"Cache-Control: max-stale"}, 65 * time.Second, Revalidate, false, false, false},
		{"max-stale vs s-maxage", []string{date, "Cache-Control: s-maxage=60"}, []string{"Cache-Control: max-stale"}, 65 * time.Second, Revalidate, false, false, false},
		{"response no-cache", []string{date, "Cache-Control: no-cache, max-age=60"}, nil, time.Second, Revalidate, false, false, false},
		{"swr window", []string{date, "Cache-Control: max-age=60, stale-while-revalidate=30"}, nil, 80 * time.Second, Revalidate, false, true, false},
		{"swr window over", []string{date, "Cache-Control: max-age=60, stale-while-revalidate=30"}, nil, 100 * time.Second, Revalidate, false, false, false},
		{"swr vs must-revalidate", []string{date, "Cache-Control: max-age=60, stale-while-revalidate=30, must-revalidate"}, nil, 80 * time.Second, Revalidate, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(Config{})
			if !tc.absent {
				require.Equal(t, Stored, store(t, c, "h/a", resp(200, tc.resp...)))
			}
			l := c.Lookup(get("h/a", tc.req...), t0.Add(tc.at))
			require.Equal(t, tc.want, l.Decision)
			require.Equal(t, tc.stale, l.Stale)
			require.Equal(t, tc.swr, l.SWR)
		})
	}
}

func TestLookupPass(t *testing.T) {
	c := New(Config{})
	for _, r := range []*Request{
		{Method: "POST", Key: "h/a"}, {Method: "OPTIONS", Key: "h/a"},
		{Method: "GET", Key: "h/a", Header: hdr("Range: bytes=0-1")},
	} {
		require.Equal(t, Pass, c.Lookup(r, t0).Decision, r.Method)
	}
}

// HEAD is answered from a stored GET.
func TestHeadFromGet(t *testing.T) {
	c := New(Config{})
	require.Equal(t, Stored, store(t, c, "h/a", resp(200, "Cache-Control: max-age=60")))
	l := c.Lookup(&Request{Method: "HEAD", Key: "h/a", Header: hdr()}, t0)
	require.Equal(t, Hit, l.Decision)
	require.Equal(t, "body", string(l.Entry.Body))
}

func TestStaleIfErrorAndOverload(t *testing.T) {
	date := "Date: " + httpDate(t0)
	for _, tc := range []struct {
		name     string
		resp     []string
		req      []string
		at       time.Duration
		sie      bool
		overload bool
	}{
		{"plain stale: overload only", []string{date, "Cache-Control: max-age=60"}, nil, 70 * time.Second, false, true},
		{"sie within", []string{date, "Cache-Control: max-age=60, stale-if-error=30"}, nil, 70 * time.Second, true, true},
		{"sie beyond", []string{date, "Cache-Control: max-age=60, stale-if-error=5"}, nil, 70 * time.Second, false, true},
		{"request sie", []string{date, "Cache-Control: max-age=60"}, []string{"Cache-Control: stale-if-error=100"}, 70 * time.Second, true, true},
		{"must-revalidate", []string{date, "Cache-Control: max-age=60, stale-if-error=30, must-revalidate"}, nil, 70 * time.Second, false, false},
		{"proxy-revalidate", []string{date, "Cache-Control: max-age=60, proxy-revalidate"}, nil, 70 * time.Second, false, false},
		{"s-maxage", []string{date, "Cache-Control: s-maxage=60"}, nil, 70 * time.Second, false, false},
		{"response no-cache", []string{date, "Cache-Control: no-cache"}, nil, 70 * time.Second, false, false},
		{"request no-cache", []string{date, "Cache-Control: max-age=60, stale-if-error=30"}, []string{"Cache-Control: no-cache"}, 70 * time.Second, false, false},
		{"request max-age exceeded", []string{date, "Cache-Control: max-age=60"}, []string{"Cache-Control: max-age=65"}, 70 * time.Second, false, false},
		{"over max stale", []string{date, "Cache-Control: max-age=60"}, nil, 2 * time.Hour, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(Config{})
			require.Equal(t, Stored, store(t, c, "h/a", resp(200, tc.resp...)))
			now := t0.Add(tc.at)
			l := c.Lookup(get("h/a", tc.req...), now)
			require.Equal(t, Revalidate, l.Decision)
			require.Equal(t, tc.sie, l.StaleIfError(now), "stale-if-error")
			require.Equal(t, tc.overload, l.StaleOnOverload(now, DefaultMaxStale), "stale on overload")
		})
	}
}

// Vary: the nominated request fields are a secondary key.
func TestVary(t *testing.T) {
	c := New(Config{})
	require.Equal(t, Stored, store(t, c, "h/a",
		&Response{Status: 200, Header: hdr("Cache-Control: max-age=60", "Vary: Accept-Encoding"), Body: []byte("gz")},
		"Accept-Encoding: gzip"))
	require.Equal(t, Stored, store(t, c, "h/a",
		&Response{Status: 200, Header: hdr("Cache-Control: max-age=60", "Vary: accept-encoding"), Body: []byte("br")},
		"Accept-Encoding: br"))
	l := c.Lookup(get("h/a", "Accept-Encoding: gzip"), t0)
	require.Equal(t, Hit, l.Decision)
	require.Equal(t, "gz", string(l.Entry.Body))
	l = c.Lookup(get("h/a", "accept-encoding: br"), t0)
	require.Equal(t, "br", string(l.Entry.Body))
	require.Equal(t, Miss, c.Lookup(get("h/a", "Accept-Encoding: zstd"), t0).Decision)
	require.Equal(t, Miss, c.Lookup(get("h/a"), t0).Decision, "absent is not a value")
	// Whitespace around list items does not make another variant.
	require.Equal(t, Stored, store(t, c, "h/b",
		&Response{Status: 200, Header: hdr("Cache-Control: max-age=60", "Vary: Accept"), Body: []byte("x")},
		"Accept: a, b"))
	require.Equal(t, Hit, c.Lookup(get("h/b", "Accept: a,b"), t0).Decision)
	// The same variant stored again replaces the first.
	require.Equal(t, Stored, store(t, c, "h/a",
		&Response{Status: 200, Header: hdr("Cache-Control: max-age=60", "Vary: Accept-Encoding"), Body: []byte("gz2")},
		"Accept-Encoding: gzip"))
	require.Equal(t, "gz2", string(c.Lookup(get("h/a", "Accept-Encoding: gzip"), t0).Entry.Body))
	require.Equal(t, 3, c.Stats().Entries)
}

// A 304 updates the stored header (RFC 9111 3.2): its fields replace the
// stored ones, except Content-Length and hop-by-hop fields; freshness
// restarts from the new exchange.
func TestRevalidated304Merge(t *testing.T) {
	c := New(Config{})
	require.Equal(t, Stored, store(t, c, "h/a", resp(200, "Date: "+httpDate(t0), "Cache-Control: max-age=60",
		`ETag: "v1"`, "X-Old: keep", "X-Both: old", "X-Both: old2", "Content-Type: text/plain")))
	now := t0.Add(2 * time.Minute)
	l := c.Lookup(get("h/a"), now)
	require.Equal(t, Revalidate, l.Decision)
	inm, ims := Conditional(l.Entry)
	require.Equal(t, `"v1"`, inm)
	require.Empty(t, ims)
	e := c.Revalidated(l.Entry, hdr("Date: "+httpDate(now), "Cache-Control: max-age=30", `ETag: "v1"`,
		"X-Both: new", "Content-Length: 0", "Connection: close", "Keep-Alive: timeout=5"), now, now)
	require.NotNil(t, e)
	require.Equal(t, "keep", e.Header.Get("X-Old"))
	require.Equal(t, []string{"new"}, e.Header.Values("X-Both"))
	require.Equal(t, "max-age=30", e.Header.Get("Cache-Control"))
	require.False(t, e.Header.Has("Content-Length"))
	require.False(t, e.Header.Has("Connection"))
	require.False(t, e.Header.Has("Keep-Alive"))
	require.Equal(t, "body", string(e.Body))
	require.Equal(t, 30*time.Second, e.Lifetime())
	l = c.Lookup(get("h/a"), now.Add(10*time.Second))
	require.Equal(t, Hit, l.Decision)
	require.Same(t, e, l.Entry)
	require.Equal(t, uint64(1), c.Stats().Revalidated)
	require.Equal(t, 1, c.Stats().Entries)

	// A 304 with another strong tag does not describe what is stored.
	require.Nil(t, c.Revalidated(e, hdr(`ETag: "v2"`), now, now))
	require.Equal(t, Miss, c.Lookup(get("h/a"), now).Decision)
}

func TestConditionalLastModified(t *testing.T) {
	c := New(Config{})
	lm := httpDate(t0.Add(-time.Hour))
	require.Equal(t, Stored, store(t, c, "h/a", resp(200, "Cache-Control: max-age=1", "Last-Modified: "+lm, `ETag: W/"w"`)))
	l := c.Lookup(get("h/a"), t0.Add(time.Minute))
	inm, ims := Conditional(l.Entry)
	require.Equal(t, `W/"w"`, inm)
	require.Equal(t, lm, ims)
}

// A client's own conditional request is evaluated against the stored
// response.
func TestNotModified(t *testing.T) {
	lm := t0.Add(-time.Hour)
	e := newEntry("k", get("k"), resp(200, "Cache-Control: max-age=60", `ETag: "v1"`, "Last-Modified: "+httpDate(lm)), t0, t0)
	for _, tc := range []struct {
		req  []string
		want bool
	}{
		{nil, false},
		{[]string{`If-None-Match: "v1"`}, true},
		{[]string{`If-None-Match: W/"v1"`}, true},
		{[]string{`If-None-Match: "x", "v1"`}, true},
		{[]string{`If-None-Match: *`}, true},
		{[]string{`If-None-Match: "v2"`}, false},
		{[]string{`If-None-Match: "v2"`, "If-Modified-Since: " + httpDate(t0)}, false},
		{[]string{"If-Modified-Since: " + httpDate(t0)}, true},
		{[]string{"If-Modified-Since: " + httpDate(lm.Add(-time.Second))}, false},
	} {
		require.Equal(t, tc.want, NotModified(e, hdr(tc.req...)), "%v", tc.req)
	}
}

func TestInvalidateAndPurge(t *testing.T) {
	c := New(Config{})
	for _, k := range []string{"h/a", "h/a?x", "h/b", "g/a"} {
		require.Equal(t, Stored, store(t, c, k, resp(200, "Cache-Control: max-age=60")))
	}
	require.Equal(t, 1, c.Invalidate("h/a"))
	require.Equal(t, Miss, c.Lookup(get("h/a"), t0).Decision)
	require.Equal(t, Hit, c.Lookup(get("h/a?x"), t0).Decision)
	require.Equal(t, 2, c.Purge("h/", true))
	require.Equal(t, 1, c.Purge("g/a", false))
	st := c.Stats()
	require.Equal(t, 0, st.Entries)
	require.Equal(t, int64(0), st.Bytes)
	require.Equal(t, uint64(1), st.Invalidations)
	require.Equal(t, uint64(3), st.Purged)
}

func TestUnsafe(t *testing.T) {
	for m, want := range map[string]bool{"GET": false, "HEAD": false, "OPTIONS": false, "TRACE": false,
		"POST": true, "PUT": true, "DELETE": true, "PATCH": true, "PURGE": true} {
		require.Equal(t, want, Unsafe(m), m)
	}
}

// The store stays within MaxBytes, evicting the least recently used, and
// does not store bodies over MaxObjectBytes.
func TestMemoryBoundLRU(t *testing.T) {
	c := New(Config{MaxBytes: 100 << 10, MaxObjectBytes: 8 << 10})
	body := make([]byte, 1000)
	big := &Response{Status: 200, Header: hdr("Cache-Control: max-age=60"), Body: make([]byte, 9<<10)}
	require.Equal(t, TooLarge, c.Store(get("h/big"), nil, big, t0, t0))
	for i := range 1000 {
		r := &Response{Status: 200, Header: hdr("Cache-Control: max-age=60"), Body: body}
		require.Equal(t, Stored, c.Store(get(fmt.Sprintf("h/%d", i)), nil, r, t0, t0))
		if i == 10 {
			// Key 0 is used now and then: it stays.
			require.Equal(t, Hit, c.Lookup(get("h/0"), t0).Decision)
		}
		if i%20 == 0 {
			c.Lookup(get("h/0"), t0)
		}
		require.LessOrEqual(t, c.Stats().Bytes, int64(100<<10))
	}
	st := c.Stats()
	require.Positive(t, st.Evictions)
	require.Equal(t, uint64(1), st.TooLarge)
	require.Equal(t, Hit, c.Lookup(get("h/0"), t0).Decision, "recently used survives")
	require.Equal(t, Miss, c.Lookup(get("h/1"), t0).Decision, "least recently used is gone")
	require.Equal(t, Hit, c.Lookup(get("h/999"), t0).Decision)

	// A smaller bound on reload evicts at once.
	c.SetLimits(Config{MaxBytes: 10 << 10, MaxObjectBytes: 1 << 10})
	require.LessOrEqual(t, c.Stats().Bytes, int64(10<<10))
}

func TestCoalescing(t *testing.T) {
	c := New(Config{})
	f, leader := c.Join("h/a", t0)
	require.True(t, leader)
	const waiters = 50
	var wg sync.WaitGroup
	results := make(chan bool, waiters)
	for range waiters {
		g, lead := c.Join("h/a", t0)
		require.False(t, lead)
		require.Same(t, f, g)
		wg.Add(1)
		go func() { defer wg.Done(); results <- c.Wait(g, time.Minute) }()
	}
	require.Equal(t, Stored, store(t, c, "h/a", resp(200, "Cache-Control: max-age=60")))
	c.End(f, true, false, t0)
	c.End(f, true, false, t0) // twice: no-op
	wg.Wait()
	close(results)
	for r := range results {
		require.True(t, r)
	}
	require.Equal(t, uint64(waiters), c.Stats().Coalesced)

	// Not storable: waiters are released with false, and the key is
	// fetched without coalescing for PassTTL.
	f, leader = c.Join("h/b", t0)
	require.True(t, leader)
	g, _ := c.Join("h/b", t0)
	done := make(chan bool)
	go func() { done <- c.Wait(g, time.Minute) }()
	c.End(f, false, true, t0)
	require.False(t, <-done)
	f, leader = c.Join("h/b", t0.Add(time.Second))
	require.Nil(t, f)
	require.False(t, leader)
	_, leader = c.Join("h/b", t0.Add(PassTTL+time.Second))
	require.True(t, leader, "the pass mark expires")

	// A failed fetch releases the waiters without a pass mark.
	f, _ = c.Join("h/c", t0)
	c.End(f, false, false, t0)
	_, leader = c.Join("h/c", t0)
	require.True(t, leader)

	// A leader that never ends delays a waiter by the timeout only.
	f, _ = c.Join("h/d", t0)
	require.False(t, c.Wait(f, time.Millisecond))
}

func TestDirectiveParsing(t *testing.T) {
	d := parseDirectives([]string{`max-age=10, no-cache="Set-Cookie, X-A", Private`, "MUST-REVALIDATE, max-age=20, max-stale"})
	require.True(t, d.hasMaxAge)
	require.Equal(t, 10*time.Second, d.maxAge)
	require.True(t, d.noCache)
	require.True(t, d.private)
	require.True(t, d.mustRevalidate)
	require.True(t, d.maxStaleAny)
	d = parseDirectives([]string{"min-fresh=x, stale-if-error=5, stale-while-revalidate=-1"})
	require.False(t, d.hasMinFresh)
	require.True(t, d.hasSIE)
	require.False(t, d.hasSWR)
}

func TestConfig(t *testing.T) {
	c := Config{}.WithDefaults()
	require.NoError(t, c.Validate())
	require.Equal(t, int64(DefaultMaxBytes), c.MaxBytes)
	require.True(t, *c.StaleOnOverload)
	for _, bad := range []Config{
		{MaxBytes: -1}, {MaxObjectBytes: -1}, {MaxBytes: 10, MaxObjectBytes: 11}, {CoalesceTimeout: -1}, {MaxStale: -1},
	} {
		require.Error(t, bad.Validate(), "%+v", bad)
	}
	require.ErrorContains(t, (&Config{MaxBytes: 10, MaxObjectBytes: 11}).Validate(), "max_object_bytes")
}

// TestAppendAgeZeroAlloc: the Age of an answer from the store costs no
// allocation at any age (strconv's small-number strings hide it below 100).
func TestAppendAgeZeroAlloc(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	c := New(Config{})
	req := &Request{Method: "GET", Key: "example.com/a"}
	l := c.Lookup(req, t0)
	require.Equal(t, Stored, c.Store(req, &l, &Response{Status: 200, Header: Header{{"Cache-Control", "max-age=9999"}}}, t0, t0))
	e := c.Lookup(req, t0).Entry
	buf := make([]byte, 0, 20)
	now := t0.Add(12345 * time.Second)
	require.Equal(t, "12345", string(e.AppendAge(buf, now)))
	require.Zero(t, testing.AllocsPerRun(100, func() { buf = e.AppendAge(buf[:0], now) }))
}
