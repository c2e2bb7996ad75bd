package proxy

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// The spool alone: a writer and a concurrent reader of random sizes, with
// bounds that force every path (memory, file, waiting, the pass-through
// when the budget is spent), must move the bytes intact and give back
// everything it took.
func TestSpoolIntegrity(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		memMax, fileMax       int64
		budgetMem, budgetDisk int64
		slowReader            bool
		// startAfter: the reader starts once the writer has written this
		// much (what fits without a reader), so that every path is taken
		// whatever the machine's timing.
		startAfter int
	}{
		{name: "memory only", memMax: 1 << 20, fileMax: 0, budgetMem: 1 << 30, budgetDisk: 1 << 30, startAfter: 512 << 10},
		{name: "memory then file", memMax: 64 << 10, fileMax: 1 << 30, budgetMem: 1 << 30, budgetDisk: 1 << 30, slowReader: true, startAfter: 1 << 20},
		{name: "file bound, then waits", memMax: 32 << 10, fileMax: 128 << 10, budgetMem: 1 << 30, budgetDisk: 1 << 30, slowReader: true, startAfter: 100 << 10},
		{name: "global memory spent", memMax: 1 << 20, fileMax: 1 << 30, budgetMem: 0, budgetDisk: 1 << 30, startAfter: 1 << 20},
		{name: "nothing at all: pass-through", memMax: 0, fileMax: 0, budgetMem: 0, budgetDisk: 0, slowReader: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, _ := bigBody(3<<20 + 12345)
			b := &spoolBudget{memMax: tc.budgetMem, diskMax: tc.budgetDisk, dir: t.TempDir()}
			var s spool
			s.start(b, tc.memMax, tc.fileMax, nil)
			got := make(chan []byte)
			start := make(chan struct{})
			go func() {
				<-start
				var out bytes.Buffer
				r := rand.New(rand.NewPCG(1, 2))
				buf := make([]byte, 40<<10)
				for {
					n, err := s.Read(buf[:1+r.IntN(len(buf))])
					out.Write(buf[:n])
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Error(err)
						break
					}
					if tc.slowReader && r.IntN(8) == 0 {
						for range 100 {
							_ = r.Int() // a moment's work between reads
						}
					}
				}
				got <- out.Bytes()
			}()
			r := rand.New(rand.NewPCG(3, 4))
			rest := data
			started := false
			for len(rest) > 0 {
				if !started && len(data)-len(rest) >= tc.startAfter {
					close(start)
					started = true
				}
				room, ok := s.room()
				require.True(t, ok)
				n := min(len(room), 1+r.IntN(20<<10), len(rest))
				copy(room, rest[:n])
				s.commit(n)
				rest = rest[n:]
			}
			if !started {
				close(start)
			}
			require.Nil(t, s.closeWrite(io.EOF))
			out := <-got
			require.True(t, bytes.Equal(data, out), "the bytes arrive intact and in order (%d of %d)", len(out), len(data))
			require.LessOrEqual(t, b.memPeak.Load(), tc.budgetMem)
			t.Logf("memory peak %d KiB, files %d", b.memPeak.Load()>>10, b.spilled.Load())
			if tc.fileMax > 0 && tc.budgetDisk > 0 && tc.memMax < int64(len(data)) {
				require.NotZero(t, b.spilled.Load(), "the writer, ahead of the reader, went on in a file")
			}
			s.closeRead(nil)
			s.free()
			require.Zero(t, b.mem.Load())
			require.Zero(t, b.disk.Load())
			require.Zero(t, b.files.Load())
			require.Zero(t, b.spools.Load())
			dirEmpty(t, b.dir)
		})
	}
}

// A reader that leaves stops a writer waiting for room.
func TestSpoolReaderLeaves(t *testing.T) {
	b := &spoolBudget{memMax: 1 << 20, diskMax: 0}
	var s spool
	s.start(b, 32<<10, 0, nil)
	for {
		room, ok := s.tryRoom()
		if !ok {
			break
		}
		s.commit(len(room))
	}
	done := make(chan bool)
	go func() {
		_, ok := s.room() // full: waits
		done <- ok
	}()
	s.closeRead(io.ErrClosedPipe)
	require.False(t, <-done)
	require.ErrorIs(t, s.closeWrite(io.EOF), io.ErrClosedPipe)
	s.free()
	require.Zero(t, b.mem.Load())
}
