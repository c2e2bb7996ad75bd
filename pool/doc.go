// Package pool keeps Sluice's channels to backends: persistent keep-alive
// connections, bounded per backend, chosen most-recently-used first, with
// per-backend counters.
//
// # Why our own pool and not fasthttp.HostClient
//
// HostClient pools connections well, but the proxy needs three things from
// a channel that it does not expose together: a response body streamed
// back while the connection stays checked out (the connection is returned
// only when the client has the whole body, or closed if it has not); a
// request body streamed in from the client exactly once, with an exact
// count of bytes that reached the socket, because that count decides
// whether a failed request may be re-sent; and a warm set that is dialed
// ahead of need and kept fresh. So the pool hands out a *Conn (the socket
// plus its bufio reader and writer), and the proxy speaks HTTP on it with
// fasthttp's own Request.Write and Response.Read (StreamBody), which keeps
// fasthttp's zero-allocation parsing and serialisation.
//
// # Choosing a channel
//
// Idle connections form a stack and Acquire pops the most recently used
// one. Under light or moderate load a small hot set carries all requests
// and stays warm, while the bottom of the stack idles past IdleTimeout and
// is reaped: the pool shrinks to its working set without tuning. FIFO
// would keep every connection at the high-water mark alive and make each
// one colder and likelier to have been closed by the origin.
//
// # Bounds and freshness
//
// MaxConns is a counting semaphore (a buffered channel) covering open and
// dialing connections; a caller finding it exhausted waits for a release
// until its deadline (ErrPoolFull). The common Acquire and Release are one
// short critical section each: Release pokes the wake-up channel only when
// an Acquire is waiting (an atomic count of waiters), and a waiter selects
// on the semaphore itself to see a freed slot.
//
// # Time and deadlines
//
// AcquireAt and ReleaseAt take the current time from the caller, which
// reads the clock once per phase of a request. Deadlines go through
// Conn.ArmDeadline and friends, which remember what is armed and leave a
// deadline in place while it is at most a given slack earlier than the one
// asked for: a runtime timer update per request becomes one per slack per
// connection, and a timeout may fire that much early, never late. IdleTimeout sits below common origin
// keep-alive timeouts so that the pool, not the origin, closes idle
// connections. A reaper goroutine per backend closes expired connections
// oldest first and re-dials up to WarmConns, so the warm set is always
// younger than IdleTimeout rather than kept until the origin drops it.
// The stale case that remains (the origin closed a connection anyway) is
// detected by the proxy: a failure on a reused connection before any
// response byte is retried on another connection when that is safe
// (Conn.Reused, Conn.Written).
//
// # Counters
//
// In-flight, requests, failures and bytes each way are atomics on the
// Backend, updated without locks on the request path; bytes are counted
// below the buffers, so they cost nothing per read or write.
//
// # Locking
//
// Backend.mu protects the idle stack and the closed flag only; it is never
// held across I/O. A Conn belongs to whoever acquired it until Release.
package pool
