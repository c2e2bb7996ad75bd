package pool

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// listener accepts and holds connections on 127.0.0.1 until the test ends.
func listener(t *testing.T) (string, func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String(), func() int { mu.Lock(); defer mu.Unlock(); return len(conns) }
}

func TestMostRecentlyUsedFirst(t *testing.T) {
	addr, _ := listener(t)
	b, err := NewBackend(addr, Config{})
	require.NoError(t, err)
	defer b.Close()
	c1, err := b.Acquire(time.Time{})
	require.NoError(t, err)
	c2, err := b.Acquire(time.Time{})
	require.NoError(t, err)
	b.Release(c1, true)
	b.Release(c2, true)
	got, err := b.Acquire(time.Time{})
	require.NoError(t, err)
	assert.Same(t, c2, got, "the last released connection comes back first")
	assert.True(t, got.Reused())
	b.Release(got, true)
	assert.EqualValues(t, 2, b.Stats().Dials)
	assert.Equal(t, 2, b.Stats().Idle)
}

func TestMaxConnsBound(t *testing.T) {
	addr, _ := listener(t)
	b, err := NewBackend(addr, Config{MaxConns: 1, ConnectTimeout: 50 * time.Millisecond})
	require.NoError(t, err)
	defer b.Close()
	c, err := b.Acquire(time.Time{})
	require.NoError(t, err)
	_, err = b.Acquire(time.Now().Add(20 * time.Millisecond))
	assert.ErrorIs(t, err, ErrPoolFull)

	// A waiter gets the connection as soon as it is released.
	got := make(chan *Conn)
	go func() {
		c, _ := b.Acquire(time.Now().Add(5 * time.Second))
		got <- c
	}()
	b.Release(c, true)
	c2 := <-got
	assert.Same(t, c, c2)
	b.Release(c2, false)
	assert.Equal(t, 0, b.Stats().Open)
}

func TestWarmAndReap(t *testing.T) {
	addr, accepted := listener(t)
	b, err := NewBackend(addr, Config{WarmConns: 2, IdleTimeout: 40 * time.Millisecond})
	require.NoError(t, err)
	defer b.Close()
	require.NoError(t, b.Warm())
	assert.Equal(t, 2, b.Stats().Idle)
	// Extra connections beyond the warm set expire; the warm set is
	// re-dialed fresh, so it never outlives the idle timeout.
	var cs []*Conn
	for range 4 {
		c, err := b.Acquire(time.Time{})
		require.NoError(t, err)
		cs = append(cs, c)
	}
	for _, c := range cs {
		b.Release(c, true)
	}
	require.Eventually(t, func() bool {
		s := b.Stats()
		return s.Open == 2 && s.Idle == 2 && s.Dials > 4
	}, 5*time.Second, 5*time.Millisecond)
	assert.Greater(t, accepted(), 4)
}

func TestDialError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	b, err := NewBackend(addr, Config{})
	require.NoError(t, err)
	defer b.Close()
	_, err = b.Acquire(time.Time{})
	var de *DialError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, 0, b.Stats().Open, "a failed dial gives its slot back")
}

