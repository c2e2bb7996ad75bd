// Package monitor measures how each backend is doing and acts on it
// through the capacity side of the service's scheduler: it never touches
// a queue.
//
// # What it watches
//
// Passively, every attempt a request makes on a backend (the proxy reports
// each one from its observer point): a 5xx from the backend, a connection
// refused or reset, a timeout and a broken response are failures, however
// fast they came. That is the point: a backend that answers 500 in a
// millisecond looks like the fastest one to anything that reads only
// latency, frees its slots soonest, and so draws the traffic. The
// scheduler's limiter already refuses to learn latency from failures; the
// monitor takes the backend out.
//
// Actively, when a service configures a health check path, each backend is
// sent a GET every interval on a connection of its own; Fall failures in
// a row take it out, Rise passes bring it back.
//
// # Outlier ejection
//
// As in Envoy's outlier detection: ConsecutiveFailures failures in a row,
// or a failure share of FailureRate over the last one to two Intervals
// (with at least MinRequests requests), eject a backend for
// BaseEjectionTime × its ejection multiplier (one more each ejection,
// decaying by one per Interval it behaves, bounded by MaxEjectionTime).
// At most MaxEjectedPercent of a service's backends are ejected at once
// (at least one may always be), and the last backend taking traffic never
// is: refusing every request with no-backend is not better than letting
// one backend try. A backend that comes back (ejection over, health check
// passing again) has its concurrency capped at 1, doubling ten times over
// SlowStart, so that it is not handed a full share at once while it may
// still be broken.
//
// # Standby backends
//
// A service may list standby backends. Standby (standby.go) decides, from
// a sample of the service every half second, when the next one is brought
// in (pressure: queue wait, refusals for overload, latency over its
// unloaded level or the agents' CPU, sustained) and when the last one
// brought in is let go (quiet, with the load fitting the other backends
// with margin, for a cool-down), one step at a time and with hysteresis
// between the two. The decisions are events like ejections, counted and
// told to onEvent; the caller carries them out (pools, scheduler) and
// calls the provisioning hooks (hook.go) with the JSON event. Histogram
// (hist.go) is the cheap windowed percentile the request path feeds.
//
// # Time and goroutines
//
// Service is a state machine on the caller's clock (Report, Tick,
// StandbyStep and Reconfigure take now) and is tested on a fake one; the
// only goroutines are the health checks, one per backend while
// configured, and whoever calls Tick (the proxy, every 100 ms). CallHooks
// blocks for its hooks' run; the caller gives it a goroutine. Lock order: Service.mu, then the
// scheduler's; the scheduler never calls back.
package monitor
