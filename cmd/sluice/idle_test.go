package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// idleConns is how many idle keep-alive connections TestE2EIdleConnections
// opens.
func idleConns(t *testing.T) int { return envInt(t, "SLUICE_IDLE_CONNS", 2000) }

// idleDialers is how many goroutines open TestE2EIdleConnections'
// connections at once. More of them put more connections between their
// request and their park at the same moment.
func idleDialers(t *testing.T) int { return envInt(t, "SLUICE_IDLE_DIALERS", 32) }

// procStatus reads a "kB" field of /proc/PID/status (VmRSS, VmHWM) in bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

func openFDs(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}

// raiseNoFile lifts the soft open-file limit to the hard one (the sluice
// process inherits it), or skips when even that is too low for n.
func raiseNoFile(t *testing.T, n int) {
	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	need := uint64(n) + 512
	if lim.Cur < need && lim.Max >= need {
		old := lim
		lim.Cur = lim.Max
		require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
		t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
	}
	if lim.Cur < need {
		t.Skipf("%d idle connections need %d open files, and the hard limit (ulimit -Hn) is %d", n, need, lim.Max)
	}
}

// Idle keep-alive clients must cost little and refuse no one: n
// connections that each made one request and stay open, then a client
// that keeps making requests. The figures (Sluice's RSS and descriptors)
// are logged for docs/benchmarks.md (SLUICE_IDLE_CONNS=10000 for the
// issue's case).
func TestE2EIdleConnections(t *testing.T) {
	needBinary(t)
	n := idleConns(t)
	raiseNoFile(t, n)
	var hits atomic.Int64
	be := backend(t, "a", &hits)
	p := startSluice(t, "--listen", "127.0.0.1:0", "--backend", be.URL, "--access-log=false")
	pid := p.cmd.Process.Pid
	c := newClient(t)
	st, _ := get(t, c, "http://"+p.addr+"/warm", nil, "")
	require.Equal(t, 200, st)
	rss0, fds0 := procStatus(t, pid, "VmRSS"), openFDs(pid)

	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	var failed atomic.Int64
	work := make(chan int)
	for range idleDialers(t) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				cn, err := net.Dial("tcp", p.addr)
				if err != nil {
					failed.Add(1)
					continue
				}
				conns[i] = cn
				if _, err := fmt.Fprintf(cn, "GET /idle/%d HTTP/1.1\r\nHost: a\r\n\r\n", i); err != nil {
					failed.Add(1)
					continue
				}
				resp, err := http.ReadResponse(bufio.NewReaderSize(cn, 512), nil)
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
					continue
				}
				resp.Body.Close()
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	t.Cleanup(func() {
		for _, cn := range conns {
			if cn != nil {
				cn.Close()
			}
		}
	})
	require.Zero(t, failed.Load(), "every idle client's request was answered")

	// Beside them, a client that keeps asking is never refused.
	for i := range 100 {
		st, _ := get(t, c, fmt.Sprintf("http://%s/busy/%d", p.addr, i), nil, "")
		require.Equal(t, 200, st)
	}
	rss, hwm, fds := procStatus(t, pid, "VmRSS"), procStatus(t, pid, "VmHWM"), openFDs(pid)
	perConn := (rss - rss0) / int64(n)
	t.Logf("%d idle connections: sluice RSS %d MiB (before %d MiB, peak %d MiB), %d B per connection; open fds %d (before %d)",
		n, rss>>20, rss0>>20, hwm>>20, perConn, fds, fds0)
	if n >= 10000 {
		t.Logf("issue 13's floor, peak RSS <= 128 MiB at 10,000 idle connections: %v", hwm <= 128<<20)
	}
	// The guard against regressions: idle connections park (about 3 KiB
	// each at 10,000; at 2,000 the burst's fixed cost makes it about
	// 11 KiB). Without parking it was 17 KiB plus that fixed cost.
	require.LessOrEqual(t, (hwm-rss0)/int64(n), int64(16<<10), "peak RSS per idle connection")
}
