package proxy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

// These tests put a client that reads slowly (a raw connection with a small
// receive buffer that reads a little, then stops) in front of an origin
// that takes one request at a time, and ask whether the origin's slot ends
// when the origin is done or when the client is.

// bigBody is n deterministic pseudo-random bytes and their SHA-256.
func bigBody(n int) ([]byte, [32]byte) {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{13})
	_, _ = r.Read(b)
	return b, sha256.Sum256(b)
}

// bufOrigin is a net/http origin: /big writes body (and counts the
// handlers that wrote it all), /hold writes 1 MiB and then waits until its
// client leaves (and counts those), anything else answers "ok".
type bufOrigin struct {
	addr     string
	finished atomic.Int64 // /big handlers that wrote the whole body
	left     atomic.Int64 // /hold handlers whose client went away
}

func startBufOrigin(t *testing.T, body []byte, header map[string]string) *bufOrigin {
	t.Helper()
	o := &bufOrigin{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	o.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		switch r.URL.Path {
		case "/big":
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			if _, err := w.Write(body); err == nil {
				o.finished.Add(1)
			}
		case "/hold":
			_, _ = w.Write(body[:1<<20])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			o.left.Add(1)
		default:
			_, _ = io.WriteString(w, "ok")
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return o
}

// slowClient opens a connection whose receive buffer is small, so that
// what it does not read stays with the proxy, and sends a GET of path.
func slowClient(t *testing.T, addr, path string) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	c, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(30*time.Second)))
	_, err = fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", path)
	require.NoError(t, err)
	br := bufio.NewReaderSize(c, 512)
	// A little of the answer, then nothing for a while.
	_, err = br.Peek(256)
	require.NoError(t, err)
	return c, br
}

// readRest reads the response on br and checks its body.
func readRest(t *testing.T, br *bufio.Reader, want [32]byte) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	h := sha256.New()
	_, err = io.Copy(h, resp.Body)
	require.NoError(t, err)
	require.Equal(t, want, [32]byte(h.Sum(nil)), "the body arrived intact")
}

func inflight(p *testProxy) int {
	return firstService(p.Server).sched.Stats().Backends[0].Inflight
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// bufferConfig is a one-slot service with small buffers, so that a few
// MiB exercise memory, file and the global bounds.
func bufferConfig(t *testing.T, addr string) Config {
	cfg := oneSlot(t, addr)
	cfg.Queue.QueueTimeout = 200 * time.Millisecond
	cfg.Buffering = BufferingConfig{MemoryPerRequest: 256 << 10, TempDir: t.TempDir()}
	return cfg
}

func (p *testProxy) spoolsIdle() bool {
	b := p.spools
	return b.spools.Load() == 0 && b.files.Load() == 0 && b.mem.Load() == 0 && b.disk.Load() == 0
}

func dirEmpty(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, ents, "temporary files left in %s", dir)
}

// The point of response buffering: once the origin has sent its answer, its
// slot is free for others, however slowly the client reads.
func TestBufferedResponseFreesSlot(t *testing.T) {
	body, sum := bigBody(8 << 20)
	o := startBufOrigin(t, body, nil)
	cfg := bufferConfig(t, o.addr)
	p := startProxy(t, cfg)

	_, br := slowClient(t, p.addr, "/big")
	eventually(t, "the origin's slot ends while the client still reads", func() bool {
		return inflight(p) == 0 && o.finished.Load() == 1
	})
	for range 5 {
		resp, b := get(t, p.addr, "/quick")
		require.Equal(t, 200, resp.StatusCode, "a quick request beside the slow reader")
		require.Equal(t, "ok", b)
	}
	require.EqualValues(t, 1, p.spools.files.Load(), "8 MiB past a 256 KiB memory buffer went to a file")
	require.LessOrEqual(t, p.spools.mem.Load(), int64(256<<10))
	dirEmpty(t, cfg.Buffering.TempDir) // unlinked as soon as it was made

	readRest(t, br, sum)
	eventually(t, "the buffer is given back", p.spoolsIdle)
	dirEmpty(t, cfg.Buffering.TempDir)
	eventually(t, "the access log counts the bytes sent", func() bool {
		return strings.Contains(p.logs.String(), `"bytes_out":8388608`)
	})
}

