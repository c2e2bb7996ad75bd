package monitor

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram counts durations in fixed buckets, two per octave from 16 µs
// up (the last one open-ended, past three minutes), each an atomic
// counter: recording a request is one atomic add, with no lock and no
// allocation, so it can sit on the request path. Its reader empties it
// each sampling period (Drain), which makes it a windowed estimate: the
// percentiles of the requests of that period, within half an octave.
type Histogram struct {
	b [histBuckets]atomic.Uint64
}

const (
	histBuckets = 48
	histShift   = 14 // the unit: 2^14 ns ≈ 16.4 µs
)

// Observe counts one duration.
func (h *Histogram) Observe(d time.Duration) {
	h.b[histIndex(d)].Add(1)
}

// Drain returns the counts since the last Drain and empties the
// histogram. Observations racing with it land in one window or the next.
func (h *Histogram) Drain() HistogramCounts {
	var c HistogramCounts
	for i := range h.b {
		n := h.b[i].Swap(0)
		c.b[i] = n
		c.n += n
	}
	return c
}

// HistogramCounts is one window of a Histogram.
type HistogramCounts struct {
	b [histBuckets]uint64
	n uint64
}

// Count is the number of durations in the window.
func (c *HistogramCounts) Count() uint64 { return c.n }

// Quantile is the q-quantile (0 < q ≤ 1) of the window, interpolated
// within its bucket; 0 for an empty window.
func (c *HistogramCounts) Quantile(q float64) time.Duration {
	if c.n == 0 {
		return 0
	}
	rank := q * float64(c.n)
	seen := 0.0
	for i, n := range c.b {
		if n == 0 {
			continue
		}
		if seen+float64(n) >= rank {
			lo, hi := histLower(i), histLower(i+1)
			if i == histBuckets-1 {
				return lo
			}
			frac := (rank - seen) / float64(n)
			return lo + time.Duration(frac*float64(hi-lo))
		}
		seen += float64(n)
	}
	return histLower(histBuckets - 1)
}

// QuantileBelow is Quantile among the durations under limit alone (to
// within a bucket: those of the buckets that start under it), and how many
// they are.
func (c *HistogramCounts) QuantileBelow(q float64, limit time.Duration) (time.Duration, uint64) {
	var under HistogramCounts
	for i, n := range c.b {
		if histLower(i) >= limit {
			break
		}
		under.b[i] = n
		under.n += n
	}
	return under.Quantile(q), under.n
}

// histIndex is the bucket of d: 0 below one unit, 1 for [1, 2) units,
// then two per octave: [2, 3), [3, 4), [4, 6), [6, 8), [8, 12), ...
func histIndex(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	n := uint64(d) >> histShift
	if n == 0 {
		return 0
	}
	l := bits.Len64(n)
	if l == 1 {
		return 1
	}
	i := 2*l - 2 + int(n>>(l-2)&1)
	return min(i, histBuckets-1)
}

// histLower is the lower bound of bucket i.
func histLower(i int) time.Duration {
	switch {
	case i <= 0:
		return 0
	case i == 1:
		return 1 << histShift
	}
	l := i/2 + 1
	units := uint64(1)<<(l-1) + uint64(i%2)<<(l-2)
	return time.Duration(units << histShift)
}
