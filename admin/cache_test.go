package admin

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The cache's figures reach /metrics, and the purge call removes stored
// responses by key or by prefix.
func TestCacheMetricsAndPurge(t *testing.T) {
	r := newRig(t, rigOptions{cache: true})
	for _, path := range []string{"/a", "/b", "/a"} {
		resp, err := http.Get("http://" + r.addr + path)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		assert.NotEmpty(t, resp.Header.Get("X-Sluice-Cache"))
	}
	m := string(r.get("/metrics"))
	assert.Contains(t, m, `sluice_cache_entries{service="web"} 2`)
	assert.Contains(t, m, `sluice_cache_requests_total{result="miss",service="web"}`)
	assert.Contains(t, m, `sluice_cache_stores_total{service="web"} 3`)
	assert.Contains(t, m, `sluice_cache_bytes{service="web"}`)
	assert.Contains(t, m, `sluice_cache_coalesced_waits_total{service="web"} 0`)

	code, out := r.call(http.MethodPost, "/api/v1/cache/purge", `{"service":"web","key":"127.0.0.1/a"}`, "")
	require.Equal(t, http.StatusOK, code, out)
	assert.EqualValues(t, 1, out["purged"])
	code, out = r.call(http.MethodPost, "/api/v1/cache/purge", `{"service":"web","prefix":"127.0.0.1/"}`, "")
	require.Equal(t, http.StatusOK, code, out)
	assert.EqualValues(t, 1, out["purged"])
	m = string(r.get("/metrics"))
	assert.Contains(t, m, `sluice_cache_entries{service="web"} 0`)
	assert.Contains(t, m, `sluice_cache_removed_total{reason="purged",service="web"} 2`)

	for _, tc := range []struct {
		body string
		code int
		msg  string
	}{
		{`{"key":"x"}`, 400, "service"},
		{`{"service":"web"}`, 400, "key"},
		{`{"service":"web","key":"a","prefix":"b"}`, 400, "prefix"},
		{`{"service":"web","keys":"a"}`, 400, "keys: unknown field"},
		{`{"service":"nope","key":"a"}`, 404, "unknown service"},
	} {
		code, out := r.call(http.MethodPost, "/api/v1/cache/purge", tc.body, "")
		assert.Equal(t, tc.code, code, tc.body)
		assert.True(t, strings.Contains(out["error"].(string), tc.msg), "%s: %v", tc.body, out)
	}
}

// A service without a cache has nothing to purge: 404.
func TestCachePurgeWithoutCache(t *testing.T) {
	r := newRig(t, rigOptions{})
	code, out := r.call(http.MethodPost, "/api/v1/cache/purge", `{"service":"web","key":"a"}`, "")
	assert.Equal(t, http.StatusNotFound, code)
	assert.Contains(t, out["error"], "no cache")
	assert.NotContains(t, string(r.get("/metrics")), "sluice_cache_")
}
