package scenario

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sluiceproxy/sluice/bench/loadgen"
)

// Names of the scenarios Run accepts.
// qos-fail, qos-hang, qos-slow, qos-longpoll and qos-standby run one part
// of qos; hedge compares Sluice with and without hedged requests.
var Names = []string{"overload", "sweep", "priority", "fairness", "qos", "qos-fail", "qos-hang", "qos-slow", "qos-longpoll", "qos-standby", "hedge", "all"}

// Summary is everything a scenario invocation measured, as written by
// --json.
type Summary struct {
	CapacityRPS float64   `json:"capacity_rps"`
	Quick       bool      `json:"quick"`
	Results     []Result  `json:"results"`
	Floors      []Floor   `json:"floors"`
	Started     time.Time `json:"started"`
	Elapsed     string    `json:"elapsed"`
}

// Failed reports whether any floor failed.
func (s *Summary) Failed() bool {
	for _, f := range s.Floors {
		if f.Status == "FAIL" {
			return true
		}
	}
	return false
}

// WriteJSON writes the summary, reports included.
func (s *Summary) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

// Run runs the named scenario ("all" runs the four in sequence) and prints
// progress, tables and floors to opt.Out. The error is for a setup failure
// or cancellation; a failed floor is in the Summary.
func Run(ctx context.Context, name string, opt Options) (*Summary, error) {
	e, cleanup, err := newEnv(opt)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	s := &Summary{CapacityRPS: e.capacity(), Quick: opt.Quick, Started: time.Now()}
	var steps []func(context.Context, *Summary) error
	switch name {
	case "overload":
		steps = append(steps, e.overload)
	case "sweep":
		steps = append(steps, e.sweep)
	case "priority":
		steps = append(steps, e.priority)
	case "fairness":
		steps = append(steps, e.fairness)
	case "qos":
		steps = append(steps, e.qos)
	case "qos-fail":
		steps = append(steps, e.qosFail)
	case "qos-hang":
		steps = append(steps, e.qosHang)
	case "qos-slow":
		steps = append(steps, e.qosSlow)
	case "qos-longpoll":
		steps = append(steps, e.qosLongPoll)
	case "qos-standby":
		steps = append(steps, e.qosStandby)
	case "hedge":
		steps = append(steps, e.hedge)
	case "all":
		steps = append(steps, e.overload, e.sweep, e.priority, e.fairness, e.qos)
	default:
		return nil, fmt.Errorf("unknown scenario %q (want overload, sweep, priority, fairness, qos, qos-fail, qos-hang, qos-slow, qos-longpoll, qos-standby, hedge or all)", name)
	}
	if !strings.HasPrefix(name, "qos") && name != "hedge" { // these have origins of their own, printed with each part
		fmt.Fprintf(e.out, "Origin: %d workers × %s (%s) = %.0f req/s; open-loop Poisson arrivals; SLO 500ms; client timeout %s\n",
			e.ocfg.Workers, e.ocfg.Service, e.ocfg.Dist, e.capacity(), e.dur.timeout)
	}
	for _, step := range steps {
		if err := step(ctx, s); err != nil {
			return s, err
		}
	}
	s.Elapsed = time.Since(s.Started).Round(time.Second).String()
	if len(steps) > 1 {
		fmt.Fprintln(e.out)
		writeFloors(e.out, s.Floors)
	}
	fmt.Fprintf(e.out, "Done in %s.\n", s.Elapsed)
	return s, nil
}

func loadName(x float64) string {
	if x < 1 {
		return "unloaded"
	}
	return fmt.Sprintf("%gx", x)
}

var overloadPeers = []string{PeerDirect, PeerSluice, PeerHAProxyTuned, PeerHAProxyUntuned, PeerNginx}

// overload: every peer unloaded (0.3× capacity, for the unloaded p99), then
// at 3× and 6× capacity. Quick runs 3× only, and unloaded only direct and
// Sluice.
func (e *env) overload(ctx context.Context, s *Summary) error {
	fmt.Fprintln(e.out, "\n== overload: goodput and latency at 3x and 6x the origin's capacity")
	var results []Result
	loads := []float64{0.3, 3, 6}
	if e.opt.Quick {
		loads = loads[:2] // a smoke run: one overload level
	}
	for _, x := range loads {
		d := e.dur.overload
		if x < 1 {
			d = e.dur.unloaded
		}
		for _, peer := range overloadPeers {
			if x < 1 && e.opt.Quick && peer != PeerDirect && peer != PeerSluice {
				continue // only Sluice's floor needs the unloaded p99
			}
			r, err := e.run(ctx, "overload", peer, loadName(x), x*e.capacity(), d, nil)
			if err != nil {
				return err
			}
			results = append(results, r)
		}
	}
	s.Results = append(s.Results, results...)
	fmt.Fprintln(e.out)
	writeOverloadTable(e.out, results)
	floors := overloadFloors(results)
	writeFloors(e.out, floors)
	s.Floors = append(s.Floors, floors...)
	return nil
}