func TestCountersAndClose(t *testing.T) {
	addr, _ := listener(t)
	b, err := NewBackend(addr, Config{})
	require.NoError(t, err)
	b.StartRequest()
	c, err := b.Acquire(time.Time{})
	require.NoError(t, err)
	_, err = c.Writer().WriteString("GET / HTTP/1.1\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, c.Writer().Flush())
	assert.EqualValues(t, 18, c.Written())
	b.Release(c, true)
	b.FinishRequest(true)
	s := b.Stats()
	assert.EqualValues(t, 1, s.Requests)
	assert.EqualValues(t, 1, s.Failures)
	assert.EqualValues(t, 18, s.BytesOut)
	assert.Zero(t, s.InFlight)
	b.Close()
	_, err = b.Acquire(time.Time{})
	assert.ErrorIs(t, err, ErrClosed)
	assert.Equal(t, 0, b.Stats().Open)
}

func TestConfigValidate(t *testing.T) {
	c := Config{MaxConns: 2, WarmConns: 3}
	assert.ErrorContains(t, c.Validate(), "warm_conns: 3 exceeds max_conns 2")
	c = Config{IdleTimeout: -1}
	assert.ErrorContains(t, c.Validate(), "idle_timeout")
	d := Config{}.WithDefaults()
	assert.Equal(t, DefaultMaxConns, d.MaxConns)
	assert.NoError(t, d.Validate())
}

// TestWaiterWakesOnRelease: an Acquire waiting on a full pool gets a
// connection parked by Release (which pokes only when someone waits) and a
// slot freed by closing one.
func TestWaiterWakesOnRelease(t *testing.T) {
	addr, _ := listener(t)
	b, err := NewBackend(addr, Config{MaxConns: 1})
	require.NoError(t, err)
	defer b.Close()
	c, err := b.Acquire(time.Time{})
	require.NoError(t, err)

	acquire := func() <-chan *Conn {
		got := make(chan *Conn, 1)
		go func() {
			c, err := b.Acquire(time.Now().Add(10 * time.Second))
			assert.NoError(t, err)
			got <- c
		}()
		require.Eventually(t, func() bool { return b.waiters.Load() == 1 }, 5*time.Second, time.Millisecond)
		return got
	}

	got := acquire()
	b.Release(c, true)
	c2 := <-got
	assert.Same(t, c, c2, "the parked connection goes to the waiter")

	got = acquire()
	b.Release(c2, false) // closed: its slot frees up
	c3 := <-got
	assert.NotSame(t, c2, c3, "a fresh connection is dialed for the waiter")
	b.Release(c3, false)
	assert.Zero(t, b.waiters.Load())
	assert.EqualValues(t, 2, b.Stats().Dials)
}

// deadlineConn counts deadline changes.
type deadlineConn struct {
	net.Conn
	sets int
}

func (c *deadlineConn) SetDeadline(t time.Time) error     { c.sets++; return c.Conn.SetDeadline(t) }
func (c *deadlineConn) SetReadDeadline(t time.Time) error { c.sets++; return c.Conn.SetReadDeadline(t) }
func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	c.sets++
	return c.Conn.SetWriteDeadline(t)
}

func TestArmDeadline(t *testing.T) {
	addr, _ := listener(t)
	var dc *deadlineConn
	b, err := NewBackend(addr, Config{Dial: func(addr string, timeout time.Duration) (net.Conn, error) {
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return nil, err
		}
		dc = &deadlineConn{Conn: c}
		return dc, nil
	}})
	require.NoError(t, err)
	defer b.Close()
	c, err := b.Acquire(time.Time{})
	require.NoError(t, err)
	defer b.Release(c, false)

	t0 := time.Now()
	slack := 100 * time.Millisecond
	steps := []struct {
		name string
		arm  func() error
		sets int // total so far
	}{
		{"first", func() error { return c.ArmDeadline(t0.Add(time.Second), slack) }, 1},
		{"slightly later: kept", func() error { return c.ArmDeadline(t0.Add(time.Second+slack/2), slack) }, 1},
		{"read alone, slightly later: kept", func() error { return c.ArmReadDeadline(t0.Add(time.Second+slack), slack) }, 1},
		{"earlier: re-armed", func() error { return c.ArmDeadline(t0.Add(time.Second/2), slack) }, 2},
		{"beyond slack: re-armed", func() error { return c.ArmWriteDeadline(t0.Add(time.Second), slack) }, 3},
		{"read still early: re-armed", func() error { return c.ArmDeadline(t0.Add(time.Second), slack) }, 4},
		{"same: kept", func() error { return c.ArmDeadline(t0.Add(time.Second), slack) }, 4},
	}
	for _, s := range steps {
		require.NoError(t, s.arm(), s.name)
		assert.Equal(t, s.sets, dc.sets, s.name)
	}
}

