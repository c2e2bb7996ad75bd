package agent

// The I/O half of sampling: gopsutil for the host and processes, the
// cgroup files, the origin's in-flight URL. Every figure that needs two
// readings is computed by delta.go from this sample and the last.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/load"
	"github.com/shirou/gopsutil/v4/mem"
	"github.com/shirou/gopsutil/v4/process"
)

// cgroupRoot is where relative cgroup paths start.
const cgroupRoot = "/sys/fs/cgroup"

// Sampler measures the host and the configured targets. Each Sample reads
// the current counters (a few small files under /proc and /sys, and a
// readdir of /proc only when processes are searched by name) and compares
// them with the previous call's, so a sample costs microseconds and never
// sleeps, unlike gopsutil's cpu.Percent with an interval.
//
// A Sampler is not safe for concurrent use: the Agent calls it from its
// one sampling goroutine.
type Sampler struct {
	// immutable
	cfg  Config
	cpus int
	http *http.Client // nil without an in-flight URL

	// owned by the caller of Sample
	prevAt   time.Time
	prevHost cpu.TimesStat
	targets  []*targetState
}

// targetState is one target and its previous reading.
type targetState struct {
	kind, name string
	pid        int32  // kind pid
	dir        string // kind cgroup

	procs    map[int32]*process.Process // kinds process and pid: tracked processes
	lastScan time.Time                  // kind process
	rescan   bool                       // kind process: a tracked process exited
	prev     []procTimes
	prevUsec uint64
	havePrev bool
}

// NewSampler returns a sampler for cfg (with defaults filled and
// validated). It reads nothing yet: a target missing now is reported by
// Sample, as a target missing later would be.
func NewSampler(cfg Config) (*Sampler, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cpus, err := cpu.Counts(true)
	if err != nil || cpus < 1 {
		return nil, fmt.Errorf("counting CPUs: %v", err)
	}
	s := &Sampler{cfg: cfg, cpus: cpus}
	for _, name := range cfg.Processes {
		s.targets = append(s.targets, &targetState{kind: "process", name: name})
	}
	for _, pid := range cfg.PIDs {
		s.targets = append(s.targets, &targetState{kind: "pid", name: strconv.Itoa(pid), pid: int32(pid)})
	}
	for _, path := range cfg.Cgroups {
		dir := path
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(cgroupRoot, dir)
		}
		s.targets = append(s.targets, &targetState{kind: "cgroup", name: path, dir: dir})
	}
	if cfg.InflightURL != "" {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil // the origin is reached directly, whatever the environment says
		tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 1, 1
		s.http = &http.Client{Transport: tr, Timeout: cfg.InflightTimeout}
	}
	return s, nil
}

// Close releases the in-flight URL's idle connection.
func (s *Sampler) Close() {
	if s.http != nil {
		s.http.CloseIdleConnections()
	}
}

// Sample takes one sample at now. The first call has no previous reading
// to compare with: its CPU figures are 0 and WindowSeconds is 0. The error
// is for the host's own counters being unreadable, which no target
// explains; a missing target is not an error but a Target.Error, and the
// in-flight URL failing is Load.InflightError.
func (s *Sampler) Sample(ctx context.Context, now time.Time) (Load, error) {
	l := Load{
		Version:         Version,
		Time:            now,
		IntervalSeconds: s.cfg.Interval.Seconds(),
		CPUs:            s.cpus,
	}
	times, err := cpu.TimesWithContext(ctx, false)
	if err != nil || len(times) == 0 {
		return Load{}, fmt.Errorf("reading host CPU times: %v", orNone(err))
	}
	havePrev := !s.prevAt.IsZero()
	if havePrev {
		l.WindowSeconds = now.Sub(s.prevAt).Seconds()
		l.HostCPU = hostBusy(s.prevHost, times[0])
	}
	avg, err := load.AvgWithContext(ctx)
	if err != nil {
		return Load{}, fmt.Errorf("reading load average: %v", err)
	}
	l.Load1, l.Load5, l.Load15 = avg.Load1, avg.Load5, avg.Load15
	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return Load{}, fmt.Errorf("reading memory: %v", err)
	}
	l.MemoryTotalBytes = vm.Total
	if vm.Available <= vm.Total {
		l.MemoryUsedBytes = vm.Total - vm.Available
	}
	if vm.Total > 0 {
		l.MemoryUsedFraction = clamp01(float64(l.MemoryUsedBytes) / float64(vm.Total))
	}

	l.CPU = l.HostCPU
	for _, ts := range s.targets {
		t := s.sampleTarget(ctx, ts, now)
		l.CPU = math.Max(l.CPU, t.CPU)
		l.Targets = append(l.Targets, t)
	}
	if s.http != nil {
		n, err := s.inflight(ctx)
		if err != nil {
			l.InflightError = err.Error()
		} else {
			l.Inflight = &n
		}
	}
	s.prevAt, s.prevHost = now, times[0]
	roundFigures(&l)
	return l, nil
}

