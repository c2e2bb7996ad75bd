package proxy

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// latencyQuantiles is one backend's recent time to response headers, as a
// log-linear histogram, from which a hedge takes its delay (hedge.go).
//
// Recording is two atomic adds and costs every request the same whether
// or not its route hedges, so a backend's estimate is warm the moment a
// reload turns hedging on. The view is the last latWindow to
// 2·latWindow samples: two generations, the older one cleared and reused
// whenever the current one fills, so the estimate follows a backend that
// changes without a clock and without a lock.
//
// What is recorded is chosen against the signals that lie: only
// successful responses (a backend failing in a millisecond is not fast);
// and a request abandoned for a hedge that answered first is recorded at
// the hedge's delay (a censored sample: a lower bound of its true
// latency, and above every sample the percentile counts below it), not
// left out: leaving out exactly the slow requests the hedges rescue would
// shrink the tail each hedge is measured against, so hedges would fire
// ever earlier.
type latencyQuantiles struct {
	gen atomic.Uint32    // the generation being filled: 0 or 1
	n   [2]atomic.Uint32 // samples per generation
	b   [2][latBuckets]atomic.Uint32
}

const (
	// latSub buckets per power of two: a bucket is at most 1/8 of its
	// value wide, so a quantile errs by at most 12.5%.
	latSub = 8
	// latMaxExp: microseconds up to 2^31 (35 minutes); longer is clamped.
	latMaxExp  = 31
	latBuckets = (latMaxExp - 2) * latSub
	// latWindow is the size of a generation.
	latWindow = 512
	// latMinSamples: below this many samples there is no estimate, and
	// no hedge (a percentile of ten samples is noise).
	latMinSamples = 32
)

// latBucket maps a latency to its bucket: 1 µs wide below 8 µs, then
// latSub buckets per power of two.
func latBucket(d time.Duration) int {
	us := uint64(max(d, 0) / time.Microsecond)
	if us < latSub {
		return int(us)
	}
	e := bits.Len64(us) - 1 // us in [2^e, 2^(e+1)), e >= 3
	if e >= latMaxExp {
		return latBuckets - 1
	}
	m := int(us>>(e-3)) & (latSub - 1)
	return (e-2)*latSub + m
}

// latUpper is the upper bound of bucket i.
func latUpper(i int) time.Duration {
	if i < latSub {
		return time.Duration(i+1) * time.Microsecond
	}
	e, m := i/latSub+2, i%latSub
	return time.Duration(uint64(latSub+m+1)<<(e-3)) * time.Microsecond
}

// record adds one sample.
func (q *latencyQuantiles) record(d time.Duration) {
	g := q.gen.Load() & 1
	q.b[g][latBucket(d)].Add(1)
	if q.n[g].Add(1) == latWindow {
		// Exactly one caller sees the count reach the window: it clears
		// the older generation and makes it current. A sample added to
		// it meanwhile by a request that loaded gen just before is lost,
		// which a quantile does not notice.
		o := g ^ 1
		for i := range q.b[o] {
			q.b[o][i].Store(0)
		}
		q.n[o].Store(0)
		q.gen.Store(o)
	}
}

// quantile returns the p-th percentile (0 < p < 100) of the recent
// samples, as the upper bound of its bucket; false with too few samples.
func (q *latencyQuantiles) quantile(p float64) (time.Duration, bool) {
	total := uint64(q.n[0].Load()) + uint64(q.n[1].Load())
	if total < latMinSamples {
		return 0, false
	}
	want := uint64(math.Ceil(p / 100 * float64(total)))
	var seen uint64
	for i := range latBuckets {
		seen += uint64(q.b[0][i].Load()) + uint64(q.b[1][i].Load())
		if seen >= want {
			return latUpper(i), true
		}
	}
	return latUpper(latBuckets - 1), true
}
