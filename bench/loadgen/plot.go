package loadgen

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Plot layout, in SVG user units.
const (
	plotW       = 960
	panelH      = 200
	plotLeft    = 80
	plotRight   = 150 // legend column
	plotTop     = 84
	panelGap    = 56
	plotBottom  = 48
	legendLineW = 22
)

type plotSeries struct {
	name  string
	color string
	dash  string    // stroke-dasharray; "" = solid
	thin  bool      // a reference line; listed last, so drawn on top where it coincides with a main line
	y     []float64 // NaN = no point
}

const dashed = "5 3" // stroke-dasharray of a dashed line

type panel struct {
	title  string
	unit   string
	log    bool
	series []plotSeries
}

// PlotSVG draws the per-second series in three panels sharing the time
// axis: latency percentiles (log scale), throughput, and the share of
// requests that failed, split by kind. The SVG is self-contained.
//
// The latency panel leads with the 2xx percentiles: behind Sluice under
// overload most responses are refusals, and their latency (a refusal may
// wait its whole queue timeout) would hide what the served requests took.
// The p99 of all responses stays as a thin dashed reference line (the max
// is left out: under overload it sits on the same queue timeout as the p99
// and the two only blur each other). A second without a 2xx response leaves
// a gap in the 2xx lines rather than a zero.
func (r *Report) PlotSVG(w io.Writer) error {
	n := len(r.Series)
	pick := func(f func(s *Second) float64) []float64 {
		ys := make([]float64, n)
		for i := range r.Series {
			ys[i] = f(&r.Series[i])
		}
		return ys
	}
	ms := func(d time.Duration) float64 {
		if d <= 0 {
			return math.NaN()
		}
		return float64(d) / 1e6
	}
	pct := func(part func(s *Second) int64) func(s *Second) float64 {
		return func(s *Second) float64 {
			fin := s.OK + s.Errors + s.Shed + s.Other
			if fin == 0 {
				return math.NaN()
			}
			return 100 * float64(part(s)) / float64(fin)
		}
	}
	panels := []panel{
		{title: "Latency from scheduled send (solid: 2xx; dashed: all responses)", unit: "ms", log: true, series: []plotSeries{
			{name: "2xx p50", color: "#1f77b4", y: pick(func(s *Second) float64 { return ms(s.OKP50) })},
			{name: "2xx p99", color: "#ff7f0e", y: pick(func(s *Second) float64 { return ms(s.OKP99) })},
			{name: "all p99", color: "#444444", dash: dashed, thin: true, y: pick(func(s *Second) float64 { return ms(s.P99) })},
		}},
		{title: "Throughput", unit: "req/s", series: []plotSeries{
			{name: "2xx", color: "#2ca02c", y: pick(func(s *Second) float64 { return float64(s.OK) })},
			{name: "shed", color: "#9467bd", y: pick(func(s *Second) float64 { return float64(s.Shed) })},
			{name: "other non-2xx", color: "#8c564b", y: pick(func(s *Second) float64 { return float64(s.Other) })},
			{name: "sent", color: "#404040", dash: dashed, y: pick(func(s *Second) float64 { return float64(s.Sent) })},
		}},
		{title: "Failures (share of finished requests)", unit: "%", series: []plotSeries{
			{name: "client errors", color: "#d62728", y: pick(pct(func(s *Second) int64 { return s.Errors }))},
			{name: "shed", color: "#9467bd", y: pick(pct(func(s *Second) int64 { return s.Shed }))},
			{name: "other non-2xx", color: "#8c564b", y: pick(pct(func(s *Second) int64 { return s.Other }))},
		}},
	}

	height := plotTop + len(panels)*panelH + (len(panels)-1)*panelGap + plotBottom
	bw := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(bw, format, a...) }
	p(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n",
		plotW, height, plotW, height)
	p(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")
	title := "sluice-bench " + r.Mode + " loop"
	if r.Schedule != "" {
		title += ", rate " + r.Schedule
	}
	if r.Mode == "closed" {
		title += fmt.Sprintf(", %d connections", r.Conns)
	}
	p(`<text x="%d" y="26" font-size="16" font-weight="bold">%s</text>`+"\n", plotLeft, esc(title))
	p(`<text x="%d" y="46" fill="#555">%s — %d sent, %.1f req/s, goodput %.1f/s within %s, 2xx p99 %s</text>`+"\n",
		plotLeft, esc(r.Target), r.Sent, r.Throughput, r.Goodput, esc(fmtDur(r.SLO)), esc(fmtDur(r.SuccessLatency.P99)))

	xmax := float64(max(n, 1))
	innerW := float64(plotW - plotLeft - plotRight)
	xOf := func(t float64) float64 { return plotLeft + t/xmax*innerW }
	for i, pn := range panels {
		top := float64(plotTop + i*(panelH+panelGap))
		drawPanel(p, pn, top, xOf, xmax, i == len(panels)-1)
		if end := r.Duration.Seconds(); end > 0 && end < xmax-0.01 {
			// Requests still finishing after the last arrival (draining).
			x := xOf(end)
			p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999" stroke-dasharray="2 3"/>`+"\n", x, top, x, top+panelH)
			if i == 0 {
				p(`<text x="%.1f" y="%.1f" font-size="10" fill="#777">end of load</text>`+"\n", x+3, top+12)
			}
		}
	}
	p("</svg>\n")
	return bw.Flush()
}

