package proxy

import (
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// idleParker holds parked client connections (idle.go) in an epoll set of
// its own, level-triggered and one-shot: a connection is reported once
// when it has bytes or a hang-up, then taken out of the set and served.
// One goroutine waits on the set, and every sweepEvery closes the parked
// connections whose deadline has passed. The descriptors stay registered
// with the Go runtime's poller too; nothing waits on them there while
// they are parked.
type idleParker struct {
	// Immutable.
	srv  *fasthttp.Server
	log  zerolog.Logger
	epfd int
	wake [2]int // a pipe; a byte on it stops the loop
	done chan struct{}

	// Protected by mu.
	mu     sync.Mutex
	parked map[uint64]*idleConn
	nextID uint64 // 0 is the wake pipe's
	closed bool
}

// sweepEvery is how often parked connections past their deadline are
// closed: idle and header timeouts hold to within it.
const sweepEvery = 250 * time.Millisecond

// newIdleParker starts the parker's loop; nil (no parking) when the
// kernel refuses an epoll set or a pipe.
func newIdleParker(srv *fasthttp.Server, log zerolog.Logger) *idleParker {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		log.Warn().Err(err).Msg("idle connections keep their goroutines: no epoll set")
		return nil
	}
	p := &idleParker{srv: srv, log: log, epfd: epfd, done: make(chan struct{}), parked: make(map[uint64]*idleConn)}
	if err := syscall.Pipe2(p.wake[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		_ = syscall.Close(epfd)
		log.Warn().Err(err).Msg("idle connections keep their goroutines: no pipe")
		return nil
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.wake[0], &ev); err != nil {
		p.closeFDs()
		log.Warn().Err(err).Msg("idle connections keep their goroutines: epoll refused the pipe")
		return nil
	}
	go p.run()
	return p
}

func (p *idleParker) closeFDs() {
	_ = syscall.Close(p.wake[0])
	_ = syscall.Close(p.wake[1])
	_ = syscall.Close(p.epfd)
}

// park puts c, which fasthttp has just let go of, in the set; a closed
// parker or a descriptor the kernel refuses closes it instead.
func (p *idleParker) park(c *idleConn) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = c.Conn.Close()
		return
	}
	p.nextID++
	c.id = p.nextID
	var err error
	if cerr := c.raw.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
			Fd: int32(uint32(c.id)), Pad: int32(uint32(c.id >> 32))}
		err = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	}); cerr != nil {
		err = cerr
	}
	if err == nil {
		p.parked[c.id] = c
	}
	p.mu.Unlock()
	if err != nil {
		_ = c.Conn.Close()
	}
}

// run waits on the set until close, serving the connections that wake and
// closing those past their deadline.
func (p *idleParker) run() {
	defer close(p.done)
	defer p.closeFDs()
	events := make([]syscall.EpollEvent, 256)
	lastSweep := time.Now()
	for {
		n, err := syscall.EpollWait(p.epfd, events, int(sweepEvery/time.Millisecond))
		if err != nil && err != syscall.EINTR {
			p.log.Error().Err(err).Msg("idle connection set failed; parked connections are closed")
			p.close()
			return
		}
		for _, ev := range events[:max(n, 0)] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == 0 {
				return // close
			}
			p.resume(id)
		}
		if now := time.Now(); now.Sub(lastSweep) >= sweepEvery {
			lastSweep = now
			p.sweep(now)
		}
	}
}

// resume takes the connection id out of the set and serves it on a
// goroutine of its own.
func (p *idleParker) resume(id uint64) {
	p.mu.Lock()
	c := p.parked[id]
	delete(p.parked, id)
	closed := p.closed
	if c != nil {
		// Out of the set, so that the next park can add it again.
		_ = c.raw.Control(func(fd uintptr) {
			_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
		})
	}
	p.mu.Unlock()
	switch {
	case c == nil: // swept or closed while the event was on its way
	case closed:
		_ = c.Conn.Close()
	default:
		c.state = waitActive // bytes are there: this read does not wait
		go func() { _ = p.srv.ServeConn(c) }()
	}
}

// sweep closes the parked connections whose deadline has passed, as
// fasthttp closes a connection idle past its timeout: silently.
func (p *idleParker) sweep(now time.Time) {
	var expired []*idleConn
	p.mu.Lock()
	for id, c := range p.parked {
		if !c.deadline.IsZero() && !now.Before(c.deadline) {
			delete(p.parked, id)
			expired = append(expired, c)
		}
	}
	p.mu.Unlock()
	for _, c := range expired {
		_ = c.Conn.Close() // closing the descriptor takes it out of the set
	}
}

// close closes every parked connection and stops the loop; connections
// that try to park afterwards are closed.
func (p *idleParker) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	parked := p.parked
	p.parked = make(map[uint64]*idleConn)
	p.mu.Unlock()
	for _, c := range parked {
		_ = c.Conn.Close()
	}
	_, _ = syscall.Write(p.wake[1], []byte{1})
}

// wait returns once the loop has stopped.
func (p *idleParker) wait() { <-p.done }

// count is how many connections are parked now.
func (p *idleParker) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.parked)
}
