package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/sluiceproxy/sluice/cache"
)

// cachedService is oneService with the cache on.
func cachedService(addr string, mut ...func(*cache.Config)) Config {
	cfg := oneService(addr)
	cc := cache.Config{Enabled: true}
	for _, m := range mut {
		m(&cc)
	}
	cfg.Services[0].Cache = &cc
	return cfg
}

// originLog is an origin that records each request's path and header and
// answers with what its handler says.
type originLog struct {
	*backend
	mu   sync.Mutex
	reqs []*fasthttp.RequestHeader
}

func startOriginLog(t *testing.T, h fasthttp.RequestHandler) *originLog {
	r := &originLog{}
	r.backend = startBackend(t, func(ctx *fasthttp.RequestCtx) {
		var hh fasthttp.RequestHeader
		ctx.Request.Header.CopyTo(&hh)
		r.mu.Lock()
		r.reqs = append(r.reqs, &hh)
		r.mu.Unlock()
		h(ctx)
	})
	return r
}

func (r *originLog) req(i int) *fasthttp.RequestHeader {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reqs[i]
}

func maxAge60(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set("Cache-Control", "max-age=60")
	ctx.WriteString("body of " + string(ctx.Path())) //nolint:errcheck
}

func cacheState(t *testing.T, p *testProxy) cache.Stats {
	t.Helper()
	return firstService(p.Server).cache.Stats()
}

func TestCacheFreshHit(t *testing.T) {
	o := startOriginLog(t, maxAge60)
	p := startProxy(t, cachedService(o.addr))
	resp, body := get(t, p.addr, "/a")
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "miss", resp.Header.Get("X-Sluice-Cache"))
	assert.Equal(t, "body of /a", body)
	for range 3 {
		resp, body = get(t, p.addr, "/a", "X-Request-Id: again")
		require.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, "hit", resp.Header.Get("X-Sluice-Cache"))
		assert.Equal(t, "body of /a", body)
		assert.Equal(t, "max-age=60", resp.Header.Get("Cache-Control"))
		assert.NotEmpty(t, resp.Header.Get("Age"))
		assert.NotEmpty(t, resp.Header.Get("Date"))
		assert.Equal(t, "again", resp.Header.Get("X-Request-Id"))
	}
	assert.EqualValues(t, 1, o.hits.Load())
	// Another path, another host: other keys.
	get(t, p.addr, "/a?x=1")
	roundTrip(t, p.addr, "GET /a HTTP/1.1\r\nHost: other.test\r\n\r\n")
	assert.EqualValues(t, 3, o.hits.Load())
	st := cacheState(t, p)
	assert.EqualValues(t, 3, st.Hits)
	assert.EqualValues(t, 3, st.Misses)
	// Hits took no admission.
	assert.EqualValues(t, 3, firstService(p.Server).sched.Stats().AdmittedFast)
}

func TestCacheNotStored(t *testing.T) {
	for _, tc := range []struct {
		name string
		cc   string
		req  []string
	}{
		{"no-store", "no-store, max-age=60", nil},
		{"private", "private, max-age=60", nil},
		{"authorization", "max-age=60", []string{"Authorization: Bearer x"}},
		{"request no-store", "max-age=60", []string{"Cache-Control: no-store"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := startOriginLog(t, func(ctx *fasthttp.RequestCtx) {
				ctx.Response.Header.Set("Cache-Control", tc.cc)
				ctx.WriteString("x") //nolint:errcheck
			})
			p := startProxy(t, cachedService(o.addr))
			for range 3 {
				resp, _ := get(t, p.addr, "/a", tc.req...)
				require.Equal(t, 200, resp.StatusCode)
				assert.Equal(t, "miss", resp.Header.Get("X-Sluice-Cache"))
			}
			assert.EqualValues(t, 3, o.hits.Load())
		})
	}
}

