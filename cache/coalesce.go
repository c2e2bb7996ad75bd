package cache

import "time"

// Request coalescing, after Pingora's cache lock: the first request to
// miss a key fetches it (the leader) and the others that miss it meanwhile
// wait. The leader always ends its flight, whatever happened: with the
// response stored, the waiters look the key up again and are answered
// from the cache; with nothing stored (not storable, too large, a failed
// or refused fetch, a client that left), they are released to fetch on
// their own. A waiter gives up waiting after a timeout and fetches on its
// own too, so a leader that hangs delays the others by at most that much.

// Flight is one fetch in progress that others may wait for.
type Flight struct {
	key  string
	done chan struct{}
	// stored is set before done is closed.
	stored bool
}

// Join makes the caller the leader of key's fetch (a new Flight, leader
// true), or returns the flight in progress to wait for. A key found not
// storable within PassTTL has no flight: every request fetches it at
// once (nil, false).
func (c *Cache) Join(key string, now time.Time) (f *Flight, leader bool) {
	c.flightMu.Lock()
	defer c.flightMu.Unlock()
	if until, ok := c.pass[key]; ok {
		if now.Before(until) {
			return nil, false
		}
		delete(c.pass, key)
	}
	if f := c.flights[key]; f != nil {
		return f, false
	}
	f = &Flight{key: key, done: make(chan struct{})}
	c.flights[key] = f
	return f, true
}

// Wait blocks until f ends or timeout passes, and reports whether it
// ended with a response stored. Counted as a coalesced wait.
func (c *Cache) Wait(f *Flight, timeout time.Duration) bool {
	c.coalesced.Add(1)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-f.done:
		return f.stored
	case <-t.C:
		return false
	}
}

// End ends the leader's flight: stored says whether a response was stored
// for it. pass says nothing was stored for a reason that will repeat (not
// storable, too large): the key is then fetched without coalescing for
// PassTTL. Ending a
// flight twice, or a nil one, is a no-op.
func (c *Cache) End(f *Flight, stored, pass bool, now time.Time) {
	if f == nil {
		return
	}
	c.flightMu.Lock()
	defer c.flightMu.Unlock()
	if c.flights[f.key] != f {
		return
	}
	delete(c.flights, f.key)
	if !stored && pass {
		if len(c.pass) >= maxPass {
			clear(c.pass)
		}
		c.pass[f.key] = now.Add(PassTTL)
	}
	f.stored = stored
	close(f.done)
}
