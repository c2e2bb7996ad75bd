package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluiceproxy/sluice/internal/peek"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// staleOrigin is a keep-alive origin that answers the first request on each
// connection and then lets its first connection die while the proxy has it
// parked: with reset unset it reads the next request whole and closes
// without an answer (the request reached the origin); with reset set it
// resets the connection (RST) when the test closes resetNow, before any
// next request (nothing can reach it). Later connections just answer.
type staleOrigin struct {
	*rawBackend
	reset    bool
	resetNow chan struct{}
	resetOK  chan struct{} // closed once the first connection was reset
	n        atomic.Int64

	mu      sync.Mutex
	arrived []string // "conn/seq METHOD path body" for every request read
}

func startStaleOrigin(t *testing.T, reset bool) *staleOrigin {
	o := &staleOrigin{reset: reset, resetNow: make(chan struct{}), resetOK: make(chan struct{})}
	o.rawBackend = startRawBackend(t, o.serve)
	return o
}

func (o *staleOrigin) serve(c net.Conn) {
	n := int(o.n.Add(1))
	br := bufio.NewReader(c)
	for seq := 1; ; seq++ {
		if !o.read(br, n, seq) {
			return
		}
		if n == 1 && seq == 2 {
			return // read, not answered: the connection closes
		}
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
			return
		}
		if n == 1 && o.reset {
			<-o.resetNow
			_ = c.(*net.TCPConn).SetLinger(0) // Close sends RST
			_ = c.Close()
			close(o.resetOK)
			return
		}
	}
}

func (o *staleOrigin) read(br *bufio.Reader, conn, seq int) bool {
	req, err := http.ReadRequest(br)
	if err != nil {
		return false
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return false
	}
	b := string(body)
	if len(b) > 16 {
		b = fmt.Sprintf("<%d bytes>", len(b))
	}
	o.mu.Lock()
	o.arrived = append(o.arrived, strings.TrimSpace(fmt.Sprintf("%d/%d %s %s %s", conn, seq, req.Method, req.URL.Path, b)))
	o.mu.Unlock()
	return true
}

func (o *staleOrigin) arrivals() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.arrived...)
}

