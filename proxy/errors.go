package proxy

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluiceproxy/sluice/scheduler"
)

// Errors of the proxy itself. Together with the scheduler's sentinels they
// are every reason a request can end without a backend's response, and
// errorTable below is the only place that turns them into HTTP.
var (
	errBadGateway      = errors.New("no backend answered")
	errGatewayTimeout  = errors.New("backend too slow")
	errBodyTooLarge    = errors.New("request body too large")
	errURITooLong      = errors.New("request URI too long")
	errHeaderTooLarge  = errors.New("request header too large")
	errBadRequest      = errors.New("malformed request")
	errAmbiguousLength = errors.New("both Content-Length and Transfer-Encoding")
	errDupLength       = errors.New("more than one Content-Length")
	errObsFold         = errors.New("obsolete header line folding")
	errLeadingSpace    = errors.New("whitespace before the first header")
	errHeaderChar      = errors.New("control character in a header")
	errClientBody      = errors.New("request body could not be read")
	errClientTimeout   = errors.New("request not received in time")
	errNoRoute         = errors.New("no route matches")
	errBadTarget       = errors.New("invalid request target")
	errClientGone      = errors.New("client closed the request")
	errOnlyIfCached    = errors.New("only-if-cached and nothing usable stored")
	errClientRate      = errors.New("client IP over its request rate")
	errClientConns     = errors.New("client IP over its connection limit")
	errConnLimit       = errors.New("server connection limit reached")
)

// errorTable maps every error to its response. shed is the X-Sluice-Shed
// reason; a row with one also gets Retry-After.
var errorTable = [...]struct {
	err    error
	status int
	shed   string
	msg    string
}{
	{scheduler.ErrQueueFull, fasthttp.StatusServiceUnavailable, "queue-full", "service overloaded: queue full"},
	{scheduler.ErrQueueTimeout, fasthttp.StatusServiceUnavailable, "queue-timeout", "service overloaded: timed out in queue"},
	{scheduler.ErrDeadline, fasthttp.StatusServiceUnavailable, "deadline", "service overloaded: deadline cannot be met"},
	{scheduler.ErrNoBackend, fasthttp.StatusServiceUnavailable, "no-backend", "no backend available"},
	{scheduler.ErrCanceled, fasthttp.StatusServiceUnavailable, "canceled", "request canceled while queued"},
	{scheduler.ErrTenantShare, fasthttp.StatusTooManyRequests, "tenant-share", "too many requests: tenant over its share"},
	{errClientRate, fasthttp.StatusTooManyRequests, "client-rate", "too many requests: client IP over its request rate"},
	{errClientConns, fasthttp.StatusTooManyRequests, "client-conns", "too many connections from this client IP"},
	{errConnLimit, fasthttp.StatusServiceUnavailable, "conn-limit", "service overloaded: too many connections"},
	{errBadGateway, fasthttp.StatusBadGateway, "", "bad gateway: no backend answered"},
	{errGatewayTimeout, fasthttp.StatusGatewayTimeout, "", "gateway timeout: backend too slow"},
	// RFC 9111 5.2.1.7: only-if-cached and no stored response fits.
	{errOnlyIfCached, fasthttp.StatusGatewayTimeout, "", "gateway timeout: not in the cache (only-if-cached)"},
	{errBodyTooLarge, fasthttp.StatusRequestEntityTooLarge, "", "request body too large"},
	{errURITooLong, fasthttp.StatusRequestURITooLong, "", "request URI too long"},
	{errHeaderTooLarge, fasthttp.StatusRequestHeaderFieldsTooLarge, "", "request header fields too large"},
	{errAmbiguousLength, fasthttp.StatusBadRequest, "", "bad request: both Content-Length and Transfer-Encoding"},
	{errDupLength, fasthttp.StatusBadRequest, "", "bad request: more than one Content-Length"},
	{errObsFold, fasthttp.StatusBadRequest, "", "bad request: obsolete header line folding"},
	{errLeadingSpace, fasthttp.StatusBadRequest, "", "bad request: whitespace before the first header"},
	{errHeaderChar, fasthttp.StatusBadRequest, "", "bad request: invalid character in a header"},
	{errClientBody, fasthttp.StatusBadRequest, "", "bad request: request body could not be read"},
	{errClientTimeout, fasthttp.StatusRequestTimeout, "", "request timeout"},
	{errNoRoute, fasthttp.StatusNotFound, "", "not found: no route matches this request"},
	{errBadTarget, fasthttp.StatusBadRequest, "", "bad request: invalid request target"},
	// The client went away while its request was at a backend: nobody
	// reads this answer, and the status (nginx's 499) says so in the log.
	{errClientGone, statusClientClosed, "", "client closed request"},
	{errBadRequest, fasthttp.StatusBadRequest, "", "bad request"},
}

