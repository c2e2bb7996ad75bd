package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os/exec"
	"sync"
	"time"
)

// The provisioning hook: a standby activated or released, or a service
// that needs more capacity than it has, is told to a command and/or a URL
// as a JSON event, so that a user can ask a cloud or an orchestrator for a
// server (which then joins through a reload). A hook informs; nothing
// waits for it: the caller runs CallHooks on a goroutine of its own.

// HookEvent is the JSON a hook receives.
type HookEvent struct {
	Service string    `json:"service"`
	Event   string    `json:"event"` // activated, released, need_capacity
	Backend string    `json:"backend,omitempty"`
	Reason  string    `json:"reason"`
	Figures Figures   `json:"figures"`
	Time    time.Time `json:"time"`
}

// MarshalJSON writes the figures in plain units: milliseconds, requests
// per second, fractions; agent_cpu is null without agent data.
func (f Figures) MarshalJSON() ([]byte, error) {
	ms := func(d time.Duration) float64 { return round3(float64(d) / 1e6) }
	var cpu *float64
	if f.HasCPU {
		v := round3(f.CPU)
		cpu = &v
	}
	return json.Marshal(struct {
		QueueWaitP95    float64  `json:"queue_wait_p95_ms"`
		RefusalRate     float64  `json:"refusal_rate"`
		LatencyP95      float64  `json:"latency_p95_ms"`
		LatencyUnloaded float64  `json:"latency_unloaded_p95_ms"`
		CPU             *float64 `json:"agent_cpu"`
		AdmittedRate    float64  `json:"admitted_rps"`
		Capacity        float64  `json:"capacity_rps"`
		BackendsUp      int      `json:"backends_up"`
		StandbyActive   int      `json:"standby_active"`
		StandbyLeft     int      `json:"standby_left"`
	}{
		ms(f.QueueWaitP95), round3(f.RefusalRate), ms(f.LatencyP95), ms(f.LatencyUnloaded), cpu,
		round3(f.AdmittedRate), round3(f.Capacity), f.BackendsUp, f.StandbyActive, f.StandbyLeft,
	})
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// HookResult is what one hook did.
type HookResult struct {
	Hook   string // "command" or "url"
	Output string // the command's output, or the response body; at most hookOutputMax bytes
	Err    error
	Took   time.Duration
}

// hookOutputMax bounds what is kept of a hook's output for the log.
const hookOutputMax = 4 << 10

// CallHooks runs cfg's hook command and posts to its hook URL, each within
// HookTimeout, and returns what each did (nothing when cfg names no hook).
// The command runs without a shell, with the event on its standard input.
func CallHooks(ctx context.Context, cfg StandbyConfig, ev HookEvent) []HookResult {
	if len(cfg.HookCommand) == 0 && cfg.HookURL == "" {
		return nil
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return []HookResult{{Hook: "event", Err: err}} // cannot happen: plain fields
	}
	timeout := cfg.HookTimeout
	if timeout <= 0 {
		timeout = DefaultStandbyHookTimeout
	}
	var out []HookResult
	if len(cfg.HookCommand) > 0 {
		out = append(out, runHookCommand(ctx, cfg.HookCommand, body, timeout))
	}
	if cfg.HookURL != "" {
		out = append(out, postHook(ctx, cfg.HookURL, body, timeout))
	}
	return out
}

func runHookCommand(ctx context.Context, argv []string, body []byte, timeout time.Duration) HookResult {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(body)
	out := &cappedBuffer{max: hookOutputMax}
	cmd.Stdout, cmd.Stderr = out, out
	// A child the command left behind may hold its output open after the
	// command was killed: stop waiting for it shortly after.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("%s: killed after %v: %w", argv[0], timeout, err)
	} else if err != nil {
		err = fmt.Errorf("%s: %w", argv[0], err)
	}
	return HookResult{Hook: "command", Output: out.String(), Err: err, Took: time.Since(start)}
}

func postHook(ctx context.Context, url string, body []byte, timeout time.Duration) HookResult {
	start := time.Now()
	res := HookResult{Hook: "url"}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// A transport of its own, without keep-alive: a hook is rare, and an
	// idle connection kept for it would outlive the call.
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: timeout}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		res.Err = err
		return res
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sluice-standby-hook")
	resp, err := client.Do(req)
	if err != nil {
		res.Err, res.Took = err, time.Since(start)
		return res
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, hookOutputMax))
	resp.Body.Close()
	res.Output, res.Took = string(b), time.Since(start)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		res.Err = fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return res
}

// cappedBuffer keeps the first max bytes written to it and discards the
// rest, so a chatty hook cannot fill memory.
type cappedBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - c.b.Len(); room > 0 {
		c.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *cappedBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}
