package loadgen

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net/textproto"
	"sort"
	"strconv"
	"strings"
)

// Header names Sluice classifies by (the proxy's defaults); the class spec's
// priority= and tenant= keys are shorthands for them.
const (
	PriorityHeader = "X-Priority"
	TenantHeader   = "X-Tenant"
	// ShedHeader is the header in which Sluice names why it refused a request.
	ShedHeader = "X-Sluice-Shed"
)

// ParseClass parses a request class from its command-line form: comma
// separated key=value pairs.
//
//	name=crit,share=0.2,method=POST,path=/x?y=1,header=X-Priority:critical,body=hello
//
// Keys: name, share (relative weight, default 1), method (default GET),
// path (default /), header=K:V (repeatable), priority=P (X-Priority: P),
// tenant=T (X-Tenant: T), body=TEXT. A value cannot contain a comma.
func ParseClass(spec string) (Class, error) {
	c := Class{Share: 1}
	if strings.TrimSpace(spec) == "" {
		return c, fmt.Errorf("class: empty spec")
	}
	for _, kv := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !ok {
			return c, fmt.Errorf("class %q: %q is not key=value", spec, kv)
		}
		switch k {
		case "name":
			c.Name = v
		case "share":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || !(f >= 0) || f > 1e9 {
				return c, fmt.Errorf("class %q: bad share %q", spec, v)
			}
			c.Share = f
		case "method":
			c.Method = strings.ToUpper(v)
		case "path":
			c.Path = v
		case "header":
			hk, hv, ok := strings.Cut(v, ":")
			if !ok {
				return c, fmt.Errorf("class %q: header %q is not K:V", spec, v)
			}
			if err := c.setHeader(hk, hv); err != nil {
				return c, fmt.Errorf("class %q: %v", spec, err)
			}
		case "priority":
			if err := c.setHeader(PriorityHeader, v); err != nil {
				return c, fmt.Errorf("class %q: %v", spec, err)
			}
		case "tenant":
			if err := c.setHeader(TenantHeader, v); err != nil {
				return c, fmt.Errorf("class %q: %v", spec, err)
			}
		case "body":
			c.Body = []byte(v)
		default:
			return c, fmt.Errorf("class %q: unknown key %q", spec, k)
		}
	}
	if err := c.validate(); err != nil {
		return c, err
	}
	return c, nil
}

func (c *Class) setHeader(k, v string) error {
	k, v = strings.TrimSpace(k), strings.TrimSpace(v)
	if c.Headers == nil {
		c.Headers = make(map[string]string)
	}
	c.Headers[k] = v
	return validHeader(k, v)
}

// ParseHeader parses "K:V" as given to --header.
func ParseHeader(s string) (string, string, error) {
	k, v, ok := strings.Cut(s, ":")
	if !ok {
		return "", "", fmt.Errorf("header %q is not K:V", s)
	}
	k, v = strings.TrimSpace(k), strings.TrimSpace(v)
	return k, v, validHeader(k, v)
}

func validHeader(k, v string) error {
	if k == "" {
		return fmt.Errorf("header %q: empty name", k+":"+v)
	}
	for i := 0; i < len(k); i++ {
		if !isTokenChar(k[i]) {
			return fmt.Errorf("header name %q: invalid character %q", k, k[i])
		}
	}
	for i := 0; i < len(v); i++ {
		if b := v[i]; b < ' ' && b != '\t' || b == 0x7f {
			return fmt.Errorf("header %q: invalid character in value", k)
		}
	}
	switch textproto.CanonicalMIMEHeaderKey(k) {
	case "Host", "Content-Length", "Transfer-Encoding", "Connection":
		// The generator owns framing and connection reuse; letting a class
		// override them would desynchronise the request stream.
		return fmt.Errorf("header %q is set by the load generator", k)
	}
	return nil
}

func isTokenChar(b byte) bool {
	if b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

func (c *Class) validate() error {
	if c.Method != "" {
		for i := 0; i < len(c.Method); i++ {
			if !isTokenChar(c.Method[i]) {
				return fmt.Errorf("class %q: bad method %q", c.Name, c.Method)
			}
		}
	}
	if c.Path != "" {
		if err := validPath(c.Path); err != nil {
			return fmt.Errorf("class %q: %v", c.Name, err)
		}
	}
	for k, v := range c.Headers {
		if err := validHeader(k, v); err != nil {
			return fmt.Errorf("class %q: %v", c.Name, err)
		}
	}
	return nil
}

func validPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("path %q must start with /", p)
	}
	for i := 0; i < len(p); i++ {
		if p[i] <= ' ' || p[i] == 0x7f {
			return fmt.Errorf("path %q: invalid character %q", p, p[i])
		}
	}
	return nil
}

