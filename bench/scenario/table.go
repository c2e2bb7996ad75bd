package scenario

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluiceproxy/sluice/bench/loadgen"
)

// figures are the numbers a table shows for one run or one class of a run.
type figures struct {
	Sent       int64
	Goodput    float64 // 2xx within the SLO per second
	Success    float64 // 2xx / sent
	P50, P99   time.Duration
	Refused    int64  // 503 and 429 responses: explicit, fast refusals
	RefusedBy  string // by X-Sluice-Shed reason; "503"/"429" for refusals without one
	Other      int64  // other non-2xx responses (500s, 502s, 504s, ...)
	Errors     int64  // client-side: timeouts, resets, refused connections
	ErrorsBy   string
	hasReport  bool
	skipReason string
}

func figuresOf(sent int64, goodput, success float64, status map[int]int64, errs, shed map[string]int64, lat loadgen.Percentiles) figures {
	f := figures{Sent: sent, Goodput: goodput, Success: success, P50: lat.P50, P99: lat.P99, hasReport: true}
	var ok, completed int64
	for code, n := range status {
		completed += n
		switch {
		case code >= 200 && code < 300:
			ok += n
		case code == 503 || code == 429:
			f.Refused += n
		}
	}
	f.Other = completed - ok - f.Refused
	var reasons []string
	var tagged int64
	for _, k := range sortedKeys(shed) {
		tagged += shed[k]
		reasons = append(reasons, fmt.Sprintf("%s %d", k, shed[k]))
	}
	// Refusals without a reason header (HAProxy's queue timeouts, nginx)
	// are listed by status code.
	if untagged := f.Refused - tagged; untagged > 0 {
		for _, code := range []int{503, 429} {
			if n := status[code]; n > 0 && untagged > 0 {
				reasons = append(reasons, fmt.Sprintf("%d %d", code, min(n, untagged)))
				untagged -= min(n, untagged)
			}
		}
	}
	f.RefusedBy = strings.Join(reasons, ", ")
	var ebys []string
	for _, k := range sortedKeys(errs) {
		f.Errors += errs[k]
		ebys = append(ebys, fmt.Sprintf("%s %d", k, errs[k]))
	}
	f.ErrorsBy = strings.Join(ebys, ", ")
	return f
}

func (r Result) figures() figures {
	if r.Report == nil {
		return figures{skipReason: r.why()}
	}
	rep := r.Report
	return figuresOf(rep.Sent, rep.Goodput, rep.SuccessRatio, rep.Status, rep.Errors, rep.Shed, rep.SuccessLatency)
}

func (r Result) classFigures(name string) figures {
	if r.Report == nil {
		return figures{skipReason: r.why()}
	}
	for _, c := range r.Report.Classes {
		if c.Name == name {
			return figuresOf(c.Sent, c.Goodput, c.SuccessRatio, c.Status, c.Errors, c.Shed, c.SuccessLatency)
		}
	}
	return figures{skipReason: "no such class"}
}

func (r Result) why() string {
	switch {
	case r.Skipped != "":
		return "skipped"
	case r.Error != "":
		return "failed: " + firstLine(r.Error)
	}
	return "no report"
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ms formats a latency in milliseconds with a precision that suits it.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case d == 0:
		return "-"
	case v < 10:
		return fmt.Sprintf("%.2fms", v)
	case v < 100:
		return fmt.Sprintf("%.1fms", v)
	}
	return fmt.Sprintf("%.0fms", v)
}

func pct(v float64) string { return fmt.Sprintf("%.1f%%", 100*v) }

func withDetail(n int64, detail string) string {
	if n == 0 || detail == "" {
		return fmt.Sprint(n)
	}
	return fmt.Sprintf("%d (%s)", n, detail)
}

// writeOverloadTable prints one line per run: load, peer and the figures,
// with goodput also as a share of the origin's capacity.
func writeOverloadTable(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	io.WriteString(tw, "load\tpeer\trate/s\tgoodput/s\t%cap\tsuccess\tp50 ok\tp99 ok\trefused\tother\terrors\t\n")
	var notes []string
	for _, r := range results {
		f := r.figures()
		if !f.hasReport {
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t-\t-\t-\t-\t-\t-\t-\t\n", r.Load, r.Peer, r.Rate, shortWhy(r))
			notes = appendNote(notes, r)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.1f\t%.0f%%\t%s\t%s\t%s\t%s\t%d\t%s\t\n",
			r.Load, r.Peer, r.Rate, f.Goodput, 100*f.Goodput/r.CapacityRPS, pct(f.Success),
			ms(f.P50), ms(f.P99), withDetail(f.Refused, f.RefusedBy), f.Other, withDetail(f.Errors, f.ErrorsBy))
	}
	tw.Flush()
	writeNotes(w, notes)
}

// shortWhy fits in a table cell; the full reason goes below the table.
func shortWhy(r Result) string {
	if r.Skipped != "" {
		return "skipped"
	}
	return "failed"
}

