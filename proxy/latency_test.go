package proxy

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLatencyBuckets(t *testing.T) {
	for _, d := range []time.Duration{0, time.Microsecond, 7 * time.Microsecond, 8 * time.Microsecond,
		15 * time.Microsecond, 100 * time.Microsecond, time.Millisecond, 3 * time.Millisecond,
		time.Second, time.Minute} {
		i := latBucket(d)
		assert.LessOrEqual(t, d, latUpper(i), "%s in bucket %d", d, i)
		if i > 0 {
			assert.Greater(t, d, latUpper(i-1)-time.Microsecond, "%s above bucket %d", d, i-1)
		}
		// At most 1/8 wide (plus the microsecond the mapping truncates).
		assert.LessOrEqual(t, float64(latUpper(i)), float64(d)*1.125+float64(time.Microsecond), "%s", d)
	}
	assert.Equal(t, latBuckets-1, latBucket(time.Hour))
}

func TestLatencyQuantile(t *testing.T) {
	var q latencyQuantiles
	_, ok := q.quantile(95)
	require.False(t, ok, "no estimate without samples")
	// 95 fast, 5 slow: p95 is fast, p99 is slow.
	for i := range 100 {
		d := time.Millisecond
		if i%20 == 0 {
			d = time.Second
		}
		q.record(d)
	}
	p95, ok := q.quantile(95)
	require.True(t, ok)
	assert.InDelta(t, float64(time.Millisecond), float64(p95), float64(time.Millisecond)/8)
	p99, _ := q.quantile(99)
	assert.InDelta(t, float64(time.Second), float64(p99), float64(time.Second)/8)
}

// TestLatencyWindow: the estimate follows a backend that changed, within
// two windows.
func TestLatencyWindow(t *testing.T) {
	var q latencyQuantiles
	for range 3 * latWindow {
		q.record(time.Second)
	}
	for range 2 * latWindow {
		q.record(time.Millisecond)
	}
	p99, _ := q.quantile(99)
	assert.Less(t, p99, 2*time.Millisecond)
}
