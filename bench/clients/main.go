package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluiceproxy/sluice/bench/scenario"
)

type options struct {
	sluice, nginx, haproxy string
	sluiceArgs             string
	peers, groups          string
	duration               time.Duration
	slow, idle             int
	size                   int
	rate                   int
	workers                int
}

func main() {
	var o options
	flag.StringVar(&o.sluice, "sluice", "bin/sluice", "sluice binary")
	flag.StringVar(&o.sluiceArgs, "sluice-args", "", "more flags for Sluice, space-separated (e.g. \"--queue-timeout 30s\")")
	flag.StringVar(&o.nginx, "nginx", "nginx", "nginx binary, a path or a name looked up on PATH and in the sbin directories (skipped when missing)")
	flag.StringVar(&o.haproxy, "haproxy", "haproxy", "haproxy binary, as --nginx (skipped when missing)")
	flag.StringVar(&o.peers, "peers", "sluice,nginx,haproxy", "proxies to run, comma-separated: sluice, sluice-unbuffered, nginx, haproxy")
	flag.StringVar(&o.groups, "groups", "readers,uploads,idle", "hostile groups: readers, uploads, idle")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "how long each group and the well-behaved client run")
	flag.IntVar(&o.slow, "slow", 20, "slow readers, and slow uploads, per group")
	flag.IntVar(&o.idle, "idle", 2000, "idle keep-alive connections")
	flag.IntVar(&o.size, "size", 8<<20, "bytes of the slow readers' answer")
	flag.IntVar(&o.rate, "rate", 50, "the well-behaved client's requests per second")
	flag.IntVar(&o.workers, "workers", 8, "the origin's synchronous workers")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "clients:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	raiseNoFile()
	org, err := startOrigin(o.workers, o.size)
	if err != nil {
		return err
	}
	defer org.Close()
	dir, err := os.MkdirTemp("", "sluice-clients-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Printf("origin: %d synchronous workers; hostile groups of %d (idle: %d), %d MiB answers; well-behaved client %d/s for %s\n\n",
		o.workers, o.slow, o.idle, o.size>>20, o.rate, o.duration)
	fmt.Printf("| group | proxy | well-behaved success | p99 | proxy peak RSS | fds start / peak / after | goroutines start / peak / after | buffers peak memory / disk |\n|---|---|---|---|---|---|---|---|\n")
	for _, g := range strings.Split(o.groups, ",") {
		for _, peer := range strings.Split(o.peers, ",") {
			res, err := runOne(o, peer, g, org.Addr, dir)
			if err != nil {
				fmt.Printf("| %s | %s | %v | | | | | |\n", g, peer, err)
				continue
			}
			gor, bufs := "—", "—" // only Sluice reports them
			if sr := res.sluice; sr != nil {
				gor = fmt.Sprintf("%d / %d / %d", sr.start.goroutines, sr.peak.goroutines, sr.after.goroutines)
				bufs = fmt.Sprintf("%.1f / %.1f MiB", float64(sr.peak.bufMem)/(1<<20), float64(sr.peak.bufDisk)/(1<<20))
			}
			fmt.Printf("| %s | %s | %.2f%% (%d/%d) | %.1f ms | %.1f MiB | %d / %d / %d | %s | %s |\n", g, peer,
				100*float64(res.ok)/float64(max(1, res.sent)), res.ok, res.sent,
				float64(res.p99)/float64(time.Millisecond), float64(res.peakRSS)/(1<<20),
				res.fds0, res.fdsPeak, res.fdsAfter, gor, bufs)
		}
	}
	return nil
}

// origin is the pre-fork server in miniature.
type origin struct {
	Addr string
	srv  *http.Server
}

func (o *origin) Close() { _ = o.srv.Close() }

