package proxy

import (
	"io"

	"github.com/valyala/fasthttp"
)

// The first stage: route and classify the request, decide how its body
// travels, and build the backend request once for all attempts.

// run takes the request from arrival to the moment the backend's response
// headers are set on ctx. A nil return means the response is set and the
// exchange finishes itself; an error is answered by fail.
func (x *exchange) run() error {
	ctx := x.ctx
	x.rt = x.s.rt.Load()
	h := &ctx.Request.Header

	if id := h.PeekBytes(hdrRequestID); validRequestID(id) {
		x.reqID = append(x.reqID[:0], id...)
	} else {
		x.reqID = newRequestID(x.reqID[:0])
	}
	uri := h.RequestURI()
	x.method = append(x.method[:0], h.Method()...)
	x.ip = appendIP(x.ip[:0], ctx.RemoteIP())
	if r := x.s.rates; r != nil && !r.allow(x.ip, x.arrival) {
		x.path = append(x.path[:0], h.RequestURI()...)
		return errClientRate
	}
	target, authority, err := splitTarget(uri)
	if err != nil {
		x.path = append(x.path[:0], uri...)
		return err
	}
	x.path = appendOriginForm(x.path[:0], target, authority != nil && h.IsOptions())
	target = x.path
	if authority != nil {
		// RFC 9112 3.2.2: the target's authority is the request's host,
		// whatever Host says; routing, X-Forwarded-Host and the backend's
		// Host all follow from here.
		h.SetHostBytes(authority)
	}

	if maxURL := x.rt.cfg.Limits.MaxURLBytes; maxURL > 0 && len(uri) > maxURL {
		return errURITooLong
	}
	set, err := scanRawHeaders(h.RawHeaders())
	if err != nil {
		return err
	}
	rt := x.rt.pick(h, pathOf(target))
	if rt == nil {
		return errNoRoute
	}
	x.route, x.svc = rt, rt.svc
	x.rt.classify.classify(&x.sreq, h, rt, x.ip, x.arrival)
	x.isHead = h.IsHead()
	x.idempotent = isIdempotent(h)
	if err := x.prepareBody(); err != nil {
		return err
	}
	if set&setUpgrade == 0 && rt.cache != nil {
		// The cache stage builds the backend request only when it goes
		// to the origin: a hit needs none.
		return x.cached(target, set)
	}
	x.prepareRequest(target, set)
	if set&setUpgrade != 0 {
		// An upgrade is a tunnel to one backend, never a cached answer.
		x.prepareUpgrade(set) // upgrade.go
	}
	return x.forward()
}

// appendOriginForm appends target, as splitTarget returned it, in origin
// form: an absolute target's empty path becomes "/", or "*" for OPTIONS
// without a query (RFC 9112 3.2.1 and 3.2.4).
func appendOriginForm(dst, target []byte, options bool) []byte {
	if len(target) == 0 && options {
		return append(dst, '*')
	}
	if len(target) == 0 || target[0] == '?' {
		dst = append(dst, '/')
	}
	return append(dst, target...)
}

// isIdempotent: RFC 9110 9.2.2, minus the ones a client marks otherwise
// by sending a body we cannot replay (checked separately).
func isIdempotent(h *fasthttp.RequestHeader) bool {
	return h.IsGet() || h.IsHead() || h.IsOptions() || h.IsPut() || h.IsDelete() || h.IsTrace()
}