// A stale response is revalidated with its validators; the 304's fields
// are merged into the stored response, which answers.
func TestCacheRevalidation(t *testing.T) {
	lm := "Sat, 01 Mar 2025 10:00:00 GMT"
	o := startOriginLog(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Cache-Control", "max-age=0")
		ctx.Response.Header.Set("ETag", `"v1"`)
		ctx.Response.Header.Set("Last-Modified", lm)
		if string(ctx.Request.Header.Peek("If-None-Match")) == `"v1"` {
			ctx.Response.Header.Set("X-Fresh", "from-304")
			ctx.SetStatusCode(304)
			return
		}
		ctx.Response.Header.Set("X-Fresh", "from-200")
		ctx.Response.Header.Set("X-Kept", "yes")
		ctx.WriteString("the body") //nolint:errcheck
	})
	p := startProxy(t, cachedService(o.addr))
	resp, _ := get(t, p.addr, "/r")
	require.Equal(t, "miss", resp.Header.Get("X-Sluice-Cache"))
	resp, body := get(t, p.addr, "/r", `If-None-Match: "client"`)
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "revalidated", resp.Header.Get("X-Sluice-Cache"))
	assert.Equal(t, "the body", body)
	assert.Equal(t, "from-304", resp.Header.Get("X-Fresh"), "the 304's fields replace the stored ones")
	assert.Equal(t, "yes", resp.Header.Get("X-Kept"), "fields the 304 lacks stay")
	require.EqualValues(t, 2, o.hits.Load())
	sent := o.req(1)
	assert.Equal(t, `"v1"`, string(sent.Peek("If-None-Match")), "the stored validator, not the client's")
	assert.Equal(t, lm, string(sent.Peek("If-Modified-Since")))

	// The client's own conditional is answered from the cache.
	resp, body = get(t, p.addr, "/r", `If-None-Match: "v1"`)
	assert.Equal(t, 304, resp.StatusCode)
	assert.Empty(t, body)
	assert.EqualValues(t, 3, o.hits.Load(), "max-age=0: every use revalidates")
	assert.EqualValues(t, 2, cacheState(t, p).Revalidated)
}

// Vary separates the stored variants by the nominated request fields.
func TestCacheVary(t *testing.T) {
	o := startOriginLog(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Cache-Control", "max-age=60")
		ctx.Response.Header.Set("Vary", "Accept-Language")
		ctx.WriteString("lang=" + string(ctx.Request.Header.Peek("Accept-Language"))) //nolint:errcheck
	})
	p := startProxy(t, cachedService(o.addr))
	for range 2 {
		for _, l := range []string{"en", "fr"} {
			resp, body := get(t, p.addr, "/v", "Accept-Language: "+l)
			require.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, "lang="+l, body)
		}
	}
	assert.EqualValues(t, 2, o.hits.Load())
	_, body := get(t, p.addr, "/v")
	assert.Equal(t, "lang=", body)
	assert.EqualValues(t, 3, o.hits.Load())
}

// A non-error response to an unsafe method invalidates the target and a
// same-origin Location; an error response does not.
func TestCacheUnsafeInvalidates(t *testing.T) {
	var fail atomic.Bool
	o := startOriginLog(t, func(ctx *fasthttp.RequestCtx) {
		if ctx.IsPost() {
			if fail.Load() {
				ctx.SetStatusCode(500)
				return
			}
			ctx.Response.Header.Set("Location", "http://example.test/other")
			ctx.SetStatusCode(201)
			return
		}
		maxAge60(ctx)
	})
	p := startProxy(t, cachedService(o.addr))
	get(t, p.addr, "/item")
	get(t, p.addr, "/other")
	require.EqualValues(t, 2, o.hits.Load())
	post := "POST /item HTTP/1.1\r\nHost: example.test\r\nContent-Length: 1\r\n\r\nx"

	fail.Store(true)
	resp, _ := roundTrip(t, p.addr, post)
	require.Equal(t, 500, resp.StatusCode)
	resp, _ = get(t, p.addr, "/item")
	assert.Equal(t, "hit", resp.Header.Get("X-Sluice-Cache"), "an error response invalidates nothing")

	fail.Store(false)
	resp, _ = roundTrip(t, p.addr, post)
	require.Equal(t, 201, resp.StatusCode)
	hits := o.hits.Load()
	resp, _ = get(t, p.addr, "/item")
	assert.Equal(t, "miss", resp.Header.Get("X-Sluice-Cache"))
	resp, _ = get(t, p.addr, "/other")
	assert.Equal(t, "miss", resp.Header.Get("X-Sluice-Cache"), "the Location is invalidated too")
	assert.Equal(t, hits+2, o.hits.Load())
}

