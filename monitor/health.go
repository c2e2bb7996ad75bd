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
	client := CheckClient(cfg.Timeout, t.TLS)
	url := t.URL(cfg.Path)
	return startPeriodic(cfg.Interval, func(ctx context.Context) {
		if ok := probe(ctx, client, url, cfg); ctx.Err() == nil {
			s.healthResult(id, ok, time.Now())
		}
	})
}

// CheckClient is the HTTP client of a check of a backend, health check
// or liveness probe: a fresh connection per request, bounded by timeout,
// no redirect followed, and for an https:// backend (tc set) TLS verified
// as its requests are, so that a certificate that fails them fails the
// check too.
func CheckClient(timeout time.Duration, tc *tls.Config) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:       (&net.Dialer{Timeout: timeout}).DialContext,
			DisableKeepAlives: true,
			Proxy:             nil,
			TLSClientConfig:   tc,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// CheckStatus sends one GET of url as userAgent and returns the status of
// the answer, its body read and dropped; 0 when none came.
func CheckStatus(ctx context.Context, client *http.Client, url, userAgent string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode
}

// probe is one check: a status within the expected range passes.
func probe(ctx context.Context, client *http.Client, url string, cfg HealthCheckConfig) bool {
	st := CheckStatus(ctx, client, url, "sluice-health-check")
	return st != 0 && st >= cfg.ExpectStatusMin && st <= cfg.ExpectStatusMax
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
