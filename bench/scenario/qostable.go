package scenario

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// writeFaultTable prints the fail and hang runs: failures over the whole
// run and among the requests sent from the mark on (what the floor
// judges), how they failed, and where the requests went.
func writeFaultTable(w io.Writer, results []Result) {
	mark := "mark"
	for _, r := range results {
		if r.After > 0 {
			mark = "t>=" + r.After.String()
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "peer\tsent\tfailed\tsent %s\tfailed %s\trefused\tother\terrors\tp50 ok\tp99 ok\to1 faults\treceived o1/o2/o3\t\n", mark, mark)
	var notes []string
	for _, r := range results {
		if r.Report == nil || r.Report.After == nil {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t\n", r.Peer, shortWhy(r))
			notes = appendNote(notes, r)
			continue
		}
		all, allFailed := failShare(overall(r.Report))
		a := r.Report.After
		share, failed := failShare(*a)
		fa := figuresOf(a.Sent, a.Goodput, a.SuccessRatio, a.Status, a.Errors, a.Shed, a.SuccessLatency)
		f := r.figures()
		fmt.Fprintf(tw, "%s\t%d\t%s (%d)\t%d\t%s (%d)\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t\n",
			r.Peer, r.Report.Sent, pct2(all), allFailed, a.Sent, pct2(share), failed,
			withDetail(fa.Refused, fa.RefusedBy), fa.Other, withDetail(fa.Errors, fa.ErrorsBy),
			ms(f.P50), ms(f.P99), faultsOf(r), receivedBy(r))
	}
	tw.Flush()
	writeNotes(w, notes)
}

// faultsOf is how many requests the first origin failed on purpose: every
// request that reached it after the change.
func faultsOf(r Result) string {
	if len(r.Origins) == 0 {
		return "-"
	}
	o := r.Origins[0]
	return fmt.Sprint(o.Errors + o.Hangs + o.Resets)
}

func receivedBy(r Result) string {
	if len(r.Origins) == 0 {
		return "-"
	}
	parts := make([]string, len(r.Origins))
	for i, o := range r.Origins {
		parts[i] = fmt.Sprint(o.Received)
	}
	return strings.Join(parts, "/")
}

// slowShare is the share of the requests the origins received that went to
// the slow one (the third), or "-" for the fast pair alone.
func slowShare(r Result) string {
	if len(r.Origins) != 3 {
		return "-"
	}
	var total int64
	for _, o := range r.Origins {
		total += o.Received
	}
	if total == 0 {
		return "-"
	}
	return fmt.Sprintf("%s (%d)", pct(float64(r.Origins[2].Received)/float64(total)), r.Origins[2].Received)
}

// writeSlowTable prints the slow runs, each peer's p99 against its own run
// in front of the fast pair alone.
func writeSlowTable(w io.Writer, results []Result) {
	mark := "t>=" + slowWarmup.String()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "peer\tpool\tsent\tsuccess\tp50 ok\tp99 ok\tp99 ok %s\tvs pair\tto slow origin\trefused\tother\terrors\t\n", mark)
	var notes []string
	for i, r := range results {
		f := r.figures()
		if !f.hasReport {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t\n", r.Peer, r.Pool, shortWhy(r))
			notes = appendNote(notes, r)
			continue
		}
		p99 := steadyP99(&results[i])
		ratio := "-"
		if r.Pool == poolWithSlow {
			if base, _ := poolResult(results, r.Peer, poolFastPair); base != nil && p99 > 0 {
				ratio = fmt.Sprintf("%.2fx", float64(p99)/float64(steadyP99(base)))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t\n", r.Peer, r.Pool, f.Sent, pct(f.Success),
			ms(f.P50), ms(f.P99), ms(p99), ratio, slowShare(r), withDetail(f.Refused, f.RefusedBy), f.Other, withDetail(f.Errors, f.ErrorsBy))
	}
	tw.Flush()
	writeNotes(w, notes)
}

// writeLongPollTable prints the quick requests of each long-poll run, the
// long polls' outcome, and how many of them the origin held meanwhile.
func writeLongPollTable(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	io.WriteString(tw, "peer\tquick sent\tquick ok\tp50 ok\tp99 ok\trefused\tother\terrors\tlong polls ok\theld at origin\t\n")
	var notes []string
	for _, r := range results {
		f := r.figures()
		if !f.hasReport {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t\n", r.Peer, shortWhy(r))
			notes = appendNote(notes, r)
			continue
		}
		long := "-"
		if lp := r.LongPolls; lp != nil {
			long = fmt.Sprintf("%d of %d", okCount(lp.Status), lp.Sent)
			if lf := figuresOf(lp.Sent, lp.Goodput, lp.SuccessRatio, lp.Status, lp.Errors, lp.Shed, lp.SuccessLatency); lf.Refused+lf.Other+lf.Errors > 0 {
				long += " (" + joinNonEmpty(refusedPart(lf), otherPart(lf), lf.ErrorsBy) + ")"
			}
		}
		held := "-"
		if h := r.heldDuring(); h >= 0 {
			held = fmt.Sprintf(">= %d", h)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t\n", r.Peer, f.Sent, okCount(r.Report.Status),
			ms(f.P50), ms(f.P99), withDetail(f.Refused, f.RefusedBy), f.Other, withDetail(f.Errors, f.ErrorsBy), long, held)
	}
	tw.Flush()
	writeNotes(w, notes)
}

func refusedPart(f figures) string {
	if f.Refused == 0 {
		return ""
	}
	return "refused " + f.RefusedBy
}

func otherPart(f figures) string {
	if f.Other == 0 {
		return ""
	}
	return fmt.Sprintf("other %d", f.Other)
}

// joinNonEmpty joins the non-empty parts with ", ".
func joinNonEmpty(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, ", ")
}
