package proxy

import (
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
)

// A spool is the buffer between a backend that sends quickly and a client
// that reads slowly: a FIFO of bytes, in memory chunks first and then in a
// temporary file, written by one goroutine and read by another. Bytes are
// handed to the reader as soon as they are written, so a spool never adds
// latency; it only lets the writer run ahead of the reader, by up to the
// request's limits and what the server-wide budget has left. When neither
// memory nor the file may grow, the writer waits for the reader: the rest
// flows at the reader's pace, as it would without a spool.
//
// The temporary file is removed from its directory as soon as it is
// created, so it never outlives its descriptor: not after the response,
// not after a client that left, not after a crash. Its space is counted
// against the budget until the spool is freed.
type spool struct {
	// Set by start, immutable until free.
	budget  *spoolBudget
	memMax  int64 // memory this spool may hold
	fileMax int64 // bytes this spool may write to its file

	// Protected by mu.
	mu       sync.Mutex
	cond     sync.Cond
	segs     []spoolSeg // the bytes not yet read, oldest first
	head     int        // segs[:head] are read and dropped
	memHeld  int64      // bytes of chunks held (their capacity)
	avail    int64      // bytes written and not yet read
	file     *os.File   // nil until the memory is used up
	fileSize int64      // bytes written to file (space reserved in the budget)
	noFile   bool       // the file cannot be made or written: memory only, then wait
	pending  uint8      // what room last handed out (pendMem, ...)
	wdone    bool       // the writer is finished; werr says how
	werr     error
	rclosed  bool  // the reader is gone: the writer stops
	rerr     error // why, when it did not read to the end
	src      net.Conn

	stage *spoolChunk   // where a read for the file lands before it is written
	spare []*spoolChunk // read chunks kept for reuse, still counted
}

// spoolSeg is a run of unread bytes: chunk[r:w] of a memory chunk, or
// [r, w) of the file.
type spoolSeg struct {
	chunk   *spoolChunk // nil: the file
	r, w    int64
	counted bool // the chunk is in memHeld and the budget
}

// spoolChunkSize is the unit of spool memory: the client write buffer's
// size, so one chunk is one write to the client.
const spoolChunkSize = clientWriteBuffer

type spoolChunk [spoolChunkSize]byte

var spoolChunks = sync.Pool{New: func() any { return new(spoolChunk) }}

// spoolBudget bounds the memory and the disk all spools of a server hold
// together, and counts what they hold (for Stats and tests).
type spoolBudget struct {
	// Immutable.
	memMax, diskMax int64
	dir             string

	mem, disk atomic.Int64 // held now
	files     atomic.Int64 // temporary files open now
	spools    atomic.Int64 // spools in use now
	spilled   atomic.Uint64
	// memPeak is the most memory held at once, for tests of the bound.
	memPeak atomic.Int64
}

