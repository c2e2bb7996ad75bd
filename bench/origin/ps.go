package origin

import (
	"container/heap"
	"math"
	"time"
)

// PS is an exact, event-driven processor-sharing server. It is pure: it owns
// no goroutine and reads no clock; every method that depends on time takes
// `now`, so tests drive it with a fake clock and get exact answers.
//
// Model: with c jobs active and capacity C(c) (in workers), every active job
// progresses at rate C(c)/c, capped at 1 (one job cannot use more than one
// worker). Without thrashing C(c) = Workers. Past the knee, C(c) falls as
// Workers / (1 + Thrash·(c−Knee)/Knee), which is how a CPU-bound server that
// context-switches, evicts caches and contends on locks loses throughput
// exactly when it is most needed.
//
// Because all active jobs progress at the same rate, the core keeps one
// "virtual work" clock V (nanoseconds of work every active job has received
// since the core started). A job that arrives at V0 needing w finishes when
// V reaches V0+w, so jobs sit in a min-heap by that finish mark and each
// event costs O(log n).
//
// PS is not safe for concurrent use; the Origin wraps it in a mutex.
type PS struct {
	workers float64 // capacity without thrashing; > 0
	knee    int     // 0 = no thrashing
	thrash  float64 // capacity loss factor past the knee

	last time.Time // time up to which V has been advanced
	v    float64   // virtual work clock, ns of work per active job
	jobs psHeap
	seq  uint64 // tie-break so equal finish marks complete in arrival order
}

// Job is one unit of work inside the PS core. ID is the caller's handle.
type Job struct {
	ID     uint64
	Work   time.Duration // service demand on an otherwise idle worker
	Start  time.Time     // when it was added
	Finish time.Time     // set when it completes

	mark  float64 // V at which it finishes
	seq   uint64
	index int
}

// NewPS returns an empty core with the given capacity. workers must be > 0;
// knee ≤ 0 disables thrashing.
func NewPS(now time.Time, workers float64, knee int, thrash float64) *PS {
	p := &PS{last: now}
	p.SetCapacity(now, workers, knee, thrash)
	return p
}

// SetCapacity changes the capacity from now on. Work done before now is
// accounted at the old capacity, so completions that fall before now are
// returned by the next Advance with their exact times.
func (p *PS) SetCapacity(now time.Time, workers float64, knee int, thrash float64) []*Job {
	done := p.Advance(now)
	if workers <= 0 {
		workers = math.SmallestNonzeroFloat64
	}
	p.workers, p.knee, p.thrash = workers, knee, thrash
	return done
}

// Active is the number of jobs in service.
func (p *PS) Active() int { return len(p.jobs) }

// Capacity is the total service rate, in workers, with c jobs active.
func (p *PS) Capacity(c int) float64 {
	if p.knee > 0 && c > p.knee && p.thrash > 0 {
		return p.workers / (1 + p.thrash*float64(c-p.knee)/float64(p.knee))
	}
	return p.workers
}

// rate is the progress of each active job per unit of real time.
func (p *PS) rate() float64 {
	c := len(p.jobs)
	if c == 0 {
		return 0
	}
	return math.Min(1, p.Capacity(c)/float64(c))
}

// Add puts a job into service at now and returns completions that happened
// before it (the caller must finish those too).
func (p *PS) Add(now time.Time, j *Job) []*Job {
	done := p.Advance(now)
	j.Start = now
	j.mark = p.v + float64(j.Work)
	p.seq++
	j.seq = p.seq
	heap.Push(&p.jobs, j)
	return done
}

// Advance moves the core to now and returns the jobs that completed in
// (last, now], each with its exact Finish time, in completion order.
func (p *PS) Advance(now time.Time) []*Job {
	var done []*Job
	for len(p.jobs) > 0 {
		r := p.rate()
		head := p.jobs[0]
		need := head.mark - p.v // work still owed to the head job
		var at time.Time
		if need <= 0 {
			at = p.last
		} else {
			dt := need / r
			if dt > float64(math.MaxInt64/2) {
				break // effectively stalled (capacity ~0)
			}
			at = p.last.Add(time.Duration(math.Ceil(dt)))
		}
		if at.After(now) {
			break
		}
		p.v = math.Max(p.v, head.mark)
		p.last = at
		heap.Pop(&p.jobs)
		head.Finish = at
		done = append(done, head)
	}
	if now.After(p.last) {
		p.v += p.rate() * float64(now.Sub(p.last))
		p.last = now
	}
	return done
}

// NextCompletion is when the earliest active job will finish if nothing is
// added or changed; ok is false when no job is active.
func (p *PS) NextCompletion() (at time.Time, ok bool) {
	if len(p.jobs) == 0 {
		return time.Time{}, false
	}
	need := p.jobs[0].mark - p.v
	if need <= 0 {
		return p.last, true
	}
	dt := need / p.rate()
	if dt > float64(math.MaxInt64/2) {
		return p.last.Add(time.Duration(math.MaxInt64 / 2)), true
	}
	return p.last.Add(time.Duration(math.Ceil(dt))), true
}

type psHeap []*Job

func (h psHeap) Len() int { return len(h) }
func (h psHeap) Less(i, j int) bool {
	if h[i].mark != h[j].mark {
		return h[i].mark < h[j].mark
	}
	return h[i].seq < h[j].seq
}
func (h psHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *psHeap) Push(x any) {
	j := x.(*Job)
	j.index = len(*h)
	*h = append(*h, j)
}
func (h *psHeap) Pop() any {
	old := *h
	n := len(old)
	j := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	j.index = -1
	return j
}
