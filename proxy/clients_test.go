package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// startProxyLogged is startProxy with the process log kept.
func startProxyLogged(t *testing.T, cfg Config) (*testProxy, *syncBuf) {
	t.Helper()
	plog := &syncBuf{}
	logs := &syncBuf{}
	cfg.Log.AccessWriter = logs
	s, err := New(cfg, zerolog.New(plog))
	require.NoError(t, err)
	return serveProxy(t, s, logs), plog
}

// keepAlive opens a connection, makes one request on it and leaves it open.
func keepAlive(t *testing.T, addr string) (net.Conn, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(c, "GET /k HTTP/1.1\r\nHost: a\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	return c, resp
}

func TestMaxConnsPerIP(t *testing.T) {
	b := startBackend(t, okHandler)
	cfg := oneService(b.addr)
	cfg.Clients.MaxConnsPerIP = 2
	p, plog := startProxyLogged(t, cfg)
	_, r1 := keepAlive(t, p.addr)
	c2, r2 := keepAlive(t, p.addr)
	require.Equal(t, 200, r1.StatusCode)
	require.Equal(t, 200, r2.StatusCode)
	_, r3 := keepAlive(t, p.addr)
	require.Equal(t, 429, r3.StatusCode)
	require.Equal(t, "client-conns", r3.Header.Get("X-Sluice-Shed"))
	require.Equal(t, "1", r3.Header.Get("Retry-After"))
	require.Contains(t, plog.String(), "over its connection limit")
	require.Contains(t, plog.String(), `"client_ip":"127.0.0.1"`)
	require.NoError(t, c2.Close())
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(c, "GET /k HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		return err == nil && resp.StatusCode == 200
	}, 5*time.Second, 10*time.Millisecond, "a closed connection makes room")
}

func TestMaxConns(t *testing.T) {
	b := startBackend(t, okHandler)
	cfg := oneService(b.addr)
	cfg.Clients.MaxConns = 2
	p, plog := startProxyLogged(t, cfg)
	keepAlive(t, p.addr)
	keepAlive(t, p.addr)
	_, r := keepAlive(t, p.addr)
	require.Equal(t, 503, r.StatusCode)
	require.Equal(t, "conn-limit", r.Header.Get("X-Sluice-Shed"))
	require.Contains(t, plog.String(), "connection limit reached")
}

func TestRatePerIP(t *testing.T) {
	b := startBackend(t, okHandler)
	cfg := oneService(b.addr)
	cfg.Clients.RatePerIP = 0.5 // one token every 2 s: the burst is all the test sees
	cfg.Clients.BurstPerIP = 3
	p, plog := startProxyLogged(t, cfg)
	for range 3 {
		resp, _ := get(t, p.addr, "/r")
		require.Equal(t, 200, resp.StatusCode)
	}
	resp, body := get(t, p.addr, "/r")
	require.Equal(t, 429, resp.StatusCode)
	require.Equal(t, "client-rate", resp.Header.Get("X-Sluice-Shed"))
	require.NotEmpty(t, resp.Header.Get("Retry-After"))
	require.True(t, strings.HasPrefix(body, "too many requests"), body)
	require.Contains(t, plog.String(), "over its request rate")
	require.Eventually(t, func() bool {
		return strings.Contains(p.logs.String(), `"shed":"client-rate"`)
	}, 5*time.Second, 10*time.Millisecond, "the refusal is in the access log")
}

// The limiter's bookkeeping: a known IP allocates nothing, and the
// remembered IPs stay bounded.
func TestRateLimiterBounded(t *testing.T) {
	r := newRateLimiter(ClientsConfig{RatePerIP: 1000}, zerolog.Nop())
	now := time.Now()
	ip := []byte("10.0.0.1")
	r.allow(ip, now)
	allocs := testing.AllocsPerRun(100, func() { r.allow(ip, now) })
	if !raceEnabled {
		require.Zero(t, allocs)
	}
	for i := range maxBuckets + 10 {
		r.allow([]byte(net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)).String()), now.Add(time.Duration(i)*time.Millisecond))
	}
	require.LessOrEqual(t, len(r.buckets), maxBuckets)
}
