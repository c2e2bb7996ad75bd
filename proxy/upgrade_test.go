package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/sluiceproxy/sluice/pool"
	"github.com/sluiceproxy/sluice/scheduler"
)

// wsBackend is a WebSocket echo origin (net/http and gorilla's Upgrader)
// on 127.0.0.1, over TLS when cert is given. It records the upgrade
// requests' headers and counts the connections it still holds.
type wsBackend struct {
	addr string
	open atomic.Int64
	mu   sync.Mutex
	hdr  http.Header
}

func startWSBackend(t *testing.T, cert *tls.Certificate) *wsBackend {
	t.Helper()
	wb := &wsBackend{}
	up := websocket.Upgrader{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/plain" {
			_, _ = io.WriteString(w, "plain")
			return
		}
		wb.mu.Lock()
		wb.hdr = r.Header.Clone()
		wb.mu.Unlock()
		c, err := up.Upgrade(w, r, http.Header{"X-Origin": {"echo"}})
		if err != nil {
			return
		}
		wb.open.Add(1)
		defer wb.open.Add(-1)
		defer c.Close()
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if string(msg) == "bye" {
				_ = c.WriteControl(websocket.CloseMessage,
					websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
				return
			}
			if err := c.WriteMessage(mt, msg); err != nil {
				return
			}
		}
	}), ErrorLog: nil}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	if cert != nil {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*cert}})
	}
	wb.addr = ln.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = srv.Close() // hijacked connections are the handlers' own
		<-done
	})
	return wb
}

func (wb *wsBackend) header() http.Header {
	wb.mu.Lock()
	defer wb.mu.Unlock()
	return wb.hdr
}

func dialWS(t *testing.T, url string, tc *tls.Config) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: tc}
	c, resp, err := d.Dial(url, http.Header{"X-Client": {"gorilla"}})
	require.NoError(t, err)
	assert.Equal(t, 101, resp.StatusCode)
	assert.Equal(t, "echo", resp.Header.Get("X-Origin"), "the backend's 101 fields")
	assert.NotEmpty(t, resp.Header.Get("X-Request-Id"))
	assert.Equal(t, "1.1 sluice", resp.Header.Get("Via"))
	t.Cleanup(func() { c.Close() })
	return c
}

func echo(t *testing.T, c *websocket.Conn, mt int, msg []byte) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	require.NoError(t, c.SetWriteDeadline(time.Now().Add(10*time.Second)))
	require.NoError(t, c.WriteMessage(mt, msg))
	gt, got, err := c.ReadMessage()
	require.NoError(t, err)
	assert.Equal(t, mt, gt)
	assert.Equal(t, msg, got)
}

// TestWebSocketEcho: a WebSocket through the proxy with a real client
// library, over plain HTTP to a plain backend and over TLS to an https://
// one; messages small and large go both ways, the upgrade reaches the
// backend with its fields and the forwarding headers, and the request is
// reported as a 101 and a success.
func TestWebSocketEcho(t *testing.T) {
	ca := mustCA(t, "CA")
	beLeaf := mustLeaf(t, ca, "127.0.0.1")
	dir := t.TempDir()
	caFile, err := ca.WriteFile(dir, "ca")
	require.NoError(t, err)
	certFile, keyFile, err := mustLeaf(t, ca, "ws.test").WriteFiles(dir, "front")
	require.NoError(t, err)

	big := make([]byte, 200<<10)
	for i := range big {
		big[i] = byte(i)
	}
	for _, tc := range []struct {
		name   string
		secure bool
	}{{"plain", false}, {"tls", true}} {
		t.Run(tc.name, func(t *testing.T) {
			var be *wsBackend
			scheme := "http://"
			if tc.secure {
				be, scheme = startWSBackend(t, &beLeaf.TLS), "https://"
			} else {
				be = startWSBackend(t, nil)
			}
			cfg := Config{
				Services: []ServiceConfig{{Name: "web", Backends: []string{scheme + be.addr}}},
				Pool:     pool.Config{ResponseHeaderTimeout: 2 * time.Second, ConnectTimeout: time.Second, TLS: pool.TLSConfig{CAFile: caFile}},
				TLS:      TLSConfig{CertFile: certFile, KeyFile: keyFile},
			}
			rec := &recorder{}
			cfg.Log.AccessWriter = io.Discard
			s, err := New(cfg, zerolog.Nop())
			require.NoError(t, err)
			s.AddObserver(rec)
			p := serveBoth(t, s)
			url := "ws://" + p.addr + "/ws?x=1"
			var tcc *tls.Config
			if tc.secure {
				url, tcc = "wss://"+p.tlsAddr+"/ws?x=1", &tls.Config{RootCAs: ca.Pool(), ServerName: "ws.test"}
			}
			c := dialWS(t, url, tcc)
			echo(t, c, websocket.TextMessage, []byte("hello"))
			echo(t, c, websocket.BinaryMessage, big)
			echo(t, c, websocket.TextMessage, []byte("again"))

			h := be.header()
			assert.Equal(t, "websocket", h.Get("Upgrade"))
			assert.Equal(t, "Upgrade", h.Get("Connection"))
			assert.NotEmpty(t, h.Get("Sec-Websocket-Key"))
			assert.Equal(t, "gorilla", h.Get("X-Client"))
			assert.Equal(t, "127.0.0.1", h.Get("X-Forwarded-For"))
			want := "http"
			if tc.secure {
				want = "https"
			}
			assert.Equal(t, want, h.Get("X-Forwarded-Proto"))
			assert.Equal(t, 1, s.Tunnels())

			recs := rec.waitFor(t, 1)
			assert.Equal(t, 101, recs[0].Status)
			assert.Equal(t, scheduler.Success, recs[0].Outcome, "the ticket ended with the 101")
		})
	}
}

