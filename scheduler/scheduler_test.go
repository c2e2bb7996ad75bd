package scheduler

import (
	"context"
	"errors"
	"flag"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFastPathZeroAlloc(t *testing.T) {
	s := newTestScheduler(t, Config{}, 4, time.Now())
	r := &Request{Class: Normal, Tenant: 7}
	now := time.Now()
	allocs := testing.AllocsPerRun(1000, func() {
		tk, ok := s.TryAdmit(r, now)
		if !ok {
			t.Fatal("fast path refused")
		}
		s.Done(tk, Success, time.Millisecond, now)
	})
	if allocs != 0 {
		t.Fatalf("fast path allocates %v per request, want 0", allocs)
	}
}

// TestAdmitConcurrent hammers the blocking Admit from many goroutines
// (run with -race): every Admit ends in one ticket or one error, no backend
// ever exceeds its limit, and the scheduler empties.
func TestAdmitConcurrent(t *testing.T) {
	const limit, backends, workers, perWorker = 3, 2, 32, 200
	s := newTestScheduler(t, Config{Limit: LimitSpec{Kind: LimitStatic, N: limit}, QueueMax: 64, QueueTimeout: time.Second}, backends, time.Now())
	var (
		mu       sync.Mutex
		inflight = map[*Backend]int{}
		wg       sync.WaitGroup
		ok, errs int
	)
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range perWorker {
				ctx, cancel := context.WithCancel(context.Background())
				if rng.IntN(10) == 0 {
					cancel() // some give up at once
				}
				r := &Request{Class: Class(rng.IntN(NumClasses)), Tenant: uint64(rng.IntN(4))}
				tk, err := s.Admit(ctx, r)
				cancel()
				if err != nil {
					mu.Lock()
					errs++
					mu.Unlock()
					continue
				}
				mu.Lock()
				ok++
				inflight[tk.Backend]++
				if inflight[tk.Backend] > limit {
					t.Errorf("backend %s has %d in flight, limit %d", tk.Backend.ID(), inflight[tk.Backend], limit)
				}
				mu.Unlock()
				for range rng.IntN(50) {
					_ = rng.Int() // a little work while holding the slot
				}
				mu.Lock()
				inflight[tk.Backend]--
				mu.Unlock()
				s.Done(tk, Success, time.Millisecond, time.Now())
			}
		}()
	}
	wg.Wait()
	if ok+errs != workers*perWorker {
		t.Fatalf("%d tickets + %d errors, want %d", ok, errs, workers*perWorker)
	}
	st := s.Stats()
	for i, b := range st.Backends {
		if b.Inflight != 0 {
			t.Errorf("backend %d: %d in flight after all Done", i, b.Inflight)
		}
	}
	if st.Queued != [NumClasses]int{} {
		t.Errorf("queued %v after all returned", st.Queued)
	}
	t.Logf("%d admitted, %d refused, stats %+v", ok, errs, st)
}

