package admin

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An idle keep-alive client connection shows in /metrics as parked, and
// the buffers' bounds are reported.
func TestFrontMetrics(t *testing.T) {
	r := newRig(t, rigOptions{})
	c, err := net.Dial("tcp", r.addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(c, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	require.Equal(t, 200, resp.StatusCode)
	require.Eventually(t, func() bool {
		return strings.Contains(string(r.get("/metrics")), "sluice_client_connections_parked 1")
	}, 5*time.Second, 20*time.Millisecond, "the idle connection is parked")
	m := string(r.get("/metrics"))
	assert.Contains(t, m, `sluice_buffer_max_bytes{store="memory"} 6.7108864e+07`)
	assert.Contains(t, m, `sluice_buffer_bytes{store="disk"} 0`)
	assert.Contains(t, m, "sluice_buffers 0")
	assert.Contains(t, m, "sluice_buffer_spills_total 0")
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool {
		return strings.Contains(string(r.get("/metrics")), "sluice_client_connections_parked 0")
	}, 5*time.Second, 20*time.Millisecond, "a parked connection that hangs up is gone")
}
