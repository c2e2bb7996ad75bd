package scenario

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Peer names, as they appear in tables and JSON.
const (
	PeerDirect         = "direct"
	PeerSluice         = "sluice"
	PeerHAProxyTuned   = "haproxy-tuned"
	PeerHAProxyUntuned = "haproxy-untuned"
	PeerNginx          = "nginx"
)

// Binaries says where each peer's program is. Empty fields take the
// defaults: "bin/sluice", "haproxy", "nginx" (bare names are searched in
// PATH and the sbin directories).
type Binaries struct {
	Sluice  string
	HAProxy string
	Nginx   string
	// SluiceArgs are extra flags for Sluice after --listen and --backend.
	// Default: --access-log=false, since the other peers log nothing
	// either; no admission-control setting is given, on purpose.
	SluiceArgs []string
	// CPU, when set, runs each proxy under `taskset -c CPU`.
	CPU string
}

func (b Binaries) withDefaults() Binaries {
	if b.Sluice == "" {
		b.Sluice = filepath.Join("bin", "sluice")
	}
	if b.HAProxy == "" {
		b.HAProxy = "haproxy"
	}
	if b.Nginx == "" {
		b.Nginx = "nginx"
	}
	if b.SluiceArgs == nil {
		b.SluiceArgs = []string{"--access-log=false"}
	}
	return b
}

// front is a running peer: the URL clients use and how to stop it.
type front struct {
	url  string
	proc *proc // nil for direct
}

func (f *front) stop() {
	if f != nil {
		f.proc.stop()
	}
}

// errSkipped marks a peer whose program is absent; the run goes on without
// it and the table says so.
type errSkipped struct{ why string }

func (e errSkipped) Error() string { return e.why }

// available reports whether the peer can run, and why not.
func (b Binaries) available(peer string) (string, error) {
	var name string
	switch peer {
	case PeerDirect:
		return "", nil
	case PeerSluice:
		name = b.Sluice
	case PeerHAProxyTuned, PeerHAProxyUntuned:
		name = b.HAProxy
	case PeerNginx:
		name = b.Nginx
	default:
		return "", fmt.Errorf("unknown peer %q", peer)
	}
	path, ok := lookBinary(name)
	if !ok {
		return "", errSkipped{fmt.Sprintf("%s: skipped (%s not found; run scripts/bench-overload.sh or `make build`)", peer, name)}
	}
	return path, nil
}

// startPeer starts peer in front of the origin at backend (host:port),
// which serves workers requests at once, with its config files in dir, and
// waits until it proxies a request.
func (b Binaries) startPeer(ctx context.Context, peer, backend, dir string, workers int) (*front, error) {
	if peer == PeerDirect {
		return &front{url: "http://" + backend}, nil
	}
	bin, err := b.available(peer)
	if err != nil {
		return nil, err
	}
	listen, err := freeAddr()
	if err != nil {
		return nil, err
	}
	var argv []string
	switch peer {
	case PeerSluice:
		argv = append([]string{bin, "--listen", listen, "--backend", "http://" + backend}, b.SluiceArgs...)
	case PeerHAProxyTuned, PeerHAProxyUntuned:
		cfg := filepath.Join(dir, peer+".cfg")
		if err := os.WriteFile(cfg, []byte(HAProxyConfig(listen, backend, peer == PeerHAProxyTuned, workers)), 0o644); err != nil {
			return nil, err
		}
		// -db: stay in the foreground so we own the process.
		argv = []string{bin, "-db", "-f", cfg}
	case PeerNginx:
		ndir := filepath.Join(dir, "nginx")
		if err := os.MkdirAll(ndir, 0o755); err != nil {
			return nil, err
		}
		cfg := filepath.Join(ndir, "nginx.conf")
		if err := os.WriteFile(cfg, []byte(NginxConfig(listen, backend, ndir)), 0o644); err != nil {
			return nil, err
		}
		// -e sends the early error log to our directory too, so nginx
		// never needs to write outside it.
		argv = []string{bin, "-p", ndir, "-c", cfg, "-e", filepath.Join(ndir, "error.log")}
	}
	if b.CPU != "" {
		ts, ok := lookBinary("taskset")
		if !ok {
			return nil, fmt.Errorf("--cpu %s: taskset not found", b.CPU)
		}
		argv = append([]string{ts, "-c", b.CPU}, argv...)
	}
	p, err := startProc(peer, dir, argv)
	if err != nil {
		return nil, err
	}
	if err := waitListening(ctx, p, listen, 10*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	if err := httpProbe(listen, 5*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s does not proxy to the origin: %w\n%s", peer, err, p.tail())
	}
	return &front{url: "http://" + listen, proc: p}, nil
}

// HAProxyConfig is the HAProxy configuration for one peer.
//
// Tuned is what an operator who knows the origin's capacity writes: at most
// as many requests on the server as the origin has workers, a 500 ms queue
// so a request that cannot be served within the SLO gets a 503 instead of
// waiting, and a priority class for critical requests so the queue serves
// them first.
//
// Untuned is a plausible configuration written without that knowledge:
// server maxconn 100 and a 5 s queue timeout, no priorities.
func HAProxyConfig(listen, backend string, tuned bool, workers int) string {
	server := "    server origin " + backend + " maxconn 100\n"
	queue := "5s"
	prio := ""
	if tuned {
		server = fmt.Sprintf("    server origin %s maxconn %d\n", backend, workers)
		queue = "500ms"
		prio = "    http-request set-priority-class int(-10) if { req.hdr(X-Priority) -m str critical }\n" +
			"    http-request set-priority-class int(10) if { req.hdr(X-Priority) -m str low }\n"
	}
	return strings.Join([]string{
		"global",
		// HAProxy reserves about two descriptors per connection and
		// refuses to start if it cannot raise its limit that far.
		"    maxconn 5000",
		"",
		"defaults",
		"    mode http",
		"    option http-keep-alive",
		"    timeout connect 2s",
		"    timeout client 30s",
		"    timeout server 30s",
		"    timeout http-keep-alive 30s",
		"    timeout queue " + queue,
		"",
		"frontend fe",
		"    bind " + listen,
		"    maxconn 5000",
		"    default_backend be",
		"",
		"backend be",
		"    http-reuse always",
	}, "\n") + "\n" + prio + server
}

// NginxConfig is a plain nginx reverse proxy with upstream keepalive, all
// of its files under prefix. nginx has no admission queue: it forwards
// everything and the origin queues.
func NginxConfig(listen, backend, prefix string) string {
	p := func(name string) string { return filepath.Join(prefix, name) }
	return fmt.Sprintf(`daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 16384;
pid %s;
error_log %s warn;

events {
    worker_connections 8000;
}

http {
    access_log off;
    client_body_temp_path %s;
    proxy_temp_path %s;
    fastcgi_temp_path %s;
    uwsgi_temp_path %s;
    scgi_temp_path %s;

    upstream origin {
        server %s;
        keepalive 64;
    }

    server {
        listen %s;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 30s;
        }
    }
}
`, p("nginx.pid"), p("error.log"), p("client_body"), p("proxy"), p("fastcgi"), p("uwsgi"), p("scgi"), backend, listen)
}
