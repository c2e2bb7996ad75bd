package scheduler

import (
	"sync"
	"time"
)

// Waiter is one queued request. It lives on three structures at once: its
// tenant's list for its class (order), the expiry heap (timeouts and
// deadlines) and, for the blocking Admit, the goroutine that waits on ch.
// All fields are protected by Scheduler.mu except ch and timer, which only
// the waiting goroutine uses (ch is written under mu).
type Waiter struct {
	// set at arrival
	req       Request
	id        uint64 // arrival order, for tests and tie-breaks
	arrived   time.Time
	expires   time.Time
	expireErr error // ErrQueueTimeout or ErrDeadline, whichever expires binds
	tenant    *tenant

	// queue links (owned by the tenant's list) and heap position
	prev, next *Waiter
	heapIdx    int

	// result
	state    waiterState
	ticket   Ticket
	err      error
	signaled bool // a value was sent on ch

	// owned by the blocking Admit; nil in the pure core's tests
	ch    chan struct{}
	timer *time.Timer
}

type waiterState uint8

const (
	waiting waiterState = iota
	granted
	refused
)

var waiterPool = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &Waiter{ch: make(chan struct{}, 1), timer: t}
}}

func getWaiter() *Waiter { return waiterPool.Get().(*Waiter) }

func putWaiter(w *Waiter) {
	ch, t := w.ch, w.timer
	*w = Waiter{ch: ch, timer: t}
	waiterPool.Put(w)
}

// waitList is an intrusive doubly linked list of waiters: O(1) push, pop at
// either end and removal from the middle (cancel, timeout, eviction)
// without allocating.
type waitList struct {
	head, tail *Waiter
	n          int
}

func (l *waitList) pushBack(w *Waiter) {
	w.prev, w.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = w
	} else {
		l.head = w
	}
	l.tail = w
	l.n++
}

func (l *waitList) remove(w *Waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		l.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		l.tail = w.prev
	}
	w.prev, w.next = nil, nil
	l.n--
}

// tenant is one tenant's share of the queue: its waiting requests per
// class and its place in each class's deficit round robin.
type tenant struct {
	key    uint64
	weight int
	queued int // all classes

	q       [NumClasses]waitList
	deficit [NumClasses]int
	ring    [NumClasses]uint8 // sparseRing or bulkRing while q[c].n > 0
	// flooded is set when the tenant's backlog in a class joins the bulk
	// ring, and cleared only when that backlog is empty: the tail of a
	// draining flood is short, but it is the oldest part of the flood, and
	// must still be shed rather than served late. Until then the tenant
	// stays in the bulk ring: adaptive LIFO sheds a flood down to a few
	// fresh requests, and back in the sparse ring those would be served
	// before the tenants within their share (99.76% success for them in
	// the simulation, against 100%).
	flooded [NumClasses]bool
	// ring links per class; valid while q[c].n > 0
	ringPrev, ringNext [NumClasses]*tenant
}

// classQueue is one priority class: deficit round robin over the tenants
// that have requests waiting in it, in two tiers. Each visit grants a tenant
// `weight` releases, so a tenant flooding the class gets its weighted share
// of releases and no more, however many requests it queues.
//
// Tenants with a short backlog (at most sparseMax requests per unit of
// weight) are in the sparse ring, served before the bulk ring, like
// FQ-CoDel's new flows. Without it, tenants that send exactly their fair
// share would get exactly their arrival rate in service and queue as if at
// 100% load, timing out while a flooding tenant keeps its full share; with
// it, they see only the load of the other light tenants. A tenant whose
// backlog grows past sparseMax joins the bulk ring, where floods compete
// round robin among themselves, so the sparse tier cannot be abused for
// long.
type classQueue struct {
	n         int // waiting requests
	sumWeight int // weights of the tenants with requests waiting
	rings     [2]ring
	// nonEmptySince is when the class last went from empty to non-empty:
	// the queue "stands" once it has not emptied for CoDelInterval. Once
	// standing it stays so until it has been left empty for an interval:
	// shedding (CoDel) empties the queue for an instant many times a
	// second under overload, and forgetting the overload at each of those
	// would let the next interval's requests wait unshed.
	nonEmptySince time.Time
	stand         bool
	lastPop       time.Time // last release or shed from this class
	// over is set once the class is overloaded (overloadedLocked) and,
	// like stand, cleared only once the class has been left empty for an
	// interval: the backlog of an overload is stale however it drains.
	// Or once it has stayed short for an interval (calmSince, see
	// overloadedLocked).
	over      bool
	calmSince time.Time // zero unless over and the backlog is short
	// lastStale is when the discipline last shed a request that waited
	// past StandingTimeout: an overload that still makes requests stale
	// is not calm, however short shedding keeps its backlog.
	lastStale time.Time
	// excess and held are the bound of a persistent overload (excess.go):
	// requests of this class and those before it refused for want of
	// capacity that the backends have not since had room for, and
	// whether the queue is held at the target delay.
	excess float64
	held   bool
}

const (
	sparseRing = 0
	bulkRing   = 1
	sparseMax  = 32
)

