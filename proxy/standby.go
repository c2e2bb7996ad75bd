package proxy

import (
	"context"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/sluiceproxy/sluice/monitor"
	"github.com/sluiceproxy/sluice/scheduler"
)

// Standby backends: the monitor decides (monitor/standby.go), this file
// feeds it and carries out what it decides. Activation warms the
// standby's pool first, off every lock, then adds it to the scheduler
// capped at one request and to the monitor, whose slow start lifts the
// cap; release drains it as a reload drains a removed backend. A reload
// keeps an active standby that is still listed as one (live.go).

// standbySampleEvery is the sampling period of the standby decisions:
// long enough that a sample of a modest service holds the few dozen
// requests its percentiles need, short against the sustain time (2s by
// default) that a decision waits for.
const standbySampleEvery = 500 * time.Millisecond

// maxHooks bounds the provisioning hooks running at once, over all
// services: a hook that hangs (until its timeout) must not pile up.
const maxHooks = 4

// standbyFeed gathers a service's samples. The observers record the
// queue wait and the backend latency of every request into histograms, one
// atomic add each on the request path; every sampling period the tick
// loop drains them and diffs the scheduler's counters.
type standbyFeed struct {
	// Written by the observers, drained by the tick loop.
	wait    monitor.Histogram // of admitted requests, 0 for those admitted at once
	latency monitor.Histogram // of successful attempts, to the response headers

	// Owned by the tick loop.
	at                time.Time // of the last sample; zero before the first
	admitted, refused uint64    // the scheduler's counters then
}

// sample is the service over the period since the last call; false for
// the first call, which only sets the starting point.
func (f *standbyFeed) sample(st scheduler.Stats, now time.Time) (monitor.Sample, bool) {
	admitted := st.AdmittedFast + st.AdmittedQueued
	// Refused for overload. Not counted: no backend up (no standby policy
	// helps there; the monitor never ejects the last backend) and
	// clients that went away.
	refused := st.QueueFull + st.QueueTimeout + st.Deadline + st.TenantShare
	wait, lat := f.wait.Drain(), f.latency.Drain()
	first := f.at.IsZero()
	smp := monitor.Sample{
		Elapsed:  now.Sub(f.at),
		Admitted: admitted - f.admitted, Refused: refused - f.refused,
		QueueWaitP95: wait.Quantile(0.95),
	}
	f.at, f.admitted, f.refused = now, admitted, refused
	if first {
		return smp, false
	}
	var slowest time.Duration
	for _, b := range st.Backends {
		if b.State == scheduler.StateDraining {
			continue
		}
		bl := monitor.BackendLoad{ID: b.ID, Up: b.State == scheduler.StateUp}
		if b.Latency > 0 {
			bl.Capacity = float64(b.Limit) / b.Latency.Seconds()
			slowest = max(slowest, b.Latency)
		}
		smp.Backends = append(smp.Backends, bl)
	}
	// Long polls and streams are slow because they are long-lived, not
	// because the backend is short of capacity: their latency is left
	// out by the scheduler's own rule for parking them.
	smp.LatencyP95, smp.Answered = lat.QuantileBelow(0.95, scheduler.ParkAfter(slowest))
	return smp, true
}

// stepStandby samples svc when its period is due and carries out the
// monitor's decision. Called by the tick loop only, without locks.
func (s *Server) stepStandby(svc *service, now time.Time) {
	if !svc.feed.at.IsZero() && now.Sub(svc.feed.at) < standbySampleEvery {
		return
	}
	smp, ok := svc.feed.sample(svc.sched.Stats(), now)
	if !ok {
		return
	}
	// The agents' mean CPU over the backends up with fresh data; without
	// any, the CPU criterion neither holds nor blocks a release.
	smp.CPU, smp.HasCPU = svc.mon.MeanAgentCPU(now)
	d := svc.mon.StandbyStep(now, smp)
	switch d.Action {
	case monitor.StandbyNone:
		return
	case monitor.StandbyActivate:
		s.activateStandby(svc, d.Backend)
	case monitor.StandbyRelease:
		s.releaseStandby(svc, d.Backend, now)
	}
	s.callHooks(svc, d, now)
}