// statusClientClosed is the status recorded for a request whose client
// went away before its answer: not an HTTP status, nginx's convention.
const statusClientClosed = 499

// Response headers of error responses.
var (
	hdrRetryAfter = []byte("Retry-After")
	hdrShed       = []byte("X-Sluice-Shed")
	textPlain     = []byte("text/plain; charset=utf-8")
	strRequestID  = []byte("\nrequest id: ")
)

// writeError is the one place an error becomes an HTTP response. sched,
// when known, provides Retry-After for shed requests. It returns the status
// and shed reason for the access log.
func writeError(ctx *fasthttp.RequestCtx, err error, sched *scheduler.Scheduler, reqID []byte, now time.Time, scratch []byte) (int, string, []byte) {
	row := len(errorTable) - 1 // unknown errors are the client's: 400
	for i := range errorTable {
		if errorTable[i].err == err {
			row = i
			break
		}
	}
	e := &errorTable[row]
	resp := &ctx.Response
	resp.Reset()
	resp.SetStatusCode(e.status)
	resp.Header.SetContentTypeBytes(textPlain)
	resp.Header.SetBytesKV(hdrRequestID, reqID)
	if e.shed != "" {
		ra := time.Second
		if sched != nil {
			ra = sched.RetryAfter(now)
		}
		secs := int64((ra + time.Second - 1) / time.Second)
		if secs < 1 {
			secs = 1
		}
		scratch = strconv.AppendInt(scratch[:0], secs, 10)
		resp.Header.SetBytesKV(hdrRetryAfter, scratch)
		resp.Header.SetBytesKV(hdrShed, s2b(e.shed))
	}
	if e.status == fasthttp.StatusBadRequest || e.status == fasthttp.StatusRequestHeaderFieldsTooLarge ||
		e.status == fasthttp.StatusRequestURITooLong || e.status == fasthttp.StatusRequestTimeout ||
		e.status == fasthttp.StatusRequestEntityTooLarge || e.status == statusClientClosed {
		// The connection's framing can no longer be trusted, or the
		// client is misbehaving: do not read another request from it.
		resp.SetConnectionClose()
	}
	resp.AppendBodyString(e.msg)
	resp.AppendBody(strRequestID)
	resp.AppendBody(reqID)
	resp.AppendBodyString("\n")
	return e.status, e.shed, scratch
}

// rawError is err's response from errorTable as bytes on the wire, for a
// connection refused before fasthttp reads a request from it (clients.go):
// the same status, reason and text, Retry-After 1, Connection: close.
func rawError(err error) []byte {
	row := len(errorTable) - 1
	for i := range errorTable {
		if errorTable[i].err == err {
			row = i
			break
		}
	}
	e := &errorTable[row]
	body := e.msg + "\n"
	b := fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n",
		e.status, fasthttp.StatusMessage(e.status), textPlain, len(body))
	if shed := e.shed; shed != "" {
		b = fmt.Appendf(b, "Retry-After: 1\r\n%s: %s\r\n", hdrShed, shed)
	}
	return append(append(b, "\r\n"...), body...)
}

// fromServerError translates an error of fasthttp's request parser into
// ours, so that writeError stays the only mapping.
func fromServerError(err error) error {
	var nerr net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return errBodyTooLarge
	case isSmallBuffer(err):
		return errHeaderTooLarge
	case errors.As(err, &nerr) && nerr.Timeout():
		return errClientTimeout
	}
	return errBadRequest
}

func isSmallBuffer(err error) bool {
	var sb *fasthttp.ErrSmallBuffer
	return errors.As(err, &sb) || errors.Is(err, fasthttp.ErrSmallReadBuffer)
}

func isTimeout(err error) bool {
	var nerr net.Error
	return errors.As(err, &nerr) && nerr.Timeout()
}
