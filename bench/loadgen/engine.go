package loadgen

import (
	"bufio"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// Error kinds, the keys of Report.Errors. errNone must stay zero.
const (
	errNone uint8 = iota
	errTimeout
	errRefused
	errReset
	errClosed
	errProtocol
	errDial
	errCanceled
	errOther
	numErrKinds
)

var errKindNames = [numErrKinds]string{
	errTimeout:  "timeout",
	errRefused:  "refused",
	errReset:    "reset",
	errClosed:   "closed",
	errProtocol: "protocol",
	errDial:     "dial",
	errCanceled: "canceled",
	errOther:    "other",
}

// maxShedKinds bounds the distinct X-Sluice-Shed values tracked; the rest
// are counted under "other" so a misbehaving server cannot grow the table.
const maxShedKinds = 64

// spawnAfter is how long no connection may have taken a request, with
// requests queued, before the dispatcher opens another connection. Zero
// would open connections whenever a worker is merely between two requests
// (finished, not yet waiting again). When the generator itself is short of
// CPU its queue looks just like a stalled server's, and opening connections
// would take the rest of the CPU in dials and goroutines and never catch up;
// so no connection is opened while the dispatcher is starvedAfter behind its
// own schedule, and new connections are spaced spawnEvery apart (4000 a
// second still follows a stalled server closely).
// staleIdle is how long a kept-alive connection must have been idle before
// a failure on it, with no response byte, counts as the server having
// closed it in the meantime (and the request is retried once).
const staleIdle = time.Second

const (
	spawnAfter   = time.Millisecond
	spawnEvery   = 250 * time.Microsecond
	starvedAfter = 5 * time.Millisecond
)

// runner is the state of one Run.
type runner struct {
	// immutable after start
	cfg     Config
	addr    string
	classes []preparedClass
	targets [][]byte
	picker  picker
	t0      time.Time
	timeout int64 // ns
	ctx     context.Context

	recs recordStore
	jobs chan int64     // request numbers, open loop
	wg   sync.WaitGroup // workers
	// collected is the collector's low-water mark: every request below it
	// is folded into the aggregates.
	collected atomic.Int64

	idle     atomic.Int64 // workers waiting for a job
	nconns   atomic.Int64 // workers alive (each owns at most one connection)
	peak     atomic.Int64 // most workers alive at once
	inflight atomic.Int64 // jobs taken and not yet finished
	// lastTaken is the scheduled time of the job most recently taken by a
	// worker; now minus it bounds how late the head of the queue is.
	lastTaken atomic.Int64
	// starved says the generator is short of CPU (see starvation); set by
	// the collector.
	starved atomic.Bool
	stopped atomic.Bool // cancelled: drop queued jobs, abort in-flight ones

	mu   sync.Mutex
	live map[*worker]struct{} // protected by mu; to abort their conns on cancel

	shedMu    sync.RWMutex
	shedIdx   map[string]uint8 // protected by shedMu
	shedNames []string         // protected by shedMu
}

func (r *runner) now() int64 { return int64(time.Since(r.t0)) }

// Run executes a load run and returns its report. It returns an error only
// for an invalid configuration; failed requests are part of the report. A
// cancelled ctx ends the run early with a report of what was done.
func Run(ctx context.Context, cfg Config, progress io.Writer) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	addr, host, _ := parseTarget(cfg.Target)
	r := &runner{
		cfg:     cfg,
		addr:    addr,
		picker:  newPicker(cfg.Mix),
		timeout: int64(cfg.Timeout),
		ctx:     ctx,
		live:    make(map[*worker]struct{}),
		shedIdx: make(map[string]uint8),
	}
	for _, c := range cfg.Mix {
		r.classes = append(r.classes, prepareClass(c, host))
	}
	for _, p := range cfg.Targets {
		r.targets = append(r.targets, []byte(p))
	}

	var initial int
	if cfg.Conns > 0 {
		initial = cfg.Conns
	} else {
		// Enough warm connections for a fast origin at the peak rate; more
		// are opened on demand when none is free.
		initial = min(cfg.MaxConns, max(2, int(cfg.Rate.Peak()/500)))
		r.jobs = make(chan int64, 1<<16)
	}

	col := newCollector(r, progress)
	workers := make([]*worker, initial)
	for i := range workers {
		workers[i] = r.newWorker(i)
	}
	// Pre-dial so the run does not start with a burst of handshakes (as wrk
	// does); a failed dial is retried, and counted, at the first request.
	var dialWG sync.WaitGroup
	for _, w := range workers {
		dialWG.Add(1)
		go func() {
			defer dialWG.Done()
			_ = w.dial(time.Now().Add(time.Second))
		}()
	}
	dialWG.Wait()

	colDone := make(chan struct{})
	r.t0 = time.Now()
	go func() {
		col.run()
		close(colDone)
	}()

	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case <-ctx.Done():
			r.abort()
		case <-stopWatch:
		}
	}()

	var issueEnd int64
	if cfg.Conns > 0 {
		end := int64(cfg.Duration)
		for i, w := range workers {
			r.wg.Add(1)
			go r.closedLoop(w, end, i, cfg.Seed+uint64(i))
		}
		r.wg.Wait()
		issueEnd = min(end, r.now())
	} else {
		for _, w := range workers {
			r.startOpen(w)
		}
		issueEnd = r.dispatch()
		close(r.jobs)
		r.wg.Wait()
	}
	close(stopWatch)
	<-watchDone
	close(col.stop)
	<-colDone
	if issueEnd <= 0 {
		issueEnd = 1
	}
	return col.report(time.Duration(issueEnd), time.Duration(r.now())), nil
}

