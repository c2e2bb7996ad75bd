// Package proxy is Sluice's front end: a fasthttp server that routes each
// request to a service, classifies it, asks the service's scheduler for a
// backend slot, forwards it over a pooled channel and streams the answer
// back.
//
// # Request path
//
// handle takes a pooled exchange, which holds everything a request needs
// (the backend request and response, the body readers handed to fasthttp,
// scratch buffers), so that a proxied request allocates nothing in steady
// state (TestProxyZeroAlloc). The request is checked (URL length, header
// ambiguities), routed (host, path prefix, headers; no routes means the
// first service; routes that all miss mean 404), classified (priority
// header, else the route's, else normal; tenant from header, API key or
// client IP; deadline from the route timeout and the client's
// X-Sluice-Timeout), then admitted: TryAdmit first, and only if that fails
// Admit with a context that is cancelled when the client hangs up (fasthttp
// does not notice). With an adaptive limit below the number of client
// connections nearly every request waits a moment, so that path allocates
// nothing: the context is the exchange's own (waitCtx), and one goroutine
// per server (queueWatch) peeks with MSG_PEEK, every 25 ms, at the sockets
// of requests that have been queued that long, and exists only while
// something is queued.
//
// # Clients that leave
//
// The same watch covers a request at a backend, from the moment it is
// sent to the end of its response: a client found gone (its socket peeks
// EOF or a reset) has its backend connection closed on the spot, within a
// tick or two of 25 ms, so that the origin sees its connection end and
// can stop working for nobody. The request then ends as errClientGone
// (recorded as 499, nginx's convention) with outcome Ignore: neither a
// success nor the backend's failure, and the connection is never reused.
// A client that closes mid-upload is the same case, seen by the body read
// (a truncated body is never completed to the backend). As with nginx's
// default, a client that half-closes its connection after sending the
// request counts as gone. Registration is two short critical sections
// per request and the watch goroutine lingers a second after the set
// empties, so a light load does not start one per request.
//
// # Stages and the observer point
//
// A request passes through stages, one concern and one file each:
// request.go routes and classifies it and prepares the backend request;
// admit.go gets a ticket from the service's scheduler; upstream.go sends
// it to the ticket's backend and reads the response headers, retrying
// where that is safe; relay.go streams the response to the client (and
// the client's body to the backend); record.go gives back the connection
// and the slot and reports. Every finished request, answered, refused or
// failed, reports exactly once to the observers (observe.go): one Record
// with service, route, backend, class, status, shed reason, outcome, bytes
// and durations, valid only during the call. The access log is the first
// observer; the monitor and the metrics attach the same way.
//
// # The cache stage
//
// On a route with a cache (cache.go, the rules in package cache), run
// ends in cached instead of forward: a fresh hit is answered there,
// before admission; a miss or a revalidation goes through forward with a
// cacheFlow attached, which the body read feeds (tee) and finish
// consults (cacheFinish) to store the response, apply a 304 or put a
// stale copy in place of a 5xx; a refusal or a failed fetch is answered
// with a stale copy where allowed. The flow is allocated per such request
// and outlives the exchange, which finish may recycle before forward
// returns. Routes without a cache pay three nil checks.
//
// # Hedged requests
//
// On a route with a hedge policy (hedge.go), a GET, HEAD or OPTIONS
// request without a body arms a timer when it is sent to its backend,
// for a percentile of that backend's recent latency (latency.go: a
// histogram per backend, of successful responses, with primaries cut off
// by their hedge counted as censored samples). If the timer fires first,
// the hedge asks the scheduler for another backend with TryAdmit (never
// queued, none while anything waits) and the route's budget for a token,
// and sends the same request there on the timer's goroutine. One state
// under the hedge's lock decides the race: the first response headers
// win and the loser's backend connection is closed (a hedge that lost
// ends Ignore; a primary cut off by its hedge ends as a success at the
// hedge's delay plus its answer, a lower bound that keeps the scheduler
// steering away from a stalling backend); a winning hedge's ticket, connection and response move into
// the exchange, which relays and settles them as its own. A primary that
// fails while its hedge is in flight waits for the hedge, which counts as
// the one retry. An armed hedge that never fires allocates nothing (a
// pooled hedge with its own timer; TestHedgeArmedZeroAlloc).
//
// # Live configuration
//
// What a reload may change (routes, classification, limits, timeouts, the
// services' queue policies, backends and pool settings) is compiled into
// one immutable liveConfig that a request loads once at arrival and keeps
// to the end; Reload builds the next one and swaps the pointer (live.go).
// Services outlive reloads by name and backends by URL: a service's
// scheduler is reconfigured in place, so its queue and its backends'
// learned limits stay. The scheduler hands every ticket's upstream back as
// the backend's tag, so the request path never looks a backend up. A
// backend a reload removes drains (nothing new; the pool closes once its
// requests are done, within ShutdownGrace); a service it removes serves
// its queue out before its pools close; a pool whose settings changed is
// replaced for new requests and closed once idle.
//
// # Standby backends
//
// The monitor decides when a service's standbys come and go
// (monitor/standby.go); standby.go feeds it and carries the decisions
// out. The feed costs the request path two atomic adds (the queue wait
// and the latency, into fixed histograms drained every half second); the
// rest is read from the scheduler's counters by the tick loop. An
// activated standby's pool is warmed on a goroutine of its own, then the
// standby joins the scheduler capped at one request and the monitor's
// slow start lifts the cap; a released one drains exactly as a backend a
// reload removes. To a reload, an active standby still listed as a
// standby is one more backend of its service, so it stays with what it
// learned. The provisioning hooks run on goroutines of their own, at most
// maxHooks at once, and Shutdown waits for them (each bounded by its
// timeout).
//
// # Runtime changes, snapshots and events
//
// An operator's changes (runtime.go: drain, disable, enable, weight, a
// fixed limit, adding and removing a backend) take reloadMu as a reload
// does. Adding and removing derive the next configuration from the
// running one and apply it through the reload's own path (applyLocked),
// so the running configuration always says what is in force and a later
// reload re-applies the file; drain, disable and the fixed limit are
// overrides the monitor combines with the backend's health
// (monitor.Service.SetOperator), so an ejection ending does not undo them.
// Snapshot joins the scheduler's, the monitor's and the pools' views of
// every backend for the admin listener. Every event (the monitor's,
// reloads, an operator's changes, a standby's pool being ready) goes
// through one sink, emit (events.go): a log line marked "log":"event",
// a bounded ring and a count per kind.
//
// # Streaming
//
// This is the path of a response that is not spooled, and of a request
// body that is not (see Buffering). The server runs with StreamRequestBody. A body with a Content-Length up
// to 8 KiB (what fasthttp pre-reads anyway) is copied into the exchange,
// which makes it replayable on another backend; larger and chunked bodies
// are streamed into the backend request with SetBodyStream and cannot be
// re-sent. The backend response is read with StreamBody and given to the
// client with Response.SetBodyStream; fasthttp pulls it as it writes and
// closes it at the end, which is where the connection returns to the pool
// (or is closed if the body was not read to its end), the scheduler gets
// Done with the outcome, and the request reports to the observers. Trailers are
// copied across at the end of each chunked body in both directions. Memory
// per request is thus a few buffers whatever the body size.
//
// # Buffering
//
// A response that does not fit the client write buffer is spooled
// (spool.go, buffer.go) unless its route says buffering: off, its
// Content-Type is text/event-stream or the backend sent X-Accel-Buffering:
// no. A goroutine of the exchange's own (fill) reads the backend's body
// into the spool as fast as the backend sends it, while fasthttp relays it
// from the spool at the client's pace, concurrently: bytes go on as soon
// as they arrive, so buffering adds no latency and a stream that trickles
// still trickles through, and the spool only fills while the backend is
// faster than the client. The rule is thus "buffer while the backend is
// ahead", not a timer or a size guess. The spool holds memory chunks up to
// Buffering.MemoryPerRequest and, past that or when Buffering.MemoryMax is
// spent, a temporary file up to FilePerRequest within DiskMax; the file is
// unlinked as soon as it is made, so no name outlives a response, a client
// that leaves, a shutdown or a crash. When neither may grow, the writer
// waits for the reader: the rest flows at the client's pace and the slot
// is held until the backend has sent it, as without a spool.
//
// When the backend's body ends, fill settles the backend's half of the
// exchange (record.go: settle): the watch ends, the connection goes back
// to its pool (or is closed), the scheduler gets Done with the outcome and
// the latency, and the backend's in-flight count drops. The client's half
// follows when fasthttp closes the body stream: whichever of the two ends
// last reports the Record (once, with the bytes the client got) and
// recycles the exchange. A client that leaves early closes the backend
// connection under a fill still reading (the watch does it as well), and
// the request ends as the client's (Ignore, 499), not the backend's.
//
// Request bodies past the 8 KiB prefetch are spooled the same way
// (spoolRequest) before admission when the route's request buffering is on
// (the default): a slow upload then holds no slot and no backend while it
// arrives. What outgrows the spool follows from the client after the
// spooled part. A spooled body is streamed to the backend once and not
// replayed, as a streamed one.
//
// # Per-client limits
//
// clients.go: a listener that counts connections per client IP and in all
// refuses those over ClientsConfig's limits with a ready-made response
// from errorTable (rawError) before fasthttp reads from them; a token
// bucket per client IP refuses requests over the rate at the start of
// run. Both are off by default and cost nothing then; with the rate on, a
// request from a known IP costs a lock and a map lookup. Refusals are
// logged at most once a second per kind.
//
// # HTTP semantics
//
// As in net/http/httputil: hop-by-hop headers and those named in
// Connection are removed both ways (TE: trailers survives). Every
// Connection field line counts, however many there are, each a
// comma-separated list of options in any case and with optional
// whitespace (RFC 9110 7.6.1); an option naming Host or Content-Length is
// not obeyed, since the proxy sets those on what it sends. Expect is
// answered by the front end itself, X-Forwarded-For is appended to,
// X-Forwarded-Proto and X-Forwarded-Host are set, Via is added both ways,
// Host passes through unless the service rewrites it, and the request
// target is forwarded byte for byte from the raw request line (no
// normalisation, no re-encoding). An absolute-form target
// ("GET http://h:8080/a?x") is accepted for http and https: its authority
// replaces Host (RFC 9112 3.2.2), so routing by host, X-Forwarded-Host and
// the backend's Host all use it, and the backend gets origin form
// ("/a?x"; "/" for an empty path, "*" for OPTIONS). Another scheme,
// userinfo, an empty authority or a character outside host and port syntax
// is 400. X-Request-Id is kept when the client sent a sane one and
// generated otherwise (a random per-process prefix and an atomic counter),
// sent to the backend, returned and logged.
//
// An HTTP/1.0 client never receives Transfer-Encoding (RFC 9112 6.1): a
// response of known length keeps Content-Length (and the keep-alive the
// client asked for); one of unknown length, chunked by the backend or
// delimited by its close, is streamed to it delimited by the close of the
// connection, with Connection: close. fasthttp chunks every streamed body
// of unknown length, so for that case the proxy serialises the header
// block itself and streams the body on the hijacked connection
// (respondUntilClose); Shutdown waits for such responses until its
// context ends and then cuts them off. The response's version is the
// proxy's own, HTTP/1.1, whatever the backend's (RFC 9110 6.2).
//
// A backend's 1xx responses but 101 (103 Early Hints, 102) reach an
// HTTP/1.1 client ahead of the final response, each as it arrives, with
// hop-by-hop fields removed and Via added (RFC 9110 15.2). fasthttp's
// response parser drops them, so the upstream stage reads them itself
// before the final response (interim.go). A backend's 100 Continue is
// dropped: the front end answers Expect: 100-continue itself and does not
// forward Expect. An HTTP/1.0 client is sent no 1xx.
//
// # TLS
//
// ServeTLS serves a second listener on the same fasthttp server (tls.go).
// Its certificates are chosen by SNI, by the names each one holds, with
// the first as the default, through GetCertificate over a set held in an
// atomic pointer: Reload reads every file again before anything else of
// the new configuration is applied, and a certificate that does not load
// refuses the reload with the running set kept. The handshake runs on the
// connection's goroutine, not in Accept, and is bounded both ways by
// Timeouts.ClientHeader (HandshakeContext): fasthttp arms only a read
// deadline for it. ALPN offers http/1.1 alone. An https:// backend's pool
// dials TLS, the handshake inside its connect timeout, verified against
// the system roots or pool.TLSConfig's CA file; its health checks and
// liveness probes use the same client configuration.
//
// # Upgrade
//
// A request naming "upgrade" in Connection, with an Upgrade field, goes
// out with both (upgrade.go); a 101 from the backend is relayed with them
// and the connections become a tunnel on the hijacked client connection
// and a backend connection detached from its pool, until either side
// closes or Timeouts.TunnelIdle passes without a byte either way. The
// admission ticket ends at the 101 (a success, with the latency to it), so
// a tunnel never holds one of the backend's concurrency slots; the open
// tunnels are a relaySet that Shutdown waits for until its context ends
// and then closes. Any other answer is an ordinary response. An Upgrade
// in an HTTP/1.0 request or with a streamed body is ignored (RFC 9110
// 7.8): the protocol may only switch after the whole request.
//
// # Malformed requests
//
// fasthttp (1.78) itself rejects invalid and repeated Content-Length,
// duplicate Host, NUL and CR inside values, whitespace before the first
// header or before a colon, most non-token characters in header names,
// unknown transfer codings and bad chunk sizes. It lets through
// Content-Length together with Transfer-Encoding (Transfer-Encoding wins),
// obs-fold (it unfolds the line into the previous value) and a space inside
// a header name. checkRawHeaders rejects those on the raw header block, and
// checks repeated Content-Length, leading whitespace, non-token names and
// control characters there again, so that what reaches a backend does not
// depend on what a fasthttp version happens to reject. All are 400 with
// Connection: close and never reach a backend, with one limit: a bad chunk
// deep inside a streamed body is only seen after earlier chunks were
// forwarded; the backend then sees a truncated request, never a complete
// one.
//
// # Failures and retries
//
// A request whose connection could not be made (refused, pool full) goes
// to another backend of the service: the failed one is set in
// Request.Exclude and the request is admitted again (outcome Ignore). A
// pooled connection that turns out dead before any response byte is
// replaced by a fresh one when re-sending is safe: nothing of a streamed
// body was consumed, and the method is idempotent or not one byte reached
// the socket. After a backend failed a request it had received, an
// idempotent request with a replayable body is sent once more elsewhere;
// a non-idempotent one never is. A response-header timeout is not retried
// (doubling work on a slow backend is what admission control exists to
// avoid) and is 504; no answer at all is 502.
//
// # Errors
//
// errorTable in errors.go is the only place where an error becomes a
// status: the scheduler's sentinels are 503 (429 for ErrTenantShare) with
// Retry-After and X-Sluice-Shed; the per-client limits are 429
// (client-rate, client-conns) and 503 (conn-limit), shed the same way; the
// proxy's own are 502, 504, 413, 414, 431, 404, 408 and 400. Every error response carries a plain-text body
// with the request ID.
//
// # Logging
//
// The access log is zerolog into a buffer flushed when full, every
// Log.AccessLogFlush, and on Shutdown: no write syscall per request.
// Log.AccessLogSample keeps a fraction of the lines, chosen by a counter
// (one atomic add), for request rates at which even that costs too much.
//
// # Idle connections
//
// A plain TCP client connection that has waited parkAfter (100 ms) for
// its next request, or for its first, leaves fasthttp's serving
// goroutine and waits in the idle parker's epoll set with no goroutine
// and no buffer (idle.go, idle_linux.go); bytes or a hang-up bring it
// back to fasthttp's ServeConn on a new goroutine. A parked connection is
// closed, silently, when the deadline of its wait passes (Timeouts.Idle
// between requests, Timeouts.ClientHeader before the first) and at
// Shutdown. Only the wait between requests parks, never a request being
// read or served, nor a connection taken over (tunnels, close-delimited
// responses). TLS connections keep their goroutines.
//
// # Timeouts
//
// Timeouts.ClientHeader bounds reading the request head, ClientBody each
// read of the body, ClientWrite each write of a streamed response, Idle the
// wait for the next request; pool.Config bounds dialing, the wait for
// response headers and each read of the response body.
//
// Every deadline change is a runtime timer update, so the request path
// makes few: one call arms a backend connection's read and write deadlines
// for a request without a streamed body, and is skipped while the armed
// ones are within 1/64 of the timeout of what is wanted
// (pool.Conn.ArmDeadline); the response body renews the backend deadline
// only before a read that must go to the socket. A small response (it fits
// the 16 KiB client write buffer) is sent whole in the one write after the
// handler, as fasthttp does for any handler, without a client write
// deadline; a larger or chunked one renews the client write deadline before
// each piece.
package proxy
