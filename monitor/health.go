package monitor

import (
	"context"
	"io"
	"net"
	"net/http"
	"time"
)

// startChecker runs the active health check of one backend: a GET of the
// configured path every interval, on a connection of its own (never one
// of the request pools, so a check measures a fresh connection and never
// waits behind traffic).
func startChecker(s *Service, id, addr string, cfg HealthCheckConfig) *periodic {
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
	return startPeriodic(cfg.Interval, func(ctx context.Context) {
		if ok := probe(ctx, client, url, cfg); ctx.Err() == nil {
			s.healthResult(id, ok, time.Now())
		}
	})
}

// probe is one check: a status within the expected range passes.
func probe(ctx context.Context, client *http.Client, url string, cfg HealthCheckConfig) bool {
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