// issue reserves a record for the next request. It waits while the record
// ring is full, which only a server that holds tens of millions of requests
// without answering or timing them out can cause; it returns nil when the
// run is cancelled meanwhile.
func (r *runner) issue() (int64, *record) {
	for {
		if id, rec, ok := r.recs.issue(r.collected.Load()); ok {
			return id, rec
		}
		if r.stopped.Load() {
			return 0, nil
		}
		time.Sleep(time.Millisecond)
	}
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x5eed)) }

// abort ends a cancelled run: queued jobs are dropped and requests in flight
// fail at once instead of waiting for their timeout.
func (r *runner) abort() {
	r.stopped.Store(true)
	r.mu.Lock()
	defer r.mu.Unlock()
	for w := range r.live {
		w.abort()
	}
}

// dispatch is the open-loop pacing loop. It walks the schedule against the
// monotonic clock, handing each arrival to an idle connection when it is due,
// and returns when the schedule is over (or the run is cancelled), with the
// time it stopped. It never waits for a response, so a slow server cannot
// slow the arrivals down: that is what makes the loop open.
func (r *runner) dispatch() int64 {
	rng := newRand(r.cfg.Seed)
	arr := newArrivals(r.cfg.Rate, r.cfg.Poisson, rng)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	done := r.ctx.Done()
	var n int
	var lastSpawn int64
	for {
		t, ok := arr.next()
		if !ok {
			return int64(r.cfg.Rate.Total())
		}
		// Wait until the arrival is due; every arrival already due is sent
		// at once, so there is no per-request sleep at high rates.
		if wait := time.Duration(t - r.now()); wait > 0 {
			if !r.waitUntil(t, wait, timer, done) {
				return r.now()
			}
		}
		if r.stopped.Load() {
			return r.now()
		}
		id, rec := r.issue()
		if rec == nil {
			return r.now()
		}
		rec.sched, rec.class, rec.target = t, uint16(r.picker.pick(rng)), -1
		if len(r.targets) > 0 {
			rec.target = int32(n % len(r.targets))
		}
		n++
		select {
		case r.jobs <- id:
		case <-done:
			return r.now()
		}
		// Open a connection when none is free and the queue is falling
		// behind, so requests do not wait inside the generator while the
		// cap allows more connections. Not when the generator is short of
		// CPU (the dispatcher itself is late, or goroutines wait to run):
		// more connections would only take more of it.
		if r.idle.Load() == 0 && len(r.jobs) > 0 && r.nconns.Load() < int64(r.cfg.MaxConns) && !r.starved.Load() {
			now := r.now()
			if now-t < int64(starvedAfter) && now-r.lastTaken.Load() > int64(spawnAfter) && now-lastSpawn >= int64(spawnEvery) {
				lastSpawn = now
				r.startOpen(r.newWorker(int(r.nconns.Load())))
			}
		}
	}
}

