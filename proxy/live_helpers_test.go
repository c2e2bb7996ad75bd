package proxy

import "github.com/sluiceproxy/sluice/pool"

// firstService is the service the first entry of the running
// configuration names.
func firstService(s *Server) *service {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	return s.services[s.rt.Load().cfg.Services[0].Name]
}

// poolOf is the pool of backend id (its URL as configured) of the first
// service.
func poolOf(s *Server, id string) *pool.Backend {
	svc := firstService(s)
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	return svc.upstreams[id].pool.Load()
}
