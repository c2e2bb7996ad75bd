package admin

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluiceproxy/sluice/proxy"
	"github.com/sluiceproxy/sluice/scheduler"
)

// The metrics have two sources. What happens per request (its status, its
// queue wait, its backend latency) is counted by an observer on the
// request path: atomic adds into counters that are looked up by service,
// route and backend in a map that is only read there (copy on write: a
// route seen for the first time takes a lock and publishes a new map,
// once), so counting allocates nothing. Everything else (queue lengths,
// limits, in-flight, states, pool sizes, the scheduler's admission and
// refusal counters, events) is read from the gateway's snapshot when
// Prometheus scrapes, and costs the request path nothing at all.
//
// Label values are bounded: services, routes and backends come from the
// configuration, classes and reasons are fixed sets, status codes are
// 100-599. No tenant, path or client address ever becomes a label.

// maxStatus bounds the status codes counted one by one; anything else
// (there should be nothing) is counted as 0.
const maxStatus = 600

// routeCounters are the per-request counters of one route of a service.
type routeCounters struct {
	service, route string
	svc            *serviceCounters
	requests       [scheduler.NumClasses][maxStatus]atomic.Uint64 // by class and status code
}

// serviceCounters are the per-request figures of one service.
type serviceCounters struct {
	// The queue wait of admitted requests by class, as a histogram and as
	// a plain sum and count the dashboard reads for its mean.
	wait      [scheduler.NumClasses]prometheus.Observer
	waitSum   [scheduler.NumClasses]atomic.Int64 // nanoseconds
	waitCount [scheduler.NumClasses]atomic.Uint64
}

type routeKey struct{ service, route string }
type backendKey struct{ service, backend string }

// metrics is the request-path observer and the scrape-time collector.
type metrics struct {
	gw *proxy.Server

	// Read on the request path without a lock; replaced whole, under mu,
	// when a service, route or backend is seen for the first time.
	routes   atomic.Pointer[map[routeKey]*routeCounters]
	backends atomic.Pointer[map[backendKey]prometheus.Observer]

	mu       sync.Mutex // serialises the copy-on-write of the maps
	services map[string]*serviceCounters

	waitVec    *prometheus.HistogramVec
	latencyVec *prometheus.HistogramVec
}

// Buckets: queue waits from a millisecond to the longest queue timeout
// anyone sets; backend latencies from half a millisecond to a slow page.
var (
	waitBuckets    = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
)

func newMetrics(gw *proxy.Server) *metrics {
	m := &metrics{
		gw:       gw,
		services: make(map[string]*serviceCounters),
		waitVec: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_queue_wait_seconds",
			Help:    "Time admitted requests waited for admission (0 for those admitted at once), by service and priority class.",
			Buckets: waitBuckets,
		}, []string{"service", "class"}),
		latencyVec: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_backend_latency_seconds",
			Help:    "Time from a request sent to a backend to its response headers, by service and backend.",
			Buckets: latencyBuckets,
		}, []string{"service", "backend"}),
	}
	m.routes.Store(&map[routeKey]*routeCounters{})
	m.backends.Store(&map[backendKey]prometheus.Observer{})
	return m
}

// Observe counts one finished request. Steady state: two map reads and
// a few atomic adds, no allocation (TestMetricsObserverZeroAlloc).
func (m *metrics) Observe(r *proxy.Record) {
	rc := (*m.routes.Load())[routeKey{r.Service, r.Route}]
	if rc == nil {
		rc = m.newRoute(r.Service, r.Route)
	}
	c := r.Class
	if int(c) >= scheduler.NumClasses {
		c = scheduler.Normal
	}
	status := r.Status
	if status < 0 || status >= maxStatus {
		status = 0
	}
	rc.requests[c][status].Add(1)
	if r.Admitted() {
		svc := rc.svc
		svc.wait[c].Observe(r.Queue.Seconds())
		svc.waitSum[c].Add(int64(r.Queue))
		svc.waitCount[c].Add(1)
	}
	if r.Backend != "" && r.BackendLatency > 0 {
		h := (*m.backends.Load())[backendKey{r.Service, r.Backend}]
		if h == nil {
			h = m.newBackend(r.Service, r.Backend)
		}
		h.Observe(r.BackendLatency.Seconds())
	}
}