// Pacing. The runtime's timers fire within tens of microseconds while the
// process is busy, but round a sleep shorter than a millisecond up to about
// a millisecond when it is idle, which would add that much generator delay
// to every measured latency. So a wait sleeps on a (cancellable) timer only
// until coarseMargin before the arrival and finishes with nanosleep(2),
// which overshoots by the kernel's timer slack (about 50µs) instead. Waits
// shorter than preciseAbove (rates above some 20000/s, where the process is
// busy) use the runtime timer alone: there a blocking system call per
// arrival would cost more than it gains. A wait below spinBelow is spun
// with yields. There is no longer busy waiting: a spinning dispatcher would
// take a whole core from the connections and the server on a small machine.
const (
	coarseMargin = 2 * time.Millisecond
	preciseAbove = 50 * time.Microsecond
	spinBelow    = 20 * time.Microsecond
)

// waitUntil blocks until the run clock reaches t (wait away). It returns
// false when the run is cancelled meanwhile.
func (r *runner) waitUntil(t int64, wait time.Duration, timer *time.Timer, done <-chan struct{}) bool {
	if wait > coarseMargin+time.Millisecond || wait > spinBelow && wait < preciseAbove {
		d := wait
		if wait >= preciseAbove {
			d = wait - coarseMargin
		}
		timer.Reset(d)
		select {
		case <-timer.C:
		case <-done:
			return false
		}
	}
	for {
		wait = time.Duration(t - r.now())
		switch {
		case wait <= 0:
			return true
		case wait < spinBelow:
			runtime.Gosched()
		case wait < preciseAbove:
			timer.Reset(wait)
			<-timer.C
		default:
			ts := syscall.NsecToTimespec(int64(wait))
			_ = syscall.Nanosleep(&ts, nil)
		}
	}
}

func (r *runner) startOpen(w *worker) {
	r.wg.Add(1)
	go r.openLoop(w)
}

func (r *runner) openLoop(w *worker) {
	defer r.wg.Done()
	defer r.retire(w)
	for {
		r.idle.Add(1)
		id, ok := <-r.jobs
		r.idle.Add(-1)
		if !ok {
			return
		}
		if r.stopped.Load() {
			continue // never sent (stays pending): not part of the run
		}
		rec := r.recs.at(id)
		r.lastTaken.Store(rec.sched)
		r.inflight.Add(1)
		w.do(rec)
		r.inflight.Add(-1)
		rec.state.Store(recDone)
	}
}

func (r *runner) closedLoop(w *worker, end int64, first int, seed uint64) {
	defer r.wg.Done()
	defer r.retire(w)
	rng := rand.New(rand.NewPCG(seed, 0xc105ed))
	for i := first; ; i += r.cfg.Conns {
		now := r.now()
		if now >= end || r.stopped.Load() {
			return
		}
		_, rec := r.issue()
		if rec == nil {
			return
		}
		rec.sched, rec.class, rec.target = now, uint16(r.picker.pick(rng)), -1
		if len(r.targets) > 0 {
			rec.target = int32(i % len(r.targets))
		}
		r.inflight.Add(1)
		w.do(rec)
		r.inflight.Add(-1)
		rec.state.Store(recDone)
	}
}

// worker owns one connection at a time and runs one request on it at a time
// (no pipelining: a pipelined request's latency would include the ones
// ahead of it).
type worker struct {
	r        *runner
	id       int
	conn     net.Conn // owned by the worker goroutine; closed under r.mu
	br       *bufio.Reader
	buf      []byte
	resp     fasthttp.Response
	uses     int   // requests served by the current connection
	lastDone int64 // when the current connection last finished a request
}

func (r *runner) newWorker(id int) *worker {
	w := &worker{r: r, id: id, buf: make([]byte, 0, 512)}
	n := r.nconns.Add(1)
	for {
		p := r.peak.Load()
		if n <= p || r.peak.CompareAndSwap(p, n) {
			break
		}
	}
	r.mu.Lock()
	r.live[w] = struct{}{}
	r.mu.Unlock()
	return w
}

func (r *runner) retire(w *worker) {
	r.mu.Lock()
	delete(r.live, w)
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
	r.mu.Unlock()
	r.nconns.Add(-1)
}

// abort makes the worker's pending I/O fail now. Called with r.mu held.
func (w *worker) abort() {
	if w.conn != nil {
		_ = w.conn.SetDeadline(time.Unix(1, 0))
	}
}

