package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/sluiceproxy/sluice/internal/testcert"
	"github.com/sluiceproxy/sluice/monitor"
	"github.com/sluiceproxy/sluice/pool"
)

// tlsProxy is a proxy serving both a plain and a TLS listener.
type tlsProxy struct {
	*Server
	addr, tlsAddr string
}

func startTLSProxy(t *testing.T, cfg Config) *tlsProxy {
	t.Helper()
	cfg.Log.AccessWriter = io.Discard
	s, err := New(cfg, zerolog.Nop())
	require.NoError(t, err)
	return serveBoth(t, s)
}

func mustCA(t *testing.T, name string) *testcert.CA {
	t.Helper()
	ca, err := testcert.NewCA(name)
	require.NoError(t, err)
	return ca
}

func mustLeaf(t *testing.T, ca *testcert.CA, names ...string) *testcert.Leaf {
	t.Helper()
	l, err := ca.Leaf(names...)
	require.NoError(t, err)
	return l
}

// tlsGet does one GET over TLS with sni, trusting roots, and returns the
// certificate the proxy presented, the response and its body.
func tlsGet(t *testing.T, addr, sni string, roots *x509.CertPool) (*x509.Certificate, *http.Response, string) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: sni, RootCAs: roots,
		InsecureSkipVerify: roots == nil, MinVersion: tls.VersionTLS12})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	host := sni
	if host == "" {
		host = "nosni.test"
	}
	_, err = io.WriteString(c, "GET /p HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return c.ConnectionState().PeerCertificates[0], resp, string(body)
}

// TestTLSTermination: the TLS listener picks the certificate by SNI (the
// default one for no SNI or an unknown name, a wildcard for a
// subdomain), speaks HTTP/1.1 only, refuses TLS 1.1, and tells the
// backend X-Forwarded-Proto: https, while the plain listener beside it
// says http.
func TestTLSTermination(t *testing.T) {
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.WriteString(string(ctx.Request.Header.Peek("X-Forwarded-Proto"))) //nolint:errcheck
	})
	ca := mustCA(t, "front CA")
	dir := t.TempDir()
	aCert, aKey, err := mustLeaf(t, ca, "a.test").WriteFiles(dir, "a")
	require.NoError(t, err)
	bCert, bKey, err := mustLeaf(t, ca, "b.test", "*.b.test").WriteFiles(dir, "b")
	require.NoError(t, err)
	cfg := oneService(be.addr)
	cfg.TLS = TLSConfig{CertFile: aCert, KeyFile: aKey,
		Certificates: []CertificateConfig{{CertFile: bCert, KeyFile: bKey}}}
	p := startTLSProxy(t, cfg)
	roots := ca.Pool()

	for _, tc := range []struct{ sni, want string }{
		{"a.test", "a.test"},
		{"b.test", "b.test"},
		{"B.Test", "b.test"},
		{"x.b.test", "b.test"},
		{"other.test", "a.test"},
		{"", "a.test"},
	} {
		cert, resp, body := tlsGet(t, p.tlsAddr, tc.sni, nil)
		assert.Equal(t, tc.want, cert.Subject.CommonName, "SNI %q", tc.sni)
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, "https", body, "X-Forwarded-Proto over TLS")
	}
	// Verified as a client would, for a name the certificate holds.
	_, resp, _ := tlsGet(t, p.tlsAddr, "b.test", roots)
	assert.Equal(t, 200, resp.StatusCode)

	_, body := get(t, p.addr, "/")
	assert.Equal(t, "http", body, "the plain listener beside it")

	c, err := tls.Dial("tcp", p.tlsAddr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}})
	require.NoError(t, err)
	assert.Equal(t, "http/1.1", c.ConnectionState().NegotiatedProtocol, "never h2")
	c.Close()

	_, err = tls.Dial("tcp", p.tlsAddr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11})
	assert.Error(t, err, "TLS 1.1 is refused")
}

