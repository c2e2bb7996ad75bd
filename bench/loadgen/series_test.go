package loadgen

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// newTestCollector builds a collector over a runner that never sends, so
// hand-made records can be folded in.
func newTestCollector(t testing.TB) *collector {
	t.Helper()
	r, _ := newTestRunner(t, "http://127.0.0.1:1")
	r.shedNames = []string{"queue-timeout"}
	r.shedIdx["queue-timeout"] = 1
	return newCollector(r, nil)
}

// finished returns a record sent at second sec that took lat.
func finished(sec int, lat time.Duration, status uint16, shed uint8) *record {
	start := int64(sec)*int64(time.Second) + int64(time.Millisecond)
	return &record{sched: start, sent: start, end: start + int64(lat), status: status, shed: shed}
}

// seriesPoints parses the SVG and returns, per data-series name, the number
// of points of each polyline drawn for it (one polyline per unbroken run).
func seriesPoints(t *testing.T, svg []byte) map[string][]int {
	t.Helper()
	got := map[string][]int{}
	dec := xml.NewDecoder(bytes.NewReader(svg))
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return got
		}
		require.NoError(t, err, "well-formed XML")
		el, ok := tok.(xml.StartElement)
		if !ok || el.Name.Local != "polyline" {
			continue
		}
		var name, points string
		for _, a := range el.Attr {
			switch a.Name.Local {
			case "data-series":
				name = a.Value
			case "points":
				points = a.Value
			}
		}
		got[name] = append(got[name], len(strings.Fields(points)))
	}
}

// The per-second 2xx percentiles leave out refusals: a second whose
// refusals took their whole queue timeout still shows what its successes
// took, and a second with refusals only has no 2xx point, in the series
// (zero) and in the plot (a gap, not a point at zero).
func TestSeriesSuccessLatency(t *testing.T) {
	c := newTestCollector(t)
	for i := 0; i < 100; i++ {
		c.add(finished(0, 40*time.Millisecond, 200, 0))
		c.add(finished(0, 500*time.Millisecond, 503, 1))
		c.add(finished(0, 500*time.Millisecond, 503, 1))
		c.add(finished(1, 500*time.Millisecond, 503, 1)) // refusals only
		c.add(finished(2, 30*time.Millisecond, 200, 0))
	}
	c.add(finished(2, 90*time.Millisecond, 204, 0))
	c.add(finished(0, 600*time.Millisecond, 200, 0)) // a success past the 500ms SLO
	rep := c.report(3*time.Second, 3*time.Second)
	require.Len(t, rep.Series, 3)

	s0, s1, s2 := rep.Series[0], rep.Series[1], rep.Series[2]
	require.Equal(t, int64(101), s0.OK)
	require.Equal(t, int64(100), s0.Good, "the late success is no goodput")
	require.Equal(t, int64(200), s0.Shed)
	require.InDelta(t, 500*time.Millisecond, s0.P50, float64(5*time.Millisecond), "all responses: mostly refusals")
	require.InDelta(t, 40*time.Millisecond, s0.OKP50, float64(time.Millisecond))
	require.InDelta(t, 40*time.Millisecond, s0.OKP99, float64(time.Millisecond))

	require.Equal(t, int64(0), s1.OK)
	require.Positive(t, s1.P99)
	require.Zero(t, s1.OKP50)
	require.Zero(t, s1.OKP99)

	require.Equal(t, int64(101), s2.Good)
	require.InDelta(t, 30*time.Millisecond, s2.OKP50, float64(time.Millisecond))
	require.InDelta(t, 30*time.Millisecond, s2.OKP99, float64(time.Millisecond))
	require.Equal(t, 90*time.Millisecond, s2.Max, "max is exact")

	var buf bytes.Buffer
	require.NoError(t, rep.PlotSVG(&buf))
	pts := seriesPoints(t, buf.Bytes())
	require.Equal(t, []int{1, 1}, pts["2xx p50"], "second 1 is a gap between two lone points")
	require.Equal(t, []int{1, 1}, pts["2xx p99"])
	require.Equal(t, []int{3}, pts["all p99"], "refusals still count for all responses")
}

// Folding a finished request into the aggregates allocates nothing once its
// second exists (a new second allocates its histograms once).
func TestCollectZeroAlloc(t *testing.T) {
	c := newTestCollector(t)
	ok := finished(0, 40*time.Millisecond, 200, 0)
	shed := finished(0, 500*time.Millisecond, 503, 1)
	c.add(ok)
	allocs := testing.AllocsPerRun(200, func() {
		c.add(ok)
		c.add(shed)
	})
	require.Zero(t, allocs)
}
