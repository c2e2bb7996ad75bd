package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"
)

// TLS termination: a second listener beside the plain one, whose
// connections are TLS server connections. The certificate for a
// connection is chosen by SNI among the configured ones (by the names
// each certificate holds), the first one being the default; the set is
// re-read from its files on every reload and swapped whole, so a
// handshake sees either the old set or the new one.

// TLSConfig is TLS termination. Zero means no TLS listener.
type TLSConfig struct {
	// Listen is the address (host:port) of the TLS listener. Default
	// "127.0.0.1:8443" when a certificate is configured; "" otherwise
	// (no TLS listener).
	Listen string `yaml:"listen"`
	// CertFile and KeyFile are the default certificate (PEM, the chain
	// after the leaf) and its key: for clients that send no SNI or a name
	// no certificate holds.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Certificates are more certificates, each chosen for the names it
	// holds (DNS names, "*.example.com" wildcards, IP addresses). Without
	// CertFile the first of them is the default.
	Certificates []CertificateConfig `yaml:"certificates"`
	// MinVersion is the oldest protocol accepted: "1.2" (default) or
	// "1.3". Cipher suites are Go's defaults, chosen by the server.
	MinVersion string `yaml:"min_version"`
}

// CertificateConfig is one certificate and its key, PEM files.
type CertificateConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Defaults for TLSConfig.
const (
	DefaultTLSListen     = "127.0.0.1:8443"
	DefaultTLSMinVersion = "1.2"
)

// Enabled reports whether a certificate is configured: then the TLS
// listener runs.
func (c TLSConfig) Enabled() bool { return c.CertFile != "" || len(c.Certificates) > 0 }

func (c TLSConfig) withDefaults() TLSConfig {
	if c.Enabled() && c.Listen == "" {
		c.Listen = DefaultTLSListen
	}
	setStr(&c.MinVersion, DefaultTLSMinVersion)
	return c
}

// validate checks the fields, not the files: those are read by New and
// Reload (loadCertSet), which refuse a configuration whose certificates do
// not load.
func (c TLSConfig) validate(plain string) error {
	switch {
	case c.CertFile != "" && c.KeyFile == "":
		return fmt.Errorf("tls.key_file: required with tls.cert_file")
	case c.KeyFile != "" && c.CertFile == "":
		return fmt.Errorf("tls.cert_file: required with tls.key_file")
	case c.Listen != "" && !c.Enabled():
		return fmt.Errorf("tls.listen: %q set but no certificate (tls.cert_file, tls.certificates)", c.Listen)
	}
	if c.Listen != "" {
		_, port, err := net.SplitHostPort(c.Listen)
		if err != nil {
			return fmt.Errorf("tls.listen: %q is not host:port", c.Listen)
		}
		if c.Listen == plain && port != "0" { // port 0: each gets a port of its own
			return fmt.Errorf("tls.listen: %q is also the plain listen address", c.Listen)
		}
	}
	for i, cc := range c.Certificates {
		if cc.CertFile == "" || cc.KeyFile == "" {
			return fmt.Errorf("tls.certificates[%d]: cert_file and key_file are both required", i)
		}
	}
	if _, err := tlsVersion(c.MinVersion); err != nil {
		return err
	}
	return nil
}

func tlsVersion(v string) (uint16, error) {
	switch v {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("tls.min_version: %q is not 1.2 or 1.3", v)
}

// certSet is the loaded certificates, immutable once built.
type certSet struct {
	def      *tls.Certificate
	byName   map[string]*tls.Certificate // lower-case DNS names and IP addresses
	wildcard map[string]*tls.Certificate // "*.example.com" under "example.com"
	min      uint16
}

// loadCertSet reads every certificate of c; nil, nil when TLS is off.
func loadCertSet(c TLSConfig) (*certSet, error) {
	if !c.Enabled() {
		return nil, nil
	}
	type named struct {
		field string
		CertificateConfig
	}
	var files []named
	if c.CertFile != "" {
		files = append(files, named{"tls.cert_file", CertificateConfig{CertFile: c.CertFile, KeyFile: c.KeyFile}})
	}
	for i, cc := range c.Certificates {
		files = append(files, named{fmt.Sprintf("tls.certificates[%d]", i), cc})
	}
	min, err := tlsVersion(c.MinVersion)
	if err != nil {
		return nil, err
	}
	cs := &certSet{byName: map[string]*tls.Certificate{}, wildcard: map[string]*tls.Certificate{}, min: min}
	for _, f := range files {
		field := f.field
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", field, f.CertFile, err)
		}
		leaf := cert.Leaf // parsed by LoadX509KeyPair since Go 1.23
		if leaf == nil {
			if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", field, f.CertFile, err)
			}
			cert.Leaf = leaf
		}
		p := &cert
		if cs.def == nil {
			cs.def = p
		}
		names := leaf.DNSNames
		if len(names) == 0 && leaf.Subject.CommonName != "" {
			names = []string{leaf.Subject.CommonName}
		}
		for _, n := range names {
			n = strings.ToLower(n)
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				setFirst(cs.wildcard, rest, p)
			} else {
				setFirst(cs.byName, n, p)
			}
		}
		for _, ip := range leaf.IPAddresses {
			setFirst(cs.byName, ip.String(), p)
		}
	}
	return cs, nil
}

