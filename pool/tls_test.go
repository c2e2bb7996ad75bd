package pool

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluiceproxy/sluice/internal/testcert"
)

// tlsEcho is a TLS server on 127.0.0.1 presenting leaf: each connection
// echoes one line back, prefixed with the SNI name it was reached by.
func tlsEcho(t *testing.T, leaf *testcert.Leaf) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tl := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{leaf.TLS}})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				tc := c.(*tls.Conn)
				if tc.Handshake() != nil {
					return
				}
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return
				}
				_, _ = io.WriteString(c, tc.ConnectionState().ServerName+" "+line)
			}(c)
		}
	}()
	t.Cleanup(func() { tl.Close(); <-done })
	return ln.Addr().String()
}

func newCA(t *testing.T) *testcert.CA {
	ca, err := testcert.NewCA("test CA")
	require.NoError(t, err)
	return ca
}

// TestTLSBackend: connections to an https:// backend are TLS, verified
// against the configured CA for the configured server name; the wrong CA,
// the wrong name and a file that is no CA fail, and insecure_skip_verify
// accepts anything, but only when set.
func TestTLSBackend(t *testing.T) {
	ca := newCA(t)
	leaf, err := ca.Leaf("origin.test")
	require.NoError(t, err)
	addr := tlsEcho(t, leaf)
	dir := t.TempDir()
	caFile, err := ca.WriteFile(dir, "ca")
	require.NoError(t, err)
	otherFile, err := newCA(t).WriteFile(dir, "other")
	require.NoError(t, err)

	roundTrip := func(cfg Config) (string, error) {
		b, err := NewTLSBackend(addr, cfg)
		if err != nil {
			return "", err
		}
		defer b.Close()
		c, err := b.Acquire(time.Time{})
		if err != nil {
			return "", err
		}
		defer b.Release(c, false)
		assert.Equal(t, "https", b.Scheme())
		if _, err := c.Writer().WriteString("ping\n"); err != nil {
			return "", err
		}
		if err := c.Writer().Flush(); err != nil {
			return "", err
		}
		return c.Reader().ReadString('\n')
	}

	got, err := roundTrip(Config{TLS: TLSConfig{CAFile: caFile, ServerName: "origin.test"}})
	require.NoError(t, err)
	assert.Equal(t, "origin.test ping\n", got, "SNI is the configured server name")

	_, err = roundTrip(Config{TLS: TLSConfig{CAFile: otherFile, ServerName: "origin.test"}})
	var de *DialError
	require.ErrorAs(t, err, &de, "a certificate from another CA")
	var unknown x509.UnknownAuthorityError
	assert.True(t, errors.As(err, &unknown), "%v", err)

	_, err = roundTrip(Config{TLS: TLSConfig{CAFile: caFile}})
	require.Error(t, err, "the URL's host (127.0.0.1) is not a name the certificate holds")
	var host x509.HostnameError
	assert.True(t, errors.As(err, &host), "%v", err)

	_, err = roundTrip(Config{TLS: TLSConfig{ServerName: "origin.test"}})
	require.Error(t, err, "the system roots do not know the test CA")

	got, err = roundTrip(Config{TLS: TLSConfig{InsecureSkipVerify: true}})
	require.NoError(t, err)
	assert.Equal(t, " ping\n", got, "no SNI for an IP address")

	_, keyFile, err := leaf.WriteFiles(dir, "leaf")
	require.NoError(t, err)
	_, err = NewTLSBackend(addr, Config{TLS: TLSConfig{CAFile: keyFile}})
	assert.ErrorContains(t, err, "holds no PEM certificate")
	_, err = NewTLSBackend(addr, Config{TLS: TLSConfig{CAFile: dir + "/missing.crt"}})
	assert.ErrorContains(t, err, "tls.ca_file")

	plain, err := NewBackend(addr, Config{})
	require.NoError(t, err)
	defer plain.Close()
	assert.Nil(t, plain.TLSConfig())
	assert.Equal(t, "http", plain.Scheme())
}

// TestTLSHandshakeTimeout: a backend that accepts but never answers the
// handshake fails the dial within ConnectTimeout.
func TestTLSHandshakeTimeout(t *testing.T) {
	addr, _ := listener(t) // accepts, says nothing
	b, err := NewTLSBackend(addr, Config{ConnectTimeout: 100 * time.Millisecond, TLS: TLSConfig{InsecureSkipVerify: true}})
	require.NoError(t, err)
	defer b.Close()
	_, err = b.Acquire(time.Time{})
	require.ErrorIs(t, err, ErrHandshakeTimeout)
	assert.Equal(t, 0, b.Stats().Open, "the slot is given back")
}
