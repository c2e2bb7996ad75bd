package loadgen

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histograms record microseconds: three significant digits of a loopback
// latency of tens of microseconds is already finer than the clock's noise,
// and microseconds keep the bucket count (and memory) small up to an hour.
const (
	histMax       = int64(time.Hour / time.Microsecond)
	histSigFigs   = 3
	seriesSigFigs = 2 // per-second histograms: many of them, coarser is fine
)

func newHist(sigfigs int) *hdrhistogram.Histogram {
	return hdrhistogram.New(1, histMax, sigfigs)
}

func toMicros(ns int64) int64 {
	us := ns / 1000
	return min(max(us, 1), histMax)
}

// agg accumulates the figures of one class, or of the whole run.
type agg struct {
	sent, completed, ok, good int64
	status                    map[int]int64
	errors                    [numErrKinds]int64
	shed                      map[uint8]int64
	all, okh                  *hdrhistogram.Histogram
	maxAll, maxOK             int64 // exact, ns
	// refh: the refusals (503 and 429), apart: how soon a refused client
	// knows is a figure of its own.
	refh   *hdrhistogram.Histogram
	maxRef int64
}

func newAgg() *agg {
	return &agg{
		status: make(map[int]int64),
		shed:   make(map[uint8]int64),
		all:    newHist(histSigFigs),
		okh:    newHist(histSigFigs),
		refh:   newHist(histSigFigs),
	}
}

func (a *agg) add(res *record, lat, slo int64) {
	a.sent++
	if res.errKind != errNone {
		a.errors[res.errKind]++
		return
	}
	a.completed++
	a.status[int(res.status)]++
	if res.shed != 0 {
		a.shed[res.shed]++
	}
	_ = a.all.RecordValue(toMicros(lat))
	a.maxAll = max(a.maxAll, lat)
	if res.status >= 200 && res.status < 300 {
		a.ok++
		if lat <= slo {
			a.good++
		}
		_ = a.okh.RecordValue(toMicros(lat))
		a.maxOK = max(a.maxOK, lat)
	}
	if res.status == 503 || res.status == 429 {
		_ = a.refh.RecordValue(toMicros(lat))
		a.maxRef = max(a.maxRef, lat)
	}
}

// secAgg accumulates one second of the series, or the progress interval.
// The 2xx histogram is kept apart because under overload most responses are
// refusals, fast or slow, whose latencies would hide what the requests that
// were served actually took.
type secAgg struct {
	sent, ok, good, errs, shed, other int64
	h                                 *hdrhistogram.Histogram
	max                               int64                   // exact, ns
	okh                               *hdrhistogram.Histogram // 2xx only; nil for the progress interval
	okMax                             int64                   // exact, ns
}

func newSecAgg() secAgg {
	return secAgg{h: newHist(seriesSigFigs), okh: newHist(seriesSigFigs)}
}

// collector is the single goroutine that owns every aggregate, so the
// connections only pass a small result by value and never contend on a lock.
type collector struct {
	r        *runner
	progress io.Writer
	slo      int64
	stop     chan struct{} // closed when every connection has finished

	total   *agg
	classes []*agg
	after   *agg  // requests scheduled at or after afterNs; nil without Config.After
	afterNs int64 // Config.After
	secs    []secAgg
	lag     *hdrhistogram.Histogram
	lagMax  int64

	// progress interval, reset every line: responses and errors that
	// finished in it
	iv       secAgg
	ivStart  int64
	ivIssued int64 // requests issued when the interval began
}

func newCollector(r *runner, progress io.Writer) *collector {
	c := &collector{
		r:        r,
		progress: progress,
		stop:     make(chan struct{}),
		slo:      int64(r.cfg.SLO),
		total:    newAgg(),
		lag:      newHist(histSigFigs),
		iv:       secAgg{h: newHist(seriesSigFigs)},
	}
	for range r.cfg.Mix {
		c.classes = append(c.classes, newAgg())
	}
	if r.cfg.After > 0 {
		c.after, c.afterNs = newAgg(), int64(r.cfg.After)
	}
	// Size the series for the planned run up front.
	n := int(r.cfg.runLength()/time.Second) + 2
	c.secs = make([]secAgg, 0, n)
	return c
}

func (c *collector) sec(t int64) *secAgg {
	i := int(t / int64(time.Second))
	for len(c.secs) <= i {
		c.secs = append(c.secs, newSecAgg())
	}
	return &c.secs[i]
}

