package peek

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestClientGone(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	server, err := ln.Accept()
	require.NoError(t, err)
	defer server.Close()
	rc, err := server.(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	assert.False(t, GoneRaw(rc))
	assert.False(t, Gone(server))
	_, _ = client.Write([]byte("pipelined"))
	require.Eventually(t, func() bool { return !GoneRaw(rc) }, time.Second, time.Millisecond)
	client.Close()
	// The FIN arrives after the data, which is still unread: peeking sees
	// data, not EOF, so a client that pipelined then closed counts as
	// present until its bytes are consumed.
	buf := make([]byte, 9)
	_, err = io.ReadFull(server, buf)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return GoneRaw(rc) }, 5*time.Second, time.Millisecond)
	assert.True(t, Gone(server))
}