func (w *worker) dial(deadline time.Time) error {
	d := net.Dialer{Deadline: deadline}
	c, err := d.Dial("tcp", w.r.addr)
	if err != nil {
		return err
	}
	w.r.mu.Lock()
	w.conn = c
	if w.r.stopped.Load() {
		w.abort()
	}
	w.r.mu.Unlock()
	if w.br == nil {
		w.br = bufio.NewReaderSize(c, 4096)
	} else {
		w.br.Reset(c)
	}
	w.uses = 0
	return nil
}

func (w *worker) closeConn() {
	w.r.mu.Lock()
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
	w.r.mu.Unlock()
}

// do runs one request to completion, a response or a classified error, and
// writes the outcome into its record.
func (w *worker) do(res *record) {
	r := w.r
	res.status, res.errKind, res.shed = 0, errNone, 0
	deadlineNs := res.sched + r.timeout
	pc := &r.classes[res.class]
	var path []byte
	if res.target >= 0 {
		path = r.targets[res.target]
	}
	w.buf = pc.appendRequest(w.buf[:0], path)
	w.resp.SkipBody = pc.head

	for attempt := 0; ; attempt++ {
		now := r.now()
		res.sent = now
		if now >= deadlineNs {
			// Could not even be sent in time (all connections busy): the
			// client gave up on it all the same.
			res.end, res.errKind = now, errTimeout
			return
		}
		deadline := r.t0.Add(time.Duration(deadlineNs))
		if w.conn == nil {
			if err := w.dial(deadline); err != nil {
				res.end, res.errKind = r.now(), w.classify(err, true)
				return
			}
		} else {
			w.uses++
		}
		reused := w.uses > 0
		if err := w.conn.SetDeadline(deadline); err != nil {
			w.closeConn()
			res.end, res.errKind = r.now(), w.classify(err, false)
			return
		}
		if r.stopped.Load() {
			// abort may have set a past deadline just before ours replaced
			// it; it stores stopped first, so checking after our own
			// SetDeadline cannot miss a cancellation.
			w.closeConn()
			res.end, res.errKind = r.now(), errCanceled
			return
		}
		_, err := w.conn.Write(w.buf)
		if err == nil {
			err = w.resp.Read(w.br)
		}
		res.end = r.now()
		if err != nil {
			w.closeConn()
			// A kept-alive connection the server closed while it sat idle
			// fails before any response byte; the server never saw this
			// request, so try once more on a fresh connection. Only after
			// an idle spell: a connection dropped right after use is the
			// server failing this request (it may have done the work), and
			// resending would hide that and double the load.
			if reused && attempt == 0 && !r.stopped.Load() && isStaleConn(err) && now-w.lastDone >= int64(staleIdle) {
				continue
			}
			res.errKind = w.classify(err, false)
			return
		}
		res.status = uint16(w.resp.Header.StatusCode())
		if v := w.resp.Header.Peek(ShedHeader); len(v) > 0 {
			res.shed = r.shedIndex(v)
		}
		if w.resp.ConnectionClose() {
			w.closeConn()
		}
		w.lastDone = res.end
		return
	}
}

func isStaleConn(err error) bool {
	return err == io.EOF || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func (w *worker) classify(err error, dialing bool) uint8 {
	switch {
	case w.r.stopped.Load():
		return errCanceled
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, fasthttp.ErrTimeout):
		return errTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return errRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return errReset
	case err == io.EOF, errors.Is(err, io.ErrUnexpectedEOF):
		return errClosed
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errTimeout
	}
	if dialing {
		return errDial
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return errOther
	}
	return errProtocol // fasthttp could not parse the response
}

// shedIndex interns a shed reason. The lookup with string(v) as a map key
// does not allocate, so the common case (a known reason) is free.
func (r *runner) shedIndex(v []byte) uint8 {
	r.shedMu.RLock()
	i, ok := r.shedIdx[string(v)]
	r.shedMu.RUnlock()
	if ok {
		return i
	}
	r.shedMu.Lock()
	defer r.shedMu.Unlock()
	if i, ok := r.shedIdx[string(v)]; ok {
		return i
	}
	if len(r.shedNames) >= maxShedKinds {
		v = []byte("other")
		if i, ok := r.shedIdx["other"]; ok {
			return i
		}
	}
	r.shedNames = append(r.shedNames, string(v))
	i = uint8(len(r.shedNames))
	r.shedIdx[string(v)] = i
	return i
}

func (r *runner) shedName(i uint8) string {
	r.shedMu.RLock()
	defer r.shedMu.RUnlock()
	return r.shedNames[i-1]
}
