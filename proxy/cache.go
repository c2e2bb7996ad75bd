package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/sluiceproxy/sluice/cache"
	"github.com/sluiceproxy/sluice/scheduler"
)

// The cache stage, on routes with a cache (cache/ holds the RFC 9111
// rules; this file joins them to the request path). A fresh hit is
// answered here, before admission: it costs the origin nothing, so it
// takes no slot and waits in no queue. A miss, or a stored response that
// must be revalidated, goes the normal way (admission, upstream, relay)
// with the cache watching: the response body is copied aside while it is
// relayed, up to the size limit, and stored at the end if the exchange
// completed and the response is storable (finish calls cacheFinish). A
// request the scheduler refuses, or that no backend answers, gets a stale
// copy instead when the response and the route allow it.
//
// Concurrent misses for a key coalesce: the first goes to the origin, the
// others wait for it (cache.Join, bounded by coalesce_timeout and the
// request's deadline) and are answered from what it stored, or fetch on
// their own when nothing was.
//
// Routes without a cache never reach this file: run checks one pointer,
// so the hot path stays as it was (TestProxyZeroAlloc).
//
// Every answer on a cached route says what the cache did in
// X-Sluice-Cache: hit, miss, stale (served stale: max-stale,
// stale-while-revalidate, stale-if-error or overload; Age says how old)
// or revalidated (the origin confirmed the stored copy with a 304).

// routeCache is a route's cache: the service's store and its settings.
type routeCache struct {
	c   *cache.Cache
	cfg cache.Config // defaults applied
	// routeOnly: the service's cache is not enabled, only some routes
	// turn it on; the others do not cache.
	routeOnly bool
}

// cacheFlow is what the cache stage keeps of a request that goes to the
// origin. It is allocated per such request (cached routes only) and
// outlives the exchange, which finish may recycle while forward returns.
//
// It holds copies of the request's header and, once forward returned,
// of the response's fields: a spooled response's end (buffer.go) may
// come on the spool's own goroutine after fasthttp wrote the response
// and went on to the connection's next request in the same ctx, so
// cacheFinish must not read ctx then.
type cacheFlow struct {
	rc     *routeCache
	ctx    *fasthttp.RequestCtx
	req    cache.Request
	look   cache.Lookup
	flight *cache.Flight // this request leads the key's fetch
	reqID  []byte
	host   []byte // the request's host, lower case, without port
	unsafe bool

	reqHeader  fasthttp.RequestHeader // the client's, for req.Header
	respFields cache.Header           // the response's, from when forward returned
	haveFields bool

	body []byte // the response body as relayed, up to the size limit
	teed bool   // the body went through tee (streamed, not inline)
	over bool   // the body passed the size limit

	inForward bool // forward has not returned: the response is not yet handed to fasthttp
	replace   bool // the response is being dropped for a stale copy
	finished  bool // cacheFinish ran; the exchange may be recycled

	pending *cache.Entry // to answer with in place of the origin's response
	label   string
	notMod  bool // the client's own conditional holds for pending
}

var (
	hdrCache           = []byte("X-Sluice-Cache")
	hdrAge             = []byte("Age")
	hdrIfNoneMatch     = []byte("If-None-Match")
	hdrIfModifiedSince = []byte("If-Modified-Since")
)

const (
	cacheHit         = "hit"
	cacheMiss        = "miss"
	cacheStale       = "stale"
	cacheRevalidated = "revalidated"
)

