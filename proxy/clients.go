package proxy

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Per-client limits: connections per client IP and the whole server's
// connections, counted as the listener accepts them, and requests per
// second per client IP, a token bucket consulted as a request arrives.
// All are off by default. A connection over a limit is answered at once
// (429 client-conns, 503 conn-limit: errorTable) and closed without
// reaching fasthttp; a request over its IP's rate is refused as any shed
// request is (429 client-rate). The process log says so at most once a
// second per kind, with the number refused since the last line.

// clientListener counts the connections it hands out, per client IP and
// in all, and refuses those over the limits.
type clientListener struct {
	net.Listener
	// Immutable.
	maxPerIP, maxConns int
	log                *limitLog
	perIPLog           *limitLog
	rejecting          chan struct{} // one token per refusal being written

	// Protected by mu.
	mu    sync.Mutex
	open  int
	perIP map[netip.Addr]int
}

func newClientListener(ln net.Listener, c ClientsConfig, log zerolog.Logger) *clientListener {
	return &clientListener{
		Listener: ln, maxPerIP: c.MaxConnsPerIP, maxConns: c.MaxConns,
		log:       &limitLog{log: log, msg: "connection limit reached: new connections are refused (clients.max_conns)"},
		perIPLog:  &limitLog{log: log, msg: "a client IP is over its connection limit: its new connections are refused (clients.max_conns_per_ip)"},
		rejecting: make(chan struct{}, maxRejecting),
		perIP:     make(map[netip.Addr]int),
	}
}

// maxRejecting bounds the refusals being written at once; past it a
// refused connection is closed without an answer.
const maxRejecting = 256

func (l *clientListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := connAddr(c)
		l.mu.Lock()
		switch {
		case l.maxConns > 0 && l.open >= l.maxConns:
			l.mu.Unlock()
			l.log.note(ip, l.maxConns)
			l.refuse(c, errConnLimit)
			continue
		case l.maxPerIP > 0 && l.perIP[ip] >= l.maxPerIP:
			l.mu.Unlock()
			l.perIPLog.note(ip, l.maxPerIP)
			l.refuse(c, errClientConns)
			continue
		}
		l.open++
		l.perIP[ip]++
		l.mu.Unlock()
		if tc, ok := c.(*net.TCPConn); ok {
			return &clientTCPConn{TCPConn: tc, slot: connSlot{l: l, ip: ip}}, nil
		}
		return &clientConn{Conn: c, slot: connSlot{l: l, ip: ip}}, nil
	}
}

func (l *clientListener) release(ip netip.Addr) {
	l.mu.Lock()
	l.open--
	if n := l.perIP[ip] - 1; n > 0 {
		l.perIP[ip] = n
	} else {
		delete(l.perIP, ip)
	}
	l.mu.Unlock()
}

// refuse answers c with err's response and closes it, on a goroutine of
// its own bounded by a second, so that the accept loop never waits on a
// client.
func (l *clientListener) refuse(c net.Conn, err error) {
	select {
	case l.rejecting <- struct{}{}:
	default:
		_ = c.Close()
		return
	}
	go func() {
		defer func() { <-l.rejecting }()
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, werr := c.Write(rawError(err)); werr != nil {
			return
		}
		// Half-close and read what the client sent, so that its request
		// does not turn the close into a reset that loses the answer.
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		var buf [4096]byte
		for {
			if _, rerr := c.Read(buf[:]); rerr != nil {
				return
			}
		}
	}()
}

func connAddr(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// connSlot is an accepted connection's place in its listener's counts,
// given back once however often the connection is closed.
type connSlot struct {
	l      *clientListener
	ip     netip.Addr
	closed atomic.Bool
}

func (s *connSlot) release() {
	if s.closed.CompareAndSwap(false, true) {
		s.l.release(s.ip)
	}
}

// clientTCPConn keeps *net.TCPConn's methods (SyscallConn for the watch's
// peek) and counts its Close once.
type clientTCPConn struct {
	*net.TCPConn
	slot connSlot
}

func (c *clientTCPConn) Close() error {
	c.slot.release()
	return c.TCPConn.Close()
}

type clientConn struct {
	net.Conn
	slot connSlot
}

func (c *clientConn) Close() error {
	c.slot.release()
	return c.Conn.Close()
}

// rateLimiter is a token bucket per client IP: rate requests a second on
// average, bursts of up to burst.
type rateLimiter struct {
	// Immutable.
	rate  float64
	burst float64
	log   *limitLog

	// Protected by mu.
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets bounds the IPs remembered; past it, buckets that have filled
// up again (their IPs are idle) are forgotten.
const maxBuckets = 1 << 16

func newRateLimiter(c ClientsConfig, log zerolog.Logger) *rateLimiter {
	burst := float64(c.BurstPerIP)
	if burst == 0 {
		burst = max(1, c.RatePerIP)
	}
	return &rateLimiter{rate: c.RatePerIP, burst: burst, buckets: make(map[string]*bucket),
		log: &limitLog{log: log, msg: "a client IP is over its request rate: its requests are refused (clients.rate_per_ip)"}}
}

// allow takes a token for ip at now, if it has one. A known IP costs a
// map lookup and no allocation.
func (r *rateLimiter) allow(ip []byte, now time.Time) bool {
	r.mu.Lock()
	b := r.buckets[b2s(ip)]
	if b == nil {
		if len(r.buckets) >= maxBuckets {
			r.sweepLocked(now)
		}
		b = &bucket{tokens: r.burst, last: now}
		r.buckets[string(ip)] = b
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(r.burst, b.tokens+d.Seconds()*r.rate)
		b.last = now
	}
	ok := b.tokens >= 1
	if ok {
		b.tokens--
	}
	r.mu.Unlock()
	if !ok {
		a, _ := netip.ParseAddr(b2s(ip))
		r.log.note(a, r.burst)
	}
	return ok
}

func (r *rateLimiter) sweepLocked(now time.Time) {
	for k, b := range r.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*r.rate >= r.burst {
			delete(r.buckets, k)
		}
	}
}

// limitLog writes one line a second at most, counting the refusals in
// between, so that a flood does not become a flood of log lines.
type limitLog struct {
	log zerolog.Logger
	msg string

	mu      sync.Mutex
	last    time.Time
	refused int
}

func (l *limitLog) note(ip netip.Addr, limit any) {
	l.mu.Lock()
	l.refused++
	now := time.Now()
	if now.Sub(l.last) < time.Second {
		l.mu.Unlock()
		return
	}
	n := l.refused
	l.refused, l.last = 0, now
	l.mu.Unlock()
	e := l.log.Warn().Int("refused", n).Interface("limit", limit)
	if ip.IsValid() {
		e = e.Str("client_ip", ip.String())
	}
	e.Msg(l.msg)
}
