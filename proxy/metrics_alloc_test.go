package proxy_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluiceproxy/sluice/admin"
	"github.com/sluiceproxy/sluice/proxy"
)

// withMetrics attaches the admin package's metrics observer, as the admin
// listener does, without a listener.
func withMetrics(tb testing.TB) func(*proxy.Server) {
	return func(s *proxy.Server) {
		_, err := admin.New(admin.Config{}, s, nil)
		require.NoError(tb, err)
	}
}

// TestMetricsObserverZeroAlloc: counting a request for /metrics (by
// route, class and status, its queue wait and backend latency) keeps the
// proxied request at zero allocations.
func TestMetricsObserverZeroAlloc(t *testing.T) {
	if proxy.RaceEnabled {
		t.Skip("the race detector allocates")
	}
	rig := proxy.NewMemRig(t, withMetrics(t))
	defer rig.Stop()
	rig.RequireZeroAlloc(t)
}

// BenchmarkProxyMetrics is BenchmarkProxy with the metrics observer.
func BenchmarkProxyMetrics(b *testing.B) {
	rig := proxy.NewMemRig(b, withMetrics(b))
	defer rig.Stop()
	b.ReportAllocs()
	b.ResetTimer()
	rig.RunParallelGets(b)
}