// cached is run's last step on a route with a cache. A hit is answered
// from what the exchange owns (the key in x.cacheKey, the header in ctx)
// and allocates nothing; only a request that goes to the origin gets a
// cacheFlow, with its own copies, since it outlives the exchange.
func (x *exchange) cached(target []byte, set headerSet) error {
	rc := x.route.cache
	c := rc.c
	h := &x.ctx.Request.Header
	now := time.Now()
	x.cacheKey = appendCacheKey(x.cacheKey[:0], hostNoPort(h.Host()), x.path)
	hostLen := len(x.cacheKey) - len(x.path)
	method := b2s(x.method)
	unsafe := cache.Unsafe(method)
	var look cache.Lookup
	if !unsafe {
		// The key and the method are the exchange's buffers, valid for
		// Lookup only: it keeps neither.
		look = c.Lookup(&cache.Request{Method: method, Key: b2s(x.cacheKey), Header: h}, now)
		switch look.Decision {
		case cache.Pass:
			x.prepareRequest(target, set)
			return x.forward()
		case cache.OnlyIfCached:
			return errOnlyIfCached
		case cache.Hit:
			label := cacheHit
			if look.Stale {
				label = cacheStale
			}
			return x.answerCached(look.Entry, label, now)
		}
	}
	x.prepareRequest(target, set)
	key := string(x.cacheKey)
	f := &cacheFlow{rc: rc, ctx: x.ctx, host: []byte(key[:hostLen]), unsafe: unsafe, look: look}
	h.CopyTo(&f.reqHeader)
	f.req = cache.Request{Method: string(x.method), Key: key, Header: &f.reqHeader}
	if unsafe {
		return x.forwardCached(f)
	}
	// A miss or a revalidation. HEAD fetches alone: its response is not
	// stored, so nobody could be answered from it.
	if !x.isHead {
		fl, leader := c.Join(f.req.Key, now)
		switch {
		case leader:
			f.flight = fl
		case fl != nil:
			if f.look.SWR {
				c.CountStale()
				return x.answerCached(f.look.Entry, cacheStale, now)
			}
			wait := rc.cfg.CoalesceTimeout
			if d := x.sreq.Deadline; !d.IsZero() {
				wait = min(wait, d.Sub(now))
			}
			if wait > 0 && c.Wait(fl, wait) {
				now = time.Now()
				if l := c.Lookup(&f.req, now); l.Decision == cache.Hit {
					return x.answerCached(l.Entry, cacheHit, now)
				} else if l.Decision == cache.Revalidate || l.Decision == cache.Miss {
					f.look = l
				}
			}
		}
	}
	if f.look.Decision == cache.Miss {
		c.CountMiss()
	}
	if f.look.Decision == cache.Revalidate {
		// The validators are the stored response's; the client's own
		// conditionals are evaluated against the result (NotModified).
		out := &x.req.Header
		out.DelBytes(hdrIfNoneMatch)
		out.DelBytes(hdrIfModifiedSince)
		inm, ims := cache.Conditional(f.look.Entry)
		if inm != "" {
			out.SetBytesK(hdrIfNoneMatch, inm)
		}
		if ims != "" {
			out.SetBytesK(hdrIfModifiedSince, ims)
		}
	}
	return x.forwardCached(f)
}

// forwardCached sends the request the normal way with f watching, and
// answers from the cache instead where the outcome calls for it.
func (x *exchange) forwardCached(f *cacheFlow) error {
	f.reqID = append(f.reqID[:0], x.reqID...)
	x.cache = f
	f.inForward = true
	err := x.forward()
	f.inForward = false
	if err == nil && !f.finished {
		// The response's end is still to come, perhaps where ctx is no
		// longer this request's: keep what cacheFinish needs of it now.
		f.respFields, f.haveFields = responseFields(&f.ctx.Response.Header), true
	}
	c := f.rc.c
	if err != nil {
		// No response reached the client: finish did not run and the
		// exchange is still ours.
		x.cache = nil
		now := time.Now()
		c.End(f.flight, false, false, now)
		if f.staleOnError(err, now) {
			c.CountStale()
			x.unwatch()
			if x.conn != nil {
				x.backend.Release(x.conn, false)
				x.conn = nil
			}
			x.done(scheduler.Ignore, now)
			return x.answerCached(f.look.Entry, cacheStale, now)
		}
		return err
	}
	if !f.finished && x.status >= 500 && f.look.Entry != nil && f.look.StaleIfError(time.Now()) {
		// A streamed 5xx that stale-if-error replaces: dropping its body
		// ends the exchange (finish, then cacheFinish sets pending).
		f.replace = true
		f.ctx.Response.ResetBody()
	}
	switch {
	case f.pending != nil:
		writeEntry(f.ctx, f.pending, f.label, time.Now(), f.reqID, f.notMod)
	case !f.unsafe:
		f.ctx.Response.Header.SetCanonical(hdrCache, s2b(cacheMiss))
	}
	return nil
}

// staleOnError reports whether a stored copy answers in place of err: a
// refusal for overload (where the route allows it), or no answer from
// the origin (stale-if-error).
func (f *cacheFlow) staleOnError(err error, now time.Time) bool {
	if f.unsafe || f.look.Entry == nil {
		return false
	}
	switch {
	case isOverload(err):
		return *f.rc.cfg.StaleOnOverload && f.look.StaleOnOverload(now, f.rc.cfg.MaxStale)
	case err == errBadGateway || err == errGatewayTimeout:
		return f.look.StaleIfError(now) ||
			*f.rc.cfg.StaleOnOverload && f.look.StaleOnOverload(now, f.rc.cfg.MaxStale)
	}
	return false
}

// isOverload: the scheduler refused the request because the service has
// no room for it (not because the client left).
func isOverload(err error) bool {
	return errors.Is(err, scheduler.ErrQueueFull) || errors.Is(err, scheduler.ErrQueueTimeout) ||
		errors.Is(err, scheduler.ErrDeadline) || errors.Is(err, scheduler.ErrTenantShare) ||
		errors.Is(err, scheduler.ErrNoBackend)
}