// TestAcquireFresh: a fresh connection never comes from the parked ones;
// when MaxConns are all open, the oldest parked one gives up its slot, and
// when every one is in use it waits until the deadline.
func TestAcquireFresh(t *testing.T) {
	addr, accepted := listener(t)
	b, err := NewBackend(addr, Config{MaxConns: 2})
	require.NoError(t, err)
	defer b.Close()
	c1, err := b.Acquire(time.Time{})
	require.NoError(t, err)
	c2, err := b.Acquire(time.Time{})
	require.NoError(t, err)
	b.Release(c1, true)
	b.Release(c2, true)

	f, err := b.AcquireFresh(time.Time{})
	require.NoError(t, err)
	assert.NotSame(t, c1, f)
	assert.NotSame(t, c2, f)
	assert.False(t, f.Reused())
	assert.EqualValues(t, 3, b.Stats().Dials)
	assert.Equal(t, 2, b.Stats().Open, "still within MaxConns")
	assert.Equal(t, 1, b.Stats().Idle, "the oldest parked connection was closed for it")
	assert.Eventually(t, func() bool { return accepted() == 3 }, time.Second, time.Millisecond)

	left, err := b.Acquire(time.Time{})
	require.NoError(t, err)
	assert.Same(t, c2, left, "the most recently used one stayed")
	_, err = b.AcquireFresh(time.Now().Add(20 * time.Millisecond))
	assert.ErrorIs(t, err, ErrPoolFull, "both in use: no room before the deadline")
	b.Release(left, true)
	b.Release(f, true)
	b.Close()
	_, err = b.AcquireFresh(time.Time{})
	assert.ErrorIs(t, err, ErrClosed)
}

// TestIdleTimeoutOnAcquire: a parked connection that has been idle for
// IdleTimeout is closed when Acquire finds it, not handed out: the origin
// may have timed it out meanwhile, and the reaper runs only every quarter
// of IdleTimeout. The clock Acquire is given says how long it sat.
func TestIdleTimeoutOnAcquire(t *testing.T) {
	addr, _ := listener(t)
	b, err := NewBackend(addr, Config{IdleTimeout: time.Hour})
	require.NoError(t, err)
	defer b.Close()
	now := time.Now()
	c, err := b.AcquireAt(now, time.Time{})
	require.NoError(t, err)
	b.ReleaseAt(c, true, now)

	got, err := b.AcquireAt(now.Add(time.Hour-time.Second), time.Time{})
	require.NoError(t, err)
	assert.Same(t, c, got, "within IdleTimeout: the parked connection")
	b.ReleaseAt(got, true, now)

	got, err = b.AcquireAt(now.Add(time.Hour), time.Time{})
	require.NoError(t, err)
	assert.NotSame(t, c, got, "idle for IdleTimeout: closed, and a new one dialed")
	assert.False(t, got.Reused())
	assert.EqualValues(t, 2, b.Stats().Dials)
	assert.Equal(t, 1, b.Stats().Open, "the expired one gave its slot back")
	b.Release(got, false)
}

// TestReleaseWithUnreadBytes: a connection released as reusable while its
// read buffer still holds bytes (a response longer than announced, or a
// caller that stopped reading early) is closed, not parked: the next
// request on it would read those bytes as its response.
func TestReleaseWithUnreadBytes(t *testing.T) {
	const resp, extra = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "EXTRA"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = c.Write([]byte(resp + extra))
		_, _ = c.Read(make([]byte, 1)) // until the pool closes it
	}()
	b, err := NewBackend(ln.Addr().String(), Config{})
	require.NoError(t, err)
	defer b.Close()
	c, err := b.Acquire(time.Time{})
	require.NoError(t, err)
	require.NoError(t, c.NetConn().SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = c.Reader().Peek(len(resp + extra)) // all of it buffered
	require.NoError(t, err)
	_, err = c.Reader().Discard(len(resp)) // the response read, the extra not
	require.NoError(t, err)

	b.Release(c, true)
	assert.Equal(t, 0, b.Stats().Idle, "not parked with bytes unread")
	assert.Equal(t, 0, b.Stats().Open)
}