// serveBoth serves s on a plain listener and, when it has certificates,
// a TLS one.
func serveBoth(t *testing.T, s *Server) *tlsProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 2)
	go func() { done <- s.Serve(ln) }()
	go func() { done <- s.ServeTLS(tln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-done
		<-done
	})
	return &tlsProxy{Server: s, addr: ln.Addr().String(), tlsAddr: tln.Addr().String()}
}

// switchingBackend answers every request with a 101 to "echo" and then
// echoes bytes until the proxy closes; conns counts the connections it
// still holds.
func switchingBackend(t *testing.T, conns *atomic.Int64, closeAfter string) *rawBackend {
	return startRawBackend(t, func(c net.Conn) {
		conns.Add(1)
		defer conns.Add(-1)
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		if _, err := io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nhi!"); err != nil {
			return
		}
		buf := make([]byte, 1024)
		for {
			n, err := br.Read(buf)
			if n > 0 {
				if closeAfter != "" && strings.Contains(string(buf[:n]), closeAfter) {
					return
				}
				if _, err := c.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
}

const upgradeReq = "GET /t HTTP/1.1\r\nHost: example.test\r\nConnection: keep-alive, Upgrade\r\nUpgrade: echo\r\n\r\n"

// openTunnel sends an upgrade request on a raw connection and reads the
// 101 and the backend's first bytes.
func openTunnel(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(c, upgradeReq)
	require.NoError(t, err)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, 101, resp.StatusCode)
	assert.Equal(t, "echo", resp.Header.Get("Upgrade"))
	assert.Equal(t, "Upgrade", resp.Header.Get("Connection"))
	hi := make([]byte, 3)
	_, err = io.ReadFull(br, hi)
	require.NoError(t, err)
	assert.Equal(t, "hi!", string(hi), "bytes the backend sent right after its 101")
	return c, br
}

func readN(t *testing.T, br *bufio.Reader, n int) string {
	t.Helper()
	b := make([]byte, n)
	_, err := io.ReadFull(br, b)
	require.NoError(t, err)
	return string(b)
}

// TestTunnelCloses: the tunnel ends when either side closes, the other
// side's connection closing with it.
func TestTunnelCloses(t *testing.T) {
	var conns atomic.Int64
	be := switchingBackend(t, &conns, "quit")
	p := startProxy(t, oneService(be.addr))

	// The client closes: the backend's connection goes.
	c, br := openTunnel(t, p.addr)
	_, err := io.WriteString(c, "ping")
	require.NoError(t, err)
	assert.Equal(t, "ping", readN(t, br, 4))
	assert.Equal(t, 1, p.Tunnels())
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return conns.Load() == 0 && p.Tunnels() == 0 },
		5*time.Second, 5*time.Millisecond, "the backend connection is closed with the client's")

	// The backend closes: the client's connection goes.
	c, br = openTunnel(t, p.addr)
	_, err = io.WriteString(c, "quit")
	require.NoError(t, err)
	_, err = br.ReadByte()
	assert.ErrorIs(t, err, io.EOF, "the client connection is closed with the backend's")
	require.Eventually(t, func() bool { return p.Tunnels() == 0 }, 5*time.Second, 5*time.Millisecond)

	// The tunnel's backend connection never went back to the pool.
	snap := p.Snapshot()
	require.Len(t, snap, 1)
	assert.Zero(t, snap[0].Backends[0].Pool.Idle, "detached, never parked")
	assert.Zero(t, snap[0].Backends[0].Pool.Open, "detached connections hold no pool slot")
}