func appendNote(notes []string, r Result) []string {
	n := r.Skipped // already names the peer
	if n == "" {
		n = r.Peer + ": " + r.why()
	}
	for _, m := range notes {
		if m == n {
			return notes
		}
	}
	return append(notes, n)
}

func writeNotes(w io.Writer, notes []string) {
	for _, n := range notes {
		fmt.Fprintln(w, "  note: "+n)
	}
}

// writeClassTable prints one line per (run, class): the per-class view the
// priority and fairness scenarios are about.
func writeClassTable(w io.Writer, label string, results []Result, classes []string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "peer\t%s\tsent\tgoodput/s\tsuccess\tp50 ok\tp99 ok\trefused\tother\terrors\t\n", label)
	var notes []string
	for _, r := range results {
		if r.Report == nil {
			fmt.Fprintf(tw, "%s\t-\t%s\t-\t-\t-\t-\t-\t-\t-\t\n", r.Peer, shortWhy(r))
			notes = appendNote(notes, r)
			continue
		}
		for _, c := range classes {
			f := r.classFigures(c)
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%s\t%s\t%s\t%s\t%d\t%s\t\n", r.Peer, c, f.Sent, f.Goodput,
				pct(f.Success), ms(f.P50), ms(f.P99), withDetail(f.Refused, f.RefusedBy), f.Other, withDetail(f.Errors, f.ErrorsBy))
		}
	}
	tw.Flush()
	writeNotes(w, notes)
}

// writeSideBySide prints the demo's table: one metric per line, one column
// per run.
func writeSideBySide(w io.Writer, capacity float64, runs []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprint(tw, "\t")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t", r.Peer)
	}
	fmt.Fprintln(tw)
	figs := make([]figures, len(runs))
	for i, r := range runs {
		figs[i] = r.figures()
	}
	row := func(name string, cell func(r Result, f figures) string) {
		fmt.Fprintf(tw, "%s\t", name)
		for i, r := range runs {
			if !figs[i].hasReport {
				fmt.Fprintf(tw, "%s\t", figs[i].skipReason)
				continue
			}
			fmt.Fprintf(tw, "%s\t", cell(r, figs[i]))
		}
		fmt.Fprintln(tw)
	}
	row("requests sent", func(_ Result, f figures) string { return fmt.Sprint(f.Sent) })
	row("goodput (2xx within 500ms)", func(_ Result, f figures) string {
		return fmt.Sprintf("%.1f/s (%.0f%% of capacity)", f.Goodput, 100*f.Goodput/capacity)
	})
	row("success ratio (2xx/sent)", func(_ Result, f figures) string { return pct(f.Success) })
	row("p50 of successes", func(_ Result, f figures) string { return ms(f.P50) })
	row("p99 of successes", func(_ Result, f figures) string { return ms(f.P99) })
	row("refused (503/429)", func(_ Result, f figures) string { return withDetail(f.Refused, f.RefusedBy) })
	row("other non-2xx", func(_ Result, f figures) string { return fmt.Sprint(f.Other) })
	row("client errors/timeouts", func(_ Result, f figures) string { return withDetail(f.Errors, f.ErrorsBy) })
	tw.Flush()
}

// Floor is one pass/fail criterion for Sluice.
type Floor struct {
	Scenario string  `json:"scenario"`
	Name     string  `json:"name"`
	Value    float64 `json:"value"`
	Limit    float64 `json:"limit"`
	// Status is PASS or FAIL. A floor that could not be measured (Sluice
	// missing, failed to start, or a run it depends on gave no report) is
	// a FAIL whose Detail says why: a benchmark run that proves nothing
	// must not pass.
	Status string `json:"status"`
	Detail string `json:"detail"`
}

func floorAtLeast(scenario, name string, value, limit float64, detail string) Floor {
	f := Floor{Scenario: scenario, Name: name, Value: value, Limit: limit, Status: "FAIL", Detail: detail}
	if value >= limit {
		f.Status = "PASS"
	}
	return f
}

func floorAtMost(scenario, name string, value, limit float64, detail string) Floor {
	f := Floor{Scenario: scenario, Name: name, Value: value, Limit: limit, Status: "FAIL", Detail: detail}
	if value <= limit {
		f.Status = "PASS"
	}
	return f
}

// floorBelow passes when value < limit: the "under 1%" and
// "below HAProxy" are strict.
func floorBelow(scenario, name string, value, limit float64, detail string) Floor {
	f := Floor{Scenario: scenario, Name: name, Value: value, Limit: limit, Status: "FAIL", Detail: detail}
	if value < limit {
		f.Status = "PASS"
	}
	return f
}

func floorUnmeasured(scenario, name, why string) Floor {
	return Floor{Scenario: scenario, Name: name, Status: "FAIL", Detail: "not measured: " + why}
}

func writeFloors(w io.Writer, floors []Floor) {
	if len(floors) == 0 {
		return
	}
	fmt.Fprintln(w, "Floors for Sluice:")
	for _, f := range floors {
		fmt.Fprintf(w, "  %-4s %s: %s\n", f.Status, f.Name, f.Detail)
	}
}
