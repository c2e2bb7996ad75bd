package monitor

import (
	"context"
	"io"
	"net"
	"net/http"
	"time"
)

// checker runs the active health check of one backend: a GET of the
// configured path every interval, on a connection of its own (never one
// of the request pools, so a check measures a fresh connection and never
// waits behind traffic).
type checker struct {
	stopCh chan struct{}
	done   chan struct{}
}

func startChecker(s *Service, id, addr string, cfg HealthCheckConfig) *checker {
	c := &checker{stopCh: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{
		Timeout: cfg.Timeout,
		Transport: &http.Transport{
			DialContext:       (&net.Dialer{Timeout: cfg.Timeout}).DialContext,
			DisableKeepAlives: true,
			Proxy:             nil,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	url := "http://" + addr + cfg.Path
	go func() {
		defer close(c.done)
		t := time.NewTicker(cfg.Interval)
		defer t.Stop()
		for {
			ok := probe(client, url, cfg, c.stopCh)
			select {
			case <-c.stopCh:
				return
			default:
			}
			s.healthResult(id, ok, time.Now())
			select {
			case <-c.stopCh:
				return
			case <-t.C:
			}
		}
	}()
	return c
}

// probe is one check: a status within the expected range passes.
func probe(client *http.Client, url string, cfg HealthCheckConfig, stop <-chan struct{}) bool {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", "sluice-health-check")
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode >= cfg.ExpectStatusMin && resp.StatusCode <= cfg.ExpectStatusMax
}

// stopAsync asks the check to stop and returns at once (callers holding
// the monitor's lock: the check may be waiting for it).
func (c *checker) stopAsync() {
	select {
	case <-c.stopCh:
	default:
		close(c.stopCh)
	}
}

// stop stops the check and waits for it.
func (c *checker) stop() {
	c.stopAsync()
	<-c.done
}
