package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sluiceproxy/sluice/proxy"
	"github.com/sluiceproxy/sluice/scheduler"
)

// Status is GET /api/v1/status: every service of the running
// configuration, its queue by class and its backends.
type Status struct {
	Time     time.Time       `json:"time"`
	Services []ServiceStatus `json:"services"`
	Reloads  ReloadCounts    `json:"reloads"`
}

// ReloadCounts are the reloads since start, by result.
type ReloadCounts struct {
	OK     uint64 `json:"ok"`
	Failed uint64 `json:"failed"`
}

// ServiceStatus is one service.
type ServiceStatus struct {
	Name    string        `json:"name"`
	Queue   []ClassStatus `json:"queue"` // one per priority class, most important first
	Tenants int           `json:"tenants"`
	// Counters since start: the dashboard turns them into rates.
	AdmittedImmediate uint64            `json:"admitted_immediate"`
	AdmittedQueued    uint64            `json:"admitted_queued"`
	Refused           map[string]uint64 `json:"refused"`  // by X-Sluice-Shed reason
	Requests          map[string]uint64 `json:"requests"` // by status code sent
	Backends          []BackendStatus   `json:"backends"`
	Standby           []string          `json:"standby"` // configured, in order of use
}

// ClassStatus is a service's queue for one priority class.
type ClassStatus struct {
	Class  string `json:"class"`
	Length int    `json:"length"`
	// Waited and WaitSeconds count the admitted requests of the class and
	// their total queue wait (0 for those admitted at once).
	Waited      uint64  `json:"waited"`
	WaitSeconds float64 `json:"wait_seconds"`
}

// BackendStatus is one backend of a service.
type BackendStatus struct {
	ID      string `json:"id"`
	State   string `json:"state"` // the scheduler's: up, down, draining (removed)
	Mode    string `json:"mode"`  // the operator's: enabled, drain, disabled
	Standby bool   `json:"standby"`
	Leaving bool   `json:"leaving"`

	Inflight   int     `json:"inflight"`
	Parked     int     `json:"parked"`
	Limit      int     `json:"limit"`
	Cap        int     `json:"cap"`
	FixedLimit int     `json:"fixed_limit"`
	Weight     float64 `json:"weight"`
	// LatencySeconds is the recent (EWMA) latency to the response
	// headers; BaselineSeconds the learned unloaded one (0: not yet).
	LatencySeconds  float64 `json:"latency_seconds"`
	BaselineSeconds float64 `json:"baseline_seconds"`

	Ejected      bool      `json:"ejected"`
	EjectedUntil time.Time `json:"ejected_until,omitzero"`
	Healthy      bool      `json:"healthy"`
	SlowStart    bool      `json:"slow_start"`
	Requests     int       `json:"recent_requests"` // in the monitor's current and previous window
	Failures     int       `json:"recent_failures"`

	// From the backend's agent; nil without a sample.
	AgentCPU        *float64 `json:"agent_cpu,omitempty"`
	AgentAgeSeconds *float64 `json:"agent_age_seconds,omitempty"`
	AgentState      string   `json:"agent_state,omitempty"`
	AgentError      string   `json:"agent_error,omitempty"`

	PoolOpen         int    `json:"pool_open"`
	PoolIdle         int    `json:"pool_idle"`
	PoolDials        uint64 `json:"pool_dials"`
	PoolDialFailures uint64 `json:"pool_dial_failures"`
}

func (s *Server) status() Status {
	counts := s.gw.EventCounts()
	st := Status{Time: time.Now(), Reloads: ReloadCounts{OK: counts[proxy.EventReload], Failed: counts[proxy.EventReloadFailed]}}
	for _, ss := range s.gw.Snapshot() {
		q := ss.Queue
		svc := ServiceStatus{
			Name: ss.Name, Tenants: q.Tenants, AdmittedImmediate: q.AdmittedFast, AdmittedQueued: q.AdmittedQueued,
			Refused: map[string]uint64{}, Requests: s.metrics.requestsByCode(ss.Name), Standby: ss.Standby,
			Backends: []BackendStatus{},
		}
		if svc.Standby == nil {
			svc.Standby = []string{}
		}
		for c := range scheduler.NumClasses {
			sum, n := s.metrics.wait(ss.Name, scheduler.Class(c))
			svc.Queue = append(svc.Queue, ClassStatus{Class: scheduler.Class(c).String(), Length: q.Queued[c],
				Waited: n, WaitSeconds: sum.Seconds()})
		}
		for _, r := range refusals(q) {
			svc.Refused[r.reason] = r.n
		}
		for _, b := range ss.Backends {
			svc.Backends = append(svc.Backends, backendStatus(b))
		}
		st.Services = append(st.Services, svc)
	}
	return st
}

func backendStatus(b proxy.BackendSnapshot) BackendStatus {
	out := BackendStatus{
		ID: b.ID, State: b.Sched.State.String(), Mode: b.Mode.String(), Standby: b.Standby, Leaving: b.Leaving,
		Inflight: b.Sched.Inflight, Parked: b.Sched.Parked, Limit: b.Sched.Limit, Cap: b.Sched.Cap,
		FixedLimit: b.QoS.OperatorLimit, Weight: b.Sched.Weight,
		LatencySeconds: b.Sched.Latency.Seconds(), BaselineSeconds: b.Sched.Baseline.Seconds(),
		Ejected: b.QoS.Ejected, EjectedUntil: b.QoS.EjectedUntil, Healthy: b.QoS.Healthy || b.Leaving,
		SlowStart: b.QoS.SlowStart, Requests: b.QoS.Requests, Failures: b.QoS.Failures,
		AgentState: b.QoS.AgentState, AgentError: b.QoS.AgentError,
		PoolOpen: b.Pool.Open, PoolIdle: b.Pool.Idle, PoolDials: b.Pool.Dials, PoolDialFailures: b.Pool.DialFailures,
	}
	if !b.Leaving && b.QoS.AgentAge >= 0 && b.QoS.AgentState != "" {
		cpu, age := b.QoS.AgentCPU, b.QoS.AgentAge.Seconds()
		out.AgentCPU, out.AgentAgeSeconds = &cpu, &age
	}
	return out
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.status())
}

