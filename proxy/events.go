package proxy

import (
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/sluiceproxy/sluice/monitor"
)

// Events are what an operator wants to see beside the numbers: reloads
// and their errors, an operator's changes, ejections and recoveries,
// health and agent state changes, standby activations and releases. They
// all go through one sink (Server.emit): a structured log line (marked
// "log":"event", apart from the access log) and a bounded ring that the
// admin API and the dashboard read, with a count per kind for the metrics.
// The monitor's events reach the sink through its onEvent callback, under
// the monitor's lock; the sink takes only its own lock and calls nothing.

// Event is one entry of the event log.
type Event struct {
	Seq     uint64    `json:"seq"` // 1, 2, ... in the order they happened
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"` // one of EventKinds
	Service string    `json:"service,omitempty"`
	Backend string    `json:"backend,omitempty"`
	Reason  string    `json:"reason,omitempty"` // why, in a few words, or what changed
	Error   string    `json:"error,omitempty"`  // a refused reload's error
}

// The event kinds besides the monitor's (monitor.EventKind's names).
const (
	EventReload        = "reload"         // a configuration was applied
	EventReloadFailed  = "reload_failed"  // one was refused; the running one stays
	EventDrain         = "drain"          // an operator drained a backend
	EventDisable       = "disable"        // an operator disabled a backend
	EventEnable        = "enable"         // an operator put a drained or disabled backend back
	EventWeight        = "weight"         // an operator set a backend's weight
	EventLimit         = "limit"          // an operator set or lifted a backend's fixed limit
	EventAddBackend    = "add_backend"    // an operator added a backend
	EventRemoveBackend = "remove_backend" // an operator removed a backend (it drains)
	EventStandbyReady  = "standby_ready"  // an activated standby's pool is warm: it takes requests
)

// EventKinds lists every kind an Event can have, so that a counter per
// kind can start at zero.
var EventKinds = []string{
	monitor.EventEjected.String(), monitor.EventReturned.String(), monitor.EventUnhealthy.String(),
	monitor.EventHealthy.String(), monitor.EventActivated.String(), monitor.EventReleased.String(),
	monitor.EventNeedCapacity.String(),
	EventReload, EventReloadFailed, EventDrain, EventDisable, EventEnable, EventWeight, EventLimit,
	EventAddBackend, EventRemoveBackend, EventStandbyReady,
}

// eventRingSize bounds the events kept in memory: enough for an incident's
// story (a burst of ejections, the standbys brought in, the reload that
// fixed it), small enough to send whole to a dashboard.
const eventRingSize = 256

// eventLog is the bounded ring of recent events and the count per kind.
type eventLog struct {
	mu     sync.Mutex
	ring   [eventRingSize]Event // protected by mu
	seq    uint64               // protected by mu: events so far
	counts map[string]uint64    // protected by mu
}

func (l *eventLog) add(e Event) Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	e.Seq = l.seq
	l.ring[(l.seq-1)%eventRingSize] = e
	if l.counts == nil {
		l.counts = make(map[string]uint64, len(EventKinds))
	}
	l.counts[e.Kind]++
	return e
}

// Events returns the events still in the ring, oldest first.
func (s *Server) Events() []Event {
	l := &s.events
	l.mu.Lock()
	defer l.mu.Unlock()
	n := min(l.seq, eventRingSize)
	out := make([]Event, 0, n)
	for seq := l.seq - n + 1; seq <= l.seq; seq++ {
		out = append(out, l.ring[(seq-1)%eventRingSize])
	}
	return out
}

// EventCounts is how many events of each kind there have been since New.
func (s *Server) EventCounts() map[string]uint64 {
	l := &s.events
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]uint64, len(EventKinds))
	for _, k := range EventKinds {
		out[k] = l.counts[k]
	}
	return out
}

// emit records e and logs it at level with msg; more adds fields of its
// own kind (a monitor event's figures).
func (s *Server) emit(level zerolog.Level, msg string, e Event, more func(*zerolog.Event) *zerolog.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e = s.events.add(e)
	ev := s.log.WithLevel(level).Str("log", "event").Str("event", e.Kind)
	if e.Service != "" {
		ev = ev.Str("service", e.Service)
	}
	if e.Backend != "" {
		ev = ev.Str("backend", e.Backend)
	}
	if e.Reason != "" {
		ev = ev.Str("reason", e.Reason)
	}
	if e.Error != "" {
		ev = ev.Str("error", e.Error)
	}
	if more != nil {
		ev = more(ev)
	}
	ev.Msg(msg)
}

// monitorEvent is the monitor's onEvent: its events into the sink.
func (s *Server) monitorEvent(e monitor.Event) {
	level := zerolog.WarnLevel
	msg := "backend " + e.Kind.String()
	switch e.Kind {
	case monitor.EventReturned, monitor.EventHealthy:
		level = zerolog.InfoLevel
	case monitor.EventActivated:
		msg = "standby activated"
	case monitor.EventReleased:
		level, msg = zerolog.InfoLevel, "standby released"
	case monitor.EventNeedCapacity:
		msg = "service needs capacity: no standby left"
	}
	s.emit(level, msg, Event{Time: e.Time, Kind: e.Kind.String(), Service: e.Service, Backend: e.Backend, Reason: e.Reason},
		func(ev *zerolog.Event) *zerolog.Event {
			if e.For > 0 {
				ev = ev.Dur("for", e.For)
			}
			if f := e.Figures; f != nil {
				ev = ev.Dur("queue_wait_p95", f.QueueWaitP95).Float64("refusal_rate", f.RefusalRate).
					Dur("latency_p95", f.LatencyP95).Dur("latency_unloaded_p95", f.LatencyUnloaded).
					Float64("admitted_rps", f.AdmittedRate).Float64("capacity_rps", f.Capacity).
					Int("backends_up", f.BackendsUp).Int("standby_active", f.StandbyActive).Int("standby_left", f.StandbyLeft)
				if f.HasCPU {
					ev = ev.Float64("agent_cpu", f.CPU)
				}
			}
			return ev
		})
}