// activateStandby brings the standby id into svc: its pool is created
// and warmed on a goroutine, off every lock (a standby that is slow to
// answer must not hold up reloads or the tick loop); then, if the
// monitor still has it active and nothing else brought it in meanwhile
// (a reload that made it a backend), it joins the scheduler capped at one
// request and the monitor in slow start.
func (s *Server) activateStandby(svc *service, id string) {
	s.reloadMu.Lock()
	pcfg := svc.pcfg
	s.reloadMu.Unlock()
	s.retired.Add(1)
	go func() {
		defer s.retired.Done()
		start := time.Now()
		p, err := s.newPool(svc.name, id, pcfg)
		s.reloadMu.Lock()
		defer s.reloadMu.Unlock()
		if err != nil {
			// Cannot happen: the URL and the pool settings were validated.
			s.log.Error().Err(err).Str("service", svc.name).Str("backend", id).Msg("standby: no pool")
			svc.mon.DropStandby(id)
			return
		}
		if s.poolsClosed || s.services[svc.name] != svc || svc.upstreams[id] != nil ||
			!slices.Contains(svc.mon.StandbyActive(), id) {
			p.Close() // shut down, retired, made a backend, or released already
			return
		}
		now := time.Now()
		u := svc.leaving[id]
		if u != nil {
			// Released a moment ago and still draining: the same upstream
			// comes back (the scheduler hands its tickets that tag), with
			// the pool just warmed.
			delete(svc.leaving, id)
			s.retirePool(u.pool.Swap(p), s.graceOf())
		} else {
			u = &upstream{id: id}
			u.pool.Store(p)
		}
		u.pcfg = pcfg
		if _, err := svc.sched.AddBackendCapped(id, u, 1, now); err != nil {
			s.log.Error().Err(err).Str("service", svc.name).Str("backend", id).Msg("standby: not added")
			svc.mon.DropStandby(id)
			s.retirePool(u.pool.Load(), 0)
			return
		}
		svc.upstreams[id] = u
		svc.mon.AddBackend(id, targetOf(u.pool.Load()), now)
		s.emit(zerolog.InfoLevel, "standby taking requests, in slow start",
			Event{Time: now, Kind: EventStandbyReady, Service: svc.name, Backend: id,
				Reason: "pool warm after " + now.Sub(start).Round(time.Millisecond).String()}, nil)
	}()
}

// releaseStandby lets the standby id go: it leaves the monitor and is
// drained from the scheduler (queued requests stay queued for the other
// backends, those in flight finish), and its pool closes once the drain
// is over.
func (s *Server) releaseStandby(svc *service, id string, now time.Time) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	u := svc.upstreams[id]
	if u == nil {
		return // still warming: the warm-up sees it is no longer active
	}
	svc.mon.RemoveBackend(id)
	_ = svc.sched.RemoveBackend(id, now) // known: it is an upstream
	s.leaveLocked(svc, u)
}

// callHooks tells the service's provisioning hooks of a decision, on a
// goroutine of their own: nothing waits for them.
func (s *Server) callHooks(svc *service, d monitor.StandbyDecision, now time.Time) {
	cfg := svc.mon.Config().Standby
	if len(cfg.HookCommand) == 0 && cfg.HookURL == "" {
		return
	}
	lc := s.log.With().Str("service", svc.name).Str("event", d.Action.String())
	if d.Backend != "" {
		lc = lc.Str("backend", d.Backend)
	}
	log := lc.Logger()
	select {
	case s.hookSlots <- struct{}{}:
	default:
		log.Warn().Int("running", maxHooks).Msg("standby hook not called: too many still running")
		return
	}
	ev := monitor.HookEvent{Service: svc.name, Event: d.Action.String(), Backend: d.Backend,
		Reason: d.Reason, Figures: d.Figures, Time: now}
	s.hooks.Add(1)
	go func() {
		defer s.hooks.Done()
		defer func() { <-s.hookSlots }()
		for _, r := range monitor.CallHooks(context.Background(), cfg, ev) {
			e := log.Info()
			if r.Err != nil {
				e = log.Warn().Err(r.Err)
			}
			e.Str("hook", r.Hook).Dur("took", r.Took).Str("output", r.Output).Msg("standby hook")
		}
	}()
}

// standbyIDs are the active standbys of svc that a reload to sc keeps:
// still listed as standbys, and already brought in (one still warming is
// added by its warm-up). Called with reloadMu held.
func standbyIDs(svc *service, sc ServiceConfig) []string {
	var out []string
	for _, id := range svc.mon.StandbyActive() {
		if slices.Contains(sc.Standby, id) && svc.upstreams[id] != nil {
			out = append(out, id)
		}
	}
	return out
}
