package proxy

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/rs/zerolog"
)

// An operator's changes while Sluice runs (the admin API): drain, disable
// and enable a backend, set its weight or a fixed limit, add or remove a
// backend. Every change takes reloadMu, as a reload does, so it is applied
// whole or not at all and never interleaves with a reload.
//
// Adding and removing derive the next configuration from the running one
// and apply it through the same path as Reload (applyLocked): the new
// backend warms its pool first, the removed one drains, and the running
// configuration, which the admin API shows, says what is in force. A later
// reload re-applies the file, as HAProxy's runtime API does: a backend the
// API added and the file lacks drains away, one it removed and the file
// lists comes back. Drain, disable, weight and limit are overrides on a
// backend, not configuration: they stay while the backend stays, across
// reloads (a reload that changes a timeout must not put traffic back on a
// backend taken out for maintenance), and end with it.

// The errors of a runtime change that are not about its input.
var (
	ErrUnknownService = errors.New("unknown service")
	ErrUnknownBackend = errors.New("unknown backend")
)

// BackendMode is an operator's standing on a backend.
type BackendMode uint8

const (
	// ModeEnabled: the backend takes requests when the monitor finds it up.
	ModeEnabled BackendMode = iota
	// ModeDrain: nothing new; what it has in flight finishes. Shown as
	// drained once nothing is.
	ModeDrain
	// ModeDisabled: as drained, for an operator who means "off" rather
	// than "finish and stop".
	ModeDisabled
)

var modeNames = [...]string{"enabled", "drain", "disabled"}

func (m BackendMode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return "invalid"
}

// MarshalText writes the mode's name.
func (m BackendMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// modeEvents is the event each mode change is logged as.
var modeEvents = [...]string{EventEnable, EventDrain, EventDisable}

// backendLocked finds a backend of a service that an operator may act on:
// a configured backend or an active standby. Called with reloadMu held.
func (s *Server) backendLocked(service, backend string) (*service, *upstream, error) {
	svc := s.services[service]
	if svc == nil {
		return nil, nil, fmt.Errorf("service %q: %w", service, ErrUnknownService)
	}
	u := svc.upstreams[backend]
	if u == nil {
		return nil, nil, fmt.Errorf("service %q: backend %q: %w", service, backend, ErrUnknownBackend)
	}
	return svc, u, nil
}

// SetBackendMode drains, disables or enables a backend. Draining and
// disabling send it nothing new while what it has in flight finishes;
// queued requests wait for the other backends (and are refused with
// no-backend when none is left up, as when the last backend is ejected).
func (s *Server) SetBackendMode(service, backend string, mode BackendMode) error {
	if int(mode) >= len(modeNames) {
		return fmt.Errorf("mode: unknown mode %d", mode)
	}
	err := s.setOperator(service, backend, func(_ BackendMode, limit int) (BackendMode, int) { return mode, limit })
	if err != nil {
		return err
	}
	s.emit(zerolog.InfoLevel, "backend "+mode.String(),
		Event{Kind: modeEvents[mode], Service: service, Backend: backend, Reason: "operator"}, nil)
	return nil
}

// SetBackendLimit fixes a ceiling on a backend's concurrency limit; 0
// lifts it. The adaptive limiter keeps learning underneath, so lifting
// the ceiling returns to what it learned.
func (s *Server) SetBackendLimit(service, backend string, limit int) error {
	if limit < 0 {
		return fmt.Errorf("limit: want >= 0 (0 lifts the limit), got %d", limit)
	}
	err := s.setOperator(service, backend, func(mode BackendMode, _ int) (BackendMode, int) { return mode, limit })
	if err != nil {
		return err
	}
	reason := fmt.Sprintf("fixed limit %d", limit)
	if limit == 0 {
		reason = "fixed limit lifted"
	}
	s.emit(zerolog.InfoLevel, "backend limit set", Event{Kind: EventLimit, Service: service, Backend: backend, Reason: reason}, nil)
	return nil
}

// setOperator sets a backend's mode and fixed limit, as next says from
// those in force, on the monitor (which combines them with the backend's
// health) and on the upstream (for the status).
func (s *Server) setOperator(service, backend string, next func(BackendMode, int) (BackendMode, int)) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	svc, u, err := s.backendLocked(service, backend)
	if err != nil {
		return err
	}
	mode, limit := next(u.mode, s.operatorLimitLocked(svc, backend))
	if !svc.mon.SetOperator(backend, mode != ModeEnabled, limit, time.Now()) {
		return fmt.Errorf("service %q: backend %q: %w", service, backend, ErrUnknownBackend)
	}
	u.mode = mode
	return nil
}

