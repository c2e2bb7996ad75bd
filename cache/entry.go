package cache

import (
	"container/list"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// HeuristicMax caps a heuristic freshness lifetime (RFC 9111 4.2.2): 10%
// of the time since Last-Modified, at most a day, as Squid and httpd do.
const HeuristicMax = 24 * time.Hour

// Response is an origin's response as the cache is given it: a final
// status, the header section and the whole body.
type Response struct {
	Status int
	Header Header
	Body   []byte
}

// Entry is one stored response. It is immutable once stored: a 304's
// update stores a new Entry that shares the body, so a response being
// written from an Entry is never changed under it.
type Entry struct {
	Key    string // the primary key: host and request target
	Status int
	Header Header // without hop-by-hop fields; with a Date
	Body   []byte

	// RequestTime and ResponseTime are when the request that produced
	// it was sent and its response received (RFC 9111 4.2.3).
	RequestTime, ResponseTime time.Time

	cc         directives
	initialAge time.Duration // corrected_initial_age
	lifetime   time.Duration // freshness_lifetime
	varyNames  []string      // canonical names the response varies on
	varyValues []string      // the request's values of them, normalised
	etag       string
	lastMod    string
	size       int64

	elem *list.Element // in the store's LRU; protected by the store's mu
}

// heuristicStatus are the status codes cacheable by default, for which a
// heuristic lifetime may be used (RFC 9110 15.1).
func heuristicStatus(code int) bool {
	switch code {
	case 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// newEntry derives what the cache needs of a response it stores. The
// response's Date is the cache's own receipt time when the origin sent
// none (RFC 9110 6.6.1: a recipient that caches such a response MUST add
// one).
func newEntry(key string, req *Request, resp *Response, reqTime, respTime time.Time) *Entry {
	e := &Entry{Key: key, Status: resp.Status, Header: storedHeader(resp.Header), Body: resp.Body,
		RequestTime: reqTime, ResponseTime: respTime}
	if !e.Header.Has("Date") {
		e.Header = append(e.Header, Field{"Date", respTime.UTC().Format(http.TimeFormat)})
	}
	e.derive()
	e.varyNames = varyNames(e.Header)
	for _, n := range e.varyNames {
		e.varyValues = append(e.varyValues, varyValue(req.Header, n))
	}
	e.size = int64(len(key)+len(e.Body)) + entryOverhead
	for _, f := range e.Header {
		e.size += int64(len(f.Name)+len(f.Value)) + fieldOverhead
	}
	return e
}

// Accounting of an entry's memory beyond its bytes: the structs, the
// slice headers, the maps' share.
const (
	entryOverhead = 512
	fieldOverhead = 32
)

// derive computes the freshness lifetime and the corrected initial age
// from the header (again after a 304 merged new fields in).
func (e *Entry) derive() {
	h := e.Header
	e.cc = parseDirectives(h.Values("Cache-Control"))
	e.etag = h.Get("Etag")
	e.lastMod = h.Get("Last-Modified")
	date, err := http.ParseTime(h.Get("Date"))
	if err != nil {
		date = e.ResponseTime
	}
	// RFC 9111 4.2.3.
	var ageValue time.Duration
	if v, ok := parseDelta(strings.TrimSpace(h.Get("Age"))); ok {
		ageValue = v
	}
	apparent := max(e.ResponseTime.Sub(date), 0)
	delay := max(e.ResponseTime.Sub(e.RequestTime), 0)
	e.initialAge = max(apparent, ageValue+delay)
	e.lifetime = lifetime(e.Status, h, e.cc, date)
}

// lifetime is the freshness lifetime of RFC 9111 4.2.1, for a shared
// cache: s-maxage, else max-age, else Expires minus Date, else a
// heuristic where one is allowed.
func lifetime(status int, h Header, cc directives, date time.Time) time.Duration {
	switch {
	case cc.hasSMaxAge:
		return cc.sMaxAge
	case cc.hasMaxAge:
		return cc.maxAge
	case h.Has("Expires"):
		exp, err := http.ParseTime(h.Get("Expires"))
		if err != nil {
			return 0 // an invalid Expires ("0") means already expired
		}
		return max(exp.Sub(date), 0)
	}
	if !heuristicStatus(status) && !cc.public {
		return 0
	}
	lm, err := http.ParseTime(h.Get("Last-Modified"))
	if err != nil || !lm.Before(date) {
		return 0
	}
	return min(date.Sub(lm)/10, HeuristicMax)
}

// Age is the entry's current_age at now (RFC 9111 4.2.3).
func (e *Entry) Age(now time.Time) time.Duration {
	return e.initialAge + max(now.Sub(e.ResponseTime), 0)
}

// AgeHeader is the Age field value at now, in whole seconds.
func (e *Entry) AgeHeader(now time.Time) string {
	return string(e.AppendAge(nil, now))
}

// AppendAge appends the Age field value at now to dst: AgeHeader without
// a string to allocate, for the hit path.
func (e *Entry) AppendAge(dst []byte, now time.Time) []byte {
	s := int64(e.Age(now) / time.Second)
	if s >= 1<<31 {
		s = 1<<31 - 1 // capped near 2^31, as RFC 9111 1.2.2 allows
	}
	return strconv.AppendInt(dst, s, 10)
}

// Lifetime is the entry's freshness lifetime.
func (e *Entry) Lifetime() time.Duration { return e.lifetime }

// Fresh reports whether the entry is fresh at now.
func (e *Entry) Fresh(now time.Time) bool { return e.lifetime > e.Age(now) }

// Staleness is how long the entry has been stale at now (0 while fresh).
func (e *Entry) Staleness(now time.Time) time.Duration {
	return max(e.Age(now)-e.lifetime, 0)
}

// Size is what the entry counts against the store's bound.
func (e *Entry) Size() int64 { return e.size }

// ETag and LastModified are the entry's validators ("" when absent).
func (e *Entry) ETag() string         { return e.etag }
func (e *Entry) LastModified() string { return e.lastMod }

// noStale reports whether the response forbids serving it stale at all:
// no-cache (validate every time), must-revalidate, proxy-revalidate, or
// s-maxage, which implies proxy-revalidate in a shared cache (RFC 9111
// 4.2.4, 5.2.2.2, 5.2.2.8, 5.2.2.10).
func (e *Entry) noStale() bool {
	cc := e.cc
	return cc.noCache || cc.mustRevalidate || cc.proxyRevalidate || cc.hasSMaxAge
}

// varyNames lists the header fields a response varies on, canonicalised;
// "*" is kept as is.
func varyNames(h Header) []string {
	var out []string
	for _, v := range h.Values("Vary") {
		for len(v) > 0 {
			var item string
			item, v = nextItem(v)
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			if item != "*" {
				item = canonical(item)
			}
			if !contains(out, item) {
				out = append(out, item)
			}
		}
	}
	return out
}

// varyValue is a request's value of a field named by Vary, with the
// whitespace around list items removed (RFC 9111 4.1 allows normalising).
func varyValue(h RequestHeader, name string) string {
	if h == nil {
		return ""
	}
	v := h.Peek(name)
	if v == nil {
		return "\x00" // absent differs from empty
	}
	parts := strings.Split(string(v), ",")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
	}
	return strings.Join(parts, ",")
}

// matches reports whether the request selects this stored response: the
// same values for every field Vary nominates (RFC 9111 4.1), and never
// for Vary: *.
func (e *Entry) matches(h RequestHeader) bool {
	for i, n := range e.varyNames {
		if n == "*" || varyValue(h, n) != e.varyValues[i] {
			return false
		}
	}
	return true
}

// sameVariant reports whether two entries answer the same requests.
func (e *Entry) sameVariant(o *Entry) bool {
	if len(e.varyNames) != len(o.varyNames) {
		return false
	}
	for i := range e.varyNames {
		if e.varyNames[i] != o.varyNames[i] || e.varyValues[i] != o.varyValues[i] {
			return false
		}
	}
	return true
}

func canonical(s string) string { return textproto.CanonicalMIMEHeaderKey(s) }
