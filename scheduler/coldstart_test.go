package scheduler

import (
	"fmt"
	"testing"
	"time"
)

// TestSimulationColdStart: a fresh scheduler in front of origins of every
// size, measured from the first request. The limit starts at 4 whatever
// the origin, so the larger ones must be found within the first round
// trips: at half their capacity nothing may be refused, and under
// overload the first three seconds keep at least 0.9 of the capacity as
// goodput. Without slow start (a limit that grew by half a request per
// window) the origin of 64 workers had 1169 of 2461 requests refused at
// 0.5x and served 0.40 of its capacity at 3x; without the drain estimate
// of slow start, 73 were refused at 0.5x, within 40 ms of the start.
// The tail of the first seconds is logged, not asserted (issue of the
// admission range: it is up to 7x the unloaded p99 while the limit grows).
func TestSimulationColdStart(t *testing.T) {
	cfg := Config{}
	for _, o := range append([]simOrigin{goalsOrigin}, simOriginSizes...) {
		t.Run(fmt.Sprintf("%dx%v", o.workers, o.service), func(t *testing.T) {
			for _, f := range []float64{0.5, 0.9, 1.5, 3} {
				spec := simAt(simOverload(cfg, f), o)
				spec.warm, spec.measure = 0, 3*time.Second
				r := runSim(t, spec)
				t.Logf("%gx from cold: goodput %.3f p99 %v refused %v of %d", f, r.goodput(), r.p(0.99), r.refused, r.sent)
				switch {
				case f < 1 && len(r.refused) > 0:
					t.Errorf("%gx from cold: refused %v of %d, want none", f, r.refused, r.sent)
				case f > 1 && r.goodput() < 0.90:
					t.Errorf("%gx from cold: goodput %.3f of capacity in the first 3s, want >= 0.90", f, r.goodput())
				}
			}
		})
	}
}
