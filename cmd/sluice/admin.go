package main

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/rs/zerolog"

	"github.com/sluiceproxy/sluice/admin"
	"github.com/sluiceproxy/sluice/proxy"
)

// adminListener is the running admin listener; a nil one is off.
type adminListener struct {
	srv     *admin.Server
	served  chan error
	stopped chan struct{} // closed by shutdown: reload calls give up
}

// startAdmin starts the admin listener when cfg names an address. Its
// reload call asks run's loop over reloads, which applies it as it
// applies SIGHUP. It starts before the gateway serves: the metrics
// observer must be in place before the first request.
func startAdmin(log zerolog.Logger, cfg admin.Config, gw *proxy.Server, reloads chan<- chan error) (*adminListener, error) {
	if cfg.Listen == "" {
		return nil, nil
	}
	a := &adminListener{served: make(chan error, 1), stopped: make(chan struct{})}
	srv, err := admin.New(cfg, gw, func() error {
		done := make(chan error, 1)
		select {
		case reloads <- done:
			return <-done
		case <-a.stopped:
			return errors.New("the gateway is shutting down")
		}
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, err
	}
	a.srv = srv
	go func() { a.served <- srv.Serve(ln) }()
	log.Info().Str("addr", ln.Addr().String()).Bool("token", cfg.TokenFile != "").Msg("admin listening")
	return a, nil
}

// shutdown stops the admin listener: open dashboards and scrapes are cut
// after a moment, since the gateway is going away.
func (a *adminListener) shutdown(log zerolog.Logger) {
	if a == nil {
		return
	}
	close(a.stopped)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil {
		log.Warn().Err(err).Msg("admin shutdown")
	}
	if err := <-a.served; err != nil {
		log.Warn().Err(err).Msg("admin serve")
	}
}