// collectEvery is how often the collector folds finished records into the
// aggregates. The connections never wait for it, so it only sets how fresh
// the progress line is and how many records stay alive.
const collectEvery = 50 * time.Millisecond

// progressEvery is the progress line's period (shortened by tests).
var progressEvery = time.Second

func (c *collector) run() {
	starve := newStarvation()
	starve.check()
	t := time.NewTicker(collectEvery)
	defer t.Stop()
	every := int64(progressEvery)
	nextLine := every
	for {
		select {
		case <-c.stop:
			c.collect()
			return
		case <-t.C:
			c.r.starved.Store(starve.check())
			c.collect()
			if c.progress != nil && c.r.now() >= nextLine {
				c.printProgress()
				nextLine += every
			}
		}
	}
}

// collect folds every finished record from the low-water mark up to the
// last issued one, then moves the mark past the collected prefix and frees
// the chunks it left behind. Records finish out of order, so one slow
// request holds the mark back and the window is rescanned; it is bounded by
// rate times timeout.
func (c *collector) collect() {
	s := &c.r.recs
	lo := c.r.collected.Load()
	hi := s.next.Load()
	advancing := true
	for n := lo; n < hi; n++ {
		if !s.loaded(n) {
			break // reserved, chunk still being allocated
		}
		rec := s.at(n)
		switch rec.state.Load() {
		case recDone:
			c.add(rec)
			rec.state.Store(recCollected)
		case recPending:
			advancing = false
			continue
		}
		if advancing {
			lo = n + 1
			if lo&chunkMask == 0 {
				s.releaseChunk(n)
			}
		}
	}
	c.r.collected.Store(lo)
}

func (c *collector) add(res *record) {
	lat := res.end - res.sched
	c.total.add(res, lat, c.slo)
	c.classes[res.class].add(res, lat, c.slo)
	if c.after != nil && res.sched >= c.afterNs {
		c.after.add(res, lat, c.slo)
	}
	if c.r.cfg.Conns == 0 {
		lag := res.sent - res.sched
		_ = c.lag.RecordValue(toMicros(lag))
		c.lagMax = max(c.lagMax, lag)
	}
	c.sec(res.sent).sent++
	for _, s := range [2]*secAgg{c.sec(res.end), &c.iv} {
		switch {
		case res.errKind != errNone:
			s.errs++
			continue
		case res.status >= 200 && res.status < 300:
			s.ok++
			if lat <= c.slo {
				s.good++
			}
			if s.okh != nil {
				_ = s.okh.RecordValue(toMicros(lat))
				s.okMax = max(s.okMax, lat)
			}
		case res.shed != 0:
			s.shed++
		default:
			s.other++
		}
		_ = s.h.RecordValue(toMicros(lat))
		s.max = max(s.max, lat)
	}
}

func (c *collector) printProgress() {
	now := c.r.now()
	el := float64(now-c.ivStart) / 1e9
	if el <= 0 {
		return
	}
	iv := &c.iv
	issued := c.r.recs.next.Load()
	sent := issued - c.ivIssued
	c.ivIssued = issued
	fmt.Fprintf(c.progress, "%6.1fs  sent %7.0f/s  ok %7.0f/s  shed %5.0f/s  other %5.0f/s  err %5.0f/s  p50 %8s  p99 %8s  max %8s  in-flight %5d  conns %5d\n",
		float64(now)/1e9, float64(sent)/el, float64(iv.ok)/el, float64(iv.shed)/el, float64(iv.other)/el, float64(iv.errs)/el,
		fmtDur(quantile(iv.h, iv.max, 50)), fmtDur(quantile(iv.h, iv.max, 99)), fmtDur(time.Duration(iv.max)),
		c.r.inflight.Load(), c.r.nconns.Load())
	iv.h.Reset()
	*iv = secAgg{h: iv.h}
	c.ivStart = now
}

func micros(us int64) time.Duration { return time.Duration(us) * time.Microsecond }

// quantile reads percentile p (0-100) off h, capped at the exact maximum:
// a histogram bucket's upper edge may lie above every value recorded in it.
// An empty histogram reads 0, which the series and the plot take as "no
// point".
func quantile(h *hdrhistogram.Histogram, maxNs int64, p float64) time.Duration {
	if h.TotalCount() == 0 {
		return 0
	}
	return min(micros(h.ValueAtQuantile(p)), time.Duration(maxNs))
}

