package pool

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The proxy decides whether a request that failed on a pooled connection
// may be sent again from two facts the pool reports: Conn.Reused (the
// origin may have closed the connection while it was parked) and
// Conn.Written (how many bytes of this request reached the socket, not the
// buffer). These tests check both facts against an origin that really lets
// a keep-alive connection die, in the two ways that matter: after reading
// the next request (bytes reached the origin: only an idempotent request
// may go again), and before it (a reset: nothing reached it, any request
// may go again).

// keepAliveOnce is an origin that answers the first request on each
// connection with keep-alive and then lets the connection die: with
// resetIdle unset it reads the second request whole and closes without an
// answer; with it set it resets the connection (RST) once the test closes
// resetNow, before any second request.
type keepAliveOnce struct {
	addr      string
	resetIdle bool
	resetNow  chan struct{}
	reset     chan struct{} // closed once a connection was reset

	mu      sync.Mutex
	arrived []string // "conn/seq METHOD path body" per request read
}

func startKeepAliveOnce(t *testing.T, resetIdle bool) *keepAliveOnce {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	o := &keepAliveOnce{addr: ln.Addr().String(), resetIdle: resetIdle,
		resetNow: make(chan struct{}), reset: make(chan struct{})}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 1; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				o.serve(c, n)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return o
}

func (o *keepAliveOnce) serve(c net.Conn, n int) {
	br := bufio.NewReader(c)
	if !o.read(br, n, 1) {
		return
	}
	if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
		return
	}
	if o.resetIdle {
		<-o.resetNow
		_ = c.(*net.TCPConn).SetLinger(0) // Close sends RST
		_ = c.Close()
		close(o.reset)
		return
	}
	o.read(br, n, 2) // then close: no answer
}

func (o *keepAliveOnce) read(br *bufio.Reader, conn, seq int) bool {
	req, err := http.ReadRequest(br)
	if err != nil {
		return false
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return false
	}
	o.mu.Lock()
	o.arrived = append(o.arrived, strings.TrimSpace(fmt.Sprintf("%d/%d %s %s %s", conn, seq, req.Method, req.URL.Path, body)))
	o.mu.Unlock()
	return true
}

func (o *keepAliveOnce) arrivals() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.arrived...)
}

// exchange writes raw on c and reads one response.
func exchange(t *testing.T, c *Conn, raw string) (*http.Response, error) {
	t.Helper()
	require.NoError(t, c.NetConn().SetDeadline(time.Now().Add(5*time.Second)))
	if _, err := c.Writer().WriteString(raw); err != nil {
		return nil, err
	}
	if err := c.Writer().Flush(); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(c.Reader(), nil)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return resp, err
}

// firstExchange completes one request on a fresh connection and parks it.
func firstExchange(t *testing.T, b *Backend) *Conn {
	t.Helper()
	c, err := b.Acquire(time.Time{})
	require.NoError(t, err)
	assert.False(t, c.Reused(), "a fresh connection is not reused")
	resp, err := exchange(t, c, "GET /first HTTP/1.1\r\nHost: o\r\n\r\n")
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	b.Release(c, true)
	require.Equal(t, 1, b.Stats().Idle)
	return c
}

// TestReusedConnDiesAfterRequest: the origin reads the request written on
// a parked connection and closes it. The pool hands that connection out as
// reused, and its Written count shows the request reached the socket, so a
// POST must not be re-sent. Released as broken, the connection is closed
// and the next Acquire dials a fresh one.
func TestReusedConnDiesAfterRequest(t *testing.T) {
	o := startKeepAliveOnce(t, false)
	b, err := NewBackend(o.addr, Config{})
	require.NoError(t, err)
	defer b.Close()
	first := firstExchange(t, b)

	c, err := b.Acquire(time.Time{})
	require.NoError(t, err)
	require.Same(t, first, c, "the parked connection is handed out again")
	assert.True(t, c.Reused())
	assert.Zero(t, c.Written(), "Written counts from Acquire, not over the connection's life")
	post := "POST /once HTTP/1.1\r\nHost: o\r\nContent-Length: 4\r\n\r\nbody"
	_, err = exchange(t, c, post)
	require.Error(t, err, "the origin closed without answering")
	assert.EqualValues(t, len(post), c.Written(), "every byte of the request reached the socket")
	assert.Zero(t, c.Read(), "no byte of a response")
	b.Release(c, false)
	assert.Equal(t, 0, b.Stats().Open, "a broken connection is closed, not parked")

	fresh, err := b.Acquire(time.Time{})
	require.NoError(t, err)
	assert.NotSame(t, first, fresh)
	assert.False(t, fresh.Reused())
	b.Release(fresh, false)
	assert.EqualValues(t, 2, b.Stats().Dials)
	assert.Equal(t, []string{"1/1 GET /first", "1/2 POST /once body"}, o.arrivals())
}

// TestReusedConnResetBeforeWrite: the origin resets a parked connection
// before the next request. Writing on it fails and Written stays 0: the
// bytes sat in the buffer and never reached the origin, which is what makes
// re-sending any request, a POST too, safe.
func TestReusedConnResetBeforeWrite(t *testing.T) {
	o := startKeepAliveOnce(t, true)
	b, err := NewBackend(o.addr, Config{})
	require.NoError(t, err)
	defer b.Close()
	first := firstExchange(t, b)
	close(o.resetNow)
	<-o.reset
	waitReset(t, first.NetConn())

	c, err := b.Acquire(time.Time{})
	require.NoError(t, err)
	require.Same(t, first, c)
	assert.True(t, c.Reused())
	_, err = exchange(t, c, "POST /never HTTP/1.1\r\nHost: o\r\nContent-Length: 4\r\n\r\nbody")
	require.Error(t, err, "writing on a reset connection fails")
	assert.Zero(t, c.Written(), "bytes left in the buffer are not counted as sent")
	b.Release(c, false)
	assert.Equal(t, 0, b.Stats().Open)
	assert.Equal(t, []string{"1/1 GET /first"}, o.arrivals())
}

// waitReset waits until the kernel has taken in the origin's RST on c, by
// peeking without consuming data.
func waitReset(t *testing.T, c net.Conn) {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		gone := false
		var buf [1]byte
		_ = rc.Read(func(fd uintptr) bool {
			n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			gone = (err != nil && err != syscall.EAGAIN && err != syscall.EINTR) || (err == nil && n == 0)
			return true
		})
		return gone
	}, 5*time.Second, time.Millisecond)
}