func startOrigin(workers, size int) (*origin, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	body := make([]byte, size)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	sem := make(chan struct{}, workers)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sem <- struct{}{}
		defer func() { <-sem }()
		switch r.URL.Path {
		case "/big":
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			_, _ = w.Write(body)
		case "/upload":
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = io.WriteString(w, "ok")
		default:
			_, _ = io.WriteString(w, "ok")
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	return &origin{Addr: ln.Addr().String(), srv: srv}, nil
}

type result struct {
	sent, ok                int
	p99                     time.Duration
	peakRSS                 int64
	fds0, fdsPeak, fdsAfter int
	sluice                  *sluiceResult // nil for the other proxies
}

// sluiceResult is what Sluice's admin listener reported at the start, at
// the peak (of each figure apart) and after the hostile clients left.
type sluiceResult struct{ start, peak, after figures }

// startPeer starts the proxy; for Sluice, admin is its admin listener's
// address (for the goroutine count), else empty.
func startPeer(o options, peer, originAddr, dir string) (cmd *exec.Cmd, listen, admin string, err error) {
	listen, err = scenario.FreeAddr()
	if err != nil {
		return nil, "", "", err
	}
	pdir := filepath.Join(dir, peer)
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		return nil, "", "", err
	}
	var argv []string
	switch peer {
	case "sluice", "sluice-unbuffered":
		if admin, err = scenario.FreeAddr(); err != nil {
			return nil, "", "", err
		}
		argv = []string{o.sluice, "--listen", listen, "--backend", "http://" + originAddr, "--access-log=false",
			"--buffer-temp-dir", pdir, "--admin", admin}
		argv = append(argv, strings.Fields(o.sluiceArgs)...)
		if peer == "sluice-unbuffered" {
			// The control: as before buffering.
			argv = append(argv, "--response-buffering=false", "--request-buffering=false")
		}
	case "nginx":
		cfg := filepath.Join(pdir, "nginx.conf")
		if err := os.WriteFile(cfg, []byte(scenario.NginxConfig(listen, originAddr, pdir)), 0o644); err != nil {
			return nil, "", "", err
		}
		argv = []string{o.nginx, "-p", pdir, "-c", cfg, "-e", filepath.Join(pdir, "error.log")}
	case "haproxy":
		cfg := filepath.Join(pdir, "haproxy.cfg")
		if err := os.WriteFile(cfg, []byte(scenario.HAProxyConfig(listen, originAddr, false, o.workers)), 0o644); err != nil {
			return nil, "", "", err
		}
		argv = []string{o.haproxy, "-db", "-f", cfg}
	default:
		return nil, "", "", fmt.Errorf("unknown proxy %q", peer)
	}
	bin, ok := scenario.LookBinary(argv[0])
	if !ok {
		return nil, "", "", fmt.Errorf("not installed (%s)", argv[0])
	}
	argv[0] = bin
	cmd = exec.Command(argv[0], argv[1:]...)
	logf, err := os.Create(filepath.Join(pdir, "stderr.log"))
	if err != nil {
		return nil, "", "", err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, "", "", err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + listen + "/quick")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return cmd, listen, admin, nil
			}
		}
		if time.Now().After(deadline) {
			stopPeer(cmd)
			return nil, "", "", fmt.Errorf("%s did not start: see %s", peer, logf.Name())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func stopPeer(cmd *exec.Cmd) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
}

func runOne(o options, peer, group, originAddr, dir string) (result, error) {
	cmd, addr, admin, err := startPeer(o, peer, originAddr, dir)
	if err != nil {
		return result{}, err
	}
	defer stopPeer(cmd)
	pid := cmd.Process.Pid
	var res result
	res.fds0 = treeFDs(pid)
	f0, sluice := sluiceFigures(admin)
	var peakMu sync.Mutex
	var peak figures

	// Sample the proxy's memory and descriptors while the run lasts.
	var peakRSS atomic.Int64
	var peakFDs atomic.Int64
	stopSample := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if r := treeRSS(pid); r > peakRSS.Load() {
				peakRSS.Store(r)
			}
			if f := int64(treeFDs(pid)); f > peakFDs.Load() {
				peakFDs.Store(f)
			}
			if f, ok := sluiceFigures(admin); ok {
				peakMu.Lock()
				peak.peak(f)
				peakMu.Unlock()
			}
			select {
			case <-stopSample:
				return
			case <-t.C:
			}
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), o.duration+2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var conns sync.Map
	hostile(ctx, &wg, &conns, o, group, addr)
	time.Sleep(2 * time.Second) // the hostile clients settle in
	res.sent, res.ok, res.p99 = wellBehaved(addr, o.rate, o.duration-2*time.Second)
	cancel()
	conns.Range(func(k, _ any) bool { _ = k.(net.Conn).Close(); return true })
	wg.Wait()
	// The proxy lets go of what they held: fasthttp's idle workers
	// outlive their connection by up to twice Sluice's 2 s worker idle
	// time, so the goroutines are read after that.
	time.Sleep(5 * time.Second)
	close(stopSample)
	<-sampled
	res.peakRSS, res.fdsPeak, res.fdsAfter = peakRSS.Load(), int(peakFDs.Load()), treeFDs(pid)
	if sluice {
		after, _ := sluiceFigures(admin)
		res.sluice = &sluiceResult{start: f0, peak: peak, after: after}
	}
	return res, nil
}