func (b *spoolBudget) take(c *atomic.Int64, max, n int64) bool {
	for {
		cur := c.Load()
		if cur+n > max {
			return false
		}
		if c.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

func (b *spoolBudget) takeMem(n int64) bool {
	if !b.take(&b.mem, b.memMax, n) {
		return false
	}
	for {
		cur, peak := b.mem.Load(), b.memPeak.Load()
		if cur <= peak || b.memPeak.CompareAndSwap(peak, cur) {
			return true
		}
	}
}

// start readies s for one body; it is empty and unused.
// src, when set, is the connection the writer reads from: a reader that
// leaves early closes it, which ends a read the writer is blocked in.
func (s *spool) start(b *spoolBudget, memMax, fileMax int64, src net.Conn) {
	if s.cond.L == nil {
		s.cond.L = &s.mu
	}
	s.budget, s.memMax, s.fileMax, s.src = b, memMax, fileMax, src
	b.spools.Add(1)
}

// What room handed out, for commit.
const (
	pendMem  = iota // the free end of the tail chunk
	pendFile        // the stage, to be written to the file
	pendPass        // the stage, to become a chunk outside the budget
)

// room returns where the writer's next read may land, waiting while the
// spool may not grow; false when the reader is gone. The slice is valid
// until commit.
func (s *spool) room() ([]byte, bool) { return s.roomWait(true) }

// tryRoom is room for a writer with no reader yet: false at once when the
// spool may not grow.
func (s *spool) tryRoom() ([]byte, bool) { return s.roomWait(false) }

func (s *spool) roomWait(wait bool) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.rclosed {
			return nil, false
		}
		if n := len(s.segs); n > s.head {
			if t := &s.segs[n-1]; t.chunk != nil && t.w < spoolChunkSize {
				s.pending = pendMem
				return t.chunk[t.w:], true
			}
		}
		if k := len(s.spare); k > 0 {
			c := s.spare[k-1]
			s.spare[k-1] = nil
			s.spare = s.spare[:k-1]
			s.segs = append(s.segs, spoolSeg{chunk: c, counted: true})
			s.pending = pendMem
			return c[:], true
		}
		if s.memHeld+spoolChunkSize <= s.memMax && s.budget.takeMem(spoolChunkSize) {
			c := spoolChunks.Get().(*spoolChunk)
			s.memHeld += spoolChunkSize
			s.segs = append(s.segs, spoolSeg{chunk: c, counted: true})
			s.pending = pendMem
			return c[:], true
		}
		if s.fileRoomLocked() {
			s.pending = pendFile
			return s.stageLocked(), true
		}
		if !wait {
			return nil, false
		}
		if s.avail == 0 {
			// The reader has everything and there is still no room (the
			// server-wide budget is spent): one chunk outside the budget
			// keeps the body moving at the reader's pace.
			s.pending = pendPass
			return s.stageLocked(), true
		}
		s.cond.Wait()
	}
}

func (s *spool) stageLocked() []byte {
	if s.stage == nil {
		s.stage = spoolChunks.Get().(*spoolChunk)
	}
	return s.stage[:]
}

// fileRoomLocked reports whether the next chunk may go to the file,
// reserving its space in the budget.
func (s *spool) fileRoomLocked() bool {
	if s.noFile || s.fileSize+spoolChunkSize > s.fileMax {
		return false
	}
	if !s.budget.take(&s.budget.disk, s.budget.diskMax, spoolChunkSize) {
		return false
	}
	if s.file == nil {
		f, err := os.CreateTemp(s.budget.dir, "sluice-buffer-*")
		if err != nil {
			s.noFile = true
			s.budget.disk.Add(-spoolChunkSize)
			return false
		}
		// Unlinked at once: the space lives as long as the descriptor.
		_ = os.Remove(f.Name())
		s.file = f
		s.budget.files.Add(1)
		s.budget.spilled.Add(1)
	}
	return true
}

// commit makes the n bytes read into room's slice readable.
func (s *spool) commit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.pending {
	case pendMem:
		s.segs[len(s.segs)-1].w += int64(n)
	case pendPass:
		s.appendStageLocked(n)
	case pendFile:
		if !s.writeStageLocked(n) {
			s.appendStageLocked(n)
		}
	}
	if n > 0 {
		s.avail += int64(n)
		s.cond.Broadcast()
	}
}

// appendStageLocked makes the stage's n bytes a chunk outside the budget.
func (s *spool) appendStageLocked(n int) {
	if n > 0 {
		s.segs = append(s.segs, spoolSeg{chunk: s.stage, w: int64(n)})
		s.stage = nil
	}
}

// writeStageLocked appends the stage's n bytes to the file; false when
// the write failed (the disk is full): the file is given up, and what was
// read stays in memory rather than failing the response.
func (s *spool) writeStageLocked(n int) bool {
	off := s.fileSize
	if n > 0 {
		// The writer alone appends to the file, and the reader reads
		// only what is committed, so the write needs no lock.
		s.mu.Unlock()
		_, err := s.file.WriteAt(s.stage[:n], off)
		s.mu.Lock()
		if err != nil {
			s.noFile = true
			s.budget.disk.Add(-spoolChunkSize)
			return false
		}
	}
	s.budget.disk.Add(int64(n) - spoolChunkSize) // the reservation, trued up
	s.fileSize = off + int64(n)
	if n == 0 {
		return true
	}
	if k := len(s.segs); k > s.head && s.segs[k-1].chunk == nil && s.segs[k-1].w == off {
		s.segs[k-1].w += int64(n)
	} else {
		s.segs = append(s.segs, spoolSeg{r: off, w: off + int64(n)})
	}
	return true
}

