package pool

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// TLSConfig is how connections to an https:// backend are secured. It is
// ignored for http:// backends. The zero value verifies the backend's
// certificate against the system roots, for the host name of its URL.
type TLSConfig struct {
	// CAFile is a PEM file of the certificate authorities that may sign a
	// backend's certificate, instead of the system roots. Read when the
	// pool is built (start-up, and a reload that changes the pool).
	CAFile string `yaml:"ca_file"`
	// ServerName is the name sent in SNI and checked against the
	// backend's certificate. Default: the host of the backend's URL.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any certificate the backend presents.
	// Off by default, and only ever on when the configuration says so:
	// it leaves the connection open to anyone between Sluice and the
	// backend.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// NewTLSBackend is NewBackend for an https:// backend: every connection is
// a TLS client connection, verified as cfg.TLS says. The handshake is part
// of the dial, so ConnectTimeout bounds both together, and a pooled
// connection carries its session for every request it serves.
func NewTLSBackend(addr string, cfg Config) (*Backend, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("pool: backend address %q: %w", addr, err)
	}
	tc, err := cfg.TLS.clientConfig(host)
	if err != nil {
		return nil, err
	}
	return newBackend(addr, cfg, tc)
}

// clientConfig builds the client configuration for a backend whose URL
// names host.
func (c TLSConfig) clientConfig(host string) (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         host,
		InsecureSkipVerify: c.InsecureSkipVerify,
		// The proxy speaks HTTP/1.1 to backends; saying so keeps a
		// backend that prefers h2 from choosing it.
		NextProtos: []string{"http/1.1"},
	}
	if c.ServerName != "" {
		tc.ServerName = c.ServerName
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file: %s holds no PEM certificate", c.CAFile)
		}
		tc.RootCAs = roots
	}
	return tc, nil
}

// TLSConfig is the client configuration of an https:// backend, nil for a
// plain one. Health checks and probes of the backend use it too, so that
// they see the backend as requests do. It must not be modified.
func (b *Backend) TLSConfig() *tls.Config { return b.tls }

// Scheme is "https" for a backend reached over TLS, else "http".
func (b *Backend) Scheme() string {
	if b.tls != nil {
		return "https"
	}
	return "http"
}

// ErrHandshakeTimeout: the TLS handshake did not finish within
// ConnectTimeout.
var ErrHandshakeTimeout = errors.New("pool: TLS handshake timed out")

// dialTLS wraps dial so that each connection it opens is a TLS client
// connection whose handshake has finished, within what is left of timeout.
func dialTLS(dial func(string, time.Duration) (net.Conn, error), tc *tls.Config) func(string, time.Duration) (net.Conn, error) {
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		start := time.Now()
		nc, err := dial(addr, timeout)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithDeadline(context.Background(), start.Add(timeout))
		defer cancel()
		c := tls.Client(nc, tc)
		if err := c.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			if ctx.Err() != nil {
				return nil, ErrHandshakeTimeout
			}
			return nil, err
		}
		return c, nil
	}
}
