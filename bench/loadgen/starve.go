package loadgen

import (
	"runtime/metrics"
	"time"
)

// starvation tells a generator short of CPU from a stalled server. Both
// leave requests queued in the generator, but only the first makes
// goroutines wait to run: the Go scheduler's latency histogram (time from
// runnable to running) grows. Opening connections helps the second and
// worsens the first, so the dispatcher opens none while this says starved.
type starvation struct {
	sample []metrics.Sample
	prev   []uint64
	bounds []float64
}

const (
	schedLatencyMetric = "/sched/latencies:seconds"
	// starvedWait and starvedShare: starved when more than 1% of the
	// goroutine wake-ups in the last interval waited over a millisecond.
	starvedWait  = time.Millisecond
	starvedShare = 0.01
)

func newStarvation() *starvation {
	return &starvation{sample: []metrics.Sample{{Name: schedLatencyMetric}}}
}

// check reads the scheduler latency histogram and reports whether the wake-
// ups since the previous check were slow. Called by the collector only.
func (s *starvation) check() bool {
	metrics.Read(s.sample)
	if s.sample[0].Value.Kind() != metrics.KindFloat64Histogram {
		return false
	}
	h := s.sample[0].Value.Float64Histogram()
	if len(s.prev) != len(h.Counts) {
		s.prev = make([]uint64, len(h.Counts))
		s.bounds = h.Buckets
		copy(s.prev, h.Counts)
		return false
	}
	var total, slow uint64
	for i, c := range h.Counts {
		d := c - s.prev[i]
		s.prev[i] = c
		total += d
		if s.bounds[i] >= starvedWait.Seconds() {
			slow += d
		}
	}
	return total > 0 && float64(slow) > starvedShare*float64(total)
}
