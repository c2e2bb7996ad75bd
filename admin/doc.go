// Package admin is Sluice's admin listener: /metrics for Prometheus, a
// JSON API to look at the services and to change backends at run time, a
// dashboard page, and the event log. It is plain net/http on a listener of
// its own, off the request path: a slow scrape or a browser tab left open
// takes nothing from the proxied traffic.
//
// # Contract
//
// The package owns no gateway state. It reads snapshots
// (proxy.Server.Snapshot, Events, EventCounts, which carry the scheduler's
// and the monitor's views) and makes changes only through the gateway's
// runtime-change methods (SetBackendMode, SetBackendWeight,
// SetBackendLimit, AddBackend, RemoveBackend) and the reload function
// cmd/sluice gives it, the same path SIGHUP takes. Each change is applied
// whole or not at all, and is logged as an event by the gateway.
//
// The one thing it keeps is counters: the metrics observer (metrics.go)
// counts each finished request by service, route, class and status, its
// queue wait and its backend latency, with atomic adds into counters
// resolved once per service, route and backend, so that the request path
// allocates nothing for it. Everything else is read at scrape time.
//
// # API
//
//	GET  /metrics            Prometheus exposition
//	GET  /api/v1/status      every service, its queue by class, its backends
//	GET  /api/v1/events      the event ring (?since=SEQ for the newer ones)
//	GET  /                   the dashboard
//	POST /api/v1/drain       {"service","backend"}: nothing new, in-flight finishes
//	POST /api/v1/disable     {"service","backend"}
//	POST /api/v1/enable      {"service","backend"}
//	POST /api/v1/weight      {"service","backend","weight"}
//	POST /api/v1/limit       {"service","backend","limit"}: a fixed ceiling; 0 lifts it
//	POST /api/v1/add         {"service","backend"}: a new backend URL
//	POST /api/v1/remove      {"service","backend"}
//	POST /api/v1/reload      re-applies the configuration file
//	POST /api/v1/cache/purge {"service","key"} or {"service","prefix"}: stored responses removed
//
// Bad input is 400 with a message that names the field, an unknown
// service or backend 404, a missing or wrong token 401.
//
// # Security
//
// The listener is off unless configured (Config). On loopback the machine
// is the boundary; on any other address the changing calls need a bearer
// token read from a file, and the listener refuses to start without one.
// Reading needs no token. See auth.go.
package admin
