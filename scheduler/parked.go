package scheduler

import "time"

// Long-lived requests: a long poll, a stream or a large transfer holds its
// backend slot for seconds or minutes while the backend does next to no
// work for it. Counted against the concurrency limit like any request, 40
// long polls on a roomy origin shut everyone else out (and the limiter,
// which only learns when a request ends, cannot learn its way out). So a
// request in flight for longer than parkAfter — ten times the backend's
// recent latency, at least parkMin — is parked: it no longer counts
// against the limit, and its latency teaches the limiter nothing.
//
// A hanging backend looks the same from here: requests that never end.
// Parking must not turn it into a sink that takes a new request for every
// one that hangs. So parked requests stop counting only once the backend
// has completed a request that started after them: proof that it still
// works, which a long-poll origin gives with its next quick answer and a
// hung one never does. A backend whose slots are all taken by requests
// old enough to park, with no such proof, is stalled: it is given one
// request at a time as a probe, at intervals doubling from parkAfter up
// to maxProbeEvery, so that a long-poll origin is found alive within a
// fraction of a second and a hung one costs a handful of requests a
// minute.
//
// All of this is for the adaptive limits, which guess a backend's
// capacity. A static limit is the operator's word, a hard bound like
// HAProxy's maxconn: nothing parks or probes past it.
//
// Ages are kept in three generations per backend, each half of parkAfter
// long: requests started in the current one, in the previous one, and
// before (old: in flight for between half of parkAfter and all of it).
// That is O(1) per admission and completion, allocates nothing, and ages
// a request within a factor of two, which is all the rule needs.

const (
	parkFactor    = 10
	parkMin       = 250 * time.Millisecond
	maxProbeEvery = 10 * time.Second
)

// ages counts a backend's requests in flight by generation. Times are
// nanoseconds (time.Time.UnixNano), read once per scheduler call: this is
// on every admission's path, and integer compares cost next to nothing
// where time.Time arithmetic did not. Protected by Scheduler.mu, as the
// Backend holding it.
type ages struct {
	cur, prev, old      int
	curStart, prevStart int64
	lastDone            int64 // the last completion that proves the backend works
	lastServed          int64 // the last client request that completed (liveness.go)
	probeAt             int64 // a stalled backend's next probe
	probeEvery          time.Duration
}

// parkAfter is how long a request is in flight before it may be parked.
func (b *Backend) parkAfter() time.Duration { return ParkAfter(b.latency) }

// ParkAfter is how long a request is in flight on a backend whose recent
// latency is latency before it counts as long-lived: ten times that, at
// least 250ms. Whoever measures latency from outside (the standby
// decisions) leaves such requests out by the same rule.
func ParkAfter(latency time.Duration) time.Duration {
	return max(parkMin, parkFactor*latency)
}

// rotate moves the generations on to n (UnixNano).
func (b *Backend) rotate(n int64) {
	a := &b.ages
	if b.inflight == 0 {
		// Nothing to age: start the generations afresh.
		a.curStart, a.prevStart = n, n
		return
	}
	gen := int64(b.parkAfter() / 2)
	switch d := n - a.curStart; {
	case d < gen:
	case d >= 2*gen:
		a.old += a.prev + a.cur
		a.prev, a.cur = 0, 0
		a.curStart, a.prevStart = n, n
	default:
		a.old += a.prev
		a.prev, a.cur = a.cur, 0
		a.prevStart, a.curStart = a.curStart, a.curStart+gen
	}
}

// parked is how many of b's requests in flight no longer count against
// its limit: the old ones, once a later request has completed.
func (b *Backend) parked() int {
	a := &b.ages
	if a.old == 0 || b.limKind.Kind == LimitStatic {
		return 0 // a static limit is a hard bound, as HAProxy's maxconn
	}
	if a.lastDone >= a.prevStart {
		return a.old
	}
	return 0
}

// occupancy is what counts against b's limit at n.
func (b *Backend) occupancy(n int64) int {
	b.rotate(n)
	return b.inflight - b.parked()
}

// stalled reports whether b's slots are taken by requests old enough to
// park, with no proof that b still completes anything.
func (b *Backend) stalled() bool {
	return b.ages.old > 0 && b.limKind.Kind != LimitStatic && b.parked() == 0
}

// probeDue reports whether a stalled b may take one more request at n.
func (b *Backend) probeDue(n int64) bool { return n >= b.ages.probeAt }

// probed notes that a stalled b was given a probe at n.
func (b *Backend) probed(n int64) {
	a := &b.ages
	if a.probeEvery == 0 {
		a.probeEvery = b.parkAfter()
	}
	a.probeAt = n + int64(a.probeEvery)
	a.probeEvery = min(2*a.probeEvery, maxProbeEvery)
}

// started counts a request admitted at n.
func (b *Backend) started(n int64) {
	b.rotate(n)
	b.ages.cur++
}

// finished takes a request that started at start out of its generation
// and reports whether it was parked: old, and not counted against the
// limit any more, so that its latency says nothing of the backend's
// capacity. An old request that was still counted (no proof yet, or a
// static limit) is a sample like any other: on a backend whose every
// request takes a second, that is how its latency is learned at all.
// proof says the completion shows the backend works. The caller has
// rotated to n.
func (b *Backend) finished(start, n int64, proof bool) (parked bool) {
	a := &b.ages
	old := false
	switch {
	case start >= a.curStart && a.cur > 0:
		a.cur--
	case start >= a.prevStart && a.prev > 0:
		a.prev--
	case a.old > 0:
		a.old--
		old = true
	case a.prev > 0:
		a.prev--
	default:
		a.cur--
	}
	parked = old && b.limKind.Kind != LimitStatic && a.lastDone >= a.prevStart
	if proof && !parked {
		a.lastDone, a.lastServed = n, n
		a.probeEvery = 0
	}
	return parked
}