// prepareBody decides how the body travels. Small bodies of known length
// are read whole now (fasthttp has them in memory already), which makes
// them replayable; anything else is streamed once.
func (x *exchange) prepareBody() error {
	h := &x.ctx.Request.Header
	cl := h.ContentLength()
	x.clientCL = cl
	x.clientBody = x.ctx.RequestBodyStream()
	switch {
	case cl == 0 || cl == -2 || x.clientBody == nil:
		x.bodyMode = bodyNone
		return nil
	case cl > 0 && x.rt.cfg.Limits.MaxBodyBytes > 0 && int64(cl) > x.rt.cfg.Limits.MaxBodyBytes:
		return errBodyTooLarge
	case cl > 0 && cl <= prefetchBytes:
		if cap(x.body) < cl {
			x.body = make([]byte, cl, prefetchBytes)
		}
		x.body = x.body[:cl]
		n, err := io.ReadFull(&x.reqBody, x.body)
		if err != nil || n != cl {
			return errClientBody
		}
		x.bodyMode = bodyBuffered
		return nil
	}
	x.bodyMode = bodyStreamed
	if x.route.bufferRequests {
		return x.spoolRequest()
	}
	return nil
}

// spoolRequest reads the client's body into a spool before the request
// asks for a slot, so that a slow upload holds no backend while it
// arrives. What does not fit the spool's bounds follows from the client
// as it comes, after the spooled part (reqBodyReader).
func (x *exchange) spoolRequest() error {
	b := &x.rt.cfg.Buffering
	x.rsp.start(x.s.spools, b.MemoryPerRequest, max(b.FilePerRequest, 0), nil)
	x.reqSpooled, x.rspUsed = true, true
	for {
		buf, ok := x.rsp.tryRoom()
		if !ok {
			break // full: the rest streams
		}
		n, err := x.readClient(buf)
		x.rsp.commit(n)
		if err == io.EOF {
			if x.clientCL > 0 && x.bodyIn < int64(x.clientCL) {
				// fasthttp ends a body cut short by the client's close
				// with a plain EOF; never complete it to a backend.
				return errClientGone
			}
			x.reqComplete = true
			break
		}
		if err != nil {
			switch {
			case x.tooLarge:
				return errBodyTooLarge
			case clientLeft(err):
				return errClientGone
			}
			return errClientBody
		}
	}
	x.rsp.closeWrite(io.EOF)
	return nil
}

// prepareRequest builds the backend request's headers, once for all
// attempts: the client's headers as they came (including the raw request
// target), minus hop-by-hop ones, plus the forwarding headers.
func (x *exchange) prepareRequest(target []byte, set headerSet) {
	in := &x.ctx.Request.Header
	out := &x.req.Header
	in.CopyTo(out)
	stripRequestHops(out, in, set)
	out.SetRequestURIBytes(target)
	out.SetProtocolBytes(strHTTP11)
	if x.route.hostRewrite != nil {
		out.SetHostBytes(x.route.hostRewrite)
	}
	// X-Forwarded-For: the client's list, then the client.
	x.scratch = x.scratch[:0]
	if prior := in.PeekBytes(hdrXForwardedFor); len(prior) > 0 {
		x.scratch = append(x.scratch, prior...)
		x.scratch = append(x.scratch, strCommaSP...)
	}
	x.scratch = append(x.scratch, x.ip...)
	// SetCanonical: these names are constants in canonical form
	// (TestCanonicalHeaderNames), so fasthttp need not copy and normalise
	// them on every request as SetBytesKV does.
	out.SetCanonical(hdrXForwardedFor, x.scratch)
	if x.ctx.IsTLS() {
		out.SetCanonical(hdrXForwardedProto, strHTTPS)
	} else {
		out.SetCanonical(hdrXForwardedProto, strHTTP)
	}
	if host := in.Host(); len(host) > 0 {
		out.SetCanonical(hdrXForwardedHost, host)
	}
	x.scratch = appendVia(x.scratch[:0], in.PeekBytes(hdrVia), in.IsHTTP11())
	out.SetCanonical(hdrVia, x.scratch)
	out.SetCanonical(hdrRequestID, x.reqID)
}

func appendVia(dst, prior []byte, http11 bool) []byte {
	if len(prior) > 0 {
		dst = append(dst, prior...)
		dst = append(dst, strCommaSP...)
	}
	if http11 {
		return append(dst, strVia11...)
	}
	return append(dst, strVia10...)
}
