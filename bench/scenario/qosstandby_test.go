package scenario

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluiceproxy/sluice/bench/loadgen"
	"github.com/sluiceproxy/sluice/bench/origin"
)

// testPlan is the full run's plan: the step at t=2s, the fall at t=17s,
// the end at t=37s.
var testPlan = standbyPlan{high: 15 * time.Second, low: 20 * time.Second, one: 200, coolDown: 5 * time.Second}

// standbyRun is a synthetic qos-standby run: the standby origin first
// answers at serving (none if negative), the series has good requests
// within the SLO every second of the overload step from then on (half of
// what the active origin alone serves before), and lowFailed of the 1200
// requests sent from the fall fail.
func standbyRun(peer string, serving time.Duration, good int64, events []PeerEvent, lowFailed int64) Result {
	r := Result{Peer: peer, After: testPlan.fallAt(), SampleOrigin: 1, Events: events}
	var received int64
	for at := time.Duration(0); at <= testPlan.end(); at += standbySampleEvery {
		st := origin.Stats{}
		if serving >= 0 && at >= serving && at < testPlan.fallAt()+6*time.Second {
			received += 20
			st.OK = received - 5
		}
		st.Received = received
		if st.OK < 0 {
			st.OK = 0
		}
		r.Samples = append(r.Samples, Sample{At: at, Stats: st})
	}
	rep := report(6000, 300, 0, 0, 200, 60*time.Millisecond)
	for i := 0; i < int(testPlan.end()/time.Second); i++ {
		s := loadgen.Second{T: i, Sent: 60, OK: 60, Good: 60}
		if time.Duration(i)*time.Second >= testPlan.stepAt() && time.Duration(i+1)*time.Second <= testPlan.fallAt() {
			s.Sent, s.OK, s.Good = 360, 200, 200
			if serving >= 0 && time.Duration(i)*time.Second >= serving {
				s.OK, s.Good = good, good
			}
			s.Shed = s.Sent - s.OK
		}
		rep.Series = append(rep.Series, s)
	}
	rep.After = window(1200-lowFailed, lowFailed, 45*time.Millisecond)
	r.Report = rep
	return r
}

func sluiceEvents(activated, released time.Duration) []PeerEvent {
	evs := []PeerEvent{
		{At: activated, Event: "activated", Message: "standby activated", Backend: "http://o2", Reason: "refusal rate 40.5% above 5.0% for 2.2s"},
		{At: activated + 100*time.Millisecond, Message: "standby taking requests, in slow start", Backend: "http://o2"},
	}
	if released >= 0 {
		evs = append(evs, PeerEvent{At: released, Event: "released", Message: "standby released", Backend: "http://o2",
			Reason: "quiet for 5s: 60.0 requests/s, 30% of what the other backends carry"})
	}
	return evs
}

