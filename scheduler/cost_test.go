package scheduler

import (
	"math"
	"slices"
	"testing"
	"time"
)

// streamP99 is the p99 latency of stream i's measured successes.
func (r *simResult) streamP99(i int) time.Duration {
	l := r.streams[i].lat
	if len(l) == 0 {
		return 0
	}
	slices.Sort(l)
	return l[min(len(l)-1, int(math.Ceil(0.99*float64(len(l))))-1)]
}

// workGoodput is the goodput in origin work (requests weighted by their
// cost) as a share of the origin's capacity in cheap requests.
func (r *simResult) workGoodput(spec simSpec) float64 {
	work := 0.0
	for i, st := range spec.streams {
		c := st.cost
		if c == 0 {
			c = 1
		}
		work += c * float64(r.streams[i].good)
	}
	return work / r.seconds / spec.origin.capacity()
}

// TestSimulationRequestCost: requests of different cost on one backend,
// one in ten costing 20 times the others (a 5 ms lookup beside a 100 ms
// report), offered at 2x the origin's capacity in work. The limiter must
// not read the expensive ones as lost capacity: goodput in origin work
// stays >= 0.9 of capacity. With the window's mean latency it was 0.75
// (and 0.72 at 1x, refusing a quarter of the requests); with its median,
// 0.95. The cheap requests' tail is logged, not asserted: at 2x their p99
// is 83 ms against 6.9 ms unloaded (the floor of the admission-range issue
// asks 2x), as they queue behind and share workers with the expensive
// ones; a cost per route that the scheduler learns or is told would be
// the next step.
func TestSimulationRequestCost(t *testing.T) {
	o := simOrigin{workers: 4, service: 5 * time.Millisecond}
	const share, cost = 0.1, 20.0
	reqCap := o.capacity() / (1 - share + share*cost) // requests/s of the mix the origin serves
	at := func(f float64) simSpec {
		rate := f * reqCap
		return simSpec{origin: o, cfg: Config{},
			streams: []simStream{{class: Normal, rate: (1 - share) * rate}, {class: Normal, rate: share * rate, cost: cost}},
			warm:    time.Second, measure: 10 * time.Second, seed: 1}
	}
	base := runSim(t, at(0.25))
	for _, f := range []float64{1, 2, 3} {
		spec := at(f)
		r := runSim(t, spec)
		g := r.workGoodput(spec)
		t.Logf("%gx: work goodput %.3f; cheap p99 %v (unloaded %v), expensive p99 %v (unloaded %v); refused %v",
			f, g, r.streamP99(0), base.streamP99(0), r.streamP99(1), base.streamP99(1), r.refused)
		if f >= 2 && g < 0.9 {
			t.Errorf("%gx: goodput in work %.3f of capacity, want >= 0.9", f, g)
		}
	}
}