// roundFigures rounds the CPU figures to 4 decimals: the counters behind
// them tick every 10 ms, so further digits are noise, and noise is what a
// reader of the document would see first.
func roundFigures(l *Load) {
	r := func(f float64) float64 { return math.Round(f*1e4) / 1e4 }
	l.CPU, l.HostCPU, l.MemoryUsedFraction = r(l.CPU), r(l.HostCPU), r(l.MemoryUsedFraction)
	for i := range l.Targets {
		t := &l.Targets[i]
		t.Cores, t.CPU, t.LimitCores = r(t.Cores), r(t.CPU), r(t.LimitCores)
	}
}

func orNone(err error) error {
	if err == nil {
		return errors.New("no figures")
	}
	return err
}

func (s *Sampler) sampleTarget(ctx context.Context, ts *targetState, now time.Time) Target {
	t := Target{Kind: ts.kind, Name: ts.name}
	switch ts.kind {
	case "process", "pid":
		cur, err := s.readProcs(ctx, ts, now)
		if err != nil {
			t.Error = err.Error()
			ts.prev, ts.havePrev = nil, false
			return t
		}
		for _, p := range cur {
			t.PIDs = append(t.PIDs, p.pid)
		}
		if ts.havePrev {
			t.Cores = procCores(ts.prev, cur, s.prevAt, now)
		}
		ts.prev, ts.havePrev = cur, true
	case "cgroup":
		b, err := os.ReadFile(filepath.Join(ts.dir, "cpu.stat"))
		var usec uint64
		if err == nil {
			usec, err = parseCPUStat(b)
		}
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				err = errors.New("no such cgroup (no cpu.stat)")
			}
			t.Error = fmt.Sprintf("cgroup %s: %v", ts.dir, err)
			ts.havePrev = false
			return t
		}
		// No cpu.max (the root cgroup) or an unreadable one: no quota.
		if b, err := os.ReadFile(filepath.Join(ts.dir, "cpu.max")); err == nil {
			t.LimitCores, _ = parseCPUMax(b)
		}
		if ts.havePrev {
			t.Cores = counterCores(ts.prevUsec, usec, s.prevAt, now)
		}
		ts.prevUsec, ts.havePrev = usec, true
	}
	t.CPU = targetCPU(t.Cores, t.LimitCores, s.cpus)
	return t
}

