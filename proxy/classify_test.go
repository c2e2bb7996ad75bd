package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluiceproxy/sluice/scheduler"
)

// Classification end to end: what a request carries (tenant header, API
// key, client address) or the route it takes (priority, timeout) must
// reach the scheduler and change what it does, seen from a client of the
// real proxy. Each test queues requests behind a backend with a single
// slot, with the fifo discipline: if classification lost the distinction
// under test, the queue would release in arrival order, which each test
// arranges to be the wrong one.

// fifoSlot is oneSlot with the fifo discipline, so that requests of one
// tenant and class leave in arrival order (adaptive LIFO could serve the
// newest first and hide a classification that merges them).
func fifoSlot(t *testing.T, addr string) Config {
	cfg := oneSlot(t, addr)
	cfg.Queue.Discipline = scheduler.DisciplineFIFO
	cfg.Queue.QueueTimeout = 10 * time.Second
	return cfg
}

// heldSlot starts a held backend behind a one-slot fifo service.
func heldSlot(t *testing.T) (*heldBackend, Config) {
	b := startHeldBackend(t)
	return b, fifoSlot(t, b.addr)
}

// waitQueuedTotal waits until n requests are queued, in any class.
func waitQueuedTotal(t *testing.T, s *scheduler.Scheduler, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		q := s.Stats().Queued
		sum := 0
		for _, v := range q {
			sum += v
		}
		return sum == n
	}, 5*time.Second, time.Millisecond)
}

