package peek

import (
	"net"
	"syscall"
)

// Gone peeks one byte: 0 bytes and no error is EOF (the peer shut down or
// closed), a hard error is a reset; EAGAIN means still there, and data
// means still there (pipelined or body bytes). A connection without a raw
// socket (in-memory listeners in tests and benchmarks) is never gone.
func Gone(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true // closed already
	}
	return GoneRaw(rc)
}

// GoneRaw is Gone on the raw socket.
func GoneRaw(rc syscall.RawConn) bool {
	gone := false
	var buf [1]byte
	err := rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EAGAIN || err == syscall.EINTR:
		case err != nil:
			gone = true
		case n == 0:
			gone = true
		}
		return true // never wait for readability: this is a poll
	})
	return gone || err != nil
}
