package proxy

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/sluiceproxy/sluice/monitor"
)

// Liveness probes (scheduler/liveness.go): a backend whose whole limit is
// held by requests that have not finished, with requests queued for it,
// may be hung or may be holding long polls, and the scheduler cannot tell
// which from the requests themselves. The proxy asks the backend directly:
// a GET of the health-check path (or /) on a connection of its own, never
// a client's request. An answer below 500 is proof of life: old requests
// park, and a limit in slow start grows. A hung backend answers nothing
// and gains nothing; a backend answering 5xx is not alive in this sense
// either (a fast 500 is broken, not fast).

// livenessTimeout bounds one probe: a backend slower than this to answer
// a cheap request is no better than hung for the requests waiting.
const livenessTimeout = 2 * time.Second

// livenessProber sends the probes: one at a time per backend, chained
// while the scheduler still wants them.
type livenessProber struct {
	client *http.Client
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newLivenessProber() *livenessProber {
	ctx, cancel := context.WithCancel(context.Background())
	return &livenessProber{ctx: ctx, cancel: cancel, client: monitor.CheckClient(livenessTimeout, nil)}
}

// close stops the probes in flight and waits for them.
func (p *livenessProber) close() {
	p.cancel()
	p.wg.Wait()
}

// stepLiveness starts a probe of each of svc's backends that the
// scheduler wants probed and that has none running. The caller holds
// reloadMu.
func (s *Server) stepLiveness(svc *service, now time.Time) {
	path := svc.mon.Config().HealthCheck.Path
	if path == "" {
		path = "/"
	}
	for _, u := range svc.upstreams {
		if u.probing.Load() || !svc.sched.WantsProbe(u.id, now) {
			continue
		}
		p := u.pool.Load()
		if p == nil || !u.probing.CompareAndSwap(false, true) {
			continue
		}
		s.live.wg.Add(1)
		go s.live.run(svc, u, targetOf(p), path)
	}
}

// run probes u until the scheduler wants no more, a probe fails, or the
// server shuts down.
func (p *livenessProber) run(svc *service, u *upstream, t monitor.Target, path string) {
	defer p.wg.Done()
	defer u.probing.Store(false)
	client := p.client
	if t.TLS != nil {
		// An https:// backend is probed over TLS, verified as its
		// requests are; probes are rare, so a client of its own is cheap.
		client = monitor.CheckClient(livenessTimeout, t.TLS)
		defer client.CloseIdleConnections()
	}
	url := t.URL(path)
	for p.ctx.Err() == nil {
		sent := time.Now()
		if !p.alive(client, url) {
			return
		}
		now := time.Now()
		svc.sched.Alive(u.id, sent, now)
		if !svc.sched.WantsProbe(u.id, now) {
			return
		}
	}
}

// alive sends one probe: any answer below 500 is proof of life.
func (p *livenessProber) alive(client *http.Client, url string) bool {
	st := monitor.CheckStatus(p.ctx, client, url, "sluice-liveness-probe")
	return st != 0 && st < 500
}
