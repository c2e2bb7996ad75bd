package scenario

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/sluiceproxy/sluice/bench/loadgen"
	"github.com/sluiceproxy/sluice/bench/origin"
)

// The hedge scenario: three origins well under capacity, one of which
// stalls 5% of its requests by 1 s, behind Sluice without hedging and
// then with hedging on at its defaults (--hedge), in one invocation.
// Hedging should cut the p99 by at least 3x at no more than 10% extra
// requests to the origins (origin requests per client request, counted
// by the origins themselves).
//
// Sluice's backend selection sends a backend whose recent latency is
// high only what the others cannot take, so at this load the stalling
// origin gets a small share of the requests, and its stalls may never
// reach the p99 without hedging. The same pair of runs is therefore also
// made with the stalls the first setup would make if the three shared
// the load evenly, 5%/3 of all requests, spread over all three origins
// (each stalling 1.7% of its requests, independent draws): no choice of
// backend avoids them, and only a second request can.

const (
	hedgeRate      = 300.0 // req/s, about 2% of the three origins' capacity
	hedgeStallRate = 0.05
	hedgeStallFor  = time.Second
	// hedgeWarmup: the latency estimates need a few dozen answers per
	// backend; p50 and p99 count the requests sent from here on.
	hedgeWarmup = time.Second
	poolNoHedge = "no hedging"
	poolHedge   = "hedging"
)

// hedgeSetup is one set of origins the scenario runs with and without
// hedging.
type hedgeSetup struct {
	name    string // Result.Load
	origins []origin.Config
}

func (e *env) hedge(ctx context.Context, s *Summary) error {
	fast := origin.Default()
	fast.Workers, fast.Service = 32, 5*time.Millisecond
	stalling := func(c origin.Config, seed uint64, rate float64) origin.Config {
		c.Seed, c.StallRate, c.StallFor = seed, rate, hedgeStallFor
		return c
	}
	each := hedgeStallRate / 3
	fast2, fast3 := fast, fast
	fast2.Seed, fast3.Seed = 2, 3
	setups := []hedgeSetup{
		{"one stalling", []origin.Config{fast, fast2, stalling(fast, 3, hedgeStallRate)}},
		{"all stalling", []origin.Config{stalling(fast, 1, each), stalling(fast, 2, each), stalling(fast, 3, each)}},
	}
	fmt.Fprintf(e.out, "\n-- hedge: 3 origins × %s = %.0f req/s, one stalling %.0f%% of its requests by %s, then all three %.1f%% each; offered %.0f req/s\n",
		originLabel(fast), poolCapacity(setups[0].origins), 100*hedgeStallRate, hedgeStallFor, 100*each, hedgeRate)
	var results []Result
	for _, su := range setups {
		for _, run := range []struct {
			pool string
			args []string
		}{{poolNoHedge, nil}, {poolHedge, []string{"--hedge"}}} {
			r, err := e.runPool(ctx, poolRun{
				scenario: "hedge", peer: PeerSluice, load: su.name, pool: run.pool,
				origins: su.origins, sluiceArgs: run.args,
				cfg: loadgen.Config{
					Rate: loadgen.Schedule{{From: hedgeRate, To: hedgeRate, Dur: e.dur.hedge}}, Poisson: true,
					SLO: 500 * time.Millisecond, Timeout: 5 * time.Second, MaxConns: 1000, Seed: e.opt.Seed,
					After: hedgeWarmup,
				},
			})
			if err != nil {
				return err
			}
			results = append(results, r)
		}
	}
	s.Results = append(s.Results, results...)
	fmt.Fprintln(e.out)
	writeHedgeTable(e.out, results)
	var floors []Floor
	for _, su := range setups {
		floors = append(floors, hedgeFloors(results, su.name)...)
	}
	writeFloors(e.out, floors)
	s.Floors = append(s.Floors, floors...)
	return nil
}

// originLoad is the origins' requests per client request sent in r.
func originLoad(r *Result) float64 {
	if r.Report == nil || r.Report.Sent == 0 {
		return 0
	}
	var n int64
	for _, o := range r.Origins {
		n += o.Received
	}
	return float64(n) / float64(r.Report.Sent)
}

// hedgeLatency is the latency of successes sent after the warm-up.
func hedgeLatency(r *Result) loadgen.Percentiles {
	l := r.Report.SuccessLatency
	if a := r.Report.After; a != nil {
		l = a.SuccessLatency
	}
	return l
}

func writeHedgeTable(w io.Writer, results []Result) {
	fmt.Fprintf(w, "  %-13s %-11s %7s %9s %9s %9s %14s %8s\n", "origins", "run", "sent", "p50", "p99", "p99.9", "origin req/req", "stalled")
	for i := range results {
		r := &results[i]
		if r.Report == nil {
			fmt.Fprintf(w, "  %-13s %-11s %s\n", r.Load, r.Pool, r.why())
			continue
		}
		l := hedgeLatency(r)
		var stalls int64
		for _, o := range r.Origins {
			stalls += o.Stalls
		}
		fmt.Fprintf(w, "  %-13s %-11s %7d %9s %9s %9s %14.3f %8d\n", r.Load, r.Pool, r.Report.Sent, ms(l.P50), ms(l.P99), ms(l.P999), originLoad(r), stalls)
	}
}

// hedgeFloors: with the origins of setup, hedging divides the p99 by at
// least 3 and adds at most 10% to the origins' requests, both against the
// run without hedging of the same invocation.
func hedgeFloors(results []Result, setup string) []Floor {
	sc := "hedge"
	nameP99 := "hedge (" + setup + "): p99 without hedging / with >= 3x"
	nameLoad := "hedge (" + setup + "): extra origin requests with hedging <= 10%"
	var off, on *Result
	for i := range results {
		r := &results[i]
		if r.Load != setup || r.Report == nil {
			continue
		}
		switch r.Pool {
		case poolNoHedge:
			off = r
		case poolHedge:
			on = r
		}
	}
	if off == nil || on == nil {
		why := "a run of " + setup + " has no report"
		return []Floor{floorUnmeasured(sc, nameP99, why), floorUnmeasured(sc, nameLoad, why)}
	}
	p99off, p99on := hedgeLatency(off).P99, hedgeLatency(on).P99
	ratio := float64(p99off) / float64(max(p99on, time.Microsecond))
	extra := originLoad(on)/max(originLoad(off), 1e-9) - 1
	return []Floor{
		floorAtLeast(sc, nameP99, ratio, 3, fmt.Sprintf("p99 %s without, %s with = %.1fx (floor 3x)", ms(p99off), ms(p99on), ratio)),
		floorAtMost(sc, nameLoad, extra, 0.10, fmt.Sprintf("origin requests per request %.3f without, %.3f with = %+.1f%% (floor +10%%)",
			originLoad(off), originLoad(on), 100*extra)),
	}
}
