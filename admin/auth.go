package admin

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// The changing calls need a bearer token when one is configured, and one
// must be configured on a non-loopback listener (Config.Validate). Reading
// needs none: the numbers are what /metrics would tell any scraper, and a
// dashboard that needs a token to look is one nobody opens during an
// incident.

// loadToken reads the token file: its content without surrounding
// whitespace (a trailing newline is how editors save files).
func loadToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("admin.token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("admin.token_file: %s is empty", path)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("admin.token_file: %s: the token must be one word", path)
	}
	return tok, nil
}

// requireToken wraps a changing handler: 401 unless the request carries
// the token (compared in constant time, so timing tells nothing of it).
func requireToken(token string, h http.Handler) http.Handler {
	if token == "" {
		return h // loopback without a token file: the machine is the boundary
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("Authorization")
		if got == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
			writeError(w, http.StatusUnauthorized, "authorization: missing bearer token")
			return
		}
		if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "authorization: wrong token")
			return
		}
		h.ServeHTTP(w, r)
	})
}