// TestAdmitTimeoutAndCancel checks the blocking path's two exits.
func TestAdmitTimeoutAndCancel(t *testing.T) {
	s := newTestScheduler(t, Config{Limit: LimitSpec{Kind: LimitStatic, N: 1}, QueueTimeout: 20 * time.Millisecond}, 1, time.Now())
	tk, err := s.Admit(context.Background(), &Request{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Admit(context.Background(), &Request{}); !errors.Is(err, ErrQueueTimeout) {
		t.Fatalf("got %v, want ErrQueueTimeout", err)
	}
	s2 := newTestScheduler(t, Config{Limit: LimitSpec{Kind: LimitStatic, N: 1}, QueueTimeout: time.Hour}, 1, time.Now())
	tk2, _ := s2.TryAdmit(&Request{}, time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s2.Admit(ctx, &Request{})
		done <- err
	}()
	for s2.Stats().Queued[Critical] == 0 { // Request{} is class 0, critical
		time.Sleep(time.Millisecond) // until it is queued (it cannot leave otherwise)
	}
	cancel()
	if err := <-done; !errors.Is(err, ErrCanceled) {
		t.Fatalf("got %v, want ErrCanceled", err)
	}
	s2.Done(tk2, Success, time.Millisecond, time.Now())
	s.Done(tk, Success, time.Millisecond, time.Now())
	if _, ok := s.TryAdmit(&Request{}, time.Now()); !ok {
		t.Fatal("slot not free after Done")
	}
}

// TestProperty drives the pure core with random operations on a fake
// clock: limits hold, every request ends exactly once, and it empties.
func TestProperty(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 2))
		cfg := Config{
			QueueMax:      1 + rng.IntN(20),
			QueueTimeout:  time.Duration(1+rng.IntN(50)) * time.Millisecond,
			Discipline:    Discipline(1 + rng.IntN(3)),
			ClassMinShare: ClassShares{Low: 0.1},
		}
		if rng.IntN(2) == 0 {
			cfg.Limit = LimitSpec{Kind: LimitStatic, N: 1 + rng.IntN(3)}
		} else {
			cfg.Limit = LimitSpec{Kind: LimitKind(rng.IntN(3))}
		}
		nb := 1 + rng.IntN(3)
		var now time.Duration
		at := func() time.Time { return simEpoch.Add(now) }
		s := newTestScheduler(t, cfg, nb, at())
		s.SetClock(at)
		var backends []*Backend // as tickets name them, for exclusions
		ended := map[*Waiter]int{}
		var tickets []Ticket
		waiting := map[*Waiter]bool{}
		s.OnDecision(func(w *Waiter, tk Ticket, err error) {
			ended[w]++
			delete(waiting, w)
			if err == nil {
				tickets = append(tickets, tk)
			}
		})
		noteBackend := func(tk Ticket) {
			if !slices.Contains(backends, tk.Backend) {
				backends = append(backends, tk.Backend)
			}
		}
		check := func() {
			for _, b := range s.Stats().Backends {
				if b.Inflight < 0 || (cfg.Limit.Kind == LimitStatic && b.Inflight > cfg.Limit.N) {
					t.Fatalf("seed %d: backend %s inflight %d, limit %d", seed, b.ID, b.Inflight, cfg.Limit.N)
				}
			}
		}
		arrivals := 0
		for step := 0; step < 3000 || len(tickets) > 0 || len(waiting) > 0; step++ {
			switch op := rng.IntN(10); {
			case step < 3000 && op < 4:
				arrivals++
				r := Request{Class: Class(rng.IntN(NumClasses)), Tenant: uint64(rng.IntN(5))}
				for _, b := range backends {
					if rng.IntN(2) == 0 {
						r.Exclude = append(r.Exclude, b)
					}
				}
				if rng.IntN(4) == 0 {
					r.Deadline = at().Add(time.Duration(rng.IntN(40)) * time.Millisecond)
				}
				w := &Waiter{}
				tk, err := s.Arrive(&r, w, at())
				switch {
				case err != nil:
					ended[w]++
				case !w.Queued():
					ended[w]++
					tickets = append(tickets, tk)
				default:
					waiting[w] = true
				}
			case op < 7 && len(tickets) > 0:
				i := rng.IntN(len(tickets))
				tk := tickets[i]
				noteBackend(tk)
				tickets = append(tickets[:i], tickets[i+1:]...)
				s.Done(tk, Outcome(rng.IntN(3)), time.Duration(1+rng.IntN(30))*time.Millisecond, at())
			case op < 8 && len(waiting) > 0 && step%7 == 0:
				for w := range waiting {
					s.Cancel(w)
					break
				}
			case op < 9:
				setUp(t, s, strconv.Itoa(rng.IntN(nb)), rng.IntN(4) != 0, at())
			default:
				now += time.Duration(rng.IntN(5)) * time.Millisecond
				s.Expire(at())
			}
			check()
			if step > 100000 {
				// Make sure all backends come back so the queue drains.
				for i := range nb {
					setUp(t, s, strconv.Itoa(i), true, at())
				}
			}
		}
		if len(ended) != arrivals {
			t.Fatalf("seed %d: %d requests ended, %d arrived", seed, len(ended), arrivals)
		}
		for w, n := range ended {
			if n != 1 {
				t.Fatalf("seed %d: request arrived at %v ended %d times", seed, w.Arrived(), n)
			}
		}
		_, expiring := s.NextExpiry()
		if st := s.Stats(); s.Queued() != 0 || expiring || st.Tenants != 0 {
			t.Fatalf("seed %d: not empty: queued %d expiring %v tenants %d", seed, s.Queued(), expiring, st.Tenants)
		}
		for _, b := range s.Stats().Backends {
			if b.Inflight != 0 {
				t.Fatalf("seed %d: backend %s inflight %d at the end", seed, b.ID, b.Inflight)
			}
		}
	}
}