func drawPanel(p func(string, ...any), pn panel, top float64, xOf func(float64) float64, xmax float64, lastPanel bool) {
	bottom := top + panelH
	left, right := float64(plotLeft), xOf(xmax)
	// y range
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range pn.series {
		for _, y := range s.y {
			if !math.IsNaN(y) {
				lo, hi = math.Min(lo, y), math.Max(hi, y)
			}
		}
	}
	var ticks []float64
	var yOf func(float64) float64
	if pn.log {
		if math.IsInf(lo, 1) {
			lo, hi = 0.1, 10
		}
		dlo := math.Floor(math.Log10(math.Max(lo, 1e-3)))
		dhi := math.Ceil(math.Log10(math.Max(hi, 1e-3)))
		if dhi <= dlo {
			dhi = dlo + 1
		}
		for d := dlo; d <= dhi; d++ {
			for _, m := range []float64{1, 2, 5} {
				if v := m * math.Pow(10, d); d < dhi || m == 1 {
					ticks = append(ticks, v)
				}
			}
		}
		yOf = func(v float64) float64 {
			v = math.Max(v, math.Pow(10, dlo))
			return bottom - (math.Log10(v)-dlo)/(dhi-dlo)*panelH
		}
	} else {
		if math.IsInf(hi, -1) || hi <= 0 {
			hi = 1
		}
		if pn.unit == "%" {
			hi = math.Max(hi, 1)
		}
		step := niceStep(hi / 5)
		top := math.Ceil(hi/step) * step
		for v := 0.0; v <= top+step/2; v += step {
			ticks = append(ticks, v)
		}
		yOf = func(v float64) float64 { return bottom - v/top*panelH }
	}

	p(`<g>`+"\n"+`<text x="%.1f" y="%.1f" font-size="13" font-weight="bold">%s</text>`+"\n", left, top-10, esc(pn.title))
	// y grid and labels
	for _, v := range ticks {
		y := yOf(v)
		p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e6e6e6"/>`+"\n", left, y, right, y)
		p(`<text x="%.1f" y="%.1f" text-anchor="end" dominant-baseline="middle" fill="#333">%s</text>`+"\n", left-6, y, fmtTick(v))
	}
	// y axis label
	p(`<text transform="translate(%.1f %.1f) rotate(-90)" text-anchor="middle" fill="#333">%s</text>`+"\n",
		left-56, (top+bottom)/2, esc(pn.unit))
	// x grid and labels
	xstep := max(1, niceStep(xmax/10)) // whole seconds: one point per second
	for t := 0.0; t <= xmax+xstep/100; t += xstep {
		x := xOf(t)
		p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#f0f0f0"/>`+"\n", x, top, x, bottom)
		p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`+"\n", x, bottom, x, bottom+4)
		p(`<text x="%.1f" y="%.1f" text-anchor="middle" fill="#333">%s</text>`+"\n", x, bottom+16, fmtTick(t))
	}
	if lastPanel {
		p(`<text x="%.1f" y="%.1f" text-anchor="middle" fill="#333">time (s)</text>`+"\n", (left+right)/2, bottom+36)
	}
	// frame
	p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="none" stroke="#333"/>`+"\n", left, top, right-left, panelH)
	// series: one point per second, at the middle of its second
	for _, s := range pn.series {
		var b strings.Builder
		pts := 0
		flush := func() {
			if pts > 0 {
				p(`<polyline class="series" data-series="%s" fill="none" stroke="%s" stroke-width="%s" stroke-linejoin="round"%s points="%s"/>`+"\n",
					esc(s.name), s.color, s.width(), s.dashAttr(), strings.TrimSpace(b.String()))
				if pts == 1 {
					// A lone point would not show as a line.
					f := strings.Fields(b.String())[0]
					x, y, _ := strings.Cut(f, ",")
					r := 2.5
					if s.thin {
						r = 1.8
					}
					p(`<circle cx="%s" cy="%s" r="%.1f" fill="%s"/>`+"\n", x, y, r, s.color)
				}
			}
			b.Reset()
			pts = 0
		}
		for i, y := range s.y {
			if math.IsNaN(y) {
				flush()
				continue
			}
			fmt.Fprintf(&b, "%.1f,%.1f ", xOf(float64(i)+0.5), yOf(y))
			pts++
		}
		flush()
	}
	// legend
	lx := right + 16
	for i, s := range pn.series {
		y := top + 10 + float64(i)*18
		w := "2.5"
		if s.thin {
			w = s.width()
		}
		p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%s"%s/>`+"\n", lx, y, lx+legendLineW, y, s.color, w, s.dashAttr())
		p(`<text x="%.1f" y="%.1f" dominant-baseline="middle" fill="#333">%s</text>`+"\n", lx+legendLineW+6, y, esc(s.name))
	}
	p("</g>\n")
}

func (s *plotSeries) width() string {
	if s.thin {
		return "1.2"
	}
	return "2"
}

func (s *plotSeries) dashAttr() string {
	if s.dash == "" {
		return ""
	}
	return ` stroke-dasharray="` + s.dash + `"`
}

// niceStep rounds a raw tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*pow >= raw {
			return m * pow
		}
	}
	return 10 * pow
}

func fmtTick(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 4, 64) + "M"
	case math.Abs(v) >= 1e4:
		return strconv.FormatFloat(v/1e3, 'g', 4, 64) + "k"
	default:
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
}

func esc(s string) string { return html.EscapeString(s) }
