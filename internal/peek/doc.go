// Package peek tells whether the peer of a connection has gone, without
// reading from it and without waiting: the proxy's watch of clients whose
// requests are queued or at a backend, and the simulated origin's check
// that a client still waits for a stalled request, ask it.
package peek