func percentiles(h *hdrhistogram.Histogram, maxNs int64) Percentiles {
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	q := func(p float64) time.Duration { return quantile(h, maxNs, p) }
	return Percentiles{P50: q(50), P90: q(90), P99: q(99), P999: q(99.9), P9999: q(99.99), Max: time.Duration(maxNs)}
}

func (c *collector) classReport(name string, a *agg, secs float64) ClassReport {
	cr := ClassReport{
		Name:           name,
		Sent:           a.sent,
		Completed:      a.completed,
		Throughput:     float64(a.completed) / secs,
		Goodput:        float64(a.good) / secs,
		Status:         make(map[int]int64, len(a.status)),
		Errors:         make(map[string]int64),
		Shed:           make(map[string]int64, len(a.shed)),
		Latency:        percentiles(a.all, a.maxAll),
		SuccessLatency: percentiles(a.okh, a.maxOK),
		RefusalLatency: percentiles(a.refh, a.maxRef),
	}
	if a.sent > 0 {
		cr.SuccessRatio = float64(a.ok) / float64(a.sent)
	}
	for k, v := range a.status {
		cr.Status[k] = v
	}
	for k, v := range a.errors {
		if v > 0 {
			cr.Errors[errKindNames[k]] = v
		}
	}
	for k, v := range a.shed {
		cr.Shed[c.r.shedName(k)] += v
	}
	return cr
}

func (c *collector) report(issued, elapsed time.Duration) *Report {
	cfg := &c.r.cfg
	secs := issued.Seconds()
	tot := c.classReport("all", c.total, secs)
	rep := &Report{
		Target:         cfg.Target,
		Mode:           "open",
		Conns:          int(c.r.peak.Load()),
		SLO:            cfg.SLO,
		Duration:       issued,
		Elapsed:        elapsed,
		Sent:           tot.Sent,
		Completed:      tot.Completed,
		Throughput:     tot.Throughput,
		Goodput:        tot.Goodput,
		SuccessRatio:   tot.SuccessRatio,
		Status:         tot.Status,
		Errors:         tot.Errors,
		Shed:           tot.Shed,
		Latency:        tot.Latency,
		SuccessLatency: tot.SuccessLatency,
		RefusalLatency: tot.RefusalLatency,
	}
	if cfg.Conns > 0 {
		rep.Mode = "closed"
	} else {
		rep.Schedule = cfg.Rate.String()
		if t := cfg.Rate.Total(); t > 0 {
			rep.Requested = cfg.Rate.Expected() / t.Seconds()
		}
		rep.SendLag = percentiles(c.lag, c.lagMax)
	}
	for i, a := range c.classes {
		rep.Classes = append(rep.Classes, c.classReport(cfg.Mix[i].Name, a, secs))
	}
	if c.after != nil {
		// A run cancelled before After has an empty window; its rates
		// are over a span of at least a nanosecond.
		span := max(issued-time.Duration(c.afterNs), 1)
		a := c.classReport("after", c.after, span.Seconds())
		rep.After = &a
	}
	rep.Series = make([]Second, len(c.secs))
	for i := range c.secs {
		s := &c.secs[i]
		rep.Series[i] = Second{
			T: i, Sent: s.sent, OK: s.ok, Good: s.good, Errors: s.errs, Shed: s.shed, Other: s.other,
			P50: quantile(s.h, s.max, 50), P90: quantile(s.h, s.max, 90), P99: quantile(s.h, s.max, 99),
			Max:   time.Duration(s.max),
			OKP50: quantile(s.okh, s.okMax, 50), OKP99: quantile(s.okh, s.okMax, 99),
		}
	}
	return rep
}

// fmtDur prints a duration with three significant digits in a unit that
// suits it.
func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e3, 'f', prec(float64(d)/1e3), 64) + "µs"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/1e6, 'f', prec(float64(d)/1e6), 64) + "ms"
	default:
		return strconv.FormatFloat(d.Seconds(), 'f', prec(d.Seconds()), 64) + "s"
	}
}

func prec(v float64) int {
	switch {
	case v >= 100:
		return 0
	case v >= 10:
		return 1
	default:
		return 2
	}
}

func sortedKeys[K int | string, V any](m map[K]V) []K {
	ks := make([]K, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i] < ks[j] })
	return ks
}