// Change is the body of every changing call but reload: which backend,
// and for weight and limit the new value. Pointers tell a missing field
// from a zero one.
type Change struct {
	Service string   `json:"service"`
	Backend string   `json:"backend"`
	Weight  *float64 `json:"weight,omitempty"`
	Limit   *int     `json:"limit,omitempty"`
}

// Result is the answer to a change that was applied.
type Result struct {
	OK bool `json:"ok"`
}

// apiError is the answer to one that was not; Error names the field.
type apiError struct {
	Error string `json:"error"`
}

// maxBody bounds a change's body: it is a few names and a number.
const maxBody = 64 << 10

// changeHandler decodes and checks a Change (which fields it needs), then
// applies it with do. Errors are 400 with the field named, 404 for an
// unknown service or backend.
func (s *Server) changeHandler(need string, do func(Change) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var c Change
		if err := decodeStrict(r.Body, &c); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		if err := c.check(need); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		if err := do(c); err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, proxy.ErrUnknownService) || errors.Is(err, proxy.ErrUnknownBackend) {
				code = http.StatusNotFound
			}
			writeError(w, code, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, Result{OK: true})
	}
}

// check says which required field is missing or which extra one was
// given: a weight sent to drain is a client's mistake, not to be ignored.
func (c Change) check(need string) error {
	switch {
	case strings.TrimSpace(c.Service) == "":
		return errors.New("service: required")
	case strings.TrimSpace(c.Backend) == "":
		return errors.New("backend: required")
	case need == "weight" && c.Weight == nil:
		return errors.New("weight: required")
	case need == "limit" && c.Limit == nil:
		return errors.New("limit: required")
	case need != "weight" && c.Weight != nil:
		return errors.New("weight: not a field of this call")
	case need != "limit" && c.Limit != nil:
		return errors.New("limit: not a field of this call")
	}
	return nil
}

// decodeStrict decodes one JSON object, refusing unknown fields, values of
// the wrong type and trailing data, each with the field named.
func decodeStrict(body io.Reader, v any) error {
	data, err := io.ReadAll(io.LimitReader(body, maxBody+1))
	if err != nil {
		return fmt.Errorf("body: %v", err)
	}
	if len(data) > maxBody {
		return fmt.Errorf("body: larger than %d bytes", maxBody)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New("body: want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te) && te.Field != "":
			return fmt.Errorf("%s: want %s, got %s", te.Field, jsonTypeName(te.Type.String()), te.Value)
		case errors.As(err, &te):
			return fmt.Errorf("body: want a JSON object, got %s", te.Value)
		case errors.As(err, &se):
			return fmt.Errorf("body: invalid JSON at offset %d: %v", se.Offset, err)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return fmt.Errorf("%s: unknown field", strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`))
		}
		return fmt.Errorf("body: %v", err)
	}
	if dec.More() {
		return errors.New("body: more than one JSON value")
	}
	return nil
}

func jsonTypeName(goType string) string {
	switch strings.TrimPrefix(goType, "*") {
	case "int":
		return "an integer"
	case "float64":
		return "a number"
	case "string":
		return "a string"
	}
	return goType
}

// checkBackendURL is the early check of an added backend's URL, so that
// the message names the field of the call; the gateway's validation has
// the last word.
func checkBackendURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("backend: want http://host:port, got %q", s)
	}
	return nil
}

// handleReload re-applies the configuration file, as SIGHUP does.
func (s *Server) handleReload(w http.ResponseWriter, r *http.Request) {
	if s.reload == nil {
		writeError(w, http.StatusNotImplemented, "reload: this gateway has no configuration to reload")
		return
	}
	if err := s.reload(); err != nil {
		writeError(w, http.StatusBadRequest, "reload: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, Result{OK: true})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away: nothing to tell it
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, apiError{Error: msg})
}

// Purge is the body of POST /api/v1/cache/purge: a service and either the
// cache key of one resource ("host/path?query", the host in lower case
// without port) or a prefix of keys ("host/static/").
type Purge struct {
	Service string `json:"service"`
	Key     string `json:"key"`
	Prefix  string `json:"prefix"`
}

// PurgeResult says how many stored responses a purge removed.
type PurgeResult struct {
	OK     bool `json:"ok"`
	Purged int  `json:"purged"`
}

func (s *Server) handlePurge(w http.ResponseWriter, r *http.Request) {
	var p Purge
	if err := decodeStrict(r.Body, &p); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	switch {
	case strings.TrimSpace(p.Service) == "":
		writeError(w, http.StatusBadRequest, "service: required")
		return
	case p.Key == "" && p.Prefix == "":
		writeError(w, http.StatusBadRequest, "key: required (or prefix)")
		return
	case p.Key != "" && p.Prefix != "":
		writeError(w, http.StatusBadRequest, "prefix: give key or prefix, not both")
		return
	}
	key, prefix := p.Key, false
	if p.Prefix != "" {
		key, prefix = p.Prefix, true
	}
	n, err := s.gw.PurgeCache(p.Service, key, prefix)
	if err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, proxy.ErrUnknownService) || errors.Is(err, proxy.ErrNoCache) {
			code = http.StatusNotFound
		}
		writeError(w, code, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, PurgeResult{OK: true, Purged: n})
}
