package origin

import (
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

func ms(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }

// psEvent is one step of a script: at At, either add a job (Work > 0) or
// change the capacity (Workers >= 0 with SetCap).
type psEvent struct {
	At      time.Duration
	ID      uint64
	Work    time.Duration
	SetCap  bool
	Workers float64
	Knee    int
	Thrash  float64
}

// runPS plays a script on a fake clock and returns each job's residence time
// (finish − start), driving the core exactly as the live wrapper does:
// Advance to each event, then to each predicted completion.
func runPS(t *testing.T, workers float64, knee int, thrash float64, script []psEvent) map[uint64]time.Duration {
	t.Helper()
	p := NewPS(t0, workers, knee, thrash)
	got := map[uint64]time.Duration{}
	record := func(done []*Job) {
		for _, j := range done {
			if _, dup := got[j.ID]; dup {
				t.Fatalf("job %d finished twice", j.ID)
			}
			got[j.ID] = j.Finish.Sub(j.Start)
		}
	}
	// drainUntil follows predicted completions up to (not including) limit.
	drainUntil := func(limit time.Time) {
		for {
			next, ok := p.NextCompletion()
			if !ok || !next.Before(limit) {
				return
			}
			record(p.Advance(next))
		}
	}
	for _, ev := range script {
		at := t0.Add(ev.At)
		drainUntil(at)
		if ev.SetCap {
			record(p.SetCapacity(at, ev.Workers, ev.Knee, ev.Thrash))
			continue
		}
		record(p.Add(at, &Job{ID: ev.ID, Work: ev.Work}))
	}
	drainUntil(t0.Add(24 * time.Hour))
	return got
}

func TestPSScripts(t *testing.T) {
	adds := func(n int, at, work time.Duration) []psEvent {
		var evs []psEvent
		for i := range n {
			evs = append(evs, psEvent{At: at, ID: uint64(i + 1), Work: work})
		}
		return evs
	}
	tests := []struct {
		name    string
		workers float64
		knee    int
		thrash  float64
		script  []psEvent
		want    map[uint64]time.Duration
	}{
		{
			name: "one request alone takes its service time", workers: 4,
			script: adds(1, 0, ms(20)),
			want:   map[uint64]time.Duration{1: ms(20)},
		},
		{
			name: "N requests at once each take the service time", workers: 4,
			script: adds(4, 0, ms(20)),
			want:   map[uint64]time.Duration{1: ms(20), 2: ms(20), 3: ms(20), 4: ms(20)},
		},
		{
			name: "2N requests at once each take twice the service time", workers: 4,
			script: adds(8, 0, ms(20)),
			want: map[uint64]time.Duration{1: ms(40), 2: ms(40), 3: ms(40), 4: ms(40),
				5: ms(40), 6: ms(40), 7: ms(40), 8: ms(40)},
		},
		{
			name: "a late arrival slows the first job down", workers: 1,
			// A runs alone for 10ms (10 left), then both at half speed: A
			// ends at 30ms; B has 10ms done by then and ends alone at 40ms.
			script: []psEvent{{At: 0, ID: 1, Work: ms(20)}, {At: ms(10), ID: 2, Work: ms(20)}},
			want:   map[uint64]time.Duration{1: ms(30), 2: ms(30)},
		},
		{
			name: "short jobs overtake long ones", workers: 1,
			script: []psEvent{{At: 0, ID: 1, Work: ms(100)}, {At: 0, ID: 2, Work: ms(10)}},
			// Both at half speed until 2 is done at 20ms; 1 has 90 left alone.
			want: map[uint64]time.Duration{1: ms(110), 2: ms(20)},
		},
		{
			name: "capacity raised mid-flight", workers: 1,
			// Two jobs at half speed: 5ms done each by 10ms; then two
			// workers run both at full speed: 15ms more.
			script: []psEvent{
				{At: 0, ID: 1, Work: ms(20)}, {At: 0, ID: 2, Work: ms(20)},
				{At: ms(10), SetCap: true, Workers: 2},
			},
			want: map[uint64]time.Duration{1: ms(25), 2: ms(25)},
		},
		{
			name: "capacity lowered mid-flight", workers: 4,
			script: append(adds(4, 0, ms(20)), psEvent{At: ms(10), SetCap: true, Workers: 2}),
			// 10ms done at full speed, then half speed for the last 10.
			want: map[uint64]time.Duration{1: ms(30), 2: ms(30), 3: ms(30), 4: ms(30)},
		},
		{
			name: "a stalled origin resumes", workers: 0,
			script: []psEvent{
				{At: 0, ID: 1, Work: ms(20)},
				{At: ms(1000), SetCap: true, Workers: 1},
			},
			want: map[uint64]time.Duration{1: ms(1020)},
		},
		{
			name: "thrashing past the knee loses capacity", workers: 4, knee: 4, thrash: 1,
			// c=8: capacity 4/(1+1·4/4) = 2 workers, so 0.25 each: 80ms.
			script: adds(8, 0, ms(20)),
			want: map[uint64]time.Duration{1: ms(80), 2: ms(80), 3: ms(80), 4: ms(80),
				5: ms(80), 6: ms(80), 7: ms(80), 8: ms(80)},
		},
		{
			name: "at the knee there is no loss", workers: 4, knee: 8, thrash: 1,
			script: adds(8, 0, ms(20)),
			want: map[uint64]time.Duration{1: ms(40), 2: ms(40), 3: ms(40), 4: ms(40),
				5: ms(40), 6: ms(40), 7: ms(40), 8: ms(40)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runPS(t, tt.workers, tt.knee, tt.thrash, tt.script)
			if len(got) != len(tt.want) {
				t.Fatalf("finished %d jobs, want %d: %v", len(got), len(tt.want), got)
			}
			for id, want := range tt.want {
				// The core rounds each event up to the next nanosecond.
				if d := got[id] - want; d < 0 || d > 10*time.Nanosecond {
					t.Errorf("job %d: residence %v, want %v", id, got[id], want)
				}
			}
		})
	}
}

// TestPSThroughputEqualsCapacity checks the property the benchmarks rely on:
// a backlog drains at exactly Workers/Service, however deep it is.
func TestPSThroughputEqualsCapacity(t *testing.T) {
	evs := make([]psEvent, 100)
	for i := range evs {
		evs[i] = psEvent{At: 0, ID: uint64(i + 1), Work: ms(20)}
	}
	got := runPS(t, 4, 0, 0, evs)
	var last time.Duration
	for _, d := range got {
		last = max(last, d)
	}
	// 100 jobs × 20ms / 4 workers = 500ms.
	if last < ms(500) || last > ms(500)+time.Microsecond {
		t.Fatalf("backlog drained in %v, want 500ms", last)
	}
}

func TestPSAdvanceIsIdempotentAndOrdered(t *testing.T) {
	p := NewPS(t0, 1, 0, 0)
	p.Add(t0, &Job{ID: 1, Work: ms(30)})
	p.Add(t0, &Job{ID: 2, Work: ms(10)})
	p.Add(t0, &Job{ID: 3, Work: ms(20)})
	if d := p.Advance(t0.Add(ms(31))); len(d) != 1 || d[0].ID != 2 {
		t.Fatalf("by 31ms: got %v, want job 2 only", ids(d))
	}
	if d := p.Advance(t0.Add(ms(31))); len(d) != 0 {
		t.Fatalf("advancing to the same instant again completed %v", ids(d))
	}
	d := p.Advance(t0.Add(time.Second))
	if len(d) != 2 || d[0].ID != 3 || d[1].ID != 1 || d[0].Finish.After(d[1].Finish) {
		t.Fatalf("completions out of order: %v", ids(d))
	}
	if _, ok := p.NextCompletion(); ok || p.Active() != 0 {
		t.Fatalf("core not empty after all jobs finished")
	}
}

func ids(js []*Job) []uint64 {
	var out []uint64
	for _, j := range js {
		out = append(out, j.ID)
	}
	return out
}

func BenchmarkPSAddAdvance(b *testing.B) {
	b.ReportAllocs()
	p := NewPS(t0, 4, 0, 0)
	now := t0
	jobs := make([]Job, 64)
	for i := 0; b.Loop(); i++ {
		now = now.Add(5 * time.Millisecond)
		j := &jobs[i%len(jobs)]
		*j = Job{ID: uint64(i), Work: ms(20)}
		p.Add(now, j)
	}
}
