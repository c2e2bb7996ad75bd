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
// with a short backlog (≤ sparseMax = 32 requests per unit of weight) before tenants
// with a long one, like FQ-CoDel's new flows; and only then the discipline,
// within that tenant's own backlog: FIFO, CoDel (once the queue has stood
// for an interval, shed what waited longer than the target instead of
// serving it late) or adaptive LIFO (newest first while the class is
// overloaded, and, as in Facebook's adaptive LIFO with CoDel, a short
// timeout then: a request that waited longer than StandingTimeout is shed,
// not served, oldest first, at the next release decision that reaches its
// tenant — refused in tens of milliseconds instead of at QueueTimeout, since
// the bottom of a LIFO stack under overload would never be served anyway).
// Because the discipline acts inside one tenant's backlog, shedding and
// LIFO never hand one tenant's turn to another. Shedding applies only to a
// flooded tenant: one whose backlog passed sparseMax and has not emptied
// since; it stays in the bulk ring until then, however short shedding keeps
// its backlog, so a flood never counts as sparse again.
//
// Overloaded means what CoDel means — the queue has stopped draining — asked
// of a sojourn that does not depend on the discipline: the class's backlog
// (with the classes before it) is more than the backends serve in half its
// queue timeout, Σ limit/latency being their rate. It latches until the
// class has been left empty for CoDelInterval (or stayed short for one
// with nothing going stale, see below). The sojourn of released
// requests cannot tell (LIFO releases fresh ones however deep the backlog),
// nor can "the queue has not emptied for an interval": Poisson load at
// 0.9× meets that often, and shedding on it refused 0.9% of requests the
// origin could serve in time. A backlog is the integral of the excess
// arrivals, so it needs no interval of its own: half a timeout of work is
// built in 125 ms at 3× and is all but unreachable at 0.9×.
//
// A persistent overload, however mild, holds the queue short (excess.go).
// Half a queue timeout of backlog is seconds of an excess of 10%, and
// until then a standing queue is served oldest first; after it, shedding
// cuts the backlog short, the latch lets go, and the backlog builds again
// (admitted p99 5-8× the unloaded one at 1.1×-1.5× on the simulated
// origin of 4 workers, refusals after up to 500 ms). So what is refused
// for want of capacity (at arrival, timed out, shed) is kept as an excess
// that drains only by room the backends leave idle while nothing of the
// class waits: queued plus excess is the backlog the class would have had
// without refusals, and it keeps growing for as long as arrivals outrun
// the drain, however short the real queue is held. Once it reaches the
// overload threshold (and at least 40 requests) while every backend was
// found at its capacity by two limiter windows in a row, the class is
// held: a request of a flood or of a tenant alone in the class that
// would find more than 0.8 of the backends' latency of work queued ahead
// is refused at arrival (ErrQueueFull), in no time, and what is admitted
// waits less than that, served oldest first: nothing admitted goes stale,
// and a request that waited more than twice the target delay (at least
// StandingTimeout) is the backlog from before the hold and is shed, not
// served late. While the class is also overloaded (the latch above) the
// hold stands aside for adaptive LIFO and its stale shed, which then sheds
// a lone tenant's stale requests too (newest first with the arrival bound
// left them to time out after 500 ms; oldest first with it, the p99 at 6×
// was 1.7× the unloaded one instead of 1.1×). The hold lets go once
// queued plus excess fall under half the threshold. Why each condition:
//
//   - No rate is compared with a rate: in a closed loop arrivals equal
//     completions, and any error of an estimate reads as an overload. A
//     closed loop builds no excess, so it is never held.
//   - Saturated, two windows in a row: after slow start the gradient
//     overshoots and cuts (138, 71, 39 in flight in front of 64 workers),
//     and a backlog behind the 39 is the limit's, not the backend's; the
//     first window after a cut still holds requests slowed by the limit
//     before it (65 refused at 0.8× when one window sufficed).
//   - Floods and lone tenants only: a flood held short is no heavier than
//     the tenants within their share, and bounding everyone refused 15-20%
//     of those; they wait in the sparse ring ahead of the floods anyway.
//   - The threshold at least a count: under Poisson arrivals below
//     capacity a backlog's tail falls by a factor e per 1/(2(1-ρ))
//     requests whatever the backends' speed.
//
// What it does not do: tell a persistent excess of 10% from a Poisson
// one in less than a few seconds on a small origin (the backlog at 0.9×
// on 4 workers reaches the 1.1× ramp's often enough that any earlier
// threshold refuses below capacity), so the first seconds of a mild
// overload are still served oldest first (TestSimulationSweep asserts its
// floors once warm, from 3 s).
//
// Bounds: by time, within count bounds. The queue holds what the backends
// are expected to serve within the class's queue timeout (the drain
// estimate), but never fewer than 1024 requests (the count bound of
// before: the estimate rests on a latency average one stalled request
// moves far) and never more than QueueMax, a memory guard. A bound by
// count alone refused a flash crowd of 10,000 clients beyond 1024 in
// front of an origin that would have served them all in a tenth of a
// second (TestSimulationFlashCrowd). Under pressure (half full) a
// tenant holding more than its weighted share of the queue is refused with
// ErrTenantShare while others still get in; when full, a more important
// class displaces the least important waiting request, and a tenant within
// its share displaces the heaviest tenant's oldest request. Every waiter
// has an expiry (QueueTimeout, ClassTimeout, Request.Deadline) on a heap; a
// request whose deadline cannot be met, estimated from its position and
// the backends' drain rate (Σ limit/latency), is refused at arrival.
//
// # Backends come and go
//
// A backend is known by a stable identity (its URL or configured name),
// never by a position: a Ticket names the *Backend it was issued on, and a
// retry's Request.Exclude lists backends, so there is no limit on how
// many a service has. The capacity side (capacity.go) is all the queue
// side sees of them, through the small granter interface: pick a backend
// with room, take and give back a slot, tell whether any backend is
// eligible, and the drain rate. The monitor feeds that side only:
// SetBackendState (health, ejection, an operator's disable),
// SetBackendWeight (relative QoS) and SetBackendCap (a CPU-driven or
// operator's ceiling under the learned limit).
//
// Everything changes in place (reconfigure.go). AddBackend, RemoveBackend
// and Reconfigure (policy and backend set at once, as a reload does) keep
// queued requests where they are, with their deadlines, and keep what
// surviving backends learned. A removed backend drains: it gets nothing
// new, a ticket on it is still given back to it, and it is forgotten when
// its last request is done; added back before that, it resumes as it was,
// and added back within a minute after, it takes up its limit and baseline
// (whether a drain is over by then is an accident of timing and load).
// When no backend is left up, queued requests are refused at once with
// ErrNoBackend instead of timing out.
//
// # Long-lived requests
//
// A request in flight for longer than ten times its backend's recent
// latency (at least 250 ms) is parked: it stops counting against the
// adaptive limit and teaches the limiter nothing, once the backend has
// completed a later request (proof that it works: a long-poll origin gives
// it, a hung one never does). A backend whose slots are all held by such
// requests without that proof gets one probe request at a time, at
// doubling intervals. parked.go has the reasons; a static limit is a hard
// bound and never parks. Tick moves time on for this when no request
// arrives or ends.
//
// # Time, goroutines and locks
//
// The core is a deterministic state machine: every method that depends on
// time takes now (TryAdmit, Done, Expire, RetryAfter), like
// golang.org/x/time/rate. Only the blocking Admit reads the clock and waits:
// the caller's goroutine parks on a per-waiter channel and a timer for its
// expiry; the package starts no goroutines. Arrive, OnDecision, Cancel,
// Expire and NextExpiry are the same core without the waiting (core.go):
// the tests and the simulation drive it through them on a fake clock
// (testdata/*.txt, sim_test.go), never through the internals.
//
// There is one lock, Scheduler.mu, held for O(backends + log queued) work
// and never across a channel operation that can block (a waiter's channel
// has room for its one signal). Lock order: callers may hold their own
// locks when calling in; nothing here calls out while holding mu. Methods
// named ...Locked require mu.
//
// The fast path — nobody waiting, a backend has room — is TryAdmit then
// Done: a lock, a scan of the backends, no queue work and no allocation
// (guarded by TestFastPathZeroAlloc and BenchmarkFastPath).
//
// # Limiters
//
// static:N is HAProxy's maxconn. The adaptive ones (gradient, the default;
// AIMD; Vegas) need the backend's unloaded latency as a baseline. Taking the
// minimum latency seen does not work against an origin that shares its
// capacity (processor sharing): if the limit is above the knee, every
// request is slow and the minimum is wrong forever. So each limiter takes
// the median latency of 16 clean requests — requests that ran with at most
// LimitMin in flight on their backend from start to end (the scheduler
// records the last admission that took a backend above LimitMin; a request
// admitted after it is clean) — at start and once a minute. The probe is
// passive first: at light load the clean samples come by themselves and
// nothing is held back. Only when 64 samples pass without enough clean ones
// (a busy backend) does it hold concurrency at LimitMin until it has them,
// like Envoy's adaptive concurrency filter. A limit starts at
// max(4, 2×LimitMin). Holding at LimitMin from the start put the first
// requests of every run behind two slots: unloaded p99 41–52 ms through
// Sluice against 22–30 ms direct; now the two are equal. The gradient
// limiter then multiplies its limit every window (≥ 2 baseline
// round trips, ≥ 10 ms and ≥ 4 samples) by
// max(baseline·(1+tolerance), baseline+latencySlack)/latency, clamped to
// [0.5, 2], plus a headroom of max(0.5, log10 limit); failures cut it by 20%.
// The window's latency is its median (of up to 32 samples, reservoir
// sampled), not its mean: with one request in ten costing 20 times the
// others, the mean is 2.9 times the cheap latency at any load, which read
// as congestion held the limit at its floor (goodput in work 0.75 of
// capacity at 2x; 0.95 with the median, TestSimulationRequestCost).
// It settles just past the knee, where throughput is already at its maximum
// and latency has barely risen (tolerance 0.1, headroom 0.5: 5 in flight
// against a knee of 4).
//
// A fresh limit knows nothing of its backend, and 4 is as likely to be far
// below its capacity (64 workers) as above it (1 worker). So an adaptive
// limit starts in slow start, as TCP does: every window of one round trip
// that used the whole limit with flat latency doubles it, and the first
// window whose latency rose (or that failed) ends slow start; from there
// the limiter's own rule applies. Until the first probe has a baseline,
// a provisional one stands in: the median of the first samples taken with
// no more in flight than the initial limit. And the first probe of a busy
// backend adopts that provisional baseline instead of holding at
// LimitMin; later probes may hold. While every backend is in slow start,
// the time to serve a backlog (the overload test and the deadline
// estimate) counts on the limit doubling every round trip: log2(1 +
// backlog/limits) round trips, not backlog/rate. After slow start, windows
// in a row that use the whole limit with flat latency grow it by a step
// that doubles with each, at most half the limit per window, so a load
// that rises (or long-lived requests that hold slots) is followed within
// a few windows. Before these, the origin of 64 workers × 40 ms had 47% of
// its requests refused at half its capacity in the first three seconds and
// 6% once warm; now none are, and goodput at 3× is 0.93 of capacity over
// the first three seconds and 1.00 once warm (TestSimulationColdStart,
// TestSimulationOriginSizes).
//
// A rise of less than a millisecond over the baseline (latencySlack) is
// never congestion, for every adaptive limiter, and a window lasts at
// least 10 ms. The latency the gateway measures includes its own wait for
// a CPU once the response is in, and on one core that wait grows with the
// requests in flight whatever the backend does. In front of a fast origin
// (nginx `return 200`, 50–100 µs unloaded, 32 wrk connections, Sluice
// with GOMAXPROCS=1) the gradient read that as congestion and sat at 3–7
// in flight: every request went through the queue (queue wait p50 1.0 ms,
// backend latency p50 0.1 ms; with static:64, 0.002 ms and 0.74 ms — the
// same total, only moved), and CPU per request was 1.69× HAProxy's. With
// the slack the limit grows past the client count and the queue stays
// empty (TestFastOriginNotThrottled): 1.28× HAProxy (median of 3 runs),
// against 1.09× for static:64 in the same conditions, 0 non-2xx. Against
// the 20 ms origin of the goals the relative tolerance (2 ms) is larger
// than the slack, so nothing there changed (the table below is the same).
//
// An overloaded class also lets go of the latch once its backlog has
// stayed under a quarter of the overload threshold for a CoDelInterval
// without ever emptying. A closed-loop client keeps a short queue that
// never empties; one stall latched it overloaded for good, and newest
// first then starved the oldest connections until they timed out: 503s
// in front of an origin with room (TestClosedLoopNotShedAfterStall: 92
// queue timeouts before, none after). Under a real overload the backlog
// rebuilds past that quarter within ~31 ms of a shed (3×), so there the
// latch holds as before. Nor does it let go while requests still go stale
// (a StandingTimeout shed within the last CoDelInterval): shedding stale
// requests from the head keeps a flood's backlog at StandingTimeout's worth
// of arrivals, under that quarter at 2×, and the latch then flapped: each
// release served the next backlog oldest first (p99 149 ms at 2× in the
// simulation, against 47.5 ms).
//
// Shedding from the head is what makes refusals quick. Testing only the
// newest request (shed the backlog once even it is stale) almost never
// fired under LIFO, whose newest request is always fresh: 2 in 3 responses
// at 3× were 503s after the whole 500 ms queue timeout (all-responses p50
// 500.5 ms end to end, `sluice-bench demo --quick`). With the stale shed
// from the head the same run answers in p50 38.0 ms, with the same goodput
// and the same latency of successes; in the simulation the median refusal
// at 3× and 6× takes 39 ms (TestSimulationGoals asserts ≤ 2×StandingTimeout),
// against 500 ms before. An earlier attempt at head shedding cut floods
// back under sparseMax and so into the sparse ring, ahead of the tenants
// within their share (99.76% success for those in the simulation); a
// flooded tenant now stays in the bulk ring until its backlog empties.
//
// # Why the defaults
//
// The defaults were chosen with the deterministic simulation in
// sim_test.go and checked end to end (real sockets, `sluice-bench scenario
// overload`): the origin of the goals (4 workers × 20 ms, processor
// sharing, ≈200 req/s), Poisson arrivals, patient clients, goodput =
// successes within 500 ms over capacity, p99 of successful requests'
// whole latency (queue + service). `go test -run '^$' -bench
// SimulationTable -benchtime 1x ./scheduler/` prints (excerpt):
//
//	discipline/limit          unl.p99  .9x ok  3x good  3x p99  6x good  6x p99  critical  min.ten
//	fifo/adaptive                27ms  1.0000    0.000   529ms   0.000 529.6ms    1.0000   1.0000
//	codel/adaptive               27ms  1.0000    1.000  86.5ms   1.000  50.2ms    1.0000   1.0000
//	adaptive-lifo/adaptive       27ms  1.0000    1.000  43.4ms   1.000  35.5ms    1.0000   1.0000
//	adaptive-lifo/aimd           27ms  1.0000    1.002  63.5ms   0.999  55.1ms    1.0000   1.0000
//
// (critical: success of critical at 0.5× on top of low at 2.5×; min.ten:
// worst success among four tenants sending their fair share while a fifth
// sends 10× its share.)
//
//   - Discipline adaptive-lifo: the same goodput as CoDel under sustained
//     overload and the lowest tail latency of admitted requests; FIFO serves
//     every request just before its timeout, so its goodput collapses to 0.
//   - Overload at half the queue timeout of backlog: in the simulation,
//     no request refused at 0.5×, 0.8× or 0.9× (TestSimulationGoals, three
//     seeds each); at 0.95× 1.3% are, against none for FIFO. A lower
//     threshold (100 ms) refused 0.5% at 0.9×; the old test (not emptied
//     for 100 ms) 0.8%, mostly old requests left to time out by LIFO.
//     Waiting a CoDelInterval more before acting made the start of each
//     overload oldest first for ~225 ms: p99 113 ms from the start of a 3×
//     load in the simulation, 115 ms end to end (TestSimulationAbruptEnd
//     now measures from the start).
//   - StandingTimeout 25 ms. Adaptive LIFO without it passed the simulation
//     and failed for real: p99 385–455 ms at 3× through Sluice, with 1–4%
//     of successes having waited 400–500 ms in the queue. The simulation
//     kept the load on until the measured requests were done; a real load
//     test ends, and when arrivals stop (the end of any burst) LIFO drains
//     the standing backlog newest first, down to requests nearly
//     QueueTimeout old, which are then served and make the tail. Shedding
//     what waited past StandingTimeout once overloaded fixes it
//     (TestSimulationAbruptEnd reproduces the failure: p99 410 ms before,
//     50 ms after). 25 ms leaves the p99 goal (3× an unloaded ≈22 ms)
//     room for about one processor-sharing service time; under overload
//     LIFO's newest request has waited about one inter-arrival time, so
//     little that would have been good is shed; and what is shed is
//     refused after about StandingTimeout, not QueueTimeout.
//   - Limit adaptive (gradient): settles at 5 in flight against a knee of 4
//     (latency 25 ms); with tolerance 0.25 and a headroom of 1 it settled
//     at 6 (30 ms), with 6–8 seen end to end.
//   - QueueTimeout 500 ms: past it, a response no longer counts as good.
//   - QueueMax 16384: only a memory guard (a waiting request costs the
//     proxy a goroutine and its buffers, about 16 KiB: 256 MiB at worst);
//     the time bound is what refuses.
//   - CoDel target 5 ms / interval 100 ms: Facebook's values.
//   - LimitMin 2: the concurrency at which a sample is clean (and of an
//     active probe), low enough to see unloaded latency on any backend
//     with two or more workers. The initial limit max(4, 2×LimitMin) is
//     the simulated origin's knee; the gradient finds the rest.
//
// # End to end
//
// `sluice-bench scenario all --sluice bin/sluice` (12 s per overload
// load, default flags, on a shared 2-core machine):
//
//	                        3x goodput  3x p99 ok   6x goodput  6x p99 ok
//	no standing timeout     98.8%       385 ms      98.8%       382 ms
//	standing: not emptied   95.0%       45.7 ms     93.4%       171 ms
//	overload, + interval    95.6%       115 ms      95.2%       81.0 ms
//	overload (now)          95.6%       49.9 ms     95.9%       54.3 ms
//
// Unloaded p99 (60 req/s) now: 31.3 ms direct, 30.8 ms through Sluice
// (41–52 ms through Sluice before the passive probe), so the 3×-unloaded
// limit is 92.5 ms. Priority: critical 100% (p99 65.7 ms); fairness: the
// tenants within their share 100%. The load generator's send lag p99 was
// 5 ms at 3× and 30 ms at 6× through Sluice. The goodput lost against
// the first row is mostly the drain at the end of each run, which used to
// be served late and is now shed.
package scheduler
