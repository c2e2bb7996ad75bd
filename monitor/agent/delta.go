package agent

// The pure half of sampling: counters in, utilisations out, and the
// parsers of what the kernel and the origin write. No file, clock or
// socket here; sampler.go does the reading.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
)

// hostBusy is the fraction of CPU time spent busy between two readings of
// the host's aggregate counters (seconds, as /proc/stat gives them). Busy
// is everything but idle and iowait: a CPU waiting for the disk could run
// something else. Guest time is already inside user and nice on Linux, so
// it is not added again. Counters that did not advance (two readings in
// the same tick) or went backwards (a reset) give 0: no evidence of load.
func hostBusy(prev, cur cpu.TimesStat) float64 {
	total := func(t cpu.TimesStat) float64 {
		return t.User + t.System + t.Idle + t.Nice + t.Iowait + t.Irq + t.Softirq + t.Steal
	}
	dTotal := total(cur) - total(prev)
	dIdle := (cur.Idle + cur.Iowait) - (prev.Idle + prev.Iowait)
	if !(dTotal > 0) {
		return 0
	}
	return clamp01((dTotal - dIdle) / dTotal)
}

// procTimes is one process's CPU counters at a sample.
type procTimes struct {
	pid     int32
	created int64   // start time, ms since the epoch (tells a reused PID apart)
	cpu     float64 // user + system time since it started, seconds
}

// procCores is the CPU used by a set of processes between two samples, in
// cores (CPU seconds per second). A process present in both samples counts
// its increase; one that started inside the window counts all its time; one
// already running but not tracked before (found by a rescan) is only a
// baseline for the next window, since its earlier time is not this
// window's. A process that exited inside the window is lost for its last
// part: an undercount of at most one interval of one process.
func procCores(prev, cur []procTimes, prevAt, curAt time.Time) float64 {
	window := curAt.Sub(prevAt).Seconds()
	if !(window > 0) {
		return 0
	}
	before := make(map[int32]procTimes, len(prev))
	for _, p := range prev {
		before[p.pid] = p
	}
	used := 0.0
	for _, c := range cur {
		if p, ok := before[c.pid]; ok && p.created == c.created {
			used += math.Max(0, c.cpu-p.cpu)
		} else if c.created > prevAt.UnixMilli() {
			used += math.Max(0, c.cpu)
		}
	}
	return used / window
}

// counterCores is the CPU used between two readings of a cumulative
// counter in microseconds (a cgroup's usage_usec), in cores. A counter
// that went backwards (the cgroup was recreated) gives 0 for this window.
func counterCores(prevUsec, curUsec uint64, prevAt, curAt time.Time) float64 {
	window := curAt.Sub(prevAt).Seconds()
	if !(window > 0) || curUsec < prevUsec {
		return 0
	}
	return float64(curUsec-prevUsec) / 1e6 / window
}

// targetCPU is a target's use as a fraction of what it may use: its quota
// when it has one, else the whole host.
func targetCPU(cores, limitCores float64, cpus int) float64 {
	capacity := float64(max(cpus, 1))
	if limitCores > 0 {
		capacity = limitCores
	}
	return clamp01(cores / capacity)
}

func clamp01(f float64) float64 {
	if !(f > 0) {
		return 0
	}
	return math.Min(f, 1)
}

// parseCPUStat returns usage_usec from a cgroup v2 cpu.stat file
// ("key value" lines).
func parseCPUStat(b []byte) (uint64, error) {
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		key, val, ok := bytes.Cut(bytes.TrimSpace(line), []byte{' '})
		if !ok || string(key) != "usage_usec" {
			continue
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(val)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cpu.stat: usage_usec %q: not a count", val)
		}
		return n, nil
	}
	return 0, errors.New("cpu.stat: no usage_usec line (not a cgroup v2 directory?)")
}

// parseCPUMax returns a cgroup v2 cpu.max quota in cores: "50000 100000"
// is half a core, "max 100000" no limit (0).
func parseCPUMax(b []byte) (float64, error) {
	fields := strings.Fields(string(b))
	if len(fields) == 0 || len(fields) > 2 {
		return 0, fmt.Errorf("cpu.max: want \"QUOTA PERIOD\", got %q", b)
	}
	if fields[0] == "max" {
		return 0, nil
	}
	quota, err := strconv.ParseUint(fields[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cpu.max: quota %q: not a count", fields[0])
	}
	period := uint64(100000) // the kernel's default when only a quota is written
	if len(fields) == 2 {
		if period, err = strconv.ParseUint(fields[1], 10, 64); err != nil || period == 0 {
			return 0, fmt.Errorf("cpu.max: period %q: not a positive count", fields[1])
		}
	}
	return float64(quota) / float64(period), nil
}

// maxInflightBody bounds what is read from --inflight-url.
const maxInflightBody = 64 << 10

// parseInflight reads the origin's in-flight count from a response body:
// with field empty, the body is a number ("12\n"); else it is a JSON
// object and field a dot-separated path to a number in it ("http.active").
// The count must be a finite number >= 0.
func parseInflight(body []byte, field string) (float64, error) {
	if field == "" {
		s := strings.TrimSpace(string(body))
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, fmt.Errorf("body %q is not a number", truncate(s, 40))
		}
		return checkCount(f)
	}
	var v any
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return 0, fmt.Errorf("body is not JSON: %v", err)
	}
	for part := range strings.SplitSeq(field, ".") {
		obj, ok := v.(map[string]any)
		if !ok {
			return 0, fmt.Errorf("field %q: %q is not inside an object", field, part)
		}
		if v, ok = obj[part]; !ok {
			return 0, fmt.Errorf("field %q: no %q", field, part)
		}
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("field %q is not a number", field)
	}
	f, err := n.Float64()
	if err != nil {
		return 0, fmt.Errorf("field %q: %v", field, err)
	}
	return checkCount(f)
}

func checkCount(f float64) (float64, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return 0, fmt.Errorf("in-flight count %v, want a number >= 0", f)
	}
	return f, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// commLen is the longest command name the kernel keeps (TASK_COMM_LEN-1).
const commLen = 15

// nameMatches reports whether a process whose name gopsutil gives as got
// is the process called name. The kernel cuts a command name (comm) to 15
// bytes; gopsutil gives the full name instead when the program's path in
// its command line starts with those 15 bytes. So a name matches itself,
// a cut comm matches the name's first 15 bytes (when gopsutil could not
// extend it), and a name of exactly 15 bytes, as ps -o comm prints a
// long one, matches the full name it was cut from.
func nameMatches(got, name string) bool {
	switch {
	case got == name:
		return true
	case len(got) == commLen && len(name) > commLen:
		return name[:commLen] == got
	case len(name) == commLen && len(got) > commLen:
		return got[:commLen] == name
	}
	return false
}
