package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
)

// Request IDs are a per-process random prefix and a counter: unique across
// restarts and instances with overwhelming probability, ordered within one
// process, and built by appending into a reused buffer, without allocating
// or touching the random source per request.
var (
	reqIDPrefix  = makeReqIDPrefix()
	reqIDCounter atomic.Uint64
)

func makeReqIDPrefix() []byte {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	p := make([]byte, 0, 13)
	p = hex.AppendEncode(p, b[:])
	return append(p, '-')
}

// newRequestID appends a fresh ID to dst.
func newRequestID(dst []byte) []byte {
	dst = append(dst, reqIDPrefix...)
	return strconv.AppendUint(dst, reqIDCounter.Add(1), 36)
}