// operatorLimitLocked is the fixed limit an operator set on a backend.
func (s *Server) operatorLimitLocked(svc *service, backend string) int {
	for _, q := range svc.mon.Snapshot() {
		if q.ID == backend {
			return q.OperatorLimit
		}
	}
	return 0
}

// SetBackendWeight sets a backend's relative share of traffic (1 is the
// default): among backends with room, the one with the least in flight
// per unit of limit × weight is chosen.
func (s *Server) SetBackendWeight(service, backend string, weight float64) error {
	if !(weight > 0) || math.IsInf(weight, 0) {
		return fmt.Errorf("weight: want a number > 0, got %v", weight)
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	svc, _, err := s.backendLocked(service, backend)
	if err != nil {
		return err
	}
	if err := svc.sched.SetBackendWeight(backend, weight); err != nil {
		return fmt.Errorf("service %q: backend %q: %w", service, backend, ErrUnknownBackend)
	}
	s.emit(zerolog.InfoLevel, "backend weight set",
		Event{Kind: EventWeight, Service: service, Backend: backend, Reason: fmt.Sprintf("weight %g", weight)}, nil)
	return nil
}

// AddBackend adds the backend url to a service's configured backends: its
// pool warms first, then it takes requests. The running configuration
// then lists it; a reload re-applies the file.
func (s *Server) AddBackend(service, url string) error {
	return s.changeBackends(service, url, EventAddBackend, func(sc *ServiceConfig) error {
		if slices.Contains(sc.Backends, url) || slices.Contains(sc.Standby, url) {
			return fmt.Errorf("backend: %q is already a backend or standby of service %q", url, service)
		}
		sc.Backends = append(slices.Clone(sc.Backends), url)
		return nil
	})
}

// RemoveBackend removes a configured backend from a service: it gets
// nothing new and its pool closes once what it has in flight is done. The
// last backend of a service cannot be removed (drain it instead), and an
// active standby is the monitor's to release.
func (s *Server) RemoveBackend(service, backend string) error {
	return s.changeBackends(service, backend, EventRemoveBackend, func(sc *ServiceConfig) error {
		i := slices.Index(sc.Backends, backend)
		if i < 0 {
			if slices.Contains(sc.Standby, backend) {
				return fmt.Errorf("backend: %q is a standby of service %q; the monitor releases standbys", backend, service)
			}
			return fmt.Errorf("service %q: backend %q: %w", service, backend, ErrUnknownBackend)
		}
		if len(sc.Backends) == 1 {
			return fmt.Errorf("backend: %q is the last backend of service %q; drain it instead", backend, service)
		}
		sc.Backends = slices.Delete(slices.Clone(sc.Backends), i, i+1)
		return nil
	})
}

// changeBackends applies the running configuration with change made to
// the service's entry, validated as a reload validates a file.
func (s *Server) changeBackends(service, backend, kind string, change func(*ServiceConfig) error) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return fmt.Errorf("proxy: server is shut down")
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	cfg := s.rt.Load().cfg
	cfg.Services = slices.Clone(cfg.Services)
	i := slices.IndexFunc(cfg.Services, func(sc ServiceConfig) bool { return sc.Name == service })
	if i < 0 {
		return fmt.Errorf("service %q: %w", service, ErrUnknownService)
	}
	if err := change(&cfg.Services[i]); err != nil {
		return err
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := s.applyLocked(cfg, time.Now()); err != nil {
		return err
	}
	s.emit(zerolog.InfoLevel, "backend "+kind, Event{Kind: kind, Service: service, Backend: backend, Reason: "operator"}, nil)
	return nil
}
