package cache

import (
	"container/list"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Cache is one service's cache: the stored responses, bounded in bytes,
// and the fetches in flight that requests for the same key wait for.
// Every method is safe for concurrent use and takes time as an argument.
type Cache struct {
	// Counters, atomics so that Stats takes no lock.
	hits, misses, stale, revalidated atomic.Uint64
	coalesced, stores, evictions     atomic.Uint64
	invalidations, purged, notStored atomic.Uint64
	tooLarge                         atomic.Uint64
	maxBytes, maxObject              atomic.Int64

	// Protected by mu. Lock order: mu, then flightMu (never the other way).
	mu    sync.Mutex
	byKey map[string][]*Entry // every variant of a key, most recent first
	lru   list.List           // *Entry, most recently used at the front
	bytes int64

	flightMu sync.Mutex
	flights  map[string]*Flight
	pass     map[string]time.Time // keys found not storable: no coalescing until then
}

// PassTTL is how long a key whose response was not storable is fetched
// without coalescing: waiting for a response that will not be shared
// only serialises the requests (Varnish's hit-for-miss).
const PassTTL = 10 * time.Second

// maxPass bounds the keys remembered as not storable.
const maxPass = 10000

// New returns a cache with cfg (defaults applied).
func New(cfg Config) *Cache {
	c := &Cache{byKey: map[string][]*Entry{}, flights: map[string]*Flight{}, pass: map[string]time.Time{}}
	c.SetLimits(cfg.WithDefaults())
	return c
}

// SetLimits applies a reloaded configuration's bounds; a smaller MaxBytes
// evicts at once.
func (c *Cache) SetLimits(cfg Config) {
	c.maxBytes.Store(cfg.MaxBytes)
	c.maxObject.Store(cfg.MaxObjectBytes)
	c.mu.Lock()
	c.evictLocked()
	c.mu.Unlock()
}

// MaxObjectBytes is the largest body stored.
func (c *Cache) MaxObjectBytes() int64 { return c.maxObject.Load() }

// Lookup finds the stored response for req and says what to do (see
// Decision). It counts a hit (fresh or stale) and an OnlyIfCached miss;
// the caller counts a Miss with CountMiss once it goes to the origin (a
// request that waits for another's fetch and is then answered from the
// store is a hit, not both), and a Revalidate counts when its outcome is
// known (Revalidated, or CountMiss when the origin sent a new response).
func (c *Cache) Lookup(req *Request, now time.Time) Lookup {
	if !safeMethod(req.Method) || req.Method != http.MethodGet && req.Method != http.MethodHead ||
		req.Header != nil && req.Header.Peek("Range") != nil {
		return Lookup{Decision: Pass}
	}
	rd := requestDirectives(req.Header)
	c.mu.Lock()
	var e *Entry
	for _, v := range c.byKey[req.Key] {
		if v.matches(req.Header) {
			e = v
			c.lru.MoveToFront(v.elem)
			break
		}
	}
	c.mu.Unlock()
	l := decide(e, rd, now)
	switch l.Decision {
	case Hit:
		if l.Stale {
			c.stale.Add(1)
		} else {
			c.hits.Add(1)
		}
	case OnlyIfCached:
		c.misses.Add(1)
	}
	return l
}

// CountStale counts a stale answer given outside Lookup (overload,
// stale-if-error, stale-while-revalidate).
func (c *Cache) CountStale() { c.stale.Add(1) }

// CountTooLarge counts a response whose body passed MaxObjectBytes while
// it was relayed, before Store could see it whole.
func (c *Cache) CountTooLarge() { c.tooLarge.Add(1) }

// CountMiss counts a request that went to the origin for a Miss, or after
// a Revalidate and got a new response.
func (c *Cache) CountMiss() { c.misses.Add(1) }

// StoreResult is what Store did with a response.
type StoreResult uint8

const (
	Stored      StoreResult = iota
	NotStorable             // RFC 9111 does not allow it, or the cache declines (Set-Cookie)
	TooLarge                // storable, but its body is over MaxObjectBytes
)

// Store stores resp, the answer to req, if it is storable, and reports
// what it did. reqTime and respTime are when the request was sent and
// the response received. A stored variant of the same key answering the
// same requests (same Vary values) is replaced.
func (c *Cache) Store(req *Request, l *Lookup, resp *Response, reqTime, respTime time.Time) StoreResult {
	var rd directives
	if l != nil {
		rd = l.req
	} else {
		rd = requestDirectives(req.Header)
	}
	if ok, _ := storable(req, rd, resp); !ok {
		c.notStored.Add(1)
		return NotStorable
	}
	if int64(len(resp.Body)) > c.maxObject.Load() {
		c.tooLarge.Add(1)
		return TooLarge
	}
	e := newEntry(req.Key, req, resp, reqTime, respTime)
	c.insert(e)
	return Stored
}

// Revalidated applies a 304 received for old (RFC 9111 4.3.3, 4.3.4):
// the stored header is updated with the 304's fields, the times restart
// from this exchange, and the updated entry replaces old. It returns the
// entry to answer with, or nil when the 304 does not describe old (its
// strong entity tag differs), which is then removed as it no longer
// says what the origin has.
func (c *Cache) Revalidated(old *Entry, notModified Header, reqTime, respTime time.Time) *Entry {
	if et := notModified.Get("Etag"); et != "" && !strings.HasPrefix(et, "W/") &&
		old.etag != "" && et != old.etag {
		c.remove(old)
		return nil
	}
	e := &Entry{Key: old.Key, Status: old.Status, Body: old.Body, RequestTime: reqTime, ResponseTime: respTime,
		varyNames: old.varyNames, varyValues: old.varyValues}
	e.Header = mergeHeader(old.Header, notModified)
	if !notModified.Has("Date") {
		// The stored Date is the old response's; this exchange is newer.
		e.Header = mergeHeader(e.Header, Header{{"Date", respTime.UTC().Format(http.TimeFormat)}})
	}
	e.derive()
	e.size = int64(len(e.Key)+len(e.Body)) + entryOverhead
	for _, f := range e.Header {
		e.size += int64(len(f.Name)+len(f.Value)) + fieldOverhead
	}
	c.revalidated.Add(1)
	c.insert(e)
	return e
}

// insert stores e, replacing the variant it supersedes, and evicts down
// to the bound.
func (c *Cache) insert(e *Entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	vs := c.byKey[e.Key]
	for i, v := range vs {
		if v.sameVariant(e) {
			c.unlinkLocked(v)
			vs = append(vs[:i:i], vs[i+1:]...)
			break
		}
	}
	c.byKey[e.Key] = append([]*Entry{e}, vs...)
	e.elem = c.lru.PushFront(e)
	c.bytes += e.size
	c.stores.Add(1)
	c.evictLocked()
}

func (c *Cache) evictLocked() {
	max := c.maxBytes.Load()
	for c.bytes > max && c.lru.Len() > 0 {
		e := c.lru.Back().Value.(*Entry)
		c.removeLocked(e)
		c.evictions.Add(1)
	}
}

// unlinkLocked takes e out of the LRU and the byte count (not byKey).
func (c *Cache) unlinkLocked(e *Entry) {
	if e.elem == nil {
		return
	}
	c.lru.Remove(e.elem)
	e.elem = nil
	c.bytes -= e.size
}

// removeLocked removes e entirely; removing an entry already gone is a
// no-op.
func (c *Cache) removeLocked(e *Entry) bool {
	if e.elem == nil {
		return false
	}
	c.unlinkLocked(e)
	vs := c.byKey[e.Key]
	for i, v := range vs {
		if v == e {
			vs = append(vs[:i:i], vs[i+1:]...)
			break
		}
	}
	if len(vs) == 0 {
		delete(c.byKey, e.Key)
	} else {
		c.byKey[e.Key] = vs
	}
	return true
}

func (c *Cache) remove(e *Entry) {
	c.mu.Lock()
	c.removeLocked(e)
	c.mu.Unlock()
}

// Invalidate removes every variant stored under key (RFC 9111 4.4) and
// reports how many there were.
func (c *Cache) Invalidate(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.removeKeyLocked(key)
	c.invalidations.Add(uint64(n))
	return n
}

func (c *Cache) removeKeyLocked(key string) int {
	vs := c.byKey[key]
	for _, v := range vs {
		c.unlinkLocked(v)
	}
	delete(c.byKey, key)
	return len(vs)
}

// Purge removes the responses stored under key, or, with prefix set,
// under every key that starts with key; it returns how many.
func (c *Cache) Purge(key string, prefix bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	if !prefix {
		n = c.removeKeyLocked(key)
	} else {
		for k := range c.byKey {
			if strings.HasPrefix(k, key) {
				n += c.removeKeyLocked(k)
			}
		}
	}
	c.purged.Add(uint64(n))
	return n
}

// Stats are a cache's counters since it was created and its size now.
type Stats struct {
	Hits, Misses, Stale, Revalidated uint64
	// Coalesced: requests that waited for another's fetch of their key.
	Coalesced uint64
	Stores    uint64 // responses stored (304 updates included)
	NotStored uint64 // responses found not storable
	TooLarge  uint64 // storable, over MaxObjectBytes
	Evictions uint64 // removed to stay within MaxBytes
	// Invalidations after unsafe methods; Purged by an operator.
	Invalidations, Purged uint64
	Entries               int
	Bytes, MaxBytes       int64
}

// Stats reads the counters and the size.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	entries, bytes := c.lru.Len(), c.bytes
	c.mu.Unlock()
	return Stats{
		Hits: c.hits.Load(), Misses: c.misses.Load(), Stale: c.stale.Load(), Revalidated: c.revalidated.Load(),
		Coalesced: c.coalesced.Load(), Stores: c.stores.Load(), NotStored: c.notStored.Load(),
		TooLarge: c.tooLarge.Load(), Evictions: c.evictions.Load(), Invalidations: c.invalidations.Load(),
		Purged: c.purged.Load(), Entries: entries, Bytes: bytes, MaxBytes: c.maxBytes.Load(),
	}
}
