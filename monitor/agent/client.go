package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"
)

// DefaultFetchTimeout bounds one Fetch when Client.Timeout is 0. An agent
// answers from memory, so anything slower than this is an agent in
// trouble, and its data is better treated as missing than waited for.
const DefaultFetchTimeout = time.Second

// maxLoadBytes bounds a Load document: a real one is well under 2 KiB even
// with a dozen targets.
const maxLoadBytes = 256 << 10

// Client fetches Load documents from agents. The zero value is ready to
// use; a Client is safe for concurrent use.
type Client struct {
	// HTTP is the client to fetch with. nil: a client of this package's
	// own, which ignores proxy environment variables (agents are reached
	// directly) and keeps one idle connection per agent.
	HTTP *http.Client
	// Timeout bounds each Fetch, on top of ctx. 0 = DefaultFetchTimeout.
	Timeout time.Duration
}

var defaultHTTP = func() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.MaxIdleConnsPerHost = 1
	return &http.Client{Transport: tr}
}()

// Fetch gets and checks one Load from url (the agent's /load). It is
// strict: status 200, a JSON content type, exactly one JSON object with no
// field this package does not know, and every figure in range (Validate).
// A document that fails any of these is an error, never a Load of zeros,
// since zeros read as an idle backend. The returned Load has Received set,
// so Age tells how old it is on the caller's clock.
func (c *Client) Fetch(ctx context.Context, url string) (Load, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultFetchTimeout
	}
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Load{}, fmt.Errorf("agent %s: %w", url, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return Load{}, fmt.Errorf("agent %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxLoadBytes+1))
	received := time.Now()
	if err != nil {
		return Load{}, fmt.Errorf("agent %s: reading: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Load{}, fmt.Errorf("agent %s: status %d", url, resp.StatusCode)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return Load{}, fmt.Errorf("agent %s: content type %q, want application/json", url, resp.Header.Get("Content-Type"))
	}
	if len(body) > maxLoadBytes {
		return Load{}, fmt.Errorf("agent %s: document larger than %d bytes", url, maxLoadBytes)
	}
	l, err := DecodeLoad(body)
	if err != nil {
		return Load{}, fmt.Errorf("agent %s: %w", url, err)
	}
	l.Received = received
	return l, nil
}

// DecodeLoad decodes and validates one Load document, strictly: unknown
// fields, a second value after the first, or a figure out of range are
// errors (wrapping ErrInvalidLoad).
func DecodeLoad(b []byte) (Load, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var l Load
	if err := d.Decode(&l); err != nil {
		return Load{}, fmt.Errorf("%w: %v", ErrInvalidLoad, err)
	}
	if len(bytes.TrimSpace(b[d.InputOffset():])) != 0 {
		return Load{}, fmt.Errorf("%w: data after the document", ErrInvalidLoad)
	}
	if err := l.Validate(); err != nil {
		return Load{}, err
	}
	return l, nil
}