// TestLimiters feeds each adaptive limiter the latency of a
// processor-sharing backend with a knee at 4 and checks where it settles.
func TestLimiters(t *testing.T) {
	for _, kind := range []LimitKind{LimitAdaptive, LimitAIMD, LimitVegas} {
		t.Run(LimitSpec{Kind: kind}.String(), func(t *testing.T) {
			cfg := Config{Limit: LimitSpec{Kind: kind}}.WithDefaults()
			now := simEpoch
			l := newLimiter(cfg, now)
			for range 2000 {
				c := l.limit() // saturated: always at the limit
				rtt := 20 * time.Millisecond * time.Duration(max(4, c)) / 4
				now = now.Add(rtt / time.Duration(c))
				l.sample(now, rtt, c, false, c <= cfg.LimitMin)
			}
			if got := l.limit(); got < 4 || got > 10 {
				t.Errorf("settled at %d, want near the knee (4..10)", got)
			}
			before := l.limit()
			for range 20 {
				now = now.Add(10 * time.Millisecond)
				l.sample(now, 20*time.Millisecond, before, true, false)
			}
			if l.limit() >= before && before > cfg.LimitMin {
				t.Errorf("failures did not lower the limit (%d -> %d)", before, l.limit())
			}
		})
	}
}

// TestBaselineProbe checks that the baseline probe is passive while the
// backend is lightly loaded (the limit never drops to LimitMin), turns
// active when the backend stays busy, and takes only clean samples: those
// that ran with at most LimitMin in flight from start to end.
func TestBaselineProbe(t *testing.T) {
	const rtt = 20 * time.Millisecond
	base := func(s *Scheduler) time.Duration { return s.Stats().Backends[0].Baseline }
	limit := func(s *Scheduler) int { return s.Stats().Backends[0].Limit }

	t.Run("passive when unloaded", func(t *testing.T) {
		s := newTestScheduler(t, Config{}, 1, simEpoch)
		require.Equal(t, 4, limit(s), "initial limit")
		now := simEpoch
		for i := range defaultProbeSamples / 2 {
			// One request at a time, and a second one overlapping it:
			// two in flight is still within LimitMin, so both are clean.
			a, ok := s.TryAdmit(&Request{}, now)
			require.True(t, ok)
			b, ok := s.TryAdmit(&Request{}, now.Add(time.Millisecond))
			require.True(t, ok)
			require.GreaterOrEqual(t, limit(s), 4, "the passive probe holds nothing back (request %d)", i)
			now = now.Add(rtt)
			s.Done(a, Success, rtt, now)
			s.Done(b, Success, rtt-time.Millisecond, now)
			now = now.Add(time.Millisecond)
		}
		require.Equal(t, rtt, base(s), "median of the clean samples")
	})

	t.Run("dirty samples are not the baseline", func(t *testing.T) {
		s := newTestScheduler(t, Config{}, 1, simEpoch)
		now := simEpoch
		// Three in flight at once: every sample is dirty, however fast.
		busy := func(rounds int, lat time.Duration) {
			for range rounds {
				var ts [3]Ticket
				for j := range ts {
					var ok bool
					ts[j], ok = s.TryAdmit(&Request{}, now)
					require.True(t, ok)
				}
				now = now.Add(rtt)
				for _, tk := range ts {
					s.Done(tk, Success, lat, now)
				}
			}
		}
		busy((probeGraceFactor*defaultProbeSamples-1)/3, time.Millisecond)
		require.Zero(t, base(s), "no clean sample, no baseline")
		// The grace is over. The first probe does not hold a busy
		// backend at LimitMin: the provisional baseline, the median of
		// the first samples at no more than the initial limit in
		// flight, stands in until the next probe.
		tk, _ := s.TryAdmit(&Request{}, now)
		now = now.Add(rtt)
		s.Done(tk, Success, time.Millisecond, now)
		require.Equal(t, time.Millisecond, base(s), "the provisional baseline")
		require.GreaterOrEqual(t, limit(s), 4, "not held at LimitMin")

		// The next probe, a probeEvery later, finds the backend busy
		// again and, its grace over, holds it at LimitMin.
		now = now.Add(defaultProbeEvery)
		busy(probeGraceFactor*defaultProbeSamples/3+1, 2*time.Millisecond)
		require.Equal(t, 2, limit(s), "grace over: the probe holds at LimitMin")

		// Active: at most two in flight, so every sample is clean.
		for range defaultProbeSamples / 2 {
			a, ok := s.TryAdmit(&Request{}, now)
			require.True(t, ok)
			b, ok := s.TryAdmit(&Request{}, now)
			require.True(t, ok)
			_, ok = s.TryAdmit(&Request{}, now)
			require.False(t, ok, "held at LimitMin")
			now = now.Add(rtt)
			s.Done(a, Success, rtt, now)
			s.Done(b, Success, rtt, now)
		}
		require.Equal(t, rtt, base(s))
		require.Greater(t, limit(s), 2, "released")
	})

	t.Run("overlap with a busy admission is dirty", func(t *testing.T) {
		s := newTestScheduler(t, Config{}, 1, simEpoch)
		now := simEpoch
		a, _ := s.TryAdmit(&Request{}, now)
		b, _ := s.TryAdmit(&Request{}, now)
		c, _ := s.TryAdmit(&Request{}, now.Add(time.Millisecond)) // 3 > LimitMin: a and b are dirty
		now = now.Add(rtt)
		for _, tk := range []Ticket{a, b, c} {
			s.Done(tk, Success, 5*time.Second, now)
		}
		// Fifteen clean samples of rtt and one more: had the three dirty
		// ones counted, the median would be 5s.
		for range defaultProbeSamples {
			tk, _ := s.TryAdmit(&Request{}, now.Add(time.Millisecond))
			now = now.Add(rtt)
			s.Done(tk, Success, rtt, now)
		}
		require.Equal(t, rtt, base(s))
	})
}