func TestCacheHeadFromGet(t *testing.T) {
	o := startOriginLog(t, maxAge60)
	p := startProxy(t, cachedService(o.addr))
	get(t, p.addr, "/h")
	resp, body := roundTrip(t, p.addr, "HEAD /h HTTP/1.1\r\nHost: example.test\r\n\r\n")
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "hit", resp.Header.Get("X-Sluice-Cache"))
	assert.Empty(t, body)
	assert.Equal(t, fmt.Sprint(len("body of /h")), resp.Header.Get("Content-Length"))
	assert.EqualValues(t, 1, o.hits.Load())
}

func TestCacheOnlyIfCached(t *testing.T) {
	o := startOriginLog(t, maxAge60)
	p := startProxy(t, cachedService(o.addr))
	resp, _ := get(t, p.addr, "/o", "Cache-Control: only-if-cached")
	assert.Equal(t, 504, resp.StatusCode)
	assert.EqualValues(t, 0, o.hits.Load())
	get(t, p.addr, "/o")
	resp, _ = get(t, p.addr, "/o", "Cache-Control: only-if-cached")
	assert.Equal(t, 200, resp.StatusCode)
	assert.EqualValues(t, 1, o.hits.Load())
}

// A body larger than the inline limit is streamed to the client and
// stored as it passes; one over the object limit is not stored.
func TestCacheStreamedBodies(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 8<<10) // 128 KiB
	o := startOriginLog(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Cache-Control", "max-age=60")
		switch string(ctx.Path()) {
		case "/big":
			ctx.Write(big) //nolint:errcheck
		case "/chunked":
			ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
				for range 4 {
					w.Write(big[:32<<10]) //nolint:errcheck
					w.Flush()             //nolint:errcheck
				}
			})
		case "/huge":
			ctx.Write(append(big, big...)) //nolint:errcheck
		}
	})
	p := startProxy(t, cachedService(o.addr, func(c *cache.Config) { c.MaxObjectBytes = 200 << 10 }))
	for _, path := range []string{"/big", "/chunked"} {
		for i := range 2 {
			resp, body := get(t, p.addr, path)
			require.Equal(t, 200, resp.StatusCode)
			require.Equal(t, len(big), len(body), path)
			assert.Equal(t, []string{"miss", "hit"}[i], resp.Header.Get("X-Sluice-Cache"), path)
		}
	}
	for range 2 {
		resp, body := get(t, p.addr, "/huge")
		require.Equal(t, 2*len(big), len(body))
		assert.Equal(t, "miss", resp.Header.Get("X-Sluice-Cache"))
	}
	assert.EqualValues(t, 4, o.hits.Load())
	assert.EqualValues(t, 2, cacheState(t, p).TooLarge)
}

