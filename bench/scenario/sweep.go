package scenario

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluiceproxy/sluice/bench/loadgen"
)

// The sweep scenario: the admission floors across the whole load range, one
// fresh origin and proxy per load, Sluice with its default flags beside
// HAProxy as a competent operator tunes it once told the capacity
// (haproxy-tuned: server maxconn = the origin's workers, timeout queue
// 100ms). Loads of 0.5×, 0.8× and 0.9× must see no refusal; from 1.1× to
// 10×, goodput ≥ 0.95 of capacity, the p99 of admitted requests ≤ 2× the
// unloaded p99 (Sluice's own, measured first at 0.3×), and the p99 of
// refusals ≤ 100 ms. Two more rows ask the same of loads that change:
// bursts (1 s at 5× every 10 s over a 0.8× base, 20 s) and 1.5× for only
// 3 s (the start of an overload must not be served oldest first for
// long). It writes an SVG plot (admitted p99 and goodput against offered
// load, both peers) to Options.Plot.

var (
	sweepLoads = []float64{0.5, 0.8, 0.9, 1.1, 1.2, 1.5, 2, 3, 6, 10}
	sweepPeers = []string{PeerSluice, PeerHAProxyTuned}
)

const (
	sweepGoodput    = 0.95
	sweepTailFactor = 2.0
	sweepRefusalP99 = 100 * time.Millisecond
)

func (e *env) sweep(ctx context.Context, s *Summary) error {
	fmt.Fprintln(e.out, "\n== sweep: goodput, admitted p99 and refusal p99 from 0.5x to 10x the origin's capacity")
	loads := sweepLoads
	if e.opt.Quick {
		loads = []float64{0.9, 1.2, 3}
	}
	var results []Result
	defer func() { s.Results = append(s.Results, results...) }()
	for _, x := range append([]float64{0.3}, loads...) {
		d := e.dur.overload
		if x == 0.3 {
			d = e.dur.unloaded
		}
		for _, peer := range sweepPeers {
			r, err := e.run(ctx, "sweep", peer, sweepLoadName(x), x*e.capacity(), d, nil)
			if err != nil {
				return err
			}
			results = append(results, r)
		}
	}
	for _, v := range e.sweepVariants() {
		for _, peer := range sweepPeers {
			r, err := e.runSchedule(ctx, "sweep", peer, v.name, v.sched, nil)
			if err != nil {
				return err
			}
			results = append(results, r)
		}
	}
	fmt.Fprintln(e.out)
	writeSweepTable(e.out, results)
	if e.opt.Plot != "" {
		if err := writeSweepPlot(e.opt.Plot, results); err != nil {
			fmt.Fprintf(e.out, "  plot: %v\n", err)
		} else {
			fmt.Fprintf(e.out, "  plot: %s\n", e.opt.Plot)
		}
	}
	floors := sweepFloors(results)
	writeFloors(e.out, floors)
	s.Floors = append(s.Floors, floors...)
	return nil
}

// sweepVariant is a row of the sweep whose load changes during the run.
type sweepVariant struct {
	name  string
	sched loadgen.Schedule
}

// Names of the variant rows; sweepFloors judges them as overloads.
const (
	sweepBursts = "bursts"
	sweepShort  = "1.5x-3s"
)

func (e *env) sweepVariants() []sweepVariant {
	c := e.capacity()
	base, peak := 0.8*c, 5*c
	flat := func(r float64, d time.Duration) loadgen.Step { return loadgen.Step{From: r, To: r, Dur: d} }
	bursts := loadgen.Schedule{flat(base, 4500*time.Millisecond), flat(peak, time.Second), flat(base, 9*time.Second), flat(peak, time.Second), flat(base, 4500*time.Millisecond)}
	if e.opt.Quick {
		bursts = loadgen.Schedule{flat(base, 2*time.Second), flat(peak, time.Second), flat(base, 2*time.Second)}
	}
	return []sweepVariant{
		{sweepBursts, bursts},
		{sweepShort, loadgen.Schedule{flat(1.5*c, 3*time.Second)}},
	}
}

// sweepLoadName is "0.3x" for the unloaded run too: the sweep's rows are
// all offered loads.
func sweepLoadName(x float64) string { return fmt.Sprintf("%gx", x) }

// sweepUnloadedP99 is the admitted p99 of peer's 0.3× run, 0 if it has none.
func sweepUnloadedP99(results []Result, peer string) time.Duration {
	for _, r := range results {
		if r.Peer == peer && r.Load == "0.3x" && r.Report != nil {
			return r.Report.SuccessLatency.P99
		}
	}
	return 0
}

func writeSweepTable(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	io.WriteString(tw, "load\tpeer\tgoodput/cap\tp99 ok\tvs unloaded\trefused\trefusal p50\trefusal p99\terrors\t\n")
	var notes []string
	for _, r := range results {
		f := r.figures()
		if !f.hasReport {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\t-\t-\t\n", r.Load, r.Peer, shortWhy(r))
			notes = appendNote(notes, r)
			continue
		}
		vs := "-"
		if base := sweepUnloadedP99(results, r.Peer); base > 0 {
			vs = fmt.Sprintf("%.1fx", float64(f.P99)/float64(base))
		}
		ref := r.Report.RefusalLatency
		fmt.Fprintf(tw, "%s\t%s\t%.3f\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			r.Load, r.Peer, f.Goodput/r.CapacityRPS, ms(f.P99), vs,
			withDetail(f.Refused, f.RefusedBy), ms(ref.P50), ms(ref.P99), withDetail(f.Errors, f.ErrorsBy))
	}
	tw.Flush()
	writeNotes(w, notes)
}