func TestConfig(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c.RegisterFlags(fs)
	err := fs.Parse([]string{"--queue-max=10", "--queue-timeout=2s", "--queue-discipline=codel",
		"--limit=static:7", "--class-timeout", "critical=2s,low=200ms", "--class-min-share", "low=0.05",
		"--tenant-weights", "a=2,b=1"})
	if err != nil {
		t.Fatal(err)
	}
	if c.QueueMax != 10 || c.QueueTimeout != 2*time.Second || c.Discipline != DisciplineCoDel ||
		c.Limit != (LimitSpec{LimitStatic, 7}) || c.ClassTimeout[Low] != 200*time.Millisecond ||
		c.ClassMinShare[Low] != 0.05 || c.TenantWeights["a"] != 2 {
		t.Fatalf("flags parsed to %+v", c)
	}
	var y Config
	src := "queue_max: 10\nqueue_timeout: 2s\nqueue_discipline: adaptive-lifo\nlimit: vegas\nclass_timeout: {critical: 2s}\nclass_min_share: {low: 0.05}\ntenant_weights: {a: 2}\n"
	if err := yaml.Unmarshal([]byte(src), &y); err != nil {
		t.Fatal(err)
	}
	if y.Discipline != DisciplineAdaptiveLIFO || y.Limit.Kind != LimitVegas || y.ClassTimeout[Critical] != 2*time.Second {
		t.Fatalf("yaml parsed to %+v", y)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{QueueTimeout: -time.Second}, "queue_timeout: must be > 0, got -1s"},
		{Config{QueueMax: -1}, "queue_max: must be >= 0, got -1"},
		{Config{LimitMin: 5, LimitMax: 3}, "limit_max: must be >= limit_min (5), got 3"},
		{Config{ClassMinShare: ClassShares{Low: 2}}, "class_min_share: low must be in [0, 1], got 2"},
		{Config{TenantWeights: TenantWeights{"a": 0}}, `tenant_weights: "a" must be in`},
		{Config{ClassTimeout: ClassDurations{High: -1}}, "class_timeout: high must be > 0"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	for _, bad := range []string{"static:0", "static:x", "gradient"} {
		var l LimitSpec
		if l.UnmarshalText([]byte(bad)) == nil {
			t.Errorf("limit %q accepted", bad)
		}
	}
}
