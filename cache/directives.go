package cache

import (
	"strconv"
	"strings"
	"time"
)

// maxDelta is the largest delta-seconds value kept: RFC 9111 1.2.2 says a
// larger one (or one that overflows) is taken as 2^31 seconds.
const maxDelta = (1 << 31) * time.Second

// directives are the Cache-Control directives the cache acts on, of a
// request or a response. A directive given more than once counts by its
// first occurrence (RFC 9111 4.2.1). An argument that is not a valid
// delta-seconds makes the directive present with the value 0 for max-age
// and s-maxage (the response is then stale at once, the safe reading),
// and leaves the others absent.
type directives struct {
	noStore, noCache, private, public bool
	mustRevalidate, proxyRevalidate   bool
	onlyIfCached, noTransform         bool

	hasMaxAge, hasSMaxAge, hasMinFresh bool
	hasMaxStale, maxStaleAny           bool // max-stale without a value: any staleness
	hasSWR, hasSIE                     bool

	maxAge, sMaxAge, minFresh, maxStale time.Duration
	staleWhileRevalidate, staleIfError  time.Duration
}

// parseDirectives reads every Cache-Control field value (a comma-separated
// list, case-insensitive names, token or quoted-string arguments).
func parseDirectives(values []string) directives {
	var d directives
	seen := map[string]bool{}
	for _, v := range values {
		for len(v) > 0 {
			var item string
			item, v = nextItem(v)
			name, arg, hasArg := strings.Cut(item, "=")
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" || seen[name] {
				continue
			}
			seen[name] = true
			arg = strings.TrimSpace(arg)
			if len(arg) >= 2 && arg[0] == '"' && arg[len(arg)-1] == '"' {
				arg = arg[1 : len(arg)-1]
			}
			secs, ok := parseDelta(arg)
			switch name {
			case "no-store":
				d.noStore = true
			case "no-cache":
				// A qualified no-cache ("no-cache=Set-Cookie") is taken as
				// unqualified (RFC 9111 5.2.2.4 allows it): validate always.
				d.noCache = true
			case "private":
				d.private = true // qualified or not: a shared cache does not store it
			case "public":
				d.public = true
			case "must-revalidate":
				d.mustRevalidate = true
			case "proxy-revalidate":
				d.proxyRevalidate = true
			case "only-if-cached":
				d.onlyIfCached = true
			case "no-transform":
				d.noTransform = true
			case "max-age":
				d.hasMaxAge, d.maxAge = true, secs // invalid: 0, stale at once
			case "s-maxage":
				d.hasSMaxAge, d.sMaxAge = true, secs
			case "min-fresh":
				d.hasMinFresh, d.minFresh = ok, secs
			case "max-stale":
				switch {
				case !hasArg:
					d.hasMaxStale, d.maxStaleAny = true, true
				case ok:
					d.hasMaxStale, d.maxStale = true, secs
				}
			case "stale-while-revalidate":
				d.hasSWR, d.staleWhileRevalidate = ok, secs
			case "stale-if-error":
				d.hasSIE, d.staleIfError = ok, secs
			}
		}
	}
	return d
}

// nextItem splits the first element off a comma-separated list, minding
// quoted strings (which may hold commas).
func nextItem(v string) (item, rest string) {
	inQuote := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && inQuote:
			i++
		case c == '"':
			inQuote = !inQuote
		case c == ',' && !inQuote:
			return v[:i], v[i+1:]
		}
	}
	return v, ""
}

// parseDelta reads delta-seconds (RFC 9111 1.2.2): digits only.
func parseDelta(s string) (time.Duration, bool) {
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n >= 1<<31 {
		return maxDelta, true
	}
	return time.Duration(n) * time.Second, true
}

// listHas reports whether a comma-separated field value holds token,
// case-insensitively ("Pragma: no-cache", "Connection: close").
func listHas(values []string, token string) bool {
	for _, v := range values {
		for len(v) > 0 {
			var item string
			item, v = nextItem(v)
			if strings.EqualFold(strings.TrimSpace(item), token) {
				return true
			}
		}
	}
	return false
}