// 1,000 concurrent misses for one key reach the origin as one request.
func TestCacheCoalescesThousandMisses(t *testing.T) {
	release := make(chan struct{})
	o := startOriginLog(t, func(ctx *fasthttp.RequestCtx) {
		<-release
		maxAge60(ctx)
	})
	cfg := cachedService(o.addr, func(c *cache.Config) { c.CoalesceTimeout = time.Minute })
	p := startProxy(t, cfg)
	const clients = 1000
	client := &fasthttp.Client{MaxConnsPerHost: clients, ReadTimeout: time.Minute,
		// Not fasthttp's dialer, whose address cache keeps a goroutine.
		Dial: func(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, 30*time.Second) }}
	var wg sync.WaitGroup
	var ok, hits atomic.Int64
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + p.addr + "/popular")
			if err := client.DoTimeout(req, resp, time.Minute); err == nil && resp.StatusCode() == 200 &&
				string(resp.Body()) == "body of /popular" {
				ok.Add(1)
				if string(resp.Header.Peek("X-Sluice-Cache")) == "hit" {
					hits.Add(1)
				}
			}
		}()
	}
	// Let the requests pile up behind the first one, then answer it.
	require.Eventually(t, func() bool { return cacheState(t, p).Coalesced >= clients/2 || o.hits.Load() > 1 },
		30*time.Second, 5*time.Millisecond)
	close(release)
	wg.Wait()
	client.CloseIdleConnections()
	assert.EqualValues(t, clients, ok.Load())
	assert.EqualValues(t, clients-1, hits.Load())
	st := cacheState(t, p)
	assert.EqualValues(t, 1, st.Misses, "a waiter answered from the store is a hit only")
	assert.EqualValues(t, clients-1, st.Hits)
	assert.EqualValues(t, 1, o.hits.Load(), "one origin request for 1,000 concurrent misses")
}

// Waiters for a response that turns out not storable are released to
// fetch on their own: none hangs.
func TestCacheCoalescedNotStorable(t *testing.T) {
	release := make(chan struct{})
	o := startOriginLog(t, func(ctx *fasthttp.RequestCtx) {
		<-release
		ctx.Response.Header.Set("Cache-Control", "no-store")
		ctx.WriteString("private") //nolint:errcheck
	})
	p := startProxy(t, cachedService(o.addr))
	const n = 20
	results := make(chan int, n)
	for range n {
		go func() {
			resp, _ := get(t, p.addr, "/ns")
			results <- resp.StatusCode
		}()
	}
	require.Eventually(t, func() bool { return o.hits.Load() == 1 && cacheState(t, p).Coalesced == n-1 },
		10*time.Second, time.Millisecond)
	close(release)
	for range n {
		assert.Equal(t, 200, <-results)
	}
	assert.EqualValues(t, n, o.hits.Load())
}

// Under overload (one slot, held; a short queue timeout) a stale copy
// answers instead of a 503, with Age and X-Sluice-Cache: stale; with
// must-revalidate it does not.
func TestCacheStaleUnderOverload(t *testing.T) {
	hold := make(chan struct{})
	o := startOriginLog(t, func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/slow":
			<-hold
			ctx.WriteString("slow") //nolint:errcheck
		case "/strict":
			ctx.Response.Header.Set("Cache-Control", "max-age=0, must-revalidate")
			ctx.WriteString("strict") //nolint:errcheck
		default:
			ctx.Response.Header.Set("Cache-Control", "max-age=0")
			ctx.WriteString("stale-able") //nolint:errcheck
		}
	})
	cfg := cachedService(o.addr)
	require.NoError(t, cfg.Queue.Limit.UnmarshalText([]byte("static:1")))
	cfg.Queue.QueueTimeout = 50 * time.Millisecond
	p := startProxy(t, cfg)
	get(t, p.addr, "/page")
	get(t, p.addr, "/strict")
	slow := getAsync(t, p.addr, "/slow")
	require.Eventually(t, func() bool { return o.hits.Load() == 3 }, 5*time.Second, time.Millisecond)

	resp, body := get(t, p.addr, "/page")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "stale", resp.Header.Get("X-Sluice-Cache"))
	assert.Equal(t, "stale-able", body)
	assert.NotEmpty(t, resp.Header.Get("Age"))

	resp, _ = get(t, p.addr, "/strict")
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, "queue-timeout", resp.Header.Get("X-Sluice-Shed"))

	close(hold)
	assert.Equal(t, 200, (<-slow).resp.StatusCode)
	assert.EqualValues(t, 3, o.hits.Load(), "the refused requests never reached the origin")
	assert.EqualValues(t, 1, cacheState(t, p).Stale)
	st := firstService(p.Server).sched.Stats()
	assert.EqualValues(t, 2, st.QueueTimeout)
}

