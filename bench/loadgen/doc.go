// Package loadgen is Sluice's HTTP load generator, the engine behind
// "sluice-bench run". It exists to measure what a client of an overloaded
// service experiences, so it is built around three rules.
//
// # Arrivals do not wait for responses (open loop)
//
// Real clients do not slow down because a server is slow. In open-loop mode
// (the default) a dispatcher walks a rate Schedule — constant steps and
// linear ramps, with constant or Poisson (exponential) spacing — against a
// monotonic clock started once, and hands every arrival to an idle
// connection the moment it is due. It never sleeps per request: it sleeps
// until the next arrival and then releases every arrival already due in one
// batch (see waitUntil for how it keeps short sleeps precise without
// spinning). When every connection is busy and the queue is falling behind,
// it opens another connection, up to Config.MaxConns; beyond that requests
// wait inside the generator, and that wait counts. Closed-loop mode
// (Config.Conns) instead keeps N connections busy back to back, for
// throughput tests and comparisons with tools such as wrk.
//
// # Latency counts from the scheduled send time
//
// Every request carries the time it was due, and its latency is measured
// from then, not from when a connection got round to sending it. A server
// that stalls for 200 ms therefore shows up in the percentiles of every
// request scheduled during the stall, not as one slow request; measuring
// from the actual send would hide exactly the queueing delay that admission
// control is about ("coordinated omission"). Report.SendLag shows how much
// of the latency was the generator's own delay. A request that cannot be
// answered within Config.Timeout of its scheduled time is an error of kind
// "timeout", whether it was waiting for a connection or for the server.
//
// # No allocation, no contention per request
//
// Each connection is one goroutine owning a raw TCP connection, a reused
// request buffer (classes are serialised once, up front) and a reused
// fasthttp.Response; it runs one request at a time (no pipelining, which
// would charge a request for the ones ahead of it). Outcomes go into
// preallocated records in a ring of chunks indexed by request number
// (records.go): the connection writes its record and publishes it with one
// atomic store; a single collector goroutine folds finished records into HDR
// histograms (three significant digits, microseconds) and a per-second
// series every 50 ms and recycles chunks it has passed. Each second keeps the
// latencies of its 2xx responses apart from those of all responses: under
// overload most responses are refusals, and their latency would hide what
// the served requests took. So the request path
// allocates nothing in steady state (TestRequestPathZeroAlloc) and the
// connections share no lock.
//
// # Outcomes
//
// Every request issued ends as exactly one response (counted by status
// code, and by the X-Sluice-Shed reason when Sluice refused it) or one
// client-side error (timeout, refused, reset, closed, protocol, dial,
// canceled, other). Goodput counts 2xx responses within Config.SLO. A
// connection the server closed while idle is retried once on a new
// connection, since the server never saw that request; nothing else is
// retried.
//
// Reports print as a table (WriteTable), as JSON (WriteJSON, durations in
// nanoseconds) or as an SVG of latency, throughput and failures over time
// (PlotSVG).
package loadgen
