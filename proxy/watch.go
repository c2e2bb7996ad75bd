package proxy

import (
	"context"
	"net"
	"syscall"
	"time"
)

// watchInterval is how often a queued request's client socket is checked.
const watchInterval = 25 * time.Millisecond

// clientWatch cancels a queued request's context when its client hangs up.
// fasthttp does not notice a disconnect while the handler runs, and a
// request waiting in the queue would otherwise hold its place (and later a
// backend slot) for nobody. It peeks at the socket without consuming
// anything, so pipelined bytes stay for fasthttp. Only queued requests pay
// for a watcher; requests admitted at once never start one.
type clientWatch struct {
	rc     syscall.RawConn
	cancel context.CancelFunc
	stop   chan struct{}
	done   chan struct{}
}

// startClientWatch returns nil when c offers no raw socket (in-memory
// connections in tests and benchmarks).
func startClientWatch(c net.Conn, cancel context.CancelFunc) *clientWatch {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &clientWatch{rc: rc, cancel: cancel, stop: make(chan struct{}), done: make(chan struct{})}
	go w.loop()
	return w
}

func (w *clientWatch) loop() {
	defer close(w.done)
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			if clientGone(w.rc) {
				w.cancel()
				return
			}
		}
	}
}

// Stop ends the watch and waits for it.
func (w *clientWatch) Stop() {
	if w == nil {
		return
	}
	close(w.stop)
	<-w.done
}

// clientGone peeks one byte: 0 bytes and no error is EOF (the client shut
// down or closed), a hard error is a reset; EAGAIN means still there, and
// data means still there (pipelined or body bytes).
func clientGone(rc syscall.RawConn) bool {
	gone := false
	var buf [1]byte
	err := rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EAGAIN || err == syscall.EINTR:
		case err != nil:
			gone = true
		case n == 0:
			gone = true
		}
		return true // never wait for readability: this is a poll
	})
	return gone || err != nil
}
