package proxy

import "testing"

// For the tests of package proxy_test, which may import packages that
// import proxy (admin): the in-memory rig and the allocation guard.

// RaceEnabled reports whether the tests run under the race detector.
const RaceEnabled = raceEnabled

// MemRig is the in-memory rig (memRig) seen from outside the package.
type MemRig struct{ r *memRig }

// NewMemRig starts the rig with the access log on; attach is called on
// the proxy before it serves.
func NewMemRig(tb testing.TB, attach func(*Server)) *MemRig {
	return &MemRig{newMemRigObserved(tb, true, nil, attach)}
}

func (m *MemRig) Stop()                         { m.r.stop() }
func (m *MemRig) RequireZeroAlloc(t *testing.T) { requireZeroAllocRequests(t, m.r) }

// RunParallelGets is runParallelGets through the rig.
func (m *MemRig) RunParallelGets(b *testing.B) { runParallelGets(b, m.r) }