// ring is one deficit-round-robin ring; cur is the tenant being served.
type ring struct{ cur *tenant }

func (r *ring) insert(c Class, t *tenant, next bool) {
	t.deficit[c] = 0
	if r.cur == nil {
		t.ringPrev[c], t.ringNext[c] = t, t
		r.cur = t
		return
	}
	// next: right after cur (served next); otherwise at the end of the
	// round (just before cur).
	p := r.cur.ringPrev[c]
	if next {
		p = r.cur
	}
	nx := p.ringNext[c]
	t.ringPrev[c], t.ringNext[c] = p, nx
	p.ringNext[c] = t
	nx.ringPrev[c] = t
}

func (r *ring) remove(c Class, t *tenant) {
	t.deficit[c] = 0
	if t.ringNext[c] == t {
		r.cur = nil
	} else {
		p, nx := t.ringPrev[c], t.ringNext[c]
		p.ringNext[c], nx.ringPrev[c] = nx, p
		if r.cur == t {
			// The previous tenant: the next pick moves on to nx and gives
			// it its quantum, as if t had used up its own.
			r.cur = p
			p.deficit[c] = 0
		}
	}
	t.ringPrev[c], t.ringNext[c] = nil, nil
}

func (cq *classQueue) push(c Class, t *tenant, w *Waiter, now time.Time, interval time.Duration) {
	if cq.n == 0 {
		if now.Sub(cq.lastPop) >= interval {
			cq.stand = false
			cq.over = false
			cq.calmSince = time.Time{}
		}
		if !cq.stand {
			cq.nonEmptySince = now
		}
	}
	switch n := t.q[c].n; {
	case n == 0:
		cq.rings[sparseRing].insert(c, t, true)
		t.ring[c] = sparseRing
		cq.sumWeight += t.weight
	case n == sparseMax*t.weight && t.ring[c] == sparseRing:
		cq.rings[sparseRing].remove(c, t)
		cq.rings[bulkRing].insert(c, t, false)
		t.ring[c] = bulkRing
		t.flooded[c] = true
	}
	t.q[c].pushBack(w)
	cq.n++
	t.queued++
}

// remove takes w out of its class and tenant.
func (cq *classQueue) remove(c Class, w *Waiter) {
	t := w.tenant
	t.q[c].remove(w)
	cq.n--
	t.queued--
	switch n := t.q[c].n; {
	case n == 0:
		cq.sumWeight -= t.weight
		cq.rings[t.ring[c]].remove(c, t)
		t.flooded[c] = false
	case n == sparseMax*t.weight && t.ring[c] == bulkRing && !t.flooded[c]:
		cq.rings[bulkRing].remove(c, t)
		cq.rings[sparseRing].insert(c, t, false)
		t.ring[c] = sparseRing
	}
}

// nextTenant is the tenant whose request goes next under deficit round
// robin, sparse tenants first. The caller then releases or sheds one of
// its requests, charging the release to its deficit.
func (cq *classQueue) nextTenant(c Class) *tenant {
	r := &cq.rings[sparseRing]
	if r.cur == nil {
		r = &cq.rings[bulkRing]
	}
	t := r.cur
	if t.deficit[c] <= 0 {
		t = t.ringNext[c]
		r.cur = t
		t.deficit[c] += t.weight
	}
	return t
}

// backlogged reports whether t's backlog in class c is one the discipline
// may shed from: a flood (see flooded). A tenant within its share is never
// shed from: its wait is the others' doing. (Counting a tenant alone in
// its class as backlogged too made the single-client case shed 7% of the
// requests at 0.9× load in the simulation.)
func (t *tenant) backlogged(c Class, cq *classQueue) bool {
	return t.flooded[c]
}

func (cq *classQueue) standing(now time.Time, interval time.Duration) bool {
	if !cq.stand && cq.n > 0 && now.Sub(cq.nonEmptySince) >= interval {
		cq.stand = true
	}
	return cq.stand
}

// expiryHeap is a min-heap of waiters by expiry, so timeouts and deadlines
// cost O(log n) however the queues order their waiters.
type expiryHeap []*Waiter

func (h expiryHeap) less(i, j int) bool {
	if h[i].expires.Equal(h[j].expires) {
		return h[i].id < h[j].id
	}
	return h[i].expires.Before(h[j].expires)
}

func (h expiryHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}

func (h *expiryHeap) push(w *Waiter) {
	w.heapIdx = len(*h)
	*h = append(*h, w)
	h.up(w.heapIdx)
}

func (h *expiryHeap) remove(w *Waiter) {
	old := *h
	i, last := w.heapIdx, len(old)-1
	if i != last {
		old.swap(i, last)
	}
	old[last] = nil
	*h = old[:last]
	if i != last {
		if !h.down(i) {
			h.up(i)
		}
	}
	w.heapIdx = -1
}

func (h expiryHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h.swap(i, p)
		i = p
	}
}

func (h expiryHeap) down(i0 int) bool {
	i, n := i0, len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && h.less(r, l) {
			j = r
		}
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}