// stale_on_overload: false turns the overload answer off.
func TestCacheStaleOnOverloadOff(t *testing.T) {
	hold := make(chan struct{})
	o := startOriginLog(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/slow" {
			<-hold
		}
		ctx.Response.Header.Set("Cache-Control", "max-age=0")
	})
	off := false
	cfg := cachedService(o.addr, func(c *cache.Config) { c.StaleOnOverload = &off })
	require.NoError(t, cfg.Queue.Limit.UnmarshalText([]byte("static:1")))
	cfg.Queue.QueueTimeout = 50 * time.Millisecond
	p := startProxy(t, cfg)
	get(t, p.addr, "/page")
	slow := getAsync(t, p.addr, "/slow")
	require.Eventually(t, func() bool { return o.hits.Load() == 2 }, 5*time.Second, time.Millisecond)
	resp, _ := get(t, p.addr, "/page")
	assert.Equal(t, 503, resp.StatusCode)
	close(hold)
	<-slow
}

// stale-if-error: an origin's 5xx is replaced by the stored copy.
func TestCacheStaleIfError(t *testing.T) {
	var fail atomic.Bool
	o := startOriginLog(t, func(ctx *fasthttp.RequestCtx) {
		if fail.Load() {
			ctx.SetStatusCode(500)
			ctx.WriteString("broken") //nolint:errcheck
			return
		}
		ctx.Response.Header.Set("Cache-Control", "max-age=0, stale-if-error=60")
		ctx.WriteString("good") //nolint:errcheck
	})
	p := startProxy(t, cachedService(o.addr))
	get(t, p.addr, "/e")
	fail.Store(true)
	resp, body := get(t, p.addr, "/e")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "stale", resp.Header.Get("X-Sluice-Cache"))
	assert.Equal(t, "good", body)
}

// Many distinct keys: the store stays within its bound.
func TestCacheMemoryBound(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 2000)
	o := startOriginLog(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Cache-Control", "max-age=60")
		ctx.Write(body) //nolint:errcheck
	})
	const bound = 64 << 10
	p := startProxy(t, cachedService(o.addr, func(c *cache.Config) { c.MaxBytes = bound; c.MaxObjectBytes = 8 << 10 }))
	for i := range 300 {
		resp, got := get(t, p.addr, fmt.Sprintf("/k/%d", i))
		require.Equal(t, 200, resp.StatusCode)
		require.Len(t, got, len(body))
		require.LessOrEqual(t, cacheState(t, p).Bytes, int64(bound))
	}
	st := cacheState(t, p)
	assert.Positive(t, st.Evictions)
	assert.Greater(t, st.Entries, 10)
	resp, _ := get(t, p.addr, "/k/299")
	assert.Equal(t, "hit", resp.Header.Get("X-Sluice-Cache"))
}

// A route may turn the service's cache off, or on when the service's is off.
func TestCacheRouteSwitch(t *testing.T) {
	o := startOriginLog(t, maxAge60)
	on, off := true, false
	cfg := oneService(o.addr)
	cfg.Routes = []RouteConfig{
		{PathPrefix: "/on", Service: "web", Cache: &on},
		{PathPrefix: "/off", Service: "web", Cache: &off},
		{Service: "web"},
	}
	p := startProxy(t, cfg)
	for range 2 {
		get(t, p.addr, "/on")
		get(t, p.addr, "/off")
		resp, _ := get(t, p.addr, "/other")
		assert.Empty(t, resp.Header.Get("X-Sluice-Cache"))
	}
	assert.EqualValues(t, 5, o.hits.Load())
}
