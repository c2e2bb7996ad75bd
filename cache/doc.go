// Package cache is Sluice's HTTP cache: the RFC 9111 rules for a shared
// cache, a memory store bounded in bytes, request coalescing and the
// decisions about stale answers (RFC 5861, and stale copies when the
// gateway is overloaded). The proxy's cache stage (proxy/cache.go) is
// its only user; the package knows nothing of the proxy, its scheduler
// or fasthttp, and takes time as an argument everywhere, so that every
// rule is tested on a fake clock.
//
// # Contract
//
// Lookup says what to do with a request: Pass (not the cache's business:
// a method other than GET and HEAD, a Range request), Miss, Hit (a stored
// response answers as it is), Revalidate (a stored response may answer
// once the origin confirms it with a 304) or OnlyIfCached (504). The
// caller fetches on Miss and Revalidate, sending the validators
// Conditional gives, then calls Store with a complete response or
// Revalidated with a 304's header. An unsafe method's non-error response
// invalidates its target (Invalidate). Entries are immutable: a 304
// stores a new Entry sharing the body, so a response being written from
// an Entry is never changed under it and needs no lock.
//
// Coalescing (coalesce.go): the first request to miss a key leads its
// fetch (Join), the others Wait for it, bounded by a timeout, and look
// the key up again; End always releases them, with or without a stored
// response, so a waiter never hangs on a fetch that failed, was refused
// or was not storable. A key found not storable is fetched without
// coalescing for PassTTL (Varnish's hit-for-miss), so that uncacheable
// resources are not serialised.
//
// # RFC 9111 as implemented
//
// Storing (3, 3.5): GET only (HEAD is answered from a stored GET; a HEAD
// response is not stored); final status codes but 206 and 304; not with
// no-store in the request or the response, not private (qualified or
// not), not with Authorization in the request unless public, s-maxage or
// must-revalidate; not with Vary: *; and only with explicit freshness
// (max-age, s-maxage, Expires), public, or a status cacheable by default
// (RFC 9110 15.1). Hop-by-hop fields, those named by Connection, and
// Content-Length are not stored; a Date is added when the origin sent
// none. The cache also declines responses with Set-Cookie (allowed by the
// RFC; Varnish's default), a choice, not a rule.
//
// Freshness (4.2.1, 4.2.2): s-maxage, else max-age, else Expires minus
// Date (an invalid Expires is already expired), else, for the statuses
// cacheable by default or with public, 10% of Date minus Last-Modified,
// at most HeuristicMax. The first of repeated directives counts; an
// invalid max-age makes the response stale. Age (4.2.3): the corrected
// initial age from the Age field, the apparent age and the response
// delay, plus the resident time; the caller sends it as Age.
//
// Serving (4, 5.2.1): Vary's nominated request fields must match (whitespace
// around list items normalised; absent differs from empty). A stale
// response is served without validation only within the request's
// max-stale, and never when the response has no-cache, must-revalidate,
// proxy-revalidate or s-maxage. Request no-cache (and Pragma: no-cache
// without Cache-Control), max-age and min-fresh force revalidation;
// only-if-cached without a usable response is OnlyIfCached. Response
// no-cache means validate every time. A client's own If-None-Match or
// If-Modified-Since is evaluated against a response served from the cache
// (NotModified).
//
// Validation (4.3): If-None-Match from the stored ETag and
// If-Modified-Since from Last-Modified, both when present. A 304 updates
// the stored header (3.2: its fields replace the stored ones of the same
// name, except hop-by-hop fields and Content-Length), and the times and
// freshness restart from that exchange; a 304 whose strong ETag differs
// from the stored one removes it.
//
// Not implemented: combining partial content (Range requests pass), the
// qualified forms of no-cache and private (taken as unqualified, which the
// RFC allows), updating stored headers from a HEAD response (4.3.5),
// selecting among several stored responses by their Date when more than
// one variant matches (the most recent store wins), and invalidation of
// other variants' URIs beyond the target, Location and Content-Location.
//
// # Memory
//
// Entries are kept in one LRU list per cache and counted by their body,
// header fields, key and a fixed overhead; storing past MaxBytes evicts
// from the least recently used end, and bodies over MaxObjectBytes are
// not stored. The lock order is mu, then flightMu.
package cache