func TestStandbyFloors(t *testing.T) {
	const (
		active  = "qos-standby: the standby serves within 5s of the 1.8x step"
		goodput = "qos-standby: goodput from 2s after that to the fall >= 0.9 x min(offered, combined capacity)"
		release = "qos-standby: the standby is released after the load falls"
		lost    = "qos-standby: no request fails from the fall through the release"
	)
	s := time.Second
	good := standbyRun(PeerSluice, 4300*time.Millisecond, 350, sluiceEvents(4300*time.Millisecond, 22800*time.Millisecond), 0)
	haproxy := standbyRun(PeerHAProxyLeastconn, -1, 0, nil, 5)
	allErr := good
	allErr.Samples = []Sample{{At: 0, Error: "connection refused"}, {At: s, Error: "connection refused"}}
	for _, tc := range []struct {
		name    string
		results []Result
		want    map[string]string
		detail  map[string]string
	}{
		{"all pass", []Result{good, haproxy},
			map[string]string{active: "PASS", goodput: "PASS", release: "PASS", lost: "PASS"},
			map[string]string{
				active: "first answer from the standby origin by t=4.3s, 2.3s after the step (floor 5s); Sluice logged the activation by t=4.3s (refusal rate 40.5% above 5.0% for 2.2s), the standby taking requests by t=4.4s",
				// The window starts at the first whole second from
				// 4.3+2 s; the ratios are of 360 and 400.
				goodput: "350.0/s over t=7.0s-17.0s = 97.2% of the offered 360/s, 87.5% of the combined 400/s (floor 0.9 x 360 = 324/s); haproxy-leastconn (standby as backup) 200.0/s = 50.0% of the combined",
				release: "released by t=22.8s, 5.8s after the fall (cool-down 5s): quiet for 5s: 60.0 requests/s, 30% of what the other backends carry; 1 activation(s), 1 release(s); the standby origin received 0 requests from 1s after the release",
				lost:    "0 of 1200 requests sent from t=17.0s (the fall) to t=37.0s failed, the release at t=22.8s among them",
			}},
		// The literal reading, 0.9 of the combined 400/s, would fail
		// this run; 0.9 of the offered 360/s does not.
		{"goodput between the readings", []Result{standbyRun(PeerSluice, 4300*time.Millisecond, 340, sluiceEvents(4300*time.Millisecond, 22800*time.Millisecond), 0)},
			map[string]string{active: "PASS", goodput: "PASS", release: "PASS", lost: "PASS"},
			map[string]string{goodput: "94.4% of the offered 360/s, 85.0% of the combined"}},
		{"goodput too low", []Result{standbyRun(PeerSluice, 4300*time.Millisecond, 300, sluiceEvents(4300*time.Millisecond, 22800*time.Millisecond), 0)},
			map[string]string{active: "PASS", goodput: "FAIL", release: "PASS", lost: "PASS"},
			map[string]string{goodput: "300.0/s over t=7.0s-17.0s = 83.3% of the offered"}},
		{"too late", []Result{standbyRun(PeerSluice, 7500*time.Millisecond, 350, sluiceEvents(7500*time.Millisecond, 22800*time.Millisecond), 0)},
			map[string]string{active: "FAIL", goodput: "PASS", release: "PASS", lost: "PASS"},
			map[string]string{active: "by t=7.5s, 5.5s after the step", goodput: "over t=10.0s-17.0s"}},
		{"before the step", []Result{standbyRun(PeerSluice, 1500*time.Millisecond, 350, sluiceEvents(1500*time.Millisecond, 22800*time.Millisecond), 0)},
			map[string]string{active: "FAIL", goodput: "FAIL", release: "PASS", lost: "PASS"},
			map[string]string{active: "before the step at t=2.0s", goodput: "not measured: no activation during the step"}},
		{"never", []Result{standbyRun(PeerSluice, -1, 0, nil, 0)},
			map[string]string{active: "FAIL", goodput: "FAIL", release: "FAIL", lost: "FAIL"},
			map[string]string{active: "answered no request during the run", goodput: "not measured",
				release: "not measured: Sluice's log reports no activation", lost: "not measured: the standby was not released"}},
		{"counters unreadable", []Result{allErr},
			map[string]string{active: "FAIL", goodput: "FAIL", release: "PASS", lost: "PASS"},
			map[string]string{active: "not measured: the standby origin's counters could not be read during the run; Sluice logged the activation by t=4.3s"}},
		{"not released", []Result{standbyRun(PeerSluice, 4300*time.Millisecond, 350, sluiceEvents(4300*time.Millisecond, -1), 0)},
			map[string]string{active: "PASS", goodput: "PASS", release: "FAIL", lost: "FAIL"},
			map[string]string{release: "not released by the end of the run, 20.0s after the fall (cool-down 5s); 1 activation(s), 0 release(s)",
				lost: "not measured: the standby was not released after the fall"}},
		{"released during the overload", []Result{standbyRun(PeerSluice, 4300*time.Millisecond, 350, sluiceEvents(4300*time.Millisecond, 12*s), 0)},
			map[string]string{active: "PASS", goodput: "PASS", release: "FAIL", lost: "FAIL"},
			map[string]string{release: "released by t=12.0s, during the overload"}},
		{"requests lost", []Result{standbyRun(PeerSluice, 4300*time.Millisecond, 350, sluiceEvents(4300*time.Millisecond, 22800*time.Millisecond), 2)},
			map[string]string{active: "PASS", goodput: "PASS", release: "PASS", lost: "FAIL"},
			map[string]string{lost: "2 of 1200 requests sent from t=17.0s (the fall) to t=37.0s failed, the release at t=22.8s among them (refused queue-timeout 2)"}},
		{"sluice skipped", []Result{{Peer: PeerSluice, Skipped: "sluice: skipped (bin/sluice not found)"}, haproxy},
			map[string]string{active: "FAIL", goodput: "FAIL", release: "FAIL", lost: "FAIL"},
			map[string]string{active: "not measured: sluice skipped", lost: "not measured: sluice skipped"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			floors := standbyFloors(tc.results, testPlan)
			if len(floors) != 4 {
				t.Fatalf("floors %+v", floors)
			}
			for _, f := range floors {
				if tc.want[f.Name] != f.Status {
					t.Errorf("%s: %s, want %s (%s)", f.Name, f.Status, tc.want[f.Name], f.Detail)
				}
				if d := tc.detail[f.Name]; !strings.Contains(f.Detail, d) {
					t.Errorf("%s: detail %q lacks %q", f.Name, f.Detail, d)
				}
			}
			if s := (&Summary{Floors: floors}); s.Failed() != (tc.name != "all pass" && tc.name != "goodput between the readings") {
				t.Errorf("summary failed: %v", s.Failed())
			}
		})
	}
}

