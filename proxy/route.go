package proxy

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/sluiceproxy/sluice/scheduler"
)

// route is a RouteConfig compiled for matching without allocation.
type route struct {
	host       []byte // lower case, no port; nil matches any
	pathPrefix []byte
	headers    []headerMatch
	svc        *service
	// hostRewrite is the service's host_rewrite, nil for none.
	hostRewrite []byte
	class       scheduler.Class
	hasClass    bool
	timeout     time.Duration
	name        string // for the observer: the service, or "host/prefix"
	// cache is the route's cache (cache.go); nil: requests on the route
	// are not cached.
	cache *routeCache
	// bufferResponses, bufferRequests: the route's buffering, or the
	// default's (buffer.go).
	bufferResponses bool
	bufferRequests  bool
	// hedge is the route's hedging policy and budget (hedge.go); nil: no
	// hedges.
	hedge *hedgePolicy
}

type headerMatch struct{ key, value []byte }

// hedgeOf is the hedging policy of rc: its own block, else the top-level one.
func hedgeOf(cfg Config, rc RouteConfig) *HedgeConfig {
	if rc.Hedge != nil {
		return rc.Hedge
	}
	return &cfg.Hedge
}

// onOff is a route's "on" or "off", or the default when it says neither.
func onOff(v string, def *bool) bool {
	switch v {
	case "on":
		return true
	case "off":
		return false
	}
	return def == nil || *def
}

func newRoute(rc RouteConfig, svc *service, hostRewrite []byte, b BufferingConfig) route {
	r := route{svc: svc, hostRewrite: hostRewrite, timeout: rc.Timeout, name: rc.Host + rc.PathPrefix,
		bufferResponses: onOff(rc.Buffering, b.Responses), bufferRequests: onOff(rc.RequestBuffering, b.Requests)}
	if r.name == "" {
		r.name = rc.Service
	}
	if rc.Host != "" {
		h := strings.ToLower(rc.Host)
		if hh, _, err := net.SplitHostPort(h); err == nil {
			h = hh
		}
		r.host = []byte(h)
	}
	if rc.PathPrefix != "" {
		r.pathPrefix = []byte(rc.PathPrefix)
	}
	for k, v := range rc.Headers {
		r.headers = append(r.headers, headerMatch{key: []byte(k), value: []byte(v)})
	}
	if rc.Priority != "" {
		r.class, r.hasClass = scheduler.ParseClass(rc.Priority)
	}
	return r
}

func (r *route) match(h *fasthttp.RequestHeader, path []byte) bool {
	if r.host != nil && !bytes.EqualFold(hostNoPort(h.Host()), r.host) {
		return false
	}
	if r.pathPrefix != nil && !bytes.HasPrefix(path, r.pathPrefix) {
		return false
	}
	for i := range r.headers {
		if !bytes.Equal(h.PeekBytes(r.headers[i].key), r.headers[i].value) {
			return false
		}
	}
	return true
}

// pick returns the first matching route; with no routes configured, the
// fallback to the first service; nil when routes are configured and none
// matches (404).
func (rt *liveConfig) pick(h *fasthttp.RequestHeader, path []byte) *route {
	for i := range rt.routes {
		if rt.routes[i].match(h, path) {
			return &rt.routes[i]
		}
	}
	return rt.fallback
}

// hostNoPort strips ":port" from a Host value, minding IPv6 brackets.
func hostNoPort(h []byte) []byte {
	if len(h) > 0 && h[0] == '[' {
		if i := bytes.IndexByte(h, ']'); i > 0 {
			return h[1:i]
		}
		return h
	}
	if i := bytes.LastIndexByte(h, ':'); i >= 0 {
		return h[:i]
	}
	return h
}

