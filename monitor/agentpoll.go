package monitor

import (
	"context"
	"maps"
	"math"
	"net"
	"strconv"
	"time"

	"github.com/sluiceproxy/sluice/monitor/agent"
)

// Agent data, read from sluice-agent on each backend's host. It acts in
// two ways, and only while fresh (younger than MaxAge on the gateway's
// clock, whatever the skew between hosts): an agent that says down or
// drain takes the backend out, as HAProxy's agent-check does; a host CPU
// above CPUTarget caps the backend's concurrency at its learned limit ×
// CPUTarget / CPU, so that a backend busy with work the gateway does not
// see (other clients, batch jobs, a noisy neighbour) is given less. A
// stale or missing sample does neither: a silent agent must not freeze
// its last word.

// startPoller fetches one backend's agent every interval.
func startPoller(s *Service, id, url string, cfg AgentConfig) *periodic {
	client := &agent.Client{Timeout: cfg.Timeout}
	return startPeriodic(cfg.Interval, func(ctx context.Context) {
		if l, err := client.Fetch(ctx, url); ctx.Err() == nil {
			s.agentResult(id, l, err, time.Now())
		}
	})
}

func (b *backendQoS) stopPoll() {
	if b.poller != nil {
		b.poller.stopAsync()
		b.poller = nil
	}
}

// agentURL is where backend id's agent is polled, "" for none.
func agentURL(cfg AgentConfig, id, addr string) string {
	if u, ok := cfg.URLs[id]; ok {
		return u
	}
	if cfg.Port == 0 {
		return ""
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(cfg.Port)) + "/load"
}

func sameAgentConfig(a, b AgentConfig) bool {
	return a.Port == b.Port && a.Interval == b.Interval && a.Timeout == b.Timeout &&
		a.MaxAge == b.MaxAge && a.CPUTarget == b.CPUTarget && maps.Equal(a.URLs, b.URLs)
}

// agentResult takes one poll's outcome. A failed poll keeps the last
// sample, which then ages out.
func (s *Service) agentResult(id string, l agent.Load, err error, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.backends[id]
	if b == nil || s.closed {
		return
	}
	if err != nil {
		b.loadErr = err.Error()
	} else {
		b.load, b.loadErr = l, ""
	}
	s.publishLocked(b, now)
}

func (s *Service) agentFresh(b *backendQoS, now time.Time) bool {
	return !b.load.Received.IsZero() && b.load.Age(now) <= s.cfg.Agent.MaxAge
}

func (b *backendQoS) agentAge(now time.Time) time.Duration {
	if b.load.Received.IsZero() {
		return -1
	}
	return b.load.Age(now)
}

// cpuCap is the cap the CPU rule sets on b: its learned limit scaled by
// CPUTarget/CPU while a fresh sample says the host is above the target;
// 0 otherwise.
func (s *Service) cpuCap(b *backendQoS, fresh bool) int {
	target := s.cfg.Agent.CPUTarget
	if !fresh || target <= 0 || b.load.CPU <= target {
		return 0
	}
	lim, ok := s.capa.LearnedLimit(b.id)
	if !ok {
		return 0
	}
	return max(1, int(math.Floor(float64(lim)*target/b.load.CPU)))
}

// MeanAgentCPU is the mean CPU the agents of the backends in rotation
// report, over those whose sample is fresh; false when none is.
func (s *Service) MeanAgentCPU(now time.Time) (float64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum, n := 0.0, 0
	for _, b := range s.order {
		if !b.down && s.agentFresh(b, now) {
			sum += b.load.CPU
			n++
		}
	}
	if n == 0 {
		return 0, false
	}
	return sum / float64(n), true
}