func TestStandbyTable(t *testing.T) {
	good := standbyRun(PeerSluice, 4300*time.Millisecond, 350, sluiceEvents(4300*time.Millisecond, 22800*time.Millisecond), 0)
	good.Origins = []origin.Stats{{Received: 3508}, {Received: 2258}}
	haproxy := standbyRun(PeerHAProxyLeastconn, -1, 0, nil, 5)
	haproxy.Origins = []origin.Stats{{Received: 3784}, {Received: 28}}
	var buf bytes.Buffer
	writeStandbyTable(&buf, []Result{good, haproxy, {Peer: PeerNginx, Skipped: "nginx: skipped (nginx not found)"}}, testPlan)
	out := buf.String()
	for _, want := range []string{
		"standby serving", "of offered", "of combined", "failed from fall",
		"t=4.3s (+2.3s)", "t=7.0s-17.0s", "350.0", "97.2%", "87.5%", // sluice
		"t=22.8s (+5.8s)", "3508/2258",
		"200.0", "55.6%", "50.0%", "3784/28", // haproxy, over sluice's window
		"note: nginx: skipped (nginx not found)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	lines := strings.Split(out, "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[2], "haproxy-leastconn") || !strings.Contains(lines[2], " 5 ") {
		t.Errorf("haproxy's line lacks its 5 failures from the fall:\n%s", out)
	}
}

// The log is read as it grows: a line still being written waits for its
// end, lines that are not JSON or not events are skipped, and each event
// has the time of the read that saw it.
func TestLogFollower(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sluice.log")
	write := func(s string) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	var lf logFollower
	lf.read(path, 0) // no log yet
	write(`{"level":"info","message":"listening"}` + "\n" + `not json` + "\n" + `{"level":"warn","event":"activated","backend":"http://o2","reason":"refusal`)
	lf.read(path, time.Second)
	if len(lf.events) != 0 {
		t.Fatalf("events before the line ended: %+v", lf.events)
	}
	write(` rate"}` + "\n" + `{"level":"info","backend":"http://o2","message":"standby taking requests, in slow start"}` + "\n")
	lf.read(path, 2*time.Second)
	write(`{"level":"info","event":"released","backend":"http://o2","reason":"quiet","message":"standby released"}` + "\n")
	lf.read(path, 3*time.Second)
	want := []PeerEvent{
		{At: 2 * time.Second, Event: "activated", Backend: "http://o2", Reason: "refusal rate"},
		{At: 2 * time.Second, Message: "standby taking requests, in slow start", Backend: "http://o2"},
		{At: 3 * time.Second, Event: "released", Message: "standby released", Backend: "http://o2", Reason: "quiet"},
	}
	if len(lf.events) != len(want) {
		t.Fatalf("events %+v, want %+v", lf.events, want)
	}
	for i := range want {
		if lf.events[i] != want[i] {
			t.Errorf("event %d: %+v, want %+v", i, lf.events[i], want[i])
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if evs := followLog(ctx, path, time.Now()); len(evs) != 3 {
		t.Errorf("followLog after the end read %d events, want 3", len(evs))
	}
}

// TestQuickStandby runs qos-standby for real on a short schedule: in-process
// origins, the built Sluice binary, HAProxy left out (its config is checked
// by TestHAProxyConfig). The standby must come in, serve, be released and
// lose nothing; the goodput is only logged, since the window is three
// seconds long on a shared machine. It needs `make build` first.
func TestQuickStandby(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Sluice and runs load for 15s")
	}
	sluice, err := filepath.Abs(filepath.Join("..", "..", "bin", "sluice"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sluice); err != nil {
		t.Skip("bin/sluice not built; run `make build`")
	}
	var log bytes.Buffer
	e, cleanup, err := newEnv(Options{Binaries: Binaries{Sluice: sluice, HAProxy: "no-such-haproxy"}, Out: &log})
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	// Fall at t=10s; the release after a 2s cool-down comes about 3s later.
	e.dur.standbyHigh, e.dur.standbyLow, e.dur.standbyCoolDown = 8*time.Second, 5*time.Second, 2*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var s Summary
	if err := e.qosStandby(ctx, &s); err != nil {
		t.Fatalf("qos-standby: %v\n%s", err, log.String())
	}
	t.Log("\n" + log.String())
	if len(s.Results) != 2 || s.Results[0].Peer != PeerSluice || s.Results[1].Skipped == "" {
		t.Fatalf("results %+v", s.Results)
	}
	r := s.Results[0]
	if r.Report == nil || len(r.Samples) == 0 || len(r.Origins) != 2 {
		t.Fatalf("sluice run: report %v, %d samples, origins %+v, error %q", r.Report != nil, len(r.Samples), r.Origins, r.Error)
	}
	if r.Origins[1].OK == 0 {
		t.Errorf("the standby origin served nothing: %+v", r.Origins[1])
	}
	for _, f := range s.Floors {
		if strings.Contains(f.Name, "goodput") {
			continue
		}
		if f.Status != "PASS" {
			t.Errorf("%s: %s: %s", f.Name, f.Status, f.Detail)
		}
	}
	for _, want := range []string{"--standby-cool-down 2s", "standby serving", "haproxy-leastconn: skipped"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
