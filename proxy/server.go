package proxy

import (
	"context"
	"errors"
	"net"

	"github.com/rs/zerolog"
)

// Server is the gateway: a fasthttp front end, the services' schedulers and
// backend pools.
type Server struct{}

// New validates cfg (after defaults) and builds a Server: pools are created
// and warm connections dialed, but nothing listens yet.
func New(cfg Config, log zerolog.Logger) (*Server, error) {
	return nil, errors.New("not implemented")
}

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return errors.New("not implemented") }

// Shutdown stops accepting, lets in-flight requests finish until ctx ends,
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error { return errors.New("not implemented") }

// Validate reports the first invalid field, naming it and its value.
func (c *Config) Validate() error { return errors.New("not implemented") }

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config { return c }