// answerCached answers from e without a backend and ends the exchange.
func (x *exchange) answerCached(e *cache.Entry, label string, now time.Time) error {
	notMod := cache.NotModified(e, &x.ctx.Request.Header)
	writeEntry(x.ctx, e, label, now, x.reqID, notMod)
	x.status = x.ctx.Response.StatusCode()
	if !notMod && !x.isHead {
		x.respBytes = int64(len(e.Body))
	}
	x.record(time.Now(), scheduler.Ignore, nil)
	x.s.releaseExchange(x)
	return nil
}

// writeEntry sets ctx's response to the stored e. The body is not copied:
// entries are immutable.
func writeEntry(ctx *fasthttp.RequestCtx, e *cache.Entry, label string, now time.Time, reqID []byte, notMod bool) {
	resp := &ctx.Response
	resp.Reset()
	resp.Header.SetNoDefaultContentType(true)
	resp.SetStatusCode(e.Status)
	for _, f := range e.Header {
		resp.Header.Add(f.Name, f.Value)
	}
	var age [20]byte // the header copies it
	resp.Header.SetCanonical(hdrAge, e.AppendAge(age[:0], now))
	resp.Header.SetCanonical(hdrCache, s2b(label))
	resp.Header.SetCanonical(hdrRequestID, reqID)
	if notMod {
		resp.SetStatusCode(fasthttp.StatusNotModified)
		return
	}
	resp.SetBodyRaw(e.Body)
}

// tee copies a piece of the relayed response body aside.
func (f *cacheFlow) tee(p []byte) {
	f.teed = true
	if f.over || f.unsafe {
		return
	}
	if int64(len(f.body)+len(p)) > f.rc.c.MaxObjectBytes() {
		f.over, f.body = true, nil
		return
	}
	f.body = append(f.body, p...)
}

// cacheFinish is finish's hook on a cached route, run before the exchange
// reports: it stores the response, applies a 304, or picks a stale copy
// to answer with, and always ends the key's flight.
func (x *exchange) cacheFinish() {
	f := x.cache
	x.cache = nil
	f.finished = true
	c := f.rc.c
	now := time.Now()
	respTime := x.now
	reqTime := respTime.Add(-x.latency)
	status := x.status
	if f.unsafe {
		if status >= 200 && status < 400 {
			f.invalidate(f.fields(x))
		}
		return
	}
	e := f.look.Entry
	switch {
	case f.look.Decision == cache.Revalidate && status == fasthttp.StatusNotModified:
		if u := c.Revalidated(e, f.fields(x), reqTime, respTime); u != nil {
			f.answerWith(x, u, cacheRevalidated)
			c.End(f.flight, true, false, now)
			return
		}
	case status >= 500 && e != nil && (f.inForward || f.replace) && f.look.StaleIfError(now):
		c.CountStale()
		f.answerWith(x, e, cacheStale)
		c.End(f.flight, false, false, now)
		return
	}
	if f.look.Decision == cache.Revalidate {
		c.CountMiss()
	}
	complete := x.bodyDone && x.bodyErr == nil
	res := cache.NotStorable
	switch {
	case !complete || x.isHead || status == fasthttp.StatusNotModified:
	case f.over:
		res = cache.TooLarge
		c.CountTooLarge()
	default:
		body := f.body
		if !f.teed {
			// Inline or empty: the body is in the client response.
			body = append([]byte(nil), x.ctx.Response.Body()...)
		}
		res = c.Store(&f.req, &f.look, &cache.Response{Status: status, Header: f.fields(x), Body: body},
			reqTime, respTime)
	}
	// Nothing stored from a complete response will not be next time
	// either: the key is fetched without coalescing for a while.
	c.End(f.flight, res == cache.Stored, complete && res != cache.Stored, now)
}

// fields is the response's header for the cache: the copy taken when
// forward returned, or, when the exchange ends inside forward (an inline
// body), the client response's own, which is still this request's.
func (f *cacheFlow) fields(x *exchange) cache.Header {
	if f.haveFields {
		return f.respFields
	}
	return responseFields(&x.ctx.Response.Header)
}

// answerWith makes e the answer in place of the origin's response.
func (f *cacheFlow) answerWith(x *exchange, e *cache.Entry, label string) {
	f.pending, f.label = e, label
	f.notMod = cache.NotModified(e, &f.reqHeader)
	x.status = e.Status
	if f.notMod {
		x.status = fasthttp.StatusNotModified
	}
}

// invalidate removes what is stored for the target of an unsafe request
// and for its Location and Content-Location when they are of the same
// origin (RFC 9111 4.4).
func (f *cacheFlow) invalidate(h cache.Header) {
	c := f.rc.c
	c.Invalidate(f.req.Key)
	for _, name := range []string{"Location", "Content-Location"} {
		if k, ok := sameOriginKey(f.host, h.Peek(name)); ok {
			c.Invalidate(k)
		}
	}
}

