package scheduler

import (
	"fmt"
	"testing"
	"time"
)

// TestSimulationFlashCrowd: 10,000 requests of 10,000 clients arriving at
// once, over a load of half the origin's capacity from one tenant. An
// origin that serves them all within a fraction of the queue timeout (64
// workers × 0.5 ms, 128,000 requests a second: 0.08 s of work) must be
// let serve them all: bounded by count (1024 requests), the queue refused
// 8,976 of them queue-full, and each client holding one request was
// refused as over its share of the queue. (At 0.16 s of work, a third of
// the timeout, the limit's first cut after its overshoot can make the
// backlog read as half a timeout of work, the overload threshold, and
// part of the crowd is shed: that is the threshold's business.) An origin that cannot (4 × 20
// ms, 200 a second: 50 s of work) must refuse the excess at once rather
// than after the queue timeout: the median refusal is immediate. (The
// steady load comes from one tenant, so while the crowd waits its backlog
// is over its share and refused 429; that is the valve working, and not
// counted.)
func TestSimulationFlashCrowd(t *testing.T) {
	cfg := Config{}
	for _, tc := range []struct {
		origin   simOrigin
		absorbed bool
	}{
		{simOrigin{workers: 64, service: 500 * time.Microsecond}, true},
		{goalsOrigin, false},
	} {
		t.Run(fmt.Sprintf("%dx%v", tc.origin.workers, tc.origin.service), func(t *testing.T) {
			spec := simAt(simOverload(cfg, 0.5), tc.origin)
			spec.warm, spec.measure = time.Second, 2*time.Second
			spec.crowd.at, spec.crowd.n = 1500*time.Millisecond, 10_000
			r := runSim(t, spec)
			t.Logf("goodput %.3f p99 %v refused %v of %d (median after %v)", r.goodput(), r.p(0.99), r.refused, r.sent, r.refusedMedian())
			if tc.absorbed {
				delete(r.refused, ErrTenantShare)
				if len(r.refused) > 0 {
					t.Errorf("refused %v of %d, want none: the origin serves the crowd in %.2fs", r.refused, r.sent, 10_000/tc.origin.capacity())
				}
				return
			}
			if r.refusedMedian() > 10*time.Millisecond {
				t.Errorf("median refusal after %v, want at once", r.refusedMedian())
			}
			// A client holding one request is no flood: the crowd is
			// refused for want of room (503), not as over its share (429).
			if n := r.refused[ErrQueueFull]; n < 8_500 {
				t.Errorf("%d refused queue-full, want nearly all the crowd: %v", n, r.refused)
			}
		})
	}
}
