package proxy

import (
	"io"
	"sync"
	"time"
)

// accessWriter buffers access-log lines so that logging costs a memory
// copy per request, not a write syscall: the buffer is written out when
// full, every flush interval, and on Close.
type accessWriter struct {
	// Immutable.
	w    io.Writer
	size int
	stop chan struct{}
	done chan struct{}

	// Protected by mu.
	mu     sync.Mutex
	buf    []byte
	closed bool
}

func newAccessWriter(w io.Writer, size int, every time.Duration) *accessWriter {
	a := &accessWriter{
		w:    w,
		size: size,
		buf:  make([]byte, 0, size),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go a.flushLoop(every)
	return a
}

// Write takes one log line (zerolog writes each event whole).
func (a *accessWriter) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return a.w.Write(p)
	}
	if len(a.buf)+len(p) > a.size {
		a.flushLocked()
		if len(p) > a.size {
			return a.w.Write(p)
		}
	}
	a.buf = append(a.buf, p...)
	return len(p), nil
}

func (a *accessWriter) flushLocked() {
	if len(a.buf) == 0 {
		return
	}
	// A failing log sink must not fail requests; the lines are dropped.
	_, _ = a.w.Write(a.buf)
	a.buf = a.buf[:0]
}

// Flush writes out what is buffered.
func (a *accessWriter) Flush() {
	a.mu.Lock()
	a.flushLocked()
	a.mu.Unlock()
}

func (a *accessWriter) flushLoop(every time.Duration) {
	defer close(a.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
			a.Flush()
		}
	}
}

// Close flushes and stops the flusher; later lines are written directly.
func (a *accessWriter) Close() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.flushLocked()
	a.closed = true
	a.mu.Unlock()
	close(a.stop)
	<-a.done
}
