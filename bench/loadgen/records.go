package loadgen

import (
	"sync"
	"sync/atomic"
)

// Record states.
const (
	recPending   uint32 = iota // issued, outcome not known yet (or never sent)
	recDone                    // outcome written by a connection
	recCollected               // folded into the aggregates
)

// record is the preallocated slot of one request: the dispatcher (or a
// closed-loop connection) fills in what to send, the connection that runs it
// writes the outcome and then publishes it by storing recDone, and the
// collector reads it afterwards. No allocation, no channel hop per result.
type record struct {
	sched, sent, end int64 // ns from the start; sent == end when never sent
	target           int32 // index into the target list, or -1
	class            uint16
	status           uint16 // 0 on a client-side error
	errKind          uint8
	shed             uint8 // 0, or 1 + index into the shed names
	state            atomic.Uint32
}

const (
	chunkBits = 14
	chunkSize = 1 << chunkBits
	chunkMask = chunkSize - 1
	// maxChunks bounds the records alive (issued, not yet collected) at
	// once: 2^24 requests, far more than MaxConns can keep in flight.
	maxChunks = 1 << 10
)

type chunk [chunkSize]record

// recordStore is a ring of lazily allocated chunks indexed by request
// number. A chunk goes back to a free list once the collector has passed
// it, so a run of any length uses memory for the requests in flight only.
type recordStore struct {
	chunks [maxChunks]atomic.Pointer[chunk]
	next   atomic.Int64 // next request number to issue

	mu   sync.Mutex
	free []*chunk // protected by mu
}

// issue reserves the next request number and returns its record, whose
// state is recPending (chunks are reset before they are reused).
// ok is false when the records alive would exceed the ring.
func (s *recordStore) issue(lo int64) (int64, *record, bool) {
	n := s.next.Add(1) - 1
	if n-lo >= (maxChunks-1)*chunkSize {
		s.next.Add(-1)
		return 0, nil, false
	}
	slot := &s.chunks[(n>>chunkBits)%maxChunks]
	c := slot.Load()
	if c == nil {
		c = s.newChunk()
		if !slot.CompareAndSwap(nil, c) {
			s.release(c)
			c = slot.Load()
		}
	}
	return n, &c[n&chunkMask], true
}

// at returns the record of request n, which must be issued and not yet
// released.
func (s *recordStore) at(n int64) *record {
	return &s.chunks[(n>>chunkBits)%maxChunks].Load()[n&chunkMask]
}

// loaded reports whether request n's chunk exists (it may not yet, when
// another goroutine reserved n and is still allocating).
func (s *recordStore) loaded(n int64) bool {
	return s.chunks[(n>>chunkBits)%maxChunks].Load() != nil
}

// releaseChunk returns the chunk holding request n to the free list. Only
// the collector calls it, once every request in the chunk is collected.
func (s *recordStore) releaseChunk(n int64) {
	slot := &s.chunks[(n>>chunkBits)%maxChunks]
	if c := slot.Swap(nil); c != nil {
		// Reset here, not in issue: a record reserved but not yet filled
		// in must already read as pending to the collector.
		for i := range c {
			c[i].state.Store(recPending)
		}
		s.release(c)
	}
}

func (s *recordStore) newChunk() *chunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := len(s.free); k > 0 {
		c := s.free[k-1]
		s.free = s.free[:k-1]
		return c
	}
	return new(chunk)
}

func (s *recordStore) release(c *chunk) {
	s.mu.Lock()
	s.free = append(s.free, c)
	s.mu.Unlock()
}