// sameOriginKey is the cache key of a Location-like reference of a
// response on host: a path, or an absolute http(s) URL of the same host.
func sameOriginKey(host, ref []byte) (string, bool) {
	if len(ref) == 0 {
		return "", false
	}
	if ref[0] == '/' {
		if len(ref) > 1 && ref[1] == '/' {
			return "", false // network-path reference: another authority
		}
		return cacheKey(host, ref), true
	}
	path, authority, err := splitTarget(ref)
	if err != nil || authority == nil || !bytes.EqualFold(hostNoPort(authority), host) {
		return "", false
	}
	return cacheKey(host, appendOriginForm(nil, path, false)), true
}

// cacheKey is the primary key: host (lower case, no port) and target.
func cacheKey(host, target []byte) string {
	return string(appendCacheKey(make([]byte, 0, len(host)+len(target)), host, target))
}

// appendCacheKey appends the primary key of host and target to dst.
// ASCII hosts (all of them, in practice) are lowered in place; any other
// gets Unicode's case mapping, as bytes.ToLower gives it.
func appendCacheKey(dst, host, target []byte) []byte {
	for _, b := range host {
		if b >= utf8.RuneSelf {
			return append(append(dst, bytes.ToLower(host)...), target...)
		}
	}
	for _, b := range host {
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		dst = append(dst, b)
	}
	return append(dst, target...)
}

// responseFields copies a client response's header for the cache,
// without what is the proxy's per request (X-Request-Id, X-Sluice-Cache)
// or the message's framing.
func responseFields(h *fasthttp.ResponseHeader) cache.Header {
	out := make(cache.Header, 0, h.Len())
	for k, v := range h.All() {
		switch {
		case bytes.EqualFold(k, hdrRequestID), bytes.EqualFold(k, hdrCache), bytes.EqualFold(k, hdrContentLength),
			bytes.EqualFold(k, hdrTransferEncoding), bytes.EqualFold(k, hdrConnection):
			continue
		}
		out = append(out, cache.Field{Name: string(k), Value: string(v)})
	}
	return out
}

// routeCaches are the caches of one configuration's services, by name.
type routeCaches map[string]*routeCache

// configureCaches gives every service of cfg that a route caches for (or
// the fallback, with no routes) its cache: the one it has, resized, or a
// new one; a service no route caches for drops its own. Called with
// reloadMu held.
func configureCaches(cfg Config, svcs map[string]*service) routeCaches {
	wanted := map[string]bool{}
	for _, sc := range cfg.Services {
		if sc.Cache.Enabled {
			wanted[sc.Name] = true
		}
	}
	for _, rc := range cfg.Routes {
		if rc.Cache != nil && *rc.Cache {
			wanted[rc.Service] = true
		}
	}
	out := routeCaches{}
	for _, sc := range cfg.Services {
		svc := svcs[sc.Name]
		if !wanted[sc.Name] {
			svc.cache = nil
			continue
		}
		if svc.cache == nil {
			svc.cache = cache.New(*sc.Cache)
		} else {
			svc.cache.SetLimits(*sc.Cache)
		}
		out[sc.Name] = &routeCache{c: svc.cache, cfg: *sc.Cache}
	}
	for _, sc := range cfg.Services {
		if rc := out[sc.Name]; rc != nil && !sc.Cache.Enabled {
			rc.routeOnly = true
		}
	}
	return out
}

// forRoute is the cache of a route: its service's, unless the route turns
// it off, or the service's is on only for other routes.
func (rcs routeCaches) forRoute(r RouteConfig) *routeCache {
	c := rcs[r.Service]
	switch {
	case c == nil:
		return nil
	case r.Cache != nil:
		if *r.Cache {
			return c
		}
		return nil
	case c.routeOnly:
		return nil
	}
	return c
}

// ErrNoCache: the service has no cache to purge.
var ErrNoCache = errors.New("service has no cache")

// PurgeCache removes from a service's cache the responses stored under
// key ("host/path?query", the host in lower case without port), or with
// prefix under every key that starts with it, and returns how many.
func (s *Server) PurgeCache(service, key string, prefix bool) (int, error) {
	s.reloadMu.Lock()
	svc := s.services[service]
	var c *cache.Cache
	if svc != nil {
		c = svc.cache
	}
	s.reloadMu.Unlock()
	switch {
	case svc == nil:
		return 0, fmt.Errorf("service %q: %w", service, ErrUnknownService)
	case c == nil:
		return 0, fmt.Errorf("service %q: %w", service, ErrNoCache)
	}
	return c.Purge(key, prefix), nil
}