// getFromAsync is getAsync from a given local address (127.0.0.0/8 is all
// loopback), for tenants told apart by client IP.
func getFromAsync(t *testing.T, local, addr, path string, hdrs ...string) <-chan result {
	if local == "" || local == "127.0.0.1" {
		return getAsync(t, addr, path, hdrs...)
	}
	ch := make(chan result, 1)
	go func() {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err := d.Dial("tcp", addr)
		if !assert.NoError(t, err) {
			ch <- result{&http.Response{}, ""}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		raw := "GET " + path + " HTTP/1.1\r\nHost: example.test\r\n"
		for _, h := range hdrs {
			raw += h + "\r\n"
		}
		_, err = io.WriteString(c, raw+"\r\n")
		var resp *http.Response
		if err == nil {
			resp, err = http.ReadResponse(bufio.NewReader(c), nil)
		}
		if !assert.NoError(t, err) {
			ch <- result{&http.Response{}, ""}
			return
		}
		body, _ := io.ReadAll(resp.Body)
		ch <- result{resp, string(body)}
	}()
	return ch
}

// TestTenantClassification: a flooding tenant has three requests queued
// when a light tenant's one arrives; the fair queue must release the light
// request before the second of the flood's, which it can only do if the
// two were classified as different tenants. Each row sends the identities
// so that every other source of identity would merge the two tenants: a
// classifier that read the wrong source, or dropped the identity, releases
// the light request last. The last row is the control: two requests that
// differ in everything but the configured source are one tenant and leave
// in arrival order.
func TestTenantClassification(t *testing.T) {
	type client struct {
		ip   string
		hdrs []string
	}
	for _, tc := range []struct {
		name         string
		from         string // classify.tenant_from
		flood, light client
		fair         bool
	}{
		{"tenant header", "",
			client{"127.0.0.1", []string{"X-Tenant: flood"}},
			client{"127.0.0.1", []string{"X-Tenant: light"}}, true},
		{"tenant header absent: client IP", "",
			client{"127.0.0.1", nil},
			client{"127.0.0.2", nil}, true},
		{"api key", "api-key",
			client{"127.0.0.1", []string{"X-Api-Key: k-flood", "X-Tenant: same"}},
			client{"127.0.0.1", []string{"X-Api-Key: k-light", "X-Tenant: same"}}, true},
		{"client ip", "client-ip",
			client{"127.0.0.1", []string{"X-Tenant: same", "X-Api-Key: same"}},
			client{"127.0.0.2", []string{"X-Tenant: same", "X-Api-Key: same"}}, true},
		{"control: one X-Tenant from two IPs with two API keys is one tenant", "",
			client{"127.0.0.1", []string{"X-Tenant: same", "X-Api-Key: k-flood"}},
			client{"127.0.0.2", []string{"X-Tenant: same", "X-Api-Key: k-light"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, cfg := heldSlot(t)
			cfg.Classify.TenantFrom = tc.from
			p := startProxy(t, cfg)
			sched := firstService(p.Server).sched

			busy := getAsync(t, p.addr, "/busy")
			require.Equal(t, "/busy", b.next(t))
			var waiting []<-chan result
			for i, path := range []string{"/flood1", "/flood2", "/flood3"} {
				waiting = append(waiting, getFromAsync(t, tc.flood.ip, p.addr, path, tc.flood.hdrs...))
				waitQueued(t, sched, scheduler.Normal, i+1) // one at a time: arrival order is fixed
			}
			waiting = append(waiting, getFromAsync(t, tc.light.ip, p.addr, "/light", tc.light.hdrs...))
			waitQueued(t, sched, scheduler.Normal, 4)

			var order []string
			for range 4 {
				b.release <- struct{}{}
				order = append(order, b.next(t))
			}
			b.release <- struct{}{}
			assert.Equal(t, 200, (<-busy).resp.StatusCode)
			for _, ch := range waiting {
				assert.Equal(t, 200, (<-ch).resp.StatusCode)
			}
			t.Logf("released: %v", order)
			light, flood2 := slices.Index(order, "/light"), slices.Index(order, "/flood2")
			if tc.fair {
				assert.Less(t, light, flood2, "the light tenant waits behind the flood's backlog: %v", order)
			} else {
				assert.Equal(t, []string{"/flood1", "/flood2", "/flood3", "/light"}, order, "one tenant: arrival order")
			}
		})
	}
}

// TestRoutePriority: a request on a low-priority route, queued first, is
// overtaken by a later one on a critical route; the priority header still
// wins over the route's class.
func TestRoutePriority(t *testing.T) {
	b, cfg := heldSlot(t)
	cfg.Routes = []RouteConfig{
		{PathPrefix: "/batch/", Service: "web", Priority: "low"},
		{PathPrefix: "/checkout/", Service: "web", Priority: "critical"},
		{PathPrefix: "/", Service: "web"},
	}
	p := startProxy(t, cfg)
	sched := firstService(p.Server).sched

	busy := getAsync(t, p.addr, "/busy")
	require.Equal(t, "/busy", b.next(t))
	var waiting []<-chan result
	for i, r := range []struct {
		path string
		hdrs []string
	}{
		{"/batch/report", nil},
		{"/checkout/pay", nil},
		{"/batch/urgent", []string{"X-Priority: high"}},
	} {
		waiting = append(waiting, getAsync(t, p.addr, r.path, r.hdrs...))
		waitQueuedTotal(t, sched, i+1) // one at a time: arrival order is fixed
	}
	q := sched.Stats().Queued
	assert.Equal(t, 1, q[scheduler.Low], "the low route's request")
	assert.Equal(t, 1, q[scheduler.Critical], "the critical route's request")
	assert.Equal(t, 1, q[scheduler.High], "the header's class")

	var order []string
	for range 3 {
		b.release <- struct{}{}
		order = append(order, b.next(t))
	}
	b.release <- struct{}{}
	assert.Equal(t, []string{"/checkout/pay", "/batch/urgent", "/batch/report"}, order)
	assert.Equal(t, 200, (<-busy).resp.StatusCode)
	for _, ch := range waiting {
		assert.Equal(t, 200, (<-ch).resp.StatusCode)
	}
}

// TestRouteTimeout: a route's timeout is the request's deadline. Queued
// behind a busy backend, a request on a route with a 50ms timeout is
// refused for its deadline, long before the queue timeout; a client's
// X-Sluice-Timeout can shorten the route's deadline but not extend it; the
// same request on a route without a timeout waits out the queue timeout.
func TestRouteTimeout(t *testing.T) {
	b, cfg := heldSlot(t)
	cfg.Queue.QueueTimeout = 500 * time.Millisecond
	cfg.Routes = []RouteConfig{
		{PathPrefix: "/fast/", Service: "web", Timeout: 50 * time.Millisecond},
		{PathPrefix: "/", Service: "web"},
	}
	p := startProxy(t, cfg)

	busy := getAsync(t, p.addr, "/busy")
	require.Equal(t, "/busy", b.next(t))
	for _, tc := range []struct {
		path string
		hdrs []string
		shed string
	}{
		{"/fast/a", nil, "deadline"},
		{"/fast/b", []string{"X-Sluice-Timeout: 5s"}, "deadline"},
		{"/other", nil, "queue-timeout"},
		{"/other", []string{"X-Sluice-Timeout: 50ms"}, "deadline"},
	} {
		resp, body := get(t, p.addr, tc.path, tc.hdrs...)
		assert.Equal(t, 503, resp.StatusCode, "%s %v: %s", tc.path, tc.hdrs, body)
		assert.Equal(t, tc.shed, resp.Header.Get("X-Sluice-Shed"), "%s %v", tc.path, tc.hdrs)
	}
	b.release <- struct{}{}
	assert.Equal(t, 200, (<-busy).resp.StatusCode)
	assert.EqualValues(t, 1, b.hits.Load(), "refused requests never reach the backend")
}
