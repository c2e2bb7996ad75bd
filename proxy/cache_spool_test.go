package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

// A spooled response (larger than the client write buffer) ends on the
// spool's goroutine, and that end may come after fasthttp wrote the
// response and read the connection's next request into the same ctx.
// What the cache stores must still be this request's and this
// response's: here each response varies on X-V and the next request on
// the keep-alive connection carries another X-V, so a store that read
// ctx late would file the response under the next request's variant
// (and, under -race, the detector sees the two goroutines meet in ctx).
func TestCacheSpooledEndOwnsItsHeaders(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 40<<10)
	o := startOriginLog(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Cache-Control", "max-age=60")
		ctx.Response.Header.Set("Vary", "X-V")
		ctx.Response.Header.Set("X-Echo", string(ctx.Request.Header.Peek("X-V")))
		ctx.Write(big) //nolint:errcheck
	})
	p := startProxy(t, cachedService(o.addr))
	cn, err := net.Dial("tcp", p.addr)
	require.NoError(t, err)
	defer cn.Close()
	br := bufio.NewReader(cn)
	do := func(path, v string) *http.Response {
		t.Helper()
		_, err := fmt.Fprintf(cn, "GET %s HTTP/1.1\r\nHost: example.test\r\nX-V: %s\r\n\r\n", path, v)
		require.NoError(t, err)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		n, err := io.Copy(io.Discard, resp.Body)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		require.EqualValues(t, len(big), n)
		return resp
	}
	const n = 50
	for i := range n {
		do(fmt.Sprintf("/k%d", i), fmt.Sprintf("a%d", i))
	}
	for i := range n {
		resp := do(fmt.Sprintf("/k%d", i), fmt.Sprintf("a%d", i))
		require.Equal(t, "hit", resp.Header.Get("X-Sluice-Cache"), "/k%d stored under its own request's X-V", i)
		require.Equal(t, fmt.Sprintf("a%d", i), resp.Header.Get("X-Echo"), "/k%d: its own response", i)
	}
}
