package cache

import (
	"net/http"
	"strings"
	"time"
)

// Request is what the cache is told of a client's request.
type Request struct {
	Method string
	// Key is the primary cache key: the host, without port, in lower
	// case, then the request target as the client sent it ("example.com/a?b").
	Key    string
	Header RequestHeader
}

// Decision is what Lookup says to do with a request.
type Decision uint8

const (
	// Pass: the cache has nothing to do with this request (a method it
	// does not serve, a Range request); send it on and store nothing.
	Pass Decision = iota
	// Miss: nothing stored answers it; fetch, and store what is storable.
	Miss
	// Hit: a stored response answers it as it is (Entry; Stale says
	// whether the client's max-stale allowed a stale one).
	Hit
	// Revalidate: a stored response (Entry) may answer it once the origin
	// confirms it: send a conditional request.
	Revalidate
	// OnlyIfCached: the client asked for a stored response only and none
	// is usable: answer 504 (RFC 9111 5.2.1.7).
	OnlyIfCached
)

var decisionNames = [...]string{"pass", "miss", "hit", "revalidate", "only-if-cached"}

func (d Decision) String() string {
	if int(d) < len(decisionNames) {
		return decisionNames[d]
	}
	return "invalid"
}

// Lookup is Lookup's answer.
type Lookup struct {
	Decision Decision
	Entry    *Entry // Hit, Revalidate; nil otherwise
	Stale    bool   // Hit: the entry is stale, served within the client's max-stale
	// SWR: the entry (Revalidate) may be served stale while another
	// request revalidates it (stale-while-revalidate, RFC 5861 3).
	SWR bool
	// NoStore: the request said no-store; nothing of its response may
	// be stored.
	NoStore bool

	req directives
}

// cacheable methods: GET is stored; HEAD is answered from a stored GET.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions || m == http.MethodTrace
}

// Unsafe reports whether a method may change the resource, so that a
// non-error response to it invalidates what is stored (RFC 9111 4.4).
func Unsafe(method string) bool { return !safeMethod(method) }

// requestDirectives are the request's Cache-Control directives; without
// Cache-Control, Pragma: no-cache counts as no-cache (RFC 9111 5.4).
func requestDirectives(h RequestHeader) directives {
	if h == nil {
		return directives{}
	}
	cc := h.Peek("Cache-Control")
	if cc == nil {
		if p := h.Peek("Pragma"); p != nil && listHas([]string{string(p)}, "no-cache") {
			return directives{noCache: true}
		}
		return directives{}
	}
	return parseDirectives([]string{string(cc)})
}

// decide is Lookup's policy for entry e (nil: nothing stored matches),
// RFC 9111 4 and 5.2.1.
func decide(e *Entry, rd directives, now time.Time) Lookup {
	l := Lookup{NoStore: rd.noStore, req: rd}
	if e == nil {
		l.Decision = Miss
		if rd.onlyIfCached {
			l.Decision = OnlyIfCached
		}
		return l
	}
	l.Entry = e
	age := e.Age(now)
	fresh := e.lifetime > age
	usable := !e.cc.noCache && !rd.noCache
	if rd.hasMaxAge && age > rd.maxAge {
		usable = false
	}
	if rd.hasMinFresh && e.lifetime-age < rd.minFresh {
		usable = false
	}
	switch {
	case usable && fresh:
		l.Decision = Hit
	case usable && !fresh && rd.hasMaxStale && !e.noStale() &&
		(rd.maxStaleAny || age-e.lifetime <= rd.maxStale):
		l.Decision, l.Stale = Hit, true
	case rd.onlyIfCached:
		l.Decision, l.Entry = OnlyIfCached, nil
	default:
		l.Decision = Revalidate
		l.SWR = usable && !fresh && !e.noStale() && e.cc.hasSWR && age-e.lifetime <= e.cc.staleWhileRevalidate
	}
	return l
}