// setFirst keeps the first certificate listed for a name.
func setFirst(m map[string]*tls.Certificate, name string, c *tls.Certificate) {
	if _, ok := m[name]; !ok {
		m[name] = c
	}
}

// pick chooses the certificate for a client hello: the exact name, then a
// wildcard one label up, then the default.
func (cs *certSet) pick(name string) *tls.Certificate {
	if name != "" {
		name = strings.ToLower(strings.TrimSuffix(name, "."))
		if c := cs.byName[name]; c != nil {
			return c
		}
		if _, parent, ok := strings.Cut(name, "."); ok {
			if c := cs.wildcard[parent]; c != nil {
				return c
			}
		}
	}
	return cs.def
}

// tlsState is the server's TLS side: the certificates in force and the
// configuration every handshake uses.
type tlsState struct {
	certs atomic.Pointer[certSet] // swapped whole by Reload
	conf  *tls.Config             // immutable after New; nil without TLS
	// handshake bounds a handshake, read and write: the client header
	// timeout, since a handshake is what comes before the headers.
	handshake time.Duration
}

// init loads the certificates of cfg for New.
func (t *tlsState) init(cfg Config) error {
	cs, err := loadCertSet(cfg.TLS)
	if err != nil || cs == nil {
		return err
	}
	t.certs.Store(cs)
	t.handshake = cfg.Timeouts.ClientHeader
	t.conf = &tls.Config{
		// The oldest version is fixed at start, as the listener is; the
		// certificates follow reloads.
		MinVersion: cs.min,
		// HTTP/1.1 only: a client that offers h2 must not take it.
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return t.certs.Load().pick(hello.ServerName), nil
		},
	}
	return nil
}

// reloadable loads the certificates of the next configuration, before
// anything of it is applied: a certificate that does not load refuses
// the reload, and the running set stays.
func (t *tlsState) reloadable(c TLSConfig) (*certSet, error) {
	if t.conf == nil || !c.Enabled() {
		return nil, nil // no TLS listener to serve them on, or none to serve
	}
	return loadCertSet(c)
}

// ServeTLS accepts TLS connections on ln (a TCP listener) until Shutdown,
// with the configured certificates. It fails at once when the
// configuration has none.
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.tls.conf == nil {
		_ = ln.Close()
		return errors.New("proxy: no TLS certificate configured")
	}
	return s.Serve(&tlsListener{Listener: ln, conf: s.tls.conf, timeout: s.tls.handshake})
}

// tlsListener makes each accepted connection a TLS server connection. The
// handshake is not done here, where it would hold up every other accept,
// but by fasthttp's connection goroutine before it reads the request.
type tlsListener struct {
	net.Listener
	conf    *tls.Config
	timeout time.Duration
}

func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tlsConn{Conn: tls.Server(c, l.conf), timeout: l.timeout}, nil
}

// tlsConn is a TLS server connection whose handshake is bounded in time.
// fasthttp arms only a read deadline for it, which leaves a client that
// stops reading in mid-handshake holding the connection: HandshakeContext
// bounds both directions. It is still a TLS connection to fasthttp
// (Handshake and ConnectionState), so ctx.IsTLS and X-Forwarded-Proto
// see it.
type tlsConn struct {
	*tls.Conn
	timeout time.Duration
}

func (c *tlsConn) Handshake() error {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	return c.HandshakeContext(ctx)
}
