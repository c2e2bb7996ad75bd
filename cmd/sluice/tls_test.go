package main

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluiceproxy/sluice/internal/testcert"
)

// TestRunTLS: --tls-cert and --tls-key open a TLS listener beside the
// plain one; SIGHUP re-reads the certificate, and one that no longer
// loads is refused with the running one kept.
func TestRunTLS(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get("X-Forwarded-Proto"))
	}))
	defer origin.Close()
	ca, err := testcert.NewCA("CA")
	require.NoError(t, err)
	first, err := ca.Leaf("site.test")
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile, err := first.WriteFiles(dir, "site")
	require.NoError(t, err)

	r := launch(t, "--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile,
		"--backend", origin.URL, "--log-format", "json")
	line := r.waitLog("listening")
	var entry struct {
		Addr    string `json:"addr"`
		TLSAddr string `json:"tls_addr"`
	}
	require.NoError(t, json.Unmarshal([]byte(line), &entry))
	require.NotEmpty(t, entry.TLSAddr)

	roots := ca.Pool()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "site.test"}, DisableKeepAlives: true}}
	serial := func() string {
		resp, err := client.Get("https://" + entry.TLSAddr + "/")
		require.NoError(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		assert.Equal(t, "https", string(body))
		return resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	assert.Equal(t, first.TLS.Leaf.SerialNumber.String(), serial())
	resp, err := http.Get("http://" + entry.Addr + "/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "http", string(body), "the plain listener beside it")

	second, err := ca.Leaf("site.test")
	require.NoError(t, err)
	_, _, err = second.WriteFiles(dir, "site")
	require.NoError(t, err)
	r.signals <- syscall.SIGHUP
	r.waitLog("reloaded")
	assert.Equal(t, second.TLS.Leaf.SerialNumber.String(), serial())

	third, err := ca.Leaf("site.test")
	require.NoError(t, err)
	third.KeyPEM = []byte("broken")
	_, _, err = third.WriteFiles(dir, "site")
	require.NoError(t, err)
	r.signals <- syscall.SIGHUP
	r.waitLog("reload refused: the running configuration stays in force")
	assert.Equal(t, second.TLS.Leaf.SerialNumber.String(), serial())

	r.signals <- syscall.SIGTERM
	assert.Equal(t, exitOK, r.exitCode())
}