// The control: with buffering off the slot lasts as long as the client.
func TestUnbufferedRouteHoldsSlot(t *testing.T) {
	body, sum := bigBody(8 << 20)
	o := startBufOrigin(t, body, nil)
	cfg := bufferConfig(t, o.addr)
	cfg.Routes = []RouteConfig{{Service: "web", Buffering: "off"}}
	p := startProxy(t, cfg)

	_, br := slowClient(t, p.addr, "/big")
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, 1, inflight(p), "the slot is held while the client reads")
	resp, _ := get(t, p.addr, "/quick")
	require.Equal(t, 503, resp.StatusCode)
	require.Zero(t, p.spools.spools.Load())
	readRest(t, br, sum)
	eventually(t, "the slot ends with the response", func() bool { return inflight(p) == 0 })
}

// Server-sent events and X-Accel-Buffering: no are streamed, not spooled.
func TestStreamsAreNotBuffered(t *testing.T) {
	for name, hdr := range map[string]map[string]string{
		"event-stream":         {"Content-Type": "text/event-stream"},
		"x-accel-buffering-no": {"X-Accel-Buffering": "no"},
	} {
		t.Run(name, func(t *testing.T) {
			body, sum := bigBody(4 << 20)
			o := startBufOrigin(t, body, hdr)
			p := startProxy(t, bufferConfig(t, o.addr))
			_, br := slowClient(t, p.addr, "/big")
			time.Sleep(200 * time.Millisecond)
			require.Zero(t, p.spools.spools.Load())
			require.Equal(t, 1, inflight(p))
			readRest(t, br, sum)
		})
	}
}

// A client that leaves after the origin is done: the file goes with it.
func TestBufferedClientLeavesAfterBackend(t *testing.T) {
	body, _ := bigBody(4 << 20)
	o := startBufOrigin(t, body, nil)
	cfg := bufferConfig(t, o.addr)
	p := startProxy(t, cfg)
	c, _ := slowClient(t, p.addr, "/big")
	eventually(t, "the response is buffered", func() bool {
		return inflight(p) == 0 && p.spools.files.Load() == 1
	})
	require.NoError(t, c.Close())
	eventually(t, "the buffer and its file are given back", p.spoolsIdle)
	dirEmpty(t, cfg.Buffering.TempDir)
}

// A client that leaves while the origin is still sending: the origin's
// connection is closed (it sees its client go) and the buffer is freed.
func TestBufferedClientLeavesDuringBackend(t *testing.T) {
	body, _ := bigBody(2 << 20)
	o := startBufOrigin(t, body, nil)
	cfg := bufferConfig(t, o.addr)
	p := startProxy(t, cfg)
	c, _ := slowClient(t, p.addr, "/hold")
	eventually(t, "the origin's first MiB is buffered", func() bool { return p.spools.files.Load() == 1 })
	require.Equal(t, 1, inflight(p), "the origin is still sending")
	require.NoError(t, c.Close())
	eventually(t, "the origin sees its client leave", func() bool { return o.left.Load() == 1 })
	eventually(t, "slot and buffer are given back", func() bool { return inflight(p) == 0 && p.spoolsIdle() })
	dirEmpty(t, cfg.Buffering.TempDir)
}

// The global memory bound: several slow readers at once hold no more
// memory than buffering.memory_max; the rest is on disk.
func TestBufferMemoryBound(t *testing.T) {
	// Larger than what the kernel takes into a socket's send buffer
	// (loopback autotunes it to a few MiB), so that the spools do hold.
	body, sum := bigBody(6 << 20)
	o := startBufOrigin(t, body, nil)
	cfg := bufferConfig(t, o.addr)
	require.NoError(t, cfg.Queue.Limit.UnmarshalText([]byte("static:8")))
	cfg.Buffering.MemoryMax = 512 << 10
	p := startProxy(t, cfg)
	const n = 4
	var brs []*bufio.Reader
	for range n {
		_, br := slowClient(t, p.addr, "/big")
		brs = append(brs, br)
	}
	eventually(t, "every response is buffered", func() bool {
		return inflight(p) == 0 && o.finished.Load() == n
	})
	require.LessOrEqual(t, p.spools.memPeak.Load(), int64(512<<10), "memory held never passed memory_max")
	require.Positive(t, p.spools.disk.Load())
	for _, br := range brs {
		readRest(t, br, sum)
	}
	eventually(t, "the buffers are given back", p.spoolsIdle)
}

