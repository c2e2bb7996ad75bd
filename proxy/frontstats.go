package proxy

// FrontStats is what the client side holds now: parked idle connections
// and the buffers of responses and request bodies (spool.go).
type FrontStats struct {
	// ParkedConns are idle client connections waiting in the parker's
	// epoll set (idle.go).
	ParkedConns int
	// Buffers are the response and request-body buffers in use; of their
	// bytes, BufferMemory in memory and BufferDisk in temporary files
	// (BufferFiles of them), within BufferMemoryMax and BufferDiskMax.
	Buffers, BufferFiles           int64
	BufferMemory, BufferDisk       int64
	BufferMemoryMax, BufferDiskMax int64
	// BufferSpills counts the buffers that have gone past memory into a
	// temporary file since New.
	BufferSpills uint64
}

// Front reads the client side's figures: a few atomic loads and, for the
// parked connections, one lock.
func (s *Server) Front() FrontStats {
	var f FrontStats
	s.mu.Lock()
	idle := s.idle
	s.mu.Unlock()
	if idle != nil {
		f.ParkedConns = idle.count()
	}
	if b := s.spools; b != nil {
		f.Buffers, f.BufferFiles = b.spools.Load(), b.files.Load()
		f.BufferMemory, f.BufferDisk = b.mem.Load(), b.disk.Load()
		f.BufferMemoryMax, f.BufferDiskMax = b.memMax, b.diskMax
		f.BufferSpills = b.spilled.Load()
	}
	return f
}