// newRoute publishes the counters of a route seen for the first time.
func (m *metrics) newRoute(service, route string) *routeCounters {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.routes.Load()
	k := routeKey{service, route}
	if rc := old[k]; rc != nil {
		return rc // published by another request meanwhile
	}
	rc := &routeCounters{service: service, route: route, svc: m.serviceLocked(service)}
	next := make(map[routeKey]*routeCounters, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[k] = rc
	m.routes.Store(&next)
	return rc
}

func (m *metrics) serviceLocked(name string) *serviceCounters {
	sc := m.services[name]
	if sc == nil {
		sc = &serviceCounters{}
		for c := range scheduler.NumClasses {
			sc.wait[c] = m.waitVec.WithLabelValues(labelService(name), scheduler.Class(c).String())
		}
		m.services[name] = sc
	}
	return sc
}

// newBackend publishes the latency histogram of a backend seen for the
// first time.
func (m *metrics) newBackend(service, backend string) prometheus.Observer {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.backends.Load()
	k := backendKey{service, backend}
	if h := old[k]; h != nil {
		return h
	}
	h := m.latencyVec.WithLabelValues(service, backend)
	next := make(map[backendKey]prometheus.Observer, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[k] = h
	m.backends.Store(&next)
	return h
}

// labelService is the service label of a request that matched no route.
func labelService(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// waitMean is a service's queue-wait sum and count for class c, for the
// status API.
func (m *metrics) wait(service string, c scheduler.Class) (time.Duration, uint64) {
	m.mu.Lock()
	sc := m.services[service]
	m.mu.Unlock()
	if sc == nil {
		return 0, 0
	}
	return time.Duration(sc.waitSum[c].Load()), sc.waitCount[c].Load()
}

// requestsByCode is how many requests of a service got each status code,
// over its routes and classes, for the status API.
func (m *metrics) requestsByCode(service string) map[string]uint64 {
	out := map[string]uint64{}
	for k, rc := range *m.routes.Load() {
		if k.service != service {
			continue
		}
		for c := range rc.requests {
			for code := range rc.requests[c] {
				if n := rc.requests[c][code].Load(); n > 0 {
					out[strconv.Itoa(code)] += n
				}
			}
		}
	}
	return out
}

var (
	descRequests = prometheus.NewDesc("sluice_requests_total",
		"Requests finished, by service, route, priority class and the status code sent.",
		[]string{"service", "route", "class", "code"}, nil)
	descQueueLength = prometheus.NewDesc("sluice_queue_length",
		"Requests waiting for admission, by service and priority class.", []string{"service", "class"}, nil)
	descQueueTenants = prometheus.NewDesc("sluice_queue_tenants",
		"Tenants with requests waiting, by service.", []string{"service"}, nil)
	descAdmissions = prometheus.NewDesc("sluice_admissions_total",
		"Requests admitted, by service and whether they waited (immediate, queued).", []string{"service", "path"}, nil)
	descRefusals = prometheus.NewDesc("sluice_refusals_total",
		"Requests refused admission, by service and reason (the X-Sluice-Shed value).", []string{"service", "reason"}, nil)
	descInflight = prometheus.NewDesc("sluice_backend_inflight",
		"Requests in flight on a backend.", []string{"service", "backend"}, nil)
	descParked = prometheus.NewDesc("sluice_backend_parked",
		"Of those in flight, long-lived requests not counted against the limit.", []string{"service", "backend"}, nil)
	descLimit = prometheus.NewDesc("sluice_backend_limit",
		"The concurrency limit in force on a backend (learned, then capped).", []string{"service", "backend"}, nil)
	descCap = prometheus.NewDesc("sluice_backend_cap",
		"The ceiling on a backend's limit (slow start, agent CPU, an operator's fixed limit); 0 = none.", []string{"service", "backend"}, nil)
	descFixedLimit = prometheus.NewDesc("sluice_backend_fixed_limit",
		"The fixed limit an operator set on a backend; 0 = none.", []string{"service", "backend"}, nil)
	descWeight = prometheus.NewDesc("sluice_backend_weight",
		"A backend's relative share of traffic.", []string{"service", "backend"}, nil)
	descLatencyEWMA = prometheus.NewDesc("sluice_backend_latency_ewma_seconds",
		"A backend's recent (EWMA) latency to the response headers, as the scheduler sees it.", []string{"service", "backend"}, nil)
	descState = prometheus.NewDesc("sluice_backend_state",
		"1 for a backend's scheduler state (up, down, draining), 0 for the others.", []string{"service", "backend", "state"}, nil)
	descMode = prometheus.NewDesc("sluice_backend_mode",
		"1 for a backend's operator mode (enabled, drain, disabled), 0 for the others.", []string{"service", "backend", "mode"}, nil)
	descEjected = prometheus.NewDesc("sluice_backend_ejected",
		"1 while a backend is ejected as an outlier.", []string{"service", "backend"}, nil)
	descHealthy = prometheus.NewDesc("sluice_backend_healthy",
		"1 while a backend passes its active health check (1 without one).", []string{"service", "backend"}, nil)
	descSlowStart = prometheus.NewDesc("sluice_backend_slow_start",
		"1 while a backend ramps up after coming back.", []string{"service", "backend"}, nil)
	descStandby = prometheus.NewDesc("sluice_backend_standby_active",
		"1 for an active standby backend.", []string{"service", "backend"}, nil)
	descAgentCPU = prometheus.NewDesc("sluice_backend_agent_cpu_ratio",
		"The CPU utilisation (0-1) a backend's agent last reported; absent without a sample.", []string{"service", "backend"}, nil)
	descAgentAge = prometheus.NewDesc("sluice_backend_agent_age_seconds",
		"Age of a backend's last agent sample; absent without one.", []string{"service", "backend"}, nil)
	descPoolConns = prometheus.NewDesc("sluice_pool_connections",
		"Connections to a backend: open (in use, idle or dialing) and idle.", []string{"service", "backend", "state"}, nil)
	descDials = prometheus.NewDesc("sluice_pool_dials_total",
		"Connections dialed to a backend.", []string{"service", "backend"}, nil)
	descDialFailures = prometheus.NewDesc("sluice_pool_dial_failures_total",
		"Dials to a backend that failed.", []string{"service", "backend"}, nil)
	descStandbyConfigured = prometheus.NewDesc("sluice_standby_configured",
		"Standby backends configured, by service.", []string{"service"}, nil)
	descReloads = prometheus.NewDesc("sluice_reloads_total",
		"Configuration reloads (SIGHUP or the admin API), by result (ok, failed).", []string{"result"}, nil)
	descHedges = prometheus.NewDesc("sluice_hedges_total",
		"Hedged requests by what happened: sent (to a second backend), won (answered first), budget-denied (the route's budget was spent), no-capacity (no other backend had room at once).",
		[]string{"service", "result"}, nil)
	descCacheRequests = prometheus.NewDesc("sluice_cache_requests_total",
		"Requests on cached routes by what the cache did: hit, miss, stale (served stale), revalidated (a 304 confirmed the stored copy).",
		[]string{"service", "result"}, nil)
	descCacheCoalesced = prometheus.NewDesc("sluice_cache_coalesced_waits_total",
		"Requests that waited for another request's fetch of the same resource.", []string{"service"}, nil)
	descCacheStores = prometheus.NewDesc("sluice_cache_stores_total",
		"Responses stored (304 updates included).", []string{"service"}, nil)
	descCacheNotStored = prometheus.NewDesc("sluice_cache_not_stored_total",
		"Responses not stored, by reason: not-storable (RFC 9111 or Set-Cookie), too-large.", []string{"service", "reason"}, nil)
	descCacheRemoved = prometheus.NewDesc("sluice_cache_removed_total",
		"Stored responses removed, by reason: evicted (memory bound), invalidated (unsafe method), purged (admin API).",
		[]string{"service", "reason"}, nil)
	descCacheBytes = prometheus.NewDesc("sluice_cache_bytes",
		"Memory the stored responses take, as the cache counts it.", []string{"service"}, nil)
	descCacheMaxBytes = prometheus.NewDesc("sluice_cache_max_bytes",
		"The cache's memory bound.", []string{"service"}, nil)
	descCacheEntries = prometheus.NewDesc("sluice_cache_entries",
		"Responses stored.", []string{"service"}, nil)
	descParkedConns = prometheus.NewDesc("sluice_client_connections_parked",
		"Idle client connections parked off their goroutines, waiting for a request.", nil, nil)
	descBuffers = prometheus.NewDesc("sluice_buffers",
		"Response and request-body buffers in use.", nil, nil)
	descBufferBytes = prometheus.NewDesc("sluice_buffer_bytes",
		"Bytes held by buffers, in memory or in temporary files.", []string{"store"}, nil)
	descBufferMaxBytes = prometheus.NewDesc("sluice_buffer_max_bytes",
		"The bound on the bytes buffers hold, in memory or in temporary files.", []string{"store"}, nil)
	descBufferFiles = prometheus.NewDesc("sluice_buffer_files",
		"Temporary files open for buffers.", nil, nil)
	descBufferSpills = prometheus.NewDesc("sluice_buffer_spills_total",
		"Buffers that went past memory into a temporary file.", nil, nil)
	descEvents = prometheus.NewDesc("sluice_events_total",
		"Events in the event log, by kind.", []string{"kind"}, nil)
)

// Describe sends nothing: the collector is unchecked, since the backends
// it reports come and go with the configuration.
func (m *metrics) Describe(chan<- *prometheus.Desc) {}

// Collect reads the counters and the gateway's snapshot.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, rc := range *m.routes.Load() {
		for c := range rc.requests {
			for code := range rc.requests[c] {
				if n := rc.requests[c][code].Load(); n > 0 {
					counter(descRequests, float64(n), labelService(rc.service), rc.route,
						scheduler.Class(c).String(), strconv.Itoa(code))
				}
			}
		}
	}
	for _, s := range m.gw.Snapshot() {
		q := s.Queue
		for c, n := range q.Queued {
			gauge(descQueueLength, float64(n), s.Name, scheduler.Class(c).String())
		}
		gauge(descQueueTenants, float64(q.Tenants), s.Name)
		counter(descAdmissions, float64(q.AdmittedFast), s.Name, "immediate")
		counter(descAdmissions, float64(q.AdmittedQueued), s.Name, "queued")
		for _, r := range refusals(q) {
			counter(descRefusals, float64(r.n), s.Name, r.reason)
		}
		gauge(descStandbyConfigured, float64(len(s.Standby)), s.Name)
		counter(descHedges, float64(s.Hedge.Sent), s.Name, "sent")
		counter(descHedges, float64(s.Hedge.Won), s.Name, "won")
		counter(descHedges, float64(s.Hedge.BudgetDenied), s.Name, "budget-denied")
		counter(descHedges, float64(s.Hedge.NoCapacity), s.Name, "no-capacity")
		if c := s.Cache; c != nil {
			counter(descCacheRequests, float64(c.Hits), s.Name, "hit")
			counter(descCacheRequests, float64(c.Misses), s.Name, "miss")
			counter(descCacheRequests, float64(c.Stale), s.Name, "stale")
			counter(descCacheRequests, float64(c.Revalidated), s.Name, "revalidated")
			counter(descCacheCoalesced, float64(c.Coalesced), s.Name)
			counter(descCacheStores, float64(c.Stores), s.Name)
			counter(descCacheNotStored, float64(c.NotStored), s.Name, "not-storable")
			counter(descCacheNotStored, float64(c.TooLarge), s.Name, "too-large")
			counter(descCacheRemoved, float64(c.Evictions), s.Name, "evicted")
			counter(descCacheRemoved, float64(c.Invalidations), s.Name, "invalidated")
			counter(descCacheRemoved, float64(c.Purged), s.Name, "purged")
			gauge(descCacheBytes, float64(c.Bytes), s.Name)
			gauge(descCacheMaxBytes, float64(c.MaxBytes), s.Name)
			gauge(descCacheEntries, float64(c.Entries), s.Name)
		}
		for _, b := range s.Backends {
			l := []string{s.Name, b.ID}
			gauge(descInflight, float64(b.Sched.Inflight), l...)
			gauge(descParked, float64(b.Sched.Parked), l...)
			gauge(descLimit, float64(b.Sched.Limit), l...)
			gauge(descCap, float64(b.Sched.Cap), l...)
			gauge(descFixedLimit, float64(b.QoS.OperatorLimit), l...)
			gauge(descWeight, b.Sched.Weight, l...)
			gauge(descLatencyEWMA, b.Sched.Latency.Seconds(), l...)
			for _, st := range []scheduler.BackendState{scheduler.StateUp, scheduler.StateDown, scheduler.StateDraining} {
				gauge(descState, bool01(b.Sched.State == st), s.Name, b.ID, st.String())
			}
			for _, md := range []proxy.BackendMode{proxy.ModeEnabled, proxy.ModeDrain, proxy.ModeDisabled} {
				gauge(descMode, bool01(b.Mode == md), s.Name, b.ID, md.String())
			}
			gauge(descEjected, bool01(b.QoS.Ejected), l...)
			gauge(descHealthy, bool01(b.QoS.Healthy || b.Leaving), l...)
			gauge(descSlowStart, bool01(b.QoS.SlowStart), l...)
			gauge(descStandby, bool01(b.Standby), l...)
			if !b.Leaving && b.QoS.AgentAge >= 0 && b.QoS.AgentState != "" {
				gauge(descAgentCPU, b.QoS.AgentCPU, l...)
				gauge(descAgentAge, b.QoS.AgentAge.Seconds(), l...)
			}
			gauge(descPoolConns, float64(b.Pool.Open), s.Name, b.ID, "open")
			gauge(descPoolConns, float64(b.Pool.Idle), s.Name, b.ID, "idle")
			counter(descDials, float64(b.Pool.Dials), l...)
			counter(descDialFailures, float64(b.Pool.DialFailures), l...)
		}
	}
	f := m.gw.Front()
	gauge(descParkedConns, float64(f.ParkedConns))
	gauge(descBuffers, float64(f.Buffers))
	gauge(descBufferBytes, float64(f.BufferMemory), "memory")
	gauge(descBufferBytes, float64(f.BufferDisk), "disk")
	gauge(descBufferMaxBytes, float64(f.BufferMemoryMax), "memory")
	gauge(descBufferMaxBytes, float64(f.BufferDiskMax), "disk")
	gauge(descBufferFiles, float64(f.BufferFiles))
	counter(descBufferSpills, float64(f.BufferSpills))
	events := m.gw.EventCounts()
	counter(descReloads, float64(events[proxy.EventReload]), "ok")
	counter(descReloads, float64(events[proxy.EventReloadFailed]), "failed")
	for _, k := range proxy.EventKinds {
		counter(descEvents, float64(events[k]), k)
	}
}

type refusal struct {
	reason string
	n      uint64
}

// refusals are a scheduler's refusal counters under the names clients see
// in X-Sluice-Shed.
func refusals(q scheduler.Stats) []refusal {
	return []refusal{
		{"queue-full", q.QueueFull}, {"queue-timeout", q.QueueTimeout}, {"deadline", q.Deadline},
		{"tenant-share", q.TenantShare}, {"no-backend", q.NoBackend}, {"canceled", q.Canceled},
	}
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