// sluiceFigures reads what Sluice's admin listener reports of its
// goroutines and buffers; ok is false without one or when it does not
// answer.
func sluiceFigures(admin string) (f figures, ok bool) {
	if admin == "" {
		return f, false
	}
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + admin + "/metrics")
	if err != nil {
		return f, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, v, found := strings.Cut(sc.Text(), " ")
		if !found {
			continue
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_goroutines":
			f.goroutines, ok = int64(n), true
		case `sluice_buffer_bytes{store="memory"}`:
			f.bufMem = int64(n)
		case `sluice_buffer_bytes{store="disk"}`:
			f.bufDisk = int64(n)
		}
	}
	return f, ok
}

type figures struct{ goroutines, bufMem, bufDisk int64 }

// peak keeps the largest of each figure.
func (f *figures) peak(g figures) {
	f.goroutines, f.bufMem, f.bufDisk = max(f.goroutines, g.goroutines), max(f.bufMem, g.bufMem), max(f.bufDisk, g.bufDisk)
}

// hostile starts the group's clients; each ends when ctx does.
func hostile(ctx context.Context, wg *sync.WaitGroup, conns *sync.Map, o options, group, addr string) {
	dial := func() net.Conn {
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
		}}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil
		}
		conns.Store(c, true)
		return c
	}
	n := o.slow
	if group == "idle" {
		n = o.idle
	}
	sem := make(chan struct{}, 64) // dial at most this many at once
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			c := dial()
			<-sem
			if c == nil {
				return
			}
			defer c.Close()
			switch group {
			case "readers":
				// An answer read at a few bytes a second.
				fmt.Fprintf(c, "GET /big?c=%d HTTP/1.1\r\nHost: origin\r\n\r\n", i)
				var b [4]byte
				for ctx.Err() == nil {
					_ = c.SetReadDeadline(time.Now().Add(time.Second))
					_, _ = c.Read(b[:])
					sleep(ctx, time.Second)
				}
			case "uploads":
				// A 100 kB body sent at ten bytes a second.
				fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: origin\r\nContent-Length: 100000\r\n\r\n")
				for ctx.Err() == nil {
					if _, err := c.Write([]byte("0123456789")); err != nil {
						return
					}
					sleep(ctx, time.Second)
				}
			case "idle":
				// One request, then nothing.
				fmt.Fprintf(c, "GET /quick HTTP/1.1\r\nHost: origin\r\n\r\n")
				if resp, err := http.ReadResponse(bufio.NewReaderSize(c, 512), nil); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
				}
				<-ctx.Done()
			}
		}()
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// wellBehaved sends rate requests a second, open loop, each with a 1 s
// budget, and returns how many were sent, how many got a 200 in time and
// the p99 of those.
func wellBehaved(addr string, rate int, d time.Duration) (sent, ok int, p99 time.Duration) {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Second}
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	end := time.Now().Add(d)
	for now := range tick.C {
		if now.After(end) {
			break
		}
		sent++
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			resp, err := client.Get("http://" + addr + "/quick")
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				mu.Lock()
				lat = append(lat, time.Since(start))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	if len(lat) > 0 {
		p99 = lat[(len(lat)*99+99)/100-1] // the nearest rank
	}
	return sent, len(lat), p99
}

// The proxy's process and its children (nginx's workers).
func tree(pid int) []int {
	pids := []int{pid}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 {
			f := strings.Fields(s[i+1:])
			if len(f) > 1 && f[1] == strconv.Itoa(pid) {
				pids = append(pids, p)
			}
		}
	}
	return pids
}

func treeRSS(pid int) int64 {
	var sum int64
	for _, p := range tree(pid) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				sum += kb << 10
			}
		}
	}
	return sum
}

func treeFDs(pid int) int {
	n := 0
	for _, p := range tree(pid) {
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p))
		n += len(ents)
	}
	return n
}

// raiseNoFile lifts the soft open-file limit to the hard one; the proxies
// inherit it.
func raiseNoFile() {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}