// StaleIfError reports whether the entry of a Revalidate may answer in
// place of an origin's error (a 5xx or no answer) at now: the response's
// or the request's stale-if-error (RFC 5861 4) covers its staleness, and
// nothing forbids serving it stale.
func (l *Lookup) StaleIfError(now time.Time) bool {
	e := l.Entry
	if e == nil || e.noStale() || l.req.noCache {
		return false
	}
	st := e.Staleness(now)
	return e.cc.hasSIE && st <= e.cc.staleIfError || l.req.hasSIE && st <= l.req.staleIfError
}

// StaleOnOverload reports whether the entry may answer a request the
// gateway refuses for overload, up to maxStale of staleness (0: any): an
// origin that cannot take the request is, for the client, a disconnected
// one (RFC 9111 4.2.4), so only the directives that forbid stale answers
// outright prevent it, the response's and the client's no-cache and
// max-age.
func (l *Lookup) StaleOnOverload(now time.Time, maxStale time.Duration) bool {
	e := l.Entry
	if e == nil || e.noStale() || l.req.noCache {
		return false
	}
	if l.req.hasMaxAge && e.Age(now) > l.req.maxAge {
		return false
	}
	return maxStale == 0 || e.Staleness(now) <= maxStale
}

// storable reports whether a response to req may be stored by a shared
// cache (RFC 9111 3 and 3.5), and why not.
func storable(req *Request, rd directives, resp *Response) (bool, string) {
	if req.Method != http.MethodGet {
		return false, "method"
	}
	switch {
	case resp.Status < 200 || resp.Status > 599:
		return false, "status"
	case resp.Status == http.StatusPartialContent || resp.Status == http.StatusNotModified:
		return false, "status" // the cache does not combine ranges; a 304 only updates
	}
	cc := parseDirectives(resp.Header.Values("Cache-Control"))
	switch {
	case rd.noStore || cc.noStore:
		return false, "no-store"
	case cc.private:
		return false, "private"
	case req.Header != nil && req.Header.Peek("Authorization") != nil &&
		!cc.public && !cc.mustRevalidate && !cc.hasSMaxAge:
		return false, "authorization"
	case contains(varyNames(resp.Header), "*"):
		return false, "vary-star" // would never match a request
	case resp.Header.Has("Set-Cookie"):
		// Allowed by RFC 9111, but one client's cookie would reach every
		// other: not stored, as Varnish does by default.
		return false, "set-cookie"
	}
	explicit := cc.hasMaxAge || cc.hasSMaxAge || resp.Header.Has("Expires") || cc.public
	if !explicit && !heuristicStatus(resp.Status) {
		return false, "no-freshness"
	}
	return true, ""
}

// NotModified reports whether a client's own conditional request is
// satisfied by e, so that it gets 304 rather than the body (RFC 9110
// 13.2.2: If-None-Match first, If-Modified-Since only without it).
func NotModified(e *Entry, h RequestHeader) bool {
	if h == nil {
		return false
	}
	if inm := h.Peek("If-None-Match"); inm != nil {
		return e.etag != "" && etagListMatches(string(inm), e.etag)
	}
	ims := h.Peek("If-Modified-Since")
	if ims == nil || e.lastMod == "" {
		return false
	}
	t, err := http.ParseTime(string(ims))
	lm, err2 := http.ParseTime(e.lastMod)
	return err == nil && err2 == nil && !lm.After(t)
}

// etagListMatches: weak comparison of an If-None-Match list with etag.
func etagListMatches(list, etag string) bool {
	if strings.TrimSpace(list) == "*" {
		return true
	}
	want := strings.TrimPrefix(etag, "W/")
	for len(list) > 0 {
		var item string
		item, list = nextItem(list)
		if strings.TrimPrefix(strings.TrimSpace(item), "W/") == want {
			return true
		}
	}
	return false
}

// Conditional returns the validators to send to revalidate e (RFC 9111
// 4.3.1): its entity tag as If-None-Match and its Last-Modified as
// If-Modified-Since, each "" when the entry has none.
func Conditional(e *Entry) (ifNoneMatch, ifModifiedSince string) {
	return e.etag, e.lastMod
}