// TestTLSReload: a reload re-reads the certificate files; a new one is
// served from the next handshake on, and one that does not load refuses
// the reload and leaves the running set in force.
func TestTLSReload(t *testing.T) {
	be := startBackend(t, okHandler)
	ca := mustCA(t, "front CA")
	dir := t.TempDir()
	first := mustLeaf(t, ca, "a.test")
	certFile, keyFile, err := first.WriteFiles(dir, "a")
	require.NoError(t, err)
	cfg := oneService(be.addr)
	cfg.TLS = TLSConfig{CertFile: certFile, KeyFile: keyFile}
	p := startTLSProxy(t, cfg)

	serial := func() string {
		cert, _, _ := tlsGet(t, p.tlsAddr, "a.test", ca.Pool())
		return cert.SerialNumber.String()
	}
	want := first.TLS.Leaf.SerialNumber.String()
	require.Equal(t, want, serial())

	second := mustLeaf(t, ca, "a.test")
	_, _, err = second.WriteFiles(dir, "a")
	require.NoError(t, err)
	assert.Equal(t, want, serial(), "nothing changes before the reload")
	require.NoError(t, p.Reload(cfg))
	want = second.TLS.Leaf.SerialNumber.String()
	assert.Equal(t, want, serial(), "the new certificate after the reload")

	require.NoError(t, os.WriteFile(keyFile, []byte("not a key"), 0o600))
	err = p.Reload(cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "tls.cert_file")
	assert.Equal(t, want, serial(), "a broken certificate leaves the running one")

	// A configuration that fails elsewhere does not swap the certificates
	// either, even when they load.
	third := mustLeaf(t, ca, "a.test")
	_, _, err = third.WriteFiles(dir, "a")
	require.NoError(t, err)
	bad := cfg
	bad.Routes = []RouteConfig{{Service: "nope"}}
	require.Error(t, p.Reload(bad))
	assert.Equal(t, want, serial())
}

// TestTLSHandshakeTimeout: a client that opens a TLS connection and sends
// nothing, or half a hello, is cut off after the client header timeout,
// and others are served meanwhile.
func TestTLSHandshakeTimeout(t *testing.T) {
	be := startBackend(t, okHandler)
	ca := mustCA(t, "front CA")
	certFile, keyFile, err := mustLeaf(t, ca, "a.test").WriteFiles(t.TempDir(), "a")
	require.NoError(t, err)
	cfg := oneService(be.addr)
	cfg.TLS = TLSConfig{CertFile: certFile, KeyFile: keyFile}
	cfg.Timeouts.ClientHeader = 200 * time.Millisecond
	p := startTLSProxy(t, cfg)

	for _, prefix := range []string{"", "\x16\x03\x01\x02\x00\x01"} {
		c, err := net.Dial("tcp", p.tlsAddr)
		require.NoError(t, err)
		_, err = io.WriteString(c, prefix)
		require.NoError(t, err)
		_, resp, _ := tlsGet(t, p.tlsAddr, "a.test", ca.Pool())
		assert.Equal(t, 200, resp.StatusCode, "served beside a stalled handshake")
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		_, err = io.ReadAll(c)
		var ne net.Error
		assert.False(t, errors.As(err, &ne) && ne.Timeout(), "the proxy closed the connection: %v", err)
		c.Close()
	}
}

// TestTLSConfigErrors: the TLS section is validated with the rest, and a
// certificate that does not load stops New.
func TestTLSConfigErrors(t *testing.T) {
	base := oneService("127.0.0.1:1")
	for _, tc := range []struct {
		tls  TLSConfig
		want string
	}{
		{TLSConfig{CertFile: "a.crt"}, "tls.key_file"},
		{TLSConfig{KeyFile: "a.key"}, "tls.cert_file"},
		{TLSConfig{Listen: "127.0.0.1:8443"}, "tls.listen"},
		{TLSConfig{CertFile: "a", KeyFile: "b", Listen: "nope"}, "tls.listen"},
		{TLSConfig{CertFile: "a", KeyFile: "b", Listen: DefaultListen}, "also the plain listen"},
		{TLSConfig{Certificates: []CertificateConfig{{CertFile: "a"}}}, "tls.certificates[0]"},
		{TLSConfig{CertFile: "a", KeyFile: "b", MinVersion: "1.1"}, "tls.min_version"},
	} {
		cfg := base
		cfg.TLS = tc.tls
		cfg = cfg.WithDefaults()
		err := cfg.Validate()
		if assert.Error(t, err, "%+v", tc.tls) {
			assert.Contains(t, err.Error(), tc.want)
		}
	}
	cfg := base
	cfg.TLS = TLSConfig{CertFile: "/nonexistent.crt", KeyFile: "/nonexistent.key"}
	_, err := New(cfg, zerolog.Nop())
	assert.ErrorContains(t, err, "tls.cert_file")

	s, err := New(base, zerolog.Nop())
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	assert.Error(t, s.ServeTLS(ln), "no certificate: no TLS listener")
	require.NoError(t, s.Shutdown(context.Background()))
}

