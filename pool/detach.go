package pool

import (
	"bytes"
	"net"
	"time"
)

// Detach takes c out of the pool for good, for a connection that stops
// being HTTP (an upgrade to WebSocket or another protocol): it returns the
// connection, with its deadlines cleared, and the bytes already read from
// it past the response that switched protocols, which belong to the new
// protocol. The caller owns and closes the connection; it is never
// returned, and it no longer counts against MaxConns, since what it
// carries from now on is not the pool's traffic.
func (b *Backend) Detach(c *Conn) (net.Conn, []byte) {
	b.bytesOut.Add(uint64(c.written))
	b.bytesIn.Add(uint64(c.read))
	c.written, c.read = 0, 0
	var pending []byte
	if n := c.br.Buffered(); n > 0 {
		p, _ := c.br.Peek(n)
		pending = bytes.Clone(p)
	}
	_ = c.nc.SetDeadline(time.Time{})
	nc := c.nc
	c.nc = nil
	<-b.slots
	return nc, pending
}
