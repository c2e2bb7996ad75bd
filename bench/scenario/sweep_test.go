package scenario

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluiceproxy/sluice/bench/loadgen"
)

// sweepResult is a synthetic sweep run: goodput as a share of a 200 req/s
// capacity, the admitted p99, and refusals with their p99.
func sweepResult(peer string, x, good float64, p99 time.Duration, refused int64, refP99 time.Duration) Result {
	status := map[int]int64{200: 1000}
	if refused > 0 {
		status[503] = refused
	}
	return Result{
		Scenario: "sweep", Peer: peer, Load: sweepLoadName(x), Rate: x * 200, CapacityRPS: 200,
		Report: &loadgen.Report{
			Sent: 1000 + refused, Goodput: good * 200, Status: status,
			SuccessLatency: loadgen.Percentiles{P99: p99},
			RefusalLatency: loadgen.Percentiles{P99: refP99},
		},
	}
}

func TestSweepFloors(t *testing.T) {
	ms := time.Millisecond
	results := []Result{
		sweepResult(PeerSluice, 0.3, 0.3, 25*ms, 0, 0),
		sweepResult(PeerHAProxyTuned, 0.3, 0.3, 25*ms, 0, 0),
		sweepResult(PeerSluice, 0.9, 0.9, 70*ms, 2, 40*ms),
		sweepResult(PeerSluice, 1.2, 0.97, 45*ms, 100, 60*ms),
		sweepResult(PeerHAProxyTuned, 1.2, 0.95, 125*ms, 140, 105*ms),
		sweepResult(PeerSluice, 3, 0.94, 60*ms, 1200, 150*ms),
	}
	got := map[string]string{}
	for _, f := range sweepFloors(results) {
		got[f.Name] = f.Status
	}
	want := map[string]string{
		"sweep 0.9x: no refusal":                     "FAIL",
		"sweep 1.2x: goodput >= 0.95 of capacity":    "PASS",
		"sweep 1.2x: p99 of admitted <= 2x unloaded": "PASS",
		"sweep 1.2x: p99 of refusals <= 100ms":       "PASS",
		"sweep 3x: goodput >= 0.95 of capacity":      "FAIL",
		"sweep 3x: p99 of admitted <= 2x unloaded":   "FAIL",
		"sweep 3x: p99 of refusals <= 100ms":         "FAIL",
	}
	for name, status := range want {
		if got[name] != status {
			t.Errorf("%s: %q, want %s (all: %v)", name, got[name], status, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("floors %v, want %d", got, len(want))
	}

	var b strings.Builder
	writeSweepTable(&b, results)
	for _, s := range []string{"1.2x  haproxy-tuned", "125ms", "5.0x", "105ms"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, b.String())
		}
	}
	path := filepath.Join(t.TempDir(), "sweep.svg")
	if err := writeSweepPlot(path, results); err != nil {
		t.Fatal(err)
	}
	svg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(svg), "<polyline"); n != 4 {
		t.Errorf("%d lines in the plot, want 4 (2 peers × 2 panels)", n)
	}
}

// A sweep without Sluice's report measures nothing: its floors fail.
func TestSweepUnmeasuredFails(t *testing.T) {
	results := []Result{{Scenario: "sweep", Peer: PeerSluice, Load: "1.2x", Rate: 240, CapacityRPS: 200, Error: "did not start"}}
	floors := sweepFloors(results)
	if len(floors) != 1 || floors[0].Status != "FAIL" {
		t.Errorf("%+v", floors)
	}
}
