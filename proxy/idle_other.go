//go:build !linux

package proxy

import (
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// idleParker parks nothing where there is no epoll: idle connections keep
// their goroutines.
type idleParker struct{}

func newIdleParker(*fasthttp.Server, zerolog.Logger) *idleParker { return nil }

func (p *idleParker) park(c *idleConn) { _ = c.Conn.Close() }
func (p *idleParker) close()           {}
func (p *idleParker) wait()            {}
func (p *idleParker) count() int       { return 0 }
