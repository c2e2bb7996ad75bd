package proxy

import (
	"time"

	"github.com/sluiceproxy/sluice/scheduler"
)

// The admission stage: a ticket from the service's scheduler, at once or
// after waiting in its queue.

// admit gets a ticket: at once if the scheduler has room, else by waiting
// in its queue, watched for the client hanging up.
func (x *exchange) admit() error {
	now := time.Now()
	t, ok := x.svc.sched.TryAdmit(&x.sreq, now)
	if !ok {
		var err error
		t, err = x.admitQueued()
		if err != nil {
			return err
		}
		now = time.Now()
	}
	x.ticket = t
	x.admitted = true
	x.now = now
	if x.admitted0.IsZero() {
		x.admitted0 = now
	}
	return nil
}

// admitQueued waits in the scheduler's queue, watched for the client
// hanging up. With an adaptive limit below the number of client
// connections nearly every request comes here, so it allocates nothing and
// starts no goroutine: the context is the exchange's own and one watch
// goroutine serves the whole server (see queueWatch).
func (x *exchange) admitQueued() (scheduler.Ticket, error) {
	w := &x.s.watch
	watched := w.add(&x.wait, x.ctx.Conn(), x.arrival)
	t, err := x.svc.sched.Admit(&x.wait, &x.sreq)
	if watched {
		w.remove(&x.wait)
	}
	x.wait.reset()
	return t, err
}

// done returns the ticket's slot with an outcome.
func (x *exchange) done(o scheduler.Outcome, now time.Time) {
	if !x.admitted {
		return
	}
	x.admitted = false
	x.svc.sched.Done(x.ticket, o, x.latency, now)
	if x.backend != nil {
		x.backend.FinishRequest(o == scheduler.Failure)
	}
}