// readProcs reads the CPU counters of a target's processes, finding them
// first when needed.
func (s *Sampler) readProcs(ctx context.Context, ts *targetState, now time.Time) ([]procTimes, error) {
	switch {
	case ts.kind == "pid" && ts.procs == nil:
		p, err := process.NewProcessWithContext(ctx, ts.pid)
		if err != nil {
			return nil, fmt.Errorf("pid %d: no such process", ts.pid)
		}
		ts.procs = map[int32]*process.Process{ts.pid: p}
	case ts.kind == "process" && (ts.rescan || len(ts.procs) == 0 || now.Sub(ts.lastScan) >= s.cfg.Rescan):
		if err := s.scan(ctx, ts); err != nil {
			return nil, err
		}
		ts.lastScan, ts.rescan = now, false
	}
	cur := make([]procTimes, 0, len(ts.procs))
	for pid, p := range ts.procs {
		if ts.kind == "pid" {
			// A PID is reused by an unrelated process after the one we
			// watch exits: IsRunning compares start times.
			if ok, err := p.IsRunningWithContext(ctx); err != nil || !ok {
				return nil, fmt.Errorf("pid %d: process exited", pid)
			}
		}
		times, err := p.TimesWithContext(ctx)
		created, cerr := p.CreateTimeWithContext(ctx)
		if err != nil || cerr != nil {
			if ts.kind == "pid" {
				return nil, fmt.Errorf("pid %d: process exited", pid)
			}
			delete(ts.procs, pid) // exited: find its successors at the next sample
			ts.rescan = true
			continue
		}
		cur = append(cur, procTimes{pid: pid, created: created, cpu: times.User + times.System})
	}
	if len(cur) == 0 {
		return nil, fmt.Errorf("process %q: no running process has this name", ts.name)
	}
	slices.SortFunc(cur, func(a, b procTimes) int { return int(a.pid - b.pid) })
	return cur, nil
}

// scan finds every process whose command name matches the target's. It
// reads each process's comm itself, one small file, and asks gopsutil for
// the full name (its status file and command line, five times the reads)
// only for a cut comm that could be the long name asked for. Kernel
// threads have cut names too, so otherwise a scan would make five times
// the reads for a good part of the process table (BenchmarkSampleProcess
// Missing measures a scan). A process already tracked keeps its handle
// (and cached start time) unless its PID now belongs to a different
// process.
func (s *Sampler) scan(ctx context.Context, ts *targetState) error {
	pids, err := process.PidsWithContext(ctx)
	if err != nil {
		return fmt.Errorf("process %q: listing processes: %v", ts.name, err)
	}
	found := make(map[int32]*process.Process)
	var buf [64]byte
	for _, pid := range pids {
		comm, err := readComm(procPath(pid, "comm"), buf[:])
		if err != nil || !nameMatches(comm, ts.name) {
			continue
		}
		p := &process.Process{Pid: pid}
		if len(comm) == commLen && len(ts.name) > commLen {
			full, err := p.NameWithContext(ctx)
			if err != nil || !nameMatches(full, ts.name) {
				continue
			}
		}
		if old, ok := ts.procs[pid]; ok {
			oc, err1 := old.CreateTimeWithContext(ctx)
			nc, err2 := p.CreateTimeWithContext(ctx)
			if err1 == nil && err2 == nil && oc == nc {
				p = old
			}
		}
		found[pid] = p
	}
	ts.procs = found
	return nil
}

// readComm reads a process's comm file with three system calls (open,
// read, close) where os.ReadFile makes six: a scan makes one per process,
// so it is most of the scan's cost. comm is at most 16 bytes.
func readComm(path string, buf []byte) (string, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	n, err := syscall.Read(fd, buf)
	syscall.Close(fd)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(buf[:max(n, 0)]), "\n"), nil
}

// procPath is a file of a process under /proc, or under HOST_PROC when
// set, as gopsutil reads them (an agent in a container watching its host).
func procPath(pid int32, name string) string {
	root := os.Getenv("HOST_PROC")
	if root == "" {
		root = "/proc"
	}
	return filepath.Join(root, strconv.Itoa(int(pid)), name)
}

// inflight reads the origin's in-flight count.
func (s *Sampler) inflight(ctx context.Context) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.InflightURL, nil)
	if err != nil {
		return 0, err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxInflightBody+1))
	if err != nil {
		return 0, fmt.Errorf("%s: %v", s.cfg.InflightURL, err)
	}
	if resp.StatusCode/100 != 2 {
		return 0, fmt.Errorf("%s: status %d", s.cfg.InflightURL, resp.StatusCode)
	}
	if len(body) > maxInflightBody {
		return 0, fmt.Errorf("%s: body larger than %d bytes", s.cfg.InflightURL, maxInflightBody)
	}
	n, err := parseInflight(body, s.cfg.InflightField)
	if err != nil {
		return 0, fmt.Errorf("%s: %v", s.cfg.InflightURL, err)
	}
	return n, nil
}