// startTLSBackend is startBackend behind TLS with leaf's certificate.
// health counts the requests for /health that came over TLS.
func startTLSBackend(t *testing.T, leaf *testcert.Leaf, health *atomic.Int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &fasthttp.Server{Logger: quietLogger{}, Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/health" && ctx.IsTLS() {
			health.Add(1)
		}
		ctx.WriteString("tls:" + ctx.TLSConnectionState().ServerName) //nolint:errcheck
	}}
	tln := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{leaf.TLS}})
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(tln) }()
	t.Cleanup(func() { _ = srv.Shutdown(); <-done })
	return ln.Addr().String()
}

// TestHTTPSBackend: an https:// backend is reached over TLS, verified
// against the configured CA (for its URL's host or the configured server
// name, also sent as SNI); the wrong CA is a 502, insecure_skip_verify
// accepts it only when set; health checks go over TLS as well.
func TestHTTPSBackend(t *testing.T) {
	ca := mustCA(t, "backend CA")
	dir := t.TempDir()
	caFile, err := ca.WriteFile(dir, "ca")
	require.NoError(t, err)
	otherFile, err := mustCA(t, "other CA").WriteFile(dir, "other")
	require.NoError(t, err)
	var health atomic.Int64
	addr := startTLSBackend(t, mustLeaf(t, ca, "origin.test", "127.0.0.1"), &health)

	run := func(tc pool.TLSConfig) (int, string) {
		cfg := Config{
			Services: []ServiceConfig{{Name: "web", Backends: []string{"https://" + addr}}},
			Pool:     pool.Config{ResponseHeaderTimeout: 2 * time.Second, ConnectTimeout: time.Second, TLS: tc},
			Monitor:  monitor.Config{HealthCheck: monitor.HealthCheckConfig{Path: "/health", Interval: 20 * time.Millisecond}},
		}
		p := startProxy(t, cfg)
		resp, body := get(t, p.addr, "/")
		return resp.StatusCode, body
	}

	st, body := run(pool.TLSConfig{CAFile: caFile})
	assert.Equal(t, 200, st)
	assert.Equal(t, "tls:", body, "no SNI for an IP address; verified against its IP SAN")
	require.Eventually(t, func() bool { return health.Load() > 0 }, 5*time.Second, 10*time.Millisecond,
		"health checks over TLS")

	st, body = run(pool.TLSConfig{CAFile: caFile, ServerName: "origin.test"})
	assert.Equal(t, 200, st)
	assert.Equal(t, "tls:origin.test", body, "the configured server name is the SNI")

	st, _ = run(pool.TLSConfig{CAFile: otherFile})
	assert.Equal(t, 502, st, "a certificate the CA did not sign")
	st, _ = run(pool.TLSConfig{})
	assert.Equal(t, 502, st, "the system roots do not know the test CA")

	st, body = run(pool.TLSConfig{CAFile: otherFile, InsecureSkipVerify: true})
	assert.Equal(t, 200, st, "verification off, as configured")
	assert.True(t, strings.HasPrefix(body, "tls:"))

	_, err = New(Config{Services: []ServiceConfig{{Name: "web", Backends: []string{"https://" + addr}}},
		Pool: pool.Config{TLS: pool.TLSConfig{CAFile: dir + "/missing.crt"}}}, zerolog.Nop())
	assert.ErrorContains(t, err, "tls.ca_file")
}

// quietLogger drops a test server's messages (the handshakes refused on
// purpose).
type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}
