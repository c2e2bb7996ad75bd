// Package origin is a simulated origin server with finite capacity, the
// thing Sluice is meant to protect.
//
// # Why processor sharing
//
// A real CPU-bound server does not queue requests politely: it accepts all
// of them and time-slices its cores among them. With c requests in service
// and N cores each progresses at min(1, N/c), so under 3× overload every
// request takes longer and longer until nearly all of them miss their
// deadline, although the server is busy all the time. That collapse of
// goodput is what admission control prevents, so the origin must show it.
// A FIFO queue in front of N workers would not: it would keep serving at
// full capacity with a growing but orderly wait.
//
// # Design
//
// PS (ps.go) is the pure core: an exact, event-driven processor-sharing
// server driven by the caller's `now`, with no goroutine and no clock, so its
// tests run a script on a fake clock and check exact finish times. All
// active jobs progress at the same rate, so the core keeps one virtual-work
// clock and a heap of finish marks; each arrival or completion costs
// O(log n). Thrashing past a concurrency knee lowers the total rate as c
// grows: Workers / (1 + Thrash·(c−Knee)/Knee).
//
// Origin (origin.go) is the thin live wrapper: a fasthttp handler adds a job
// and waits for its completion channel; one loop goroutine sleeps until the
// core's next predicted completion, or until an arrival or a capacity change
// pokes it, and releases the finished jobs. A handler never abandons its
// job when the client leaves, because most real servers do not either: the
// wasted work is part of what overload costs.
//
// Failure injection draws one fault per request: a 500 after the work (or
// at once, without it, with ErrorFast: a backend that fails fast), a hang
// that holds no worker and ends in a dropped connection, a TCP reset after
// the work, or a 200 whose body trickles in. A request with ?hold=D is a
// long poll: answered after D, holding no worker, exempt from faults. Capacity, service time,
// distribution and fault rates change at run time through Update,
// POST /_origin/config or a Schedule; GET /_origin/stats serves counters.
//
// Lock order: Origin.mu only; the PS core is only touched with it held.
package origin