// TestTunnelFreesLimit: a tunnel holds no admission slot: with a limit of
// one request per backend, requests pass while tunnels are open, and the
// scheduler counts nothing in flight.
func TestTunnelFreesLimit(t *testing.T) {
	var conns atomic.Int64
	tunnelBE := switchingBackend(t, &conns, "")
	cfg := oneService(tunnelBE.addr)
	require.NoError(t, cfg.Queue.Limit.UnmarshalText([]byte("static:1")))
	cfg.Queue.QueueTimeout = 200 * time.Millisecond
	p := startProxy(t, cfg)

	for range 3 {
		c, br := openTunnel(t, p.addr)
		_, err := io.WriteString(c, "x")
		require.NoError(t, err)
		assert.Equal(t, "x", readN(t, br, 1))
	}
	assert.Equal(t, 3, p.Tunnels())
	snap := p.Snapshot()
	require.Len(t, snap, 1)
	st := snap[0].Backends[0].Sched
	assert.Zero(t, st.Inflight, "tunnels are not in flight")
	assert.Zero(t, st.Parked)
	assert.Zero(t, snap[0].Backends[0].Pool.InFlight)
	// Another upgrade still gets the one slot.
	openTunnel(t, p.addr)
	assert.Equal(t, 4, p.Tunnels())
}

// TestTunnelShutdown: Shutdown waits for tunnels until its context ends,
// then closes them, and returns.
func TestTunnelShutdown(t *testing.T) {
	var conns atomic.Int64
	be := switchingBackend(t, &conns, "")
	cfg := oneService(be.addr)
	cfg.Log.AccessWriter = io.Discard
	s, err := New(cfg, zerolog.Nop())
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	c, br := openTunnel(t, ln.Addr().String())

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
	<-served
	_, err = br.ReadByte()
	assert.Error(t, err, "the tunnel was closed")
	_ = c.Close()
	assert.Zero(t, s.Tunnels())
	require.Eventually(t, func() bool { return conns.Load() == 0 }, 5*time.Second, 5*time.Millisecond)
}

// TestTunnelIdle: a tunnel nothing moves on closes after tunnel_idle; one
// busy in a single direction stays open.
func TestTunnelIdle(t *testing.T) {
	var conns atomic.Int64
	be := switchingBackend(t, &conns, "")
	cfg := oneService(be.addr)
	cfg.Timeouts.TunnelIdle = time.Second
	p := startProxy(t, cfg)

	c, br := openTunnel(t, p.addr)
	// One byte every 50 ms for 1.5 s, the echo read only at the end: the
	// client's side reads nothing meanwhile, its writes keep the tunnel up.
	for range 30 {
		_, err := io.WriteString(c, "k")
		require.NoError(t, err)
		time.Sleep(50 * time.Millisecond)
	}
	assert.Equal(t, strings.Repeat("k", 30), readN(t, br, 30))

	start := time.Now()
	_, err := br.ReadByte()
	assert.ErrorIs(t, err, io.EOF, "closed when idle")
	assert.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond)
}

// TestUpgradeNotHonoured: an upgrade request the backend answers with a
// normal response gets that response, and the connection stays HTTP; an
// HTTP/1.0 request's Upgrade and one with a streamed body are ignored
// (RFC 9110 7.8); a 101 that names no protocol is a 502.
func TestUpgradeNotHonoured(t *testing.T) {
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(426)
		ctx.Response.Header.Set("Upgrade", "other")
		ctx.WriteString("upgrade:" + string(ctx.Request.Header.Peek("Upgrade"))) //nolint:errcheck
	})
	p := startProxy(t, oneService(be.addr))

	c, err := net.Dial("tcp", p.addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	br := bufio.NewReader(c)
	for range 2 { // twice on one connection: it stayed HTTP
		_, err = io.WriteString(c, upgradeReq)
		require.NoError(t, err)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		assert.Equal(t, 426, resp.StatusCode)
		assert.Equal(t, "upgrade:echo", string(body), "forwarded with Upgrade")
		assert.Empty(t, resp.Header.Get("Upgrade"), "hop-by-hop in a normal response")
	}
	assert.Zero(t, p.Tunnels())

	for _, raw := range []string{
		"GET /t HTTP/1.0\r\nHost: example.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
		"POST /t HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"GET /t HTTP/1.1\r\nHost: example.test\r\nUpgrade: echo\r\n\r\n", // not named in Connection
	} {
		resp, body := roundTrip(t, p.addr, raw)
		assert.Equal(t, 426, resp.StatusCode)
		assert.Equal(t, "upgrade:", body, "no Upgrade forwarded for %q", raw)
	}

	bad := startRawBackend(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
			_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\n\r\n")
		}
	})
	p2 := startProxy(t, oneService(bad.addr))
	resp, _ := roundTrip(t, p2.addr, upgradeReq)
	assert.Equal(t, 502, resp.StatusCode)
}
