package monitor

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHistogramBuckets: every duration falls in the bucket whose bounds
// hold it, and the buckets are half an octave wide.
func TestHistogramBuckets(t *testing.T) {
	for i := 1; i < histBuckets; i++ {
		require.Less(t, histLower(i-1), histLower(i), "bucket %d", i)
		if i >= 3 {
			assert.LessOrEqual(t, float64(histLower(i))/float64(histLower(i-1)), 1.5, "bucket %d", i)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		d := time.Duration(r.Int64N(int64(time.Minute)))
		i := histIndex(d)
		require.LessOrEqual(t, histLower(i), d, "%v in bucket %d", d, i)
		require.Less(t, d, histLower(i+1), "%v in bucket %d", d, i)
	}
	assert.Equal(t, histBuckets-1, histIndex(time.Hour), "the last bucket is open-ended")
	assert.Equal(t, 0, histIndex(-time.Second))
}

// TestHistogramQuantiles: the p95 of a window is within a bucket's width
// of the exact one, Drain empties it, and an empty window reads 0.
func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	r := rand.New(rand.NewPCG(3, 4))
	for _, gen := range []func() time.Duration{
		func() time.Duration { return 20 * time.Millisecond },
		func() time.Duration { return time.Duration(r.ExpFloat64() * float64(20*time.Millisecond)) },
		func() time.Duration { return time.Duration(r.Int64N(int64(200 * time.Millisecond))) },
	} {
		var all []time.Duration
		for range 5000 {
			d := gen()
			all = append(all, d)
			h.Observe(d)
		}
		slices.Sort(all)
		exact := all[len(all)*95/100]
		c := h.Drain()
		require.EqualValues(t, 5000, c.Count())
		got := c.Quantile(0.95)
		assert.InDelta(t, float64(exact), float64(got), 0.25*float64(exact), "p95 %v, exact %v", got, exact)
	}
	empty := h.Drain()
	assert.Zero(t, empty.Count())
	assert.Zero(t, empty.Quantile(0.95))
}

// TestHistogramObserveDoesNotAllocate: it sits on the request path.
func TestHistogramObserveDoesNotAllocate(t *testing.T) {
	var h Histogram
	allocs := testing.AllocsPerRun(1000, func() { h.Observe(37 * time.Millisecond) })
	assert.Zero(t, allocs)
}

// TestHistogramConcurrent: observations racing with Drain are counted
// once, in one window or the next.
func TestHistogramConcurrent(t *testing.T) {
	var h Histogram
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 10000 {
				h.Observe(time.Millisecond)
			}
		})
	}
	var total uint64
	for range 50 {
		c := h.Drain()
		total += c.Count()
	}
	wg.Wait()
	c := h.Drain()
	assert.EqualValues(t, 40000, total+c.Count())
}

func BenchmarkHistogramObserve(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		d := time.Duration(0)
		for pb.Next() {
			d += 7919 * time.Microsecond
			h.Observe(d % time.Second)
		}
	})
}

// TestHistogramQuantileBelow: durations past the limit (long polls) are
// left out.
func TestHistogramQuantileBelow(t *testing.T) {
	var h Histogram
	for range 90 {
		h.Observe(20 * time.Millisecond)
	}
	for range 10 {
		h.Observe(20 * time.Second)
	}
	c := h.Drain()
	assert.Greater(t, c.Quantile(0.95), 10*time.Second)
	p95, n := c.QuantileBelow(0.95, 250*time.Millisecond)
	assert.EqualValues(t, 90, n)
	assert.InDelta(t, float64(20*time.Millisecond), float64(p95), float64(6*time.Millisecond), "within its bucket")
}