// splitTarget splits a request target (RFC 9112 3.2) into the part a
// backend gets and, for absolute form ("http://h:8080/a?x"), the
// authority, which replaces Host (RFC 9112 3.2.2). Origin form ("/a%2Fb?x"),
// asterisk form and anything else fasthttp accepted pass as they are, with
// a nil authority. The path of an absolute target is returned from its
// "/" on, or from its "?" when the path is empty (the caller adds the "/"
// that origin form then needs). Nothing is decoded or normalised.
//
// Only http and https absolute targets are taken: a gateway serves no
// other scheme. An empty authority, or one with userinfo (RFC 9110 4.2.4:
// never sent to an origin) or a character outside RFC 3986's host and
// port syntax, is an error, as is any other scheme.
func splitTarget(uri []byte) (path, authority []byte, err error) {
	if len(uri) == 0 || uri[0] == '/' || uri[0] == '*' {
		return uri, nil, nil
	}
	i := bytes.Index(uri, strSchemeSep)
	if i < 0 {
		return uri, nil, nil
	}
	if scheme := uri[:i]; !bytes.EqualFold(scheme, strHTTP) && !bytes.EqualFold(scheme, strHTTPS) {
		return nil, nil, errBadTarget
	}
	rest := uri[i+len(strSchemeSep):]
	j := bytes.IndexAny(rest, "/?")
	if j < 0 {
		j = len(rest)
	}
	authority, path = rest[:j], rest[j:]
	if len(authority) == 0 {
		return nil, nil, errBadTarget
	}
	for _, c := range authority {
		if !isAuthorityChar(c) {
			return nil, nil, errBadTarget
		}
	}
	return path, authority, nil
}

var strSchemeSep = []byte("://")

// isAuthorityChar: what RFC 3986 3.2.2 and 3.2.3 allow in a host and port
// (reg-name, IP literals, percent-encoding), which excludes "@".
func isAuthorityChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', '%', ':', '[', ']':
		return true
	}
	return false
}

// pathOf is the path of an origin-form target, without the query.
func pathOf(target []byte) []byte {
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		return target[:i]
	}
	return target
}

// classifier turns request headers into a scheduler.Request.
type classifier struct {
	prioHeader     []byte
	tenantHeader   []byte
	apiKeyHeader   []byte
	deadlineHeader []byte
	tenantFrom     uint8
}

const (
	tenantFromHeader = iota
	tenantFromAPIKey
	tenantFromIP
)

func newClassifier(c ClassifyConfig) classifier {
	k := classifier{
		prioHeader:     []byte(c.PriorityHeader),
		tenantHeader:   []byte(c.TenantHeader),
		apiKeyHeader:   []byte(c.APIKeyHeader),
		deadlineHeader: []byte(c.DeadlineHeader),
	}
	switch c.TenantFrom {
	case "api-key":
		k.tenantFrom = tenantFromAPIKey
	case "client-ip":
		k.tenantFrom = tenantFromIP
	}
	return k
}

// classify fills r from the request. ip is the client address in text.
func (k *classifier) classify(r *scheduler.Request, h *fasthttp.RequestHeader, rt *route, ip []byte, arrival time.Time) {
	r.Class = scheduler.Normal
	if rt.hasClass {
		r.Class = rt.class
	}
	if v := h.PeekBytes(k.prioHeader); len(v) > 0 {
		if c, ok := scheduler.ParseClassBytes(v); ok {
			r.Class = c
		}
	}
	var id []byte
	switch k.tenantFrom {
	case tenantFromHeader:
		if id = h.PeekBytes(k.tenantHeader); len(id) == 0 {
			id = ip
		}
	case tenantFromAPIKey:
		id = h.PeekBytes(k.apiKeyHeader)
	case tenantFromIP:
		id = ip
	}
	r.Tenant = 0
	if len(id) > 0 {
		r.Tenant = scheduler.TenantKey(id)
	}
	r.Deadline = time.Time{}
	if rt.timeout > 0 {
		r.Deadline = arrival.Add(rt.timeout)
	}
	if v := h.PeekBytes(k.deadlineHeader); len(v) > 0 {
		if d, err := time.ParseDuration(b2s(v)); err == nil && d > 0 {
			if dl := arrival.Add(d); r.Deadline.IsZero() || dl.Before(r.Deadline) {
				r.Deadline = dl
			}
		}
	}
	r.Exclude = r.Exclude[:0]
}

// appendIP appends the text form of ip without allocating.
func appendIP(dst []byte, ip net.IP) []byte {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return dst
	}
	return a.Unmap().AppendTo(dst)
}

func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
