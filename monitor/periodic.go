package monitor

import (
	"context"
	"time"
)

// periodic runs one backend's poll (the health check, the agent) every
// interval on a goroutine of its own, with a context that stop cancels, so
// a poll under way ends at once rather than at its timeout; a poll whose
// context is done drops its result.
type periodic struct {
	stopCh chan struct{}
	done   chan struct{}
}

func startPeriodic(every time.Duration, poll func(ctx context.Context)) *periodic {
	p := &periodic{stopCh: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-p.stopCh:
				cancel()
			case <-ctx.Done():
			}
		}()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			poll(ctx)
			select {
			case <-p.stopCh:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

// stopAsync asks the poll to stop and returns at once (callers holding
// the monitor's lock: the poll may be waiting for it).
func (p *periodic) stopAsync() {
	select {
	case <-p.stopCh:
	default:
		close(p.stopCh)
	}
}

// stop stops the poll and waits for it.
func (p *periodic) stop() {
	p.stopAsync()
	<-p.done
}