// closeWrite ends the body: the reader gets err (io.EOF for a complete
// body) once it has read everything before it. It returns why the reader
// left, if it has left: then the writer's last read may have failed
// because of it.
func (s *spool) closeWrite(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wdone, s.werr = true, err
	s.src = nil // the writer is done with it; no one may close it now
	s.cond.Broadcast()
	return s.rerr
}

// closeRead says the reader is done: nil when it read the whole body
// (its last bytes may have been read before closeWrite), else why it
// stopped; then a writer waiting for room stops, and one blocked reading
// src is cut off.
func (s *spool) closeRead(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rclosed, s.rerr = true, err
	if err != nil && s.src != nil && !s.wdone {
		_ = s.src.Close()
	}
	s.cond.Broadcast()
}

// Read gives the reader the oldest unread bytes, waiting for the writer
// when there are none yet.
func (s *spool) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.avail == 0 {
		if s.wdone {
			return 0, s.werr
		}
		if s.rclosed {
			return 0, io.ErrClosedPipe
		}
		s.cond.Wait()
	}
	for s.segs[s.head].r == s.segs[s.head].w {
		// Read, or never written: a later segment holds the bytes, so
		// this one is not the writer's.
		s.dropHeadLocked()
	}
	g := &s.segs[s.head]
	n := min(int64(len(p)), g.w-g.r)
	if g.chunk != nil {
		copy(p, g.chunk[g.r:g.r+n])
	} else {
		off := g.r
		s.mu.Unlock()
		m, err := s.file.ReadAt(p[:n], off)
		s.mu.Lock()
		if err != nil && int64(m) < n {
			return 0, err
		}
		g = &s.segs[s.head] // segs may have grown meanwhile
	}
	g.r += n
	s.avail -= n
	// A chunk read to its end is dropped unless the writer may still add
	// to it (the tail, not full); a file segment always.
	if g.r == g.w && (g.chunk == nil || g.w == spoolChunkSize || s.head < len(s.segs)-1) {
		s.dropHeadLocked()
	}
	s.cond.Broadcast()
	return int(n), nil
}

// dropHeadLocked frees the oldest segment, read to its end.
func (s *spool) dropHeadLocked() {
	g := &s.segs[s.head]
	if g.chunk != nil {
		s.freeChunkLocked(g)
	}
	*g = spoolSeg{}
	s.head++
	if s.head == len(s.segs) {
		s.segs, s.head = s.segs[:0], 0
	}
}

func (s *spool) freeChunkLocked(g *spoolSeg) {
	if g.counted && !s.wdone {
		// Kept for the writer's next chunk, still counted (the spool
		// never holds more than memMax): a body that flows through
		// cycles the same chunks instead of the pool's.
		s.spare = append(s.spare, g.chunk)
		return
	}
	spoolChunks.Put(g.chunk)
	if g.counted {
		s.memHeld -= spoolChunkSize
		s.budget.mem.Add(-spoolChunkSize)
	}
}

// free gives back everything the spool holds, once both sides are done.
func (s *spool) free() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := s.head; i < len(s.segs); i++ {
		if s.segs[i].chunk != nil {
			s.freeChunkLocked(&s.segs[i])
		}
		s.segs[i] = spoolSeg{}
	}
	s.budget.disk.Add(-s.fileSize)
	s.budget.spools.Add(-1)
	if s.file != nil {
		_ = s.file.Close()
		s.file = nil
		s.budget.files.Add(-1)
	}
	if s.stage != nil {
		spoolChunks.Put(s.stage)
		s.stage = nil
	}
	for i, c := range s.spare {
		spoolChunks.Put(c)
		s.memHeld -= spoolChunkSize
		s.budget.mem.Add(-spoolChunkSize)
		s.spare[i] = nil
	}
	s.spare = s.spare[:0]
	s.segs, s.head = s.segs[:0], 0
	s.memHeld, s.avail, s.fileSize = 0, 0, 0
	s.noFile, s.wdone, s.werr, s.rclosed, s.rerr, s.src = false, false, nil, false, nil, nil
	s.budget = nil
}