// Past every bound the rest is relayed at the client's pace: the slot is
// then held until the client has read it, and the bytes still arrive.
func TestBufferFullStreamsTheRest(t *testing.T) {
	body, sum := bigBody(8 << 20)
	o := startBufOrigin(t, body, nil)
	cfg := bufferConfig(t, o.addr)
	cfg.Buffering.FilePerRequest = 1 << 20
	p := startProxy(t, cfg)
	_, br := slowClient(t, p.addr, "/big")
	eventually(t, "memory and file are full", func() bool { return p.spools.disk.Load() > 1<<20-spoolChunkSize })
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, 1, inflight(p), "the rest waits for the client")
	readRest(t, br, sum)
	eventually(t, "slot and buffer are given back", func() bool { return inflight(p) == 0 && p.spoolsIdle() })
}

// Request buffering: a slow upload is read whole before it asks for the
// origin's one slot, which stays free for others meanwhile.
func TestBufferedRequestHoldsNoSlot(t *testing.T) {
	body, sum := bigBody(600 << 10) // past the 256 KiB memory buffer: a file too
	var got atomic.Value
	var ups atomic.Int64
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) != "/up" {
			ctx.WriteString("ok") //nolint:errcheck
			return
		}
		ups.Add(1)
		h := sha256.New()
		_, _ = io.Copy(h, ctx.RequestBodyStream())
		got.Store([32]byte(h.Sum(nil)))
	})
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprint("chunked=", chunked), func(t *testing.T) {
			ups.Store(0)
			cfg := bufferConfig(t, b.addr)
			p := startProxy(t, cfg)
			c, err := net.Dial("tcp", p.addr)
			require.NoError(t, err)
			defer c.Close()
			require.NoError(t, c.SetDeadline(time.Now().Add(30*time.Second)))
			var w io.Writer = c
			var cw io.WriteCloser
			if chunked {
				_, err = io.WriteString(c, "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
				cw = httputil.NewChunkedWriter(c)
				w = cw
			} else {
				_, err = fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", len(body))
			}
			require.NoError(t, err)
			half := len(body) / 2
			_, err = w.Write(body[:half])
			require.NoError(t, err)
			eventually(t, "the first half is buffered", func() bool { return p.spools.disk.Load() > 0 })
			for range 3 {
				resp, _ := get(t, p.addr, "/quick")
				require.Equal(t, 200, resp.StatusCode, "a quick request beside the slow upload")
			}
			require.Zero(t, ups.Load(), "the origin has not seen the upload yet")
			require.Zero(t, inflight(p))
			_, err = w.Write(body[half:])
			require.NoError(t, err)
			if chunked {
				require.NoError(t, cw.Close())
				_, err = io.WriteString(c, "\r\n")
				require.NoError(t, err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			require.NoError(t, err)
			require.Equal(t, 200, resp.StatusCode)
			require.EqualValues(t, 1, ups.Load())
			require.Equal(t, sum, got.Load())
			eventually(t, "the buffer is given back", p.spoolsIdle)
			dirEmpty(t, cfg.Buffering.TempDir)
		})
	}
}

// A client that leaves mid-upload while its body is buffered never
// reaches the origin, and its buffer is given back.
func TestBufferedUploadAbort(t *testing.T) {
	var ups atomic.Int64
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) { ups.Add(1) })
	cfg := bufferConfig(t, b.addr)
	p := startProxy(t, cfg)
	c, err := net.Dial("tcp", p.addr)
	require.NoError(t, err)
	_, err = fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s", 1<<20, strings.Repeat("u", 300<<10))
	require.NoError(t, err)
	eventually(t, "the upload is being buffered", func() bool { return p.spools.disk.Load() > 0 })
	require.NoError(t, c.Close())
	eventually(t, "the buffer is given back", p.spoolsIdle)
	eventually(t, "the request is logged as the client's", func() bool {
		return strings.Contains(p.logs.String(), `"status":499`)
	})
	require.Zero(t, ups.Load())
	dirEmpty(t, cfg.Buffering.TempDir)
}

// Shutdown waits for a buffered response until its context ends, then
// cuts the slow client off, and the buffer and its file go with it.
func TestShutdownCutsOffBufferedResponse(t *testing.T) {
	body, _ := bigBody(8 << 20)
	o := startBufOrigin(t, body, nil)
	cfg := bufferConfig(t, o.addr)
	p := startProxy(t, cfg)
	c, _ := slowClient(t, p.addr, "/big")
	eventually(t, "the response is buffered", func() bool {
		return inflight(p) == 0 && p.spools.files.Load() == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() { _ = p.Shutdown(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	require.True(t, p.spoolsIdle(), "the buffer is given back by the time Shutdown returns")
	dirEmpty(t, cfg.Buffering.TempDir)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c)
	require.NoError(t, err, "the client is cut off (EOF), not left hanging")
}
