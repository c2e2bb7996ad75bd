// Package scheduler is Sluice's admission control: every request routed to
// a service passes through that service's Scheduler, which either admits it
// at once (a backend has room), holds it in a queue inside the gateway until
// a backend has room, or refuses it quickly with a reason (ErrQueueFull,
// ErrQueueTimeout, ErrDeadline, ErrTenantShare, ErrNoBackend, ErrCanceled;
// proxy/ maps them to 503/429 and Retry-After).
//
// # Queue and capacity are separate
//
// As in CockroachDB's admission package, the queue of waiting work knows
// nothing of where capacity comes from, and the source of capacity knows
// nothing of the queue. Capacity is one limiter per backend (limiter.go): a
// number of requests that backend may have in flight, learned from latency
// samples fed in by Done. The queue (fairqueue.go, discipline.go) orders
// waiting requests. The admitter (admitter.go) joins them: whenever a slot
// frees (Done, a backend coming up) it asks the queue for the next request
// and the backends for the one with the most room relative to its limit
// (then the lowest recent latency), and hands the slot over directly. A
// freed slot never sits idle while someone waits, and nobody is released
// without a slot.
//
// The order of release is: class first (critical, high, normal, low —
// strictly, except that a class below its configured minimum share of
// recent releases goes first, which bounds starvation); then tenant, by
// deficit round robin weighted by Config.TenantWeights, in two tiers: tenants
// with a short backlog (≤ 16 requests per unit of weight) before tenants
// with a long one, like FQ-CoDel's new flows; and only then the discipline,
// within that tenant's own backlog: FIFO, CoDel (once the queue has stood
// for an interval, shed what waited longer than the target instead of
// serving it late) or adaptive LIFO (newest first while the queue stands).
// Because the discipline acts inside one tenant's backlog, shedding and
// LIFO never hand one tenant's turn to another.
//
// Bounds: QueueMax for the whole service. Under pressure (half full) a
// tenant holding more than its weighted share of the queue is refused with
// ErrTenantShare while others still get in; when full, a more important
// class displaces the least important waiting request, and a tenant within
// its share displaces the heaviest tenant's oldest request. Every waiter
// has an expiry (QueueTimeout, ClassTimeout, Request.Deadline) on a heap; a
// request whose deadline cannot be met, estimated from its position and
// the backends' drain rate (Σ limit/latency), is refused at arrival.
//
// # Time, goroutines and locks
//
// The core is a deterministic state machine: every method that depends on
// time takes now (TryAdmit, Done, Expire, RetryAfter), like
// golang.org/x/time/rate. Only the blocking Admit reads the clock and waits:
// the caller's goroutine parks on a per-waiter channel and a timer for its
// expiry; the package starts no goroutines. Tests and the simulation drive
// the core on a fake clock (testdata/*.txt, sim_test.go).
//
// There is one lock, Scheduler.mu, held for O(backends + log queued) work
// and never across a channel operation that can block (a waiter's channel
// has room for its one signal). Lock order: callers may hold their own
// locks when calling in; nothing here calls out while holding mu. Methods
// named ...Locked require mu.
//
// The fast path — nobody waiting, a backend has room — is TryAdmit then
// Done: a lock, a scan of the backends, no queue work and no allocation
// (guarded by TestFastPathAllocatesNothing and BenchmarkFastPath).
//
// # Limiters
//
// static:N is HAProxy's maxconn. The adaptive ones (gradient, the default;
// AIMD; Vegas) need the backend's unloaded latency as a baseline. Taking the
// minimum latency seen does not work against an origin that shares its
// capacity (processor sharing): if the limit is above the knee, every
// request is slow and the minimum is wrong forever. So, like Envoy's
// adaptive concurrency filter, each limiter holds concurrency at LimitMin
// for a few requests once a minute (and at start) and takes the median
// latency of requests that ran entirely inside that quiet period. The
// gradient limiter then multiplies its limit every window (≥ 2 baseline
// round trips and ≥ 4 samples) by baseline·1.25/latency, clamped to
// [0.5, 2], plus a headroom of max(1, log10 limit); failures cut it by 20%.
// It settles just past the knee, where throughput is already at its maximum
// and latency has barely risen.
//
// # Why the defaults
//
// The defaults were chosen with the deterministic simulation in
// sim_test.go: the origin of the goals (4 workers × 20 ms, processor
// sharing, ≈200 req/s), Poisson arrivals, patient clients, goodput =
// successes within 500 ms over capacity, p99 of successful requests'
// whole latency (queue + service). `go test -run '^$' -bench
// SimulationTable -benchtime 1x ./scheduler/` prints (excerpt):
//
//	discipline/limit        unl.p99  .9x ok  3x good  3x p99  6x good  6x p99  critical  min.ten
//	fifo/adaptive              27ms  1.0000    0.000  529.9ms   0.000  529.9ms   1.0000   1.0000
//	codel/adaptive             27ms  1.0000    1.003   99.8ms   0.997   66.7ms   1.0000   1.0000
//	adaptive-lifo/adaptive     27ms  1.0000    0.999   48.2ms   0.998   40.0ms   1.0000   1.0000
//	adaptive-lifo/aimd         27ms  1.0000    0.999   64.5ms   0.999   54.7ms   1.0000   1.0000
//
// (critical: success of critical at 0.5× on top of low at 2.5×; min.ten:
// worst success among four tenants sending their fair share while a fifth
// sends 10× its share.)
//
//   - Discipline adaptive-lifo: the same goodput as CoDel under sustained
//     overload and the lowest tail latency of admitted requests; FIFO serves
//     every request just before its timeout, so its goodput collapses to 0.
//   - Limit adaptive (gradient): settles at 6 in flight against a knee of 4
//     (latency 30 ms), where AIMD and Vegas settle at 7–9.
//   - QueueTimeout 500 ms: past it, a response no longer counts as good.
//   - QueueMax 1024: memory is cheap, and with LIFO a deep queue costs the
//     admitted requests nothing; the tenant-share valve keeps it fair.
//   - CoDel target 5 ms / interval 100 ms: Facebook's values.
//   - LimitMin 2: concurrency during a baseline probe, low enough to see
//     unloaded latency on any backend with two or more workers.
package scheduler
