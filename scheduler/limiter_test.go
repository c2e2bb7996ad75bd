package scheduler

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// gradientAt is a gradient limiter that has learned a baseline of base
// from clean samples and whose limit is then set to lim.
func gradientAt(t *testing.T, now time.Time, base time.Duration, lim float64) (*gradientLimiter, time.Time) {
	g := newGradient(limiterParams{min: 2, max: 1000, probeEvery: time.Hour, probeSamples: defaultProbeSamples}, now)
	for range defaultProbeSamples {
		now = now.Add(base)
		g.sample(now, base, 1, false, true)
	}
	require.Equal(t, base, g.baselineRTT())
	g.lim = lim
	g.win.reset(now)
	return g, now
}

// feedWindow feeds the limiter one sample window (4 samples over 40ms, at
// least two baselines of 10ms) of the given latency and in-flight count.
func feedWindow(g *gradientLimiter, now time.Time, rtt time.Duration, inflight int) time.Time {
	for range 4 {
		now = now.Add(10 * time.Millisecond)
		g.sample(now, rtt, inflight, false, false)
	}
	return now
}

// TestGradientSteps checks the gradient limiter's bounds on one window:
// latency far above the baseline at most halves the limit (a single slow
// window, a GC pause or one slow query, must not collapse it), and flat
// latency raises it only when the backend was using at least half of it
// (an idle backend's low latency says nothing about a higher limit).
func TestGradientSteps(t *testing.T) {
	const base = 10 * time.Millisecond
	t.Run("slow window at most halves", func(t *testing.T) {
		g, now := gradientAt(t, simEpoch, base, 20)
		feedWindow(g, now, 20*base, 20)
		require.GreaterOrEqual(t, g.limit(), 10, "one window 20x the baseline")
		require.Less(t, g.limit(), 20)
	})
	t.Run("flat latency, busy: grows", func(t *testing.T) {
		g, now := gradientAt(t, simEpoch, base, 20)
		feedWindow(g, now, base, 20)
		require.Greater(t, g.limit(), 20)
	})
	t.Run("flat latency, mostly idle: stays", func(t *testing.T) {
		g, now := gradientAt(t, simEpoch, base, 20)
		for range 10 {
			now = feedWindow(g, now, base, 3)
		}
		require.Equal(t, 20, g.limit(), "3 in flight of 20 is application-limited")
	})
}
