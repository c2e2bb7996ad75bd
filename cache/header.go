package cache

import (
	"net/textproto"
	"strings"
)

// Field is one header field line of a stored response.
type Field struct{ Name, Value string }

// Header is a stored response's header section, in the order received.
// Names keep the case they came in; lookups ignore it.
type Header []Field

// Get returns the first value of the named field, "" when absent.
func (h Header) Get(name string) string {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// Has reports whether the named field is present.
func (h Header) Has(name string) bool {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return true
		}
	}
	return false
}

// Values returns every value of the named field, one per field line.
func (h Header) Values(name string) []string {
	var out []string
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			out = append(out, f.Value)
		}
	}
	return out
}

// Peek makes a Header usable as a request's header (RequestHeader).
func (h Header) Peek(name string) []byte {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return []byte(f.Value)
		}
	}
	return nil
}

// RequestHeader is what the cache reads of a request's header: the first
// value of a named field, nil when absent. fasthttp's RequestHeader
// satisfies it, and so does Header.
type RequestHeader interface {
	Peek(name string) []byte
}

// notStored are the fields a stored response never keeps (RFC 9111 3.1:
// hop-by-hop ones; and the framing, which the cache recomputes when it
// serves the body it holds).
var notStored = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true,
	"Transfer-Encoding": true, "Upgrade": true, "Trailer": true,
	"Proxy-Authenticate": true, "Proxy-Authentication-Info": true,
	"Content-Length": true,
}

// storedHeader copies h without the fields a cache must not store: the
// hop-by-hop ones and any named by Connection.
func storedHeader(h Header) Header {
	var conn []string
	for _, v := range h.Values("Connection") {
		for len(v) > 0 {
			var item string
			item, v = nextItem(v)
			if item = strings.TrimSpace(item); item != "" {
				conn = append(conn, textproto.CanonicalMIMEHeaderKey(item))
			}
		}
	}
	out := make(Header, 0, len(h))
	for _, f := range h {
		k := textproto.CanonicalMIMEHeaderKey(f.Name)
		if notStored[k] || contains(conn, k) {
			continue
		}
		out = append(out, f)
	}
	return out
}

// mergeHeader applies the header fields of a 304 (or a HEAD response) to
// a stored header section (RFC 9111 3.2): each field of upd replaces all
// stored lines of that name, except the hop-by-hop ones and
// Content-Length, which describe the 304's own message.
func mergeHeader(stored, upd Header) Header {
	upd = storedHeader(upd)
	replaced := map[string]bool{}
	for _, f := range upd {
		replaced[textproto.CanonicalMIMEHeaderKey(f.Name)] = true
	}
	out := make(Header, 0, len(stored)+len(upd))
	for _, f := range stored {
		if !replaced[textproto.CanonicalMIMEHeaderKey(f.Name)] {
			out = append(out, f)
		}
	}
	return append(out, upd...)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
