package monitor

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"time"
)

// startChecker runs the active health check of one backend: a GET of the
// configured path every interval, on a connection of its own (never one
// of the request pools, so a check measures a fresh connection and never
// waits behind traffic).
func startChecker(s *Service, id string, t Target, cfg HealthCheckConfig) *periodic {
	client := &http.Client{
		Timeout: cfg.Timeout,
		Transport: &http.Transport{
			DialContext:       (&net.Dialer{Timeout: cfg.Timeout}).DialContext,
			DisableKeepAlives: true,
			Proxy:             nil,
			// An https:// backend is checked over TLS, verified as its
			// requests are: a certificate that fails them fails the check.
			TLSClientConfig: t.TLS,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	url := t.URL(cfg.Path)
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

// Target is where a backend's health check goes: its address and, for an
// https:// backend, the TLS client configuration its requests use.
type Target struct {
	Addr string      // host:port
	TLS  *tls.Config // nil: plain HTTP
}

// URL is the check's URL for path.
func (t Target) URL(path string) string {
	if t.TLS != nil {
		return "https://" + t.Addr + path
	}
	return "http://" + t.Addr + path
}
