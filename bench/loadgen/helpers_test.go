package loadgen

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if d := os.Getenv(delayOriginEnv); d != "" {
		serveDelayOrigin(d) // re-executed as a separate origin process
		return
	}
	progressEvery = 100 * time.Millisecond
	goleak.VerifyTestMain(m,
		// fasthttp's process-wide Date header refresher.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		// fasthttp's idle-worker cleaner exits on its own shortly after Shutdown.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	)
}

// startFast serves h with fasthttp on a loopback port and returns the base URL.
func startFast(t testing.TB, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fasthttp.Server{Handler: h}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = s.Shutdown()
		<-done
	})
	return "http://" + ln.Addr().String()
}

// startHTTP serves h with net/http on a loopback port and returns the base URL.
func startHTTP(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = s.Close()
		<-done
	})
	return "http://" + ln.Addr().String()
}

// delayOriginEnv makes the test binary, re-executed, serve as an origin
// whose every reply takes a fixed time: a target whose latency the server
// sets, in its own process, so that two load generators can be compared on
// it without sharing a runtime with it.
const delayOriginEnv = "LOADGEN_TEST_DELAY_ORIGIN"

func serveDelayOrigin(delay string) {
	d, err := time.ParseDuration(delay)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		time.Sleep(d)
		ctx.SetBodyString("hello world\n")
	}}
	go func() { _ = s.Serve(ln) }()
	fmt.Println(ln.Addr().String())
	// Serve until the parent closes stdin.
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	_ = s.Shutdown()
}
