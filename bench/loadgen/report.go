package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteTable writes the report for people: a summary, the latency
// percentiles overall and per class, then status codes, errors and shed
// reasons.
func (r *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "target      %s\n", r.Target)
	switch r.Mode {
	case "closed":
		fmt.Fprintf(w, "mode        closed loop, %d connections, %s\n", r.Conns, fmtDur(r.Duration))
	default:
		fmt.Fprintf(w, "mode        open loop, rate %s (mean %.1f/s), %s, up to %d connections\n", r.Schedule, r.Requested, fmtDur(r.Duration), r.Conns)
	}
	fmt.Fprintf(w, "requests    %d sent, %d completed, %d client errors\n", r.Sent, r.Completed, r.Sent-r.Completed)
	fmt.Fprintf(w, "throughput  %.1f/s   goodput %.1f/s (2xx within %s)   success %.2f%%\n",
		r.Throughput, r.Goodput, fmtDur(r.SLO), 100*r.SuccessRatio)
	if r.Mode != "closed" && r.Sent > 0 {
		fmt.Fprintf(w, "send lag    p50 %s  p99 %s  max %s (generator delay, included in latency)\n",
			fmtDur(r.SendLag.P50), fmtDur(r.SendLag.P99), fmtDur(r.SendLag.Max))
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "latency\tp50\tp90\tp99\tp99.9\tp99.99\tmax\t")
	row := func(name string, p Percentiles) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name,
			fmtDur(p.P50), fmtDur(p.P90), fmtDur(p.P99), fmtDur(p.P999), fmtDur(p.P9999), fmtDur(p.Max))
	}
	row("all", r.Latency)
	row("2xx", r.SuccessLatency)
	if len(r.Classes) > 1 {
		for _, c := range r.Classes {
			row(c.Name, c.Latency)
			row(c.Name+" 2xx", c.SuccessLatency)
		}
	}
	tw.Flush()

	if len(r.Classes) > 1 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "class\tsent\tcompleted\tthroughput/s\tgoodput/s\tsuccess\tshed\terrors\t")
		for _, c := range r.Classes {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.1f\t%.2f%%\t%d\t%d\t\n", c.Name, c.Sent, c.Completed,
				c.Throughput, c.Goodput, 100*c.SuccessRatio, sum(c.Shed), c.Sent-c.Completed)
		}
		tw.Flush()
	}

	fmt.Fprintln(w)
	fmt.Fprintf(w, "status      %s\n", joinCounts(r.Status))
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "errors      %s\n", joinCounts(r.Errors))
	}
	if len(r.Shed) > 0 {
		fmt.Fprintf(w, "shed        %s\n", joinCounts(r.Shed))
	}
}

func sum[K comparable](m map[K]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func joinCounts[K int | string](m map[K]int64) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%v: %d", k, m[k]))
	}
	return strings.Join(parts, "  ")
}

// WriteJSON writes the report as indented JSON. Durations are integer
// nanoseconds (the field names end in _ns), rates are per second.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