// ReadTargets reads a target list: one path per line ("/a/b?c=1"),
// optionally preceded by a method ("POST /upload"); blank lines and lines
// starting with # are skipped. Methods other than the class's are not
// supported per line: a line's method, when given, must be the same for
// every line (it then becomes the default class's method), so the returned
// method is "" when no line names one.
func ReadTargets(r io.Reader) (paths []string, method string, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		m, p, hasMethod := strings.Cut(s, " ")
		if !hasMethod {
			p, m = m, ""
		}
		p = strings.TrimSpace(p)
		if m != "" {
			m = strings.ToUpper(m)
			if method != "" && method != m {
				return nil, "", fmt.Errorf("targets line %d: method %s differs from %s on an earlier line", line, m, method)
			}
			method = m
		}
		if err := validPath(p); err != nil {
			return nil, "", fmt.Errorf("targets line %d: %v", line, err)
		}
		paths = append(paths, p)
	}
	if err := sc.Err(); err != nil {
		return nil, "", err
	}
	if len(paths) == 0 {
		return nil, "", fmt.Errorf("targets: no paths")
	}
	return paths, method, nil
}

// preparedClass is a class turned into wire bytes once, before the run, so
// building a request costs a few appends into a reused buffer.
type preparedClass struct {
	name   string
	method []byte
	path   []byte
	// tail is everything after the request line: Host, the class's headers,
	// Content-Length and the blank line, then the body.
	tail []byte
	head bool // HEAD responses carry no body
}

func prepareClass(c Class, host string) preparedClass {
	method := c.Method
	if method == "" {
		method = "GET"
	}
	path := c.Path
	if path == "" {
		path = "/"
	}
	var t []byte
	t = append(t, "Host: "...)
	t = append(t, host...)
	t = append(t, "\r\n"...)
	keys := make([]string, 0, len(c.Headers))
	for k := range c.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	hasUA := false
	for _, k := range keys {
		if textproto.CanonicalMIMEHeaderKey(k) == "User-Agent" {
			hasUA = true
		}
		t = append(t, k...)
		t = append(t, ": "...)
		t = append(t, c.Headers[k]...)
		t = append(t, "\r\n"...)
	}
	if !hasUA {
		t = append(t, "User-Agent: sluice-bench\r\n"...)
	}
	if len(c.Body) > 0 || method == "POST" || method == "PUT" || method == "PATCH" {
		t = append(t, "Content-Length: "...)
		t = strconv.AppendInt(t, int64(len(c.Body)), 10)
		t = append(t, "\r\n"...)
	}
	t = append(t, "\r\n"...)
	t = append(t, c.Body...)
	return preparedClass{
		name:   c.Name,
		method: []byte(method),
		path:   []byte(path),
		tail:   t,
		head:   method == "HEAD",
	}
}

// appendRequest writes the request for class pc (with path overriding the
// class's own when not nil) into dst.
func (pc *preparedClass) appendRequest(dst, path []byte) []byte {
	if path == nil {
		path = pc.path
	}
	dst = append(dst, pc.method...)
	dst = append(dst, ' ')
	dst = append(dst, path...)
	dst = append(dst, " HTTP/1.1\r\n"...)
	return append(dst, pc.tail...)
}

// picker chooses a class for each arrival by share with a seeded generator,
// so a mix splits the same way on every run with the same seed.
type picker struct {
	cum []float64 // cumulative shares, normalised to end at 1
}

func newPicker(classes []Class) picker {
	var total float64
	for _, c := range classes {
		total += c.Share
	}
	cum := make([]float64, len(classes))
	var acc float64
	for i, c := range classes {
		acc += c.Share
		cum[i] = acc / total
	}
	return picker{cum: cum}
}

func (p picker) pick(rng *rand.Rand) int {
	if len(p.cum) == 1 {
		return 0
	}
	u := rng.Float64()
	for i, c := range p.cum {
		if u < c {
			return i
		}
	}
	return len(p.cum) - 1
}
