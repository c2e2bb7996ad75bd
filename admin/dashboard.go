package admin

import (
	_ "embed"
	"net/http"
)

// The dashboard is one page with its script and styles inline, embedded
// in the binary: nothing is fetched from anywhere but this listener, so
// it works on a machine without internet access and cannot be broken by
// a CDN. The page polls /api/v1/status and /api/v1/events and keeps the
// last minutes of samples itself; the server keeps no history for it.
//
//go:embed dashboard.html
var dashboardHTML []byte

func (s *Server) handleDashboard(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// Only this listener: the page needs nothing else.
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:")
	_, _ = w.Write(dashboardHTML)
}