// sweepFloors are Sluice's floors at each load, with HAProxy's figure in
// the detail.
func sweepFloors(results []Result) []Floor {
	base := sweepUnloadedP99(results, PeerSluice)
	peerDetail := func(load string, what func(Result) string) string {
		for _, r := range results {
			if r.Peer == PeerHAProxyTuned && r.Load == load && r.Report != nil {
				return "; " + PeerHAProxyTuned + " " + what(r)
			}
		}
		return ""
	}
	var floors []Floor
	for _, r := range results {
		if r.Peer != PeerSluice || r.Load == "0.3x" {
			continue
		}
		x := r.Rate / r.CapacityRPS
		if r.Load == sweepBursts || r.Load == sweepShort {
			x = 2 // judged as overloads, whatever their mean
		}
		name := func(what string) string { return fmt.Sprintf("sweep %s: %s", r.Load, what) }
		if r.Report == nil {
			floors = append(floors, floorUnmeasured("sweep", name("measured"), "sluice "+r.why()))
			continue
		}
		f := r.figures()
		if x < 1 {
			floors = append(floors, floorAtMost("sweep", name("no refusal"), float64(f.Refused), 0,
				fmt.Sprintf("%d refused of %d%s", f.Refused, r.Report.Sent,
					peerDetail(r.Load, func(h Result) string { return fmt.Sprintf("%d", h.figures().Refused) }))))
			continue
		}
		g := f.Goodput / r.CapacityRPS
		floors = append(floors, floorAtLeast("sweep", name(fmt.Sprintf("goodput >= %.2f of capacity", sweepGoodput)), g, sweepGoodput,
			fmt.Sprintf("%.3f%s", g, peerDetail(r.Load, func(h Result) string { return fmt.Sprintf("%.3f", h.figures().Goodput/h.CapacityRPS) }))))
		if base <= 0 {
			floors = append(floors, floorUnmeasured("sweep", name("p99 of admitted <= 2x unloaded"), "no unloaded run of sluice"))
		} else {
			ratio := float64(f.P99) / float64(base)
			floors = append(floors, floorAtMost("sweep", name("p99 of admitted <= 2x unloaded"), ratio, sweepTailFactor,
				fmt.Sprintf("%s = %.1fx of %s%s", ms(f.P99), ratio, ms(base),
					peerDetail(r.Load, func(h Result) string { return ms(h.figures().P99) }))))
		}
		rp := r.Report.RefusalLatency.P99
		floors = append(floors, floorAtMost("sweep", name("p99 of refusals <= 100ms"), rp.Seconds()*1000, float64(sweepRefusalP99.Milliseconds()),
			fmt.Sprintf("%s over %d refusals%s", ms(rp), f.Refused,
				peerDetail(r.Load, func(h Result) string { return ms(h.Report.RefusalLatency.P99) }))))
	}
	return floors
}

// writeSweepPlot writes to path an SVG of the admitted p99 (ms, log scale)
// and the goodput (share of capacity) against offered load (log scale),
// one line per peer.
func writeSweepPlot(path string, results []Result) error {
	const w, h, pad = 720, 300, 50
	type pt struct{ x, p99, good float64 }
	series := map[string][]pt{}
	maxP99 := 1.0
	for _, r := range results {
		if r.Report == nil || r.CapacityRPS == 0 || r.Load == sweepBursts || r.Load == sweepShort {
			continue // the variants have no single offered load
		}
		p := float64(r.Report.SuccessLatency.P99) / float64(time.Millisecond)
		series[r.Peer] = append(series[r.Peer], pt{r.Rate / r.CapacityRPS, p, r.Report.Goodput / r.CapacityRPS})
		maxP99 = max(maxP99, p)
	}
	if len(series) == 0 {
		return fmt.Errorf("nothing to plot")
	}
	lx := func(x float64) float64 {
		return pad + (w-2*pad)*(math.Log10(x)-math.Log10(0.3))/(math.Log10(10)-math.Log10(0.3))
	}
	ly := func(ms float64) float64 { return h - pad - (h-2*pad)*math.Log10(max(ms, 1))/math.Log10(maxP99*1.2) }
	gy := func(g float64) float64 { return h - pad - (h-2*pad)*min(g, 1.1)/1.1 }
	colors := map[string]string{PeerSluice: "#1f77b4", PeerHAProxyTuned: "#d62728"}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", 2*w, h)
	for panel, title := range []string{"admitted p99 (ms, log)", "goodput / capacity"} {
		off := float64(panel * w)
		fmt.Fprintf(&b, `<g transform="translate(%.0f,0)"><text x="%d" y="20">%s vs offered load (log)</text>`, off, pad, title)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`, pad, pad, w-2*pad, h-2*pad)
		for _, x := range []float64{0.5, 1, 2, 3, 6, 10} {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%gx</text>`, lx(x), h-pad+15, x)
		}
		legend := 0
		for _, peer := range sweepPeers {
			pts := series[peer]
			if len(pts) == 0 {
				continue
			}
			var poly []string
			for _, p := range pts {
				y := ly(p.p99)
				if panel == 1 {
					y = gy(p.good)
				}
				poly = append(poly, fmt.Sprintf("%.1f,%.1f", lx(p.x), y))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, colors[peer], strings.Join(poly, " "))
			fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">%s</text>`, w-pad-120, pad+15+15*legend, colors[peer], peer)
			legend++
		}
		b.WriteString("</g>\n")
	}
	b.WriteString("</svg>\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