// overloadFloors: Sluice's goodput under overload is at least 90% of the
// origin's capacity, and the p99 of the requests it admits is at most 3×
// its own unloaded p99: admission control must keep the origin out of the
// regime where everyone's latency climbs.
func overloadFloors(results []Result) []Floor {
	var unloaded *Result
	for i, r := range results {
		if r.Peer == PeerSluice && r.Load == "unloaded" {
			unloaded = &results[i]
		}
	}
	var floors []Floor
	for _, r := range results {
		if r.Peer != PeerSluice || r.Load == "unloaded" {
			continue
		}
		gName := fmt.Sprintf("overload %s: goodput >= 90%% of capacity", r.Load)
		pName := fmt.Sprintf("overload %s: p99 of admitted <= 3x unloaded p99", r.Load)
		if r.Report == nil {
			floors = append(floors, floorUnmeasured("overload", gName, "sluice "+r.why()), floorUnmeasured("overload", pName, "sluice "+r.why()))
			continue
		}
		g := r.Report.Goodput / r.CapacityRPS
		floors = append(floors, floorAtLeast("overload", gName, g, 0.9,
			fmt.Sprintf("%.1f req/s = %.1f%% of %.0f (floor 90%%)", r.Report.Goodput, 100*g, r.CapacityRPS)))
		if unloaded == nil || unloaded.Report == nil || unloaded.Report.SuccessLatency.P99 == 0 {
			why := "no unloaded run of sluice"
			if unloaded != nil {
				why = "unloaded sluice " + unloaded.why()
			}
			floors = append(floors, floorUnmeasured("overload", pName, why))
			continue
		}
		base := unloaded.Report.SuccessLatency.P99
		p99 := r.Report.SuccessLatency.P99
		floors = append(floors, floorAtMost("overload", pName, float64(p99)/float64(base), 3,
			fmt.Sprintf("p99 %s vs 3 × %s = %s", ms(p99), ms(base), ms(3*base))))
	}
	if len(floors) == 0 {
		floors = append(floors, floorUnmeasured("overload", "overload: goodput >= 90% of capacity", "no overloaded sluice run"))
	}
	return floors
}

var contrastPeers = []string{PeerDirect, PeerSluice, PeerHAProxyTuned}

// priority: critical requests at 0.5× capacity on top of low at 2.5×.
func (e *env) priority(ctx context.Context, s *Summary) error {
	fmt.Fprintln(e.out, "\n== priority: critical at 0.5x capacity on top of low at 2.5x (header X-Priority)")
	mix := []loadgen.Class{
		{Name: "critical", Share: 0.5, Headers: map[string]string{"X-Priority": "critical"}},
		{Name: "low", Share: 2.5, Headers: map[string]string{"X-Priority": "low"}},
	}
	var results []Result
	for _, peer := range contrastPeers {
		r, err := e.run(ctx, "priority", peer, "3x", 3*e.capacity(), e.dur.priority, mix)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	s.Results = append(s.Results, results...)
	fmt.Fprintln(e.out)
	writeClassTable(e.out, "class", results, []string{"critical", "low"})
	floors := priorityFloors(results)
	writeFloors(e.out, floors)
	s.Floors = append(s.Floors, floors...)
	return nil
}

func priorityFloors(results []Result) []Floor {
	const name = "priority: >= 99.9% of critical requests succeed"
	r, why := sluiceResult(results)
	if r == nil {
		return []Floor{floorUnmeasured("priority", name, why)}
	}
	f := r.classFigures("critical")
	return []Floor{floorAtLeast("priority", name, f.Success, 0.999,
		fmt.Sprintf("%s of %d critical requests succeeded (floor 99.9%%)", pct(f.Success), f.Sent))}
}

// sluiceResult is Sluice's run among results, or nil and why there is no
// report to judge.
func sluiceResult(results []Result) (*Result, string) {
	for i, r := range results {
		if r.Peer != PeerSluice {
			continue
		}
		if r.Report == nil {
			return nil, "sluice " + r.why()
		}
		return &results[i], ""
	}
	return nil, "no sluice run"
}

// fairnessTenants: t1 sends 10× its fair share (capacity/5); the others
// send 0.8× theirs, so what they ask for fits in the origin.
var fairnessTenants = []string{"t1", "t2", "t3", "t4", "t5"}

func (e *env) fairness(ctx context.Context, s *Summary) error {
	fmt.Fprintln(e.out, "\n== fairness: tenant t1 sends 10x its share, t2..t5 0.8x theirs (header X-Tenant)")
	share := e.capacity() / float64(len(fairnessTenants))
	var mix []loadgen.Class
	total := 0.0
	for i, t := range fairnessTenants {
		rate := 0.8 * share
		if i == 0 {
			rate = 10 * share
		}
		total += rate
		mix = append(mix, loadgen.Class{Name: t, Share: rate, Headers: map[string]string{"X-Tenant": t}})
	}
	var results []Result
	for _, peer := range contrastPeers {
		r, err := e.run(ctx, "fairness", peer, fmt.Sprintf("%.1fx", total/e.capacity()), total, e.dur.fairness, mix)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	s.Results = append(s.Results, results...)
	fmt.Fprintln(e.out)
	writeClassTable(e.out, "tenant", results, fairnessTenants)
	floors := fairnessFloors(results)
	writeFloors(e.out, floors)
	s.Floors = append(s.Floors, floors...)
	return nil
}

func fairnessFloors(results []Result) []Floor {
	const name = "fairness: every tenant within its share keeps >= 99% success"
	r, why := sluiceResult(results)
	if r == nil {
		return []Floor{floorUnmeasured("fairness", name, why)}
	}
	worst, worstT := 2.0, ""
	for _, t := range fairnessTenants[1:] {
		if f := r.classFigures(t); f.Success < worst {
			worst, worstT = f.Success, t
		}
	}
	return []Floor{floorAtLeast("fairness", name, worst, 0.99,
		fmt.Sprintf("worst is %s at %s (floor 99%%)", worstT, pct(worst)))}
}
