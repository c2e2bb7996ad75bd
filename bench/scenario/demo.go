package scenario

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sluiceproxy/sluice/bench/origin"
)

// DemoOrigin is the demo's origin: 8 workers × 40 ms, 200 requests/s.
//
// Its concurrency is not the adaptive limiter's starting limit (4): against
// a 4-worker origin a limiter that never moved from its start would look
// perfect, so the demo would show nothing of capacity discovery. At 8 a
// frozen limit keeps half the capacity. The capacity is the scenarios'
// 200 requests/s, so the offered load and the figures stay comparable;
// 40 ms rather than longer because discovery takes a number of round
// trips, and the quick run must see it finish.
func DemoOrigin() origin.Config {
	c := origin.Default()
	c.Workers, c.Service = 8, 40*time.Millisecond
	return c
}

// DemoOptions configure Demo. A zero OriginConfig means DemoOrigin().
type DemoOptions struct {
	Options
	// OutDir receives direct.svg, sluice.svg, direct.json and sluice.json.
	OutDir string
	// Load is the offered load as a multiple of the origin's capacity.
	// Default 3.
	Load float64
}

// Demo runs the same overload directly against the origin and then through
// Sluice with its default flags, prints the two side by side and writes the
// plots and JSON reports. Each run has a fresh origin, so the second does
// not start behind the abandoned work of the first.
func Demo(ctx context.Context, opt DemoOptions) ([]Result, error) {
	if opt.Load == 0 {
		opt.Load = 3
	}
	if opt.OutDir == "" {
		opt.OutDir = "demo-out"
	}
	if opt.OriginConfig == (origin.Config{}) {
		opt.OriginConfig = DemoOrigin()
	}
	e, cleanup, err := newEnv(opt.Options)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	if _, err := e.opt.available(PeerSluice); err != nil {
		return nil, fmt.Errorf("the demo needs Sluice: %s not found (run `make build`, or pass --sluice PATH)", e.opt.Sluice)
	}
	if err := os.MkdirAll(opt.OutDir, 0o755); err != nil {
		return nil, err
	}
	rate := opt.Load * e.capacity()
	fmt.Fprintf(e.out, "Origin: %d workers × %s = %.0f req/s. Offered load: %.0f req/s (%gx), Poisson, %s per run.\n",
		e.ocfg.Workers, e.ocfg.Service, e.capacity(), rate, opt.Load, e.dur.demo)
	var runs []Result
	for _, peer := range []string{PeerDirect, PeerSluice} {
		r, err := e.run(ctx, "demo", peer, loadName(opt.Load), rate, e.dur.demo, nil)
		if err != nil {
			return runs, err
		}
		if r.Report == nil {
			return runs, fmt.Errorf("%s run failed: %s", peer, r.why())
		}
		runs = append(runs, r)
		if err := writeReportFiles(opt.OutDir, peer, r); err != nil {
			return runs, err
		}
	}
	fmt.Fprintln(e.out)
	writeSideBySide(e.out, e.capacity(), runs)
	fmt.Fprintf(e.out, "\nPlots and reports: %s\n", filepath.Join(opt.OutDir, "{direct,sluice}.{svg,json}"))
	return runs, nil
}

func writeReportFiles(dir, name string, r Result) error {
	for _, out := range []struct {
		ext   string
		write func(f *os.File) error
	}{
		{"svg", func(f *os.File) error { return r.Report.PlotSVG(f) }},
		{"json", func(f *os.File) error { return r.Report.WriteJSON(f) }},
	} {
		f, err := os.Create(filepath.Join(dir, name+"."+out.ext))
		if err != nil {
			return err
		}
		werr := out.write(f)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return fmt.Errorf("write %s.%s: %w", name, out.ext, werr)
		}
	}
	return nil
}