// TestStaleReusedConnection is the stale-pooled-connection case, rule by
// rule (exchange.attempt): a request that fails on a reused connection
// before any response byte goes out again on a fresh connection only when
// re-sending is safe, that is nothing of a streamed body was taken from the
// client, and the method is idempotent or not one byte reached the socket.
// The origin's record of arrivals, by connection and position on it, shows
// what was sent where; the first connection always carries /warm first, so
// the request under test rides a reused connection.
func TestStaleReusedConnection(t *testing.T) {
	post := "POST /pay HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
	getReq := "GET /page HTTP/1.1\r\nHost: a\r\n\r\n"
	put := "PUT /doc HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody"
	// Larger than what is buffered (prefetchBytes): streamed, not replayable.
	bigPut := fmt.Sprintf("PUT /big HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s",
		3*prefetchBytes, strings.Repeat("b", 3*prefetchBytes))
	big := fmt.Sprintf("<%d bytes>", 3*prefetchBytes)

	for _, tc := range []struct {
		name   string
		reset  bool // the origin resets the parked connection: the write fails, nothing sent
		raw    string
		status int
		want   []string
	}{
		{"POST that reached a dead connection is not re-sent", false, post, 502,
			[]string{"1/1 GET /warm", "1/2 POST /pay hi"}},
		{"GET that reached a dead connection is re-sent once, on a fresh one", false, getReq, 200,
			[]string{"1/1 GET /warm", "1/2 GET /page", "2/1 GET /page"}},
		{"PUT with a buffered body is re-sent whole", false, put, 200,
			[]string{"1/1 GET /warm", "1/2 PUT /doc body", "2/1 PUT /doc body"}},
		{"streamed PUT is not re-sent", false, bigPut, 502,
			[]string{"1/1 GET /warm", "1/2 PUT /big " + big}},
		{"POST on a reset connection goes out on a fresh one", true, post, 200,
			[]string{"1/1 GET /warm", "2/1 POST /pay hi"}},
		{"GET on a reset connection goes out on a fresh one", true, getReq, 200,
			[]string{"1/1 GET /warm", "2/1 GET /page"}},
		// Nothing reached the origin, but part of the body was taken from
		// the client to be written, and it cannot be had again.
		{"streamed PUT on a reset connection is not re-sent", true, bigPut, 502,
			[]string{"1/1 GET /warm"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := startStaleOrigin(t, tc.reset)
			var mu sync.Mutex
			var dialed []net.Conn // the proxy's side of each backend connection
			cfg := oneService(o.addr)
			cfg.Pool.Dial = func(addr string, timeout time.Duration) (net.Conn, error) {
				c, err := net.DialTimeout("tcp", addr, timeout)
				if err == nil {
					mu.Lock()
					dialed = append(dialed, c)
					mu.Unlock()
				}
				return c, err
			}
			p := startProxy(t, cfg)
			backend := poolOf(p.Server, cfg.Services[0].Backends[0])

			resp, body := get(t, p.addr, "/warm")
			require.Equal(t, 200, resp.StatusCode)
			require.Equal(t, "ok", body)
			require.Eventually(t, func() bool { return backend.Stats().Idle == 1 }, 5*time.Second, time.Millisecond,
				"the first connection is parked for reuse")
			if tc.reset {
				close(o.resetNow)
				<-o.resetOK
				mu.Lock()
				first := dialed[0]
				mu.Unlock()
				// The kernel has taken in the RST before the request is
				// written, so the write fails rather than racing it.
				require.Eventually(t, func() bool { return peek.Gone(first) }, 5*time.Second, time.Millisecond)
			}

			resp, body = roundTrip(t, p.addr, tc.raw)
			assert.Equal(t, tc.status, resp.StatusCode, body)
			if tc.status == 200 {
				assert.Equal(t, "ok", body)
			} else {
				assert.Contains(t, body, "bad gateway")
			}
			assert.Equal(t, tc.want, o.arrivals())
			// Counted by the pool before the client's answer: a re-send that
			// never became a complete request at the origin still shows.
			st := backend.Stats()
			assert.EqualValues(t, connsIn(tc.want), st.Dials, "connections opened to the origin")
			assert.Zero(t, st.InFlight)
		})
	}
}

// connsIn is the number of origin connections a list of arrivals names.
func connsIn(arrivals []string) int {
	n := 0
	for _, a := range arrivals {
		var c int
		if _, err := fmt.Sscanf(a, "%d/", &c); err == nil && c > n {
			n = c
		}
	}
	return n
}

// TestAllParkedConnectionsStale: an origin that dropped every idle
// connection (a restart, its keep-alive timeout) leaves the pool full of
// dead ones. The first request finds one dead and must go out on a new
// connection, not on the next parked corpse: a GET to a single backend
// that is up gets its 200, however many connections were parked.
func TestAllParkedConnectionsStale(t *testing.T) {
	for _, parked := range []int{1, 3, 8} {
		t.Run(fmt.Sprintf("%d parked", parked), func(t *testing.T) {
			var mu sync.Mutex
			var conns []net.Conn
			b := startRawBackend(t, func(c net.Conn) {
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
						return
					}
				}
			})
			cfg := oneService(b.addr)
			cfg.Pool.WarmConns = parked
			p := startProxy(t, cfg)
			require.Eventually(t, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(conns) == parked
			}, 5*time.Second, time.Millisecond, "warm connections dialed")

			// The origin drops them all.
			mu.Lock()
			for _, c := range conns {
				_ = c.Close()
			}
			mu.Unlock()
			time.Sleep(20 * time.Millisecond) // the FINs arrive

			resp, body := get(t, p.addr, "/after-restart")
			assert.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, "ok", body)
		})
	}
}
