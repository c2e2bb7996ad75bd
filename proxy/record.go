package proxy

import (
	"time"

	"github.com/sluiceproxy/sluice/scheduler"
)

// The last stage: the exchange gives back what it holds (the backend
// connection, the scheduler's slot) and reports once to the observers
// (observe.go).

// finish ends an exchange that got a backend response: it gives the
// connection back (kept only if the body was read to its end), reports
// the outcome, logs, and recycles the exchange. clientErr is why writing
// to the client stopped, if it did.
func (x *exchange) finish(clientErr error) {
	now := time.Now()
	o, clientErr := x.settle(clientErr, now)
	if x.cache != nil {
		x.cacheFinish() // the client has the whole answer: store it (cache.go)
	}
	x.record(now, o, clientErr)
	x.s.releaseExchange(x)
}

// settle is the backend's half of finish: the connection goes back (or is
// closed), the scheduler learns the outcome and the attempt is noted. A
// spooled response settles when the backend is done (spool.go), the
// client's half follows when the client is.
func (x *exchange) settle(clientErr error, now time.Time) (scheduler.Outcome, error) {
	// A client that left once its whole answer was written (the watch may
	// see it close a moment before this runs) was served; one that left
	// before was not, whatever the body read says.
	gone := x.unwatch()
	complete := x.bodyDone && x.bodyErr == nil && clientErr == nil
	gone = gone && !complete
	if gone {
		clientErr = errClientGone // what the write or read then failed on follows from it
	}
	if x.conn != nil {
		x.backend.ReleaseAt(x.conn, x.bodyDone && x.bodyErr == nil && !x.backendDrop && !x.gone, now)
		x.conn = nil
	}
	var o scheduler.Outcome
	switch {
	case gone:
		o = scheduler.Ignore
	case x.bodyErr != nil:
		o = scheduler.Failure // the backend broke off its body
	case !x.bodyDone || clientErr != nil:
		o = scheduler.Ignore // the client went away
	case x.status >= 500:
		o = scheduler.Failure
	default:
		o = scheduler.Success
	}
	if o == scheduler.Success {
		// Only answers teach a backend's latency to the hedges: one
		// failing fast is not fast (latency.go).
		x.recordLatency(x.latency)
	}
	x.done(o, now)
	if o != scheduler.Ignore {
		x.attempts = append(x.attempts, attemptResult{up: x.up, failed: o == scheduler.Failure, latency: x.latency})
	}
	return o, clientErr
}

// fail answers a request that got no backend response.
func (x *exchange) fail(err error) {
	x.unwatch()
	if x.conn != nil {
		x.backend.Release(x.conn, false)
		x.conn = nil
	}
	now := time.Now()
	x.done(scheduler.Ignore, now)
	var sched *scheduler.Scheduler
	if x.svc != nil {
		sched = x.svc.sched
	}
	if len(x.reqID) == 0 {
		x.reqID = newRequestID(x.reqID[:0])
	}
	x.status, x.shed, x.scratch = writeError(x.ctx, err, sched, x.reqID, now, x.scratch)
	x.record(now, scheduler.Ignore, err)
	x.s.releaseExchange(x)
}

// recordLatency adds a sample to the backend's latency and its service's,
// which hedges wait on (hedge.go, latency.go).
func (x *exchange) recordLatency(d time.Duration) {
	x.up.lat.record(d)
	x.svc.lat.record(d)
}
