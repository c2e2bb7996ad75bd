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
	PeerDirect       = "direct"
	PeerSluice       = "sluice"
	PeerHAProxyTuned = "haproxy-tuned"
	// PeerHAProxyQueue500 is haproxy-tuned with timeout queue 500ms: the
	// common mistake of a queue timeout as long as the SLO, kept to show
	// what it costs (what it admits waits out most of the SLO).
	PeerHAProxyQueue500 = "haproxy-queue-500ms"
	PeerHAProxyUntuned  = "haproxy-untuned"
	PeerNginx           = "nginx"
	// PeerHAProxyLeastconn is HAProxy in front of redundant origins, as
	// the QoS scenario runs it: see HAProxyLeastconnConfig.
	PeerHAProxyLeastconn = "haproxy-leastconn"
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
	case PeerHAProxyTuned, PeerHAProxyQueue500, PeerHAProxyUntuned, PeerHAProxyLeastconn:
		name = b.HAProxy
	case PeerNginx:
		name = b.Nginx
	default:
		return "", fmt.Errorf("unknown peer %q", peer)
	}
	path, ok := LookBinary(name)
	if !ok {
		return "", errSkipped{fmt.Sprintf("%s: skipped (%s not found; run scripts/bench-overload.sh or `make build`)", peer, name)}
	}
	return path, nil
}

// upstream is one origin a peer proxies to.
type upstream struct {
	addr    string // host:port
	workers int    // requests it serves at full speed at once
	// standby: a spare, not one of the peer's backends: Sluice's
	// --standby, HAProxy's backup server.
	standby bool
}

// startPeer starts peer in front of the origins ups (one, except for
// Sluice and haproxy-leastconn, which balance several), with its config
// files in dir, and waits until it proxies a request.
func (b Binaries) startPeer(ctx context.Context, peer string, ups []upstream, dir string) (*front, error) {
	if len(ups) == 0 {
		return nil, fmt.Errorf("%s: no origin to proxy to", peer)
	}
	if len(ups) > 1 && peer != PeerSluice && peer != PeerHAProxyLeastconn {
		return nil, fmt.Errorf("%s: takes one origin, got %d", peer, len(ups))
	}
	if ups[0].standby {
		return nil, fmt.Errorf("%s: the first origin is a standby; it must be a backend", peer)
	}
	backend, workers := ups[0].addr, ups[0].workers
	if peer == PeerDirect {
		return &front{url: "http://" + backend}, nil
	}
	bin, err := b.available(peer)
	if err != nil {
		return nil, err
	}
	listen, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	var argv []string
	switch peer {
	case PeerSluice:
		argv = []string{bin, "--listen", listen}
		for _, u := range ups {
			flag := "--backend"
			if u.standby {
				flag = "--standby"
			}
			argv = append(argv, flag, "http://"+u.addr)
		}
		argv = append(argv, b.SluiceArgs...)
	case PeerHAProxyTuned, PeerHAProxyQueue500, PeerHAProxyUntuned, PeerHAProxyLeastconn:
		text := HAProxyConfig(listen, backend, peer == PeerHAProxyTuned, workers)
		if peer == PeerHAProxyQueue500 {
			text = haproxyTunedConfig(listen, backend, workers, "500ms")
		}
		if peer == PeerHAProxyLeastconn {
			servers := make([]HAProxyServer, len(ups))
			for i, u := range ups {
				servers[i] = HAProxyServer{Addr: u.addr, MaxConn: u.workers, Backup: u.standby}
			}
			text = HAProxyLeastconnConfig(listen, servers)
		}
		cfg := filepath.Join(dir, peer+".cfg")
		if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
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
		ts, ok := LookBinary("taskset")
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
// Tuned is what a competent operator who knows the origin's capacity
// writes: at most as many requests on the server as the origin has
// workers, a queue timeout well below the SLO (100 ms) so that a request
// that cannot be served soon gets a 503 at once instead of waiting, and a
// priority class for critical requests so the queue serves them first.
// (A queue timeout of 500 ms, the SLO itself, is the common mistake that
// PeerHAProxyQueue500 runs: what it admits waits out most of the SLO.)
//
// Untuned is a plausible configuration written without that knowledge:
// server maxconn 100 and a 5 s queue timeout, no priorities.
func HAProxyConfig(listen, backend string, tuned bool, workers int) string {
	if tuned {
		return haproxyTunedConfig(listen, backend, workers, "100ms")
	}
	return haproxyHead(listen, "5s") + "    server origin " + backend + " maxconn 100\n"
}

// haproxyTunedConfig is the tuned configuration with the queue timeout
// given.
func haproxyTunedConfig(listen, backend string, workers int, queue string) string {
	prio := "    http-request set-priority-class int(-10) if { req.hdr(X-Priority) -m str critical }\n" +
		"    http-request set-priority-class int(10) if { req.hdr(X-Priority) -m str low }\n"
	return haproxyHead(listen, queue) + prio + fmt.Sprintf("    server origin %s maxconn %d\n", backend, workers)
}

// haproxyHead is what every generated HAProxy config shares: global and
// defaults, the frontend, and the backend's first lines.
func haproxyHead(listen, queueTimeout string) string {
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
		"    timeout queue " + queueTimeout,
		"",
		"frontend fe",
		"    bind " + listen,
		"    maxconn 5000",
		"    default_backend be",
		"",
		"backend be",
		"    http-reuse always",
	}, "\n") + "\n"
}

// HAProxyServer is one server of a generated HAProxy backend.
type HAProxyServer struct {
	Addr    string // host:port
	MaxConn int    // the origin's workers
	// Backup makes it a backup server: HAProxy sends it requests only
	// while every other server is down. It is HAProxy's nearest thing to
	// a standby; nothing in HAProxy brings one in because the others are
	// overloaded.
	Backup bool
}

// HAProxyLeastconnConfig is HAProxy in front of redundant origins, as an
// operator who knows each origin's capacity and wants failures handled
// would write it (HAProxy 2.x):
//
//   - balance leastconn, each server's maxconn its origin's workers, and
//     timeout queue 100ms: a request that finds no server with room
//     within 100 ms gets a 503 rather than a long wait.
//   - passive health: observe layer7 with error-limit 5 and
//     on-error mark-down, so five 5xx (or broken responses) in a row take
//     a server out at once.
//   - active health: option httpchk GET / every second (every 250 ms
//     while a server changes state), timeout check 1s, fall 2, rise 2,
//     slowstart 5s. observe needs checks to bring a marked-down server
//     back, and a check is the only way HAProxy notices a server that
//     accepts connections and never answers.
//   - retries 2 with option redispatch 1 and
//     retry-on all-retryable-errors (connection failures, empty or
//     broken responses, 500, 502, 503, 504), for GET and HEAD only
//     (disable-l7-retry otherwise): a failed idempotent request is sent
//     again, to another server.
//   - a Backup server gets the backup option: it takes requests only
//     while every other server is down, and is checked like the others.
//
// The checks are requests like any other to the origins (one a second
// each), and so go through their fault injection.
func HAProxyLeastconnConfig(listen string, servers []HAProxyServer) string {
	var b strings.Builder
	b.WriteString(haproxyHead(listen, "100ms"))
	b.WriteString(strings.Join([]string{
		"    balance leastconn",
		"    timeout check 1s",
		"    option httpchk",
		"    http-check send meth GET uri / ver HTTP/1.1 hdr Host origin",
		"    http-check expect status 200",
		"    option redispatch 1",
		"    retries 2",
		"    retry-on all-retryable-errors",
		"    http-request disable-l7-retry if !METH_GET !METH_HEAD",
		"    default-server check inter 1s fastinter 250ms downinter 1s fall 2 rise 2 slowstart 5s observe layer7 error-limit 5 on-error mark-down",
	}, "\n"))
	b.WriteString("\n")
	for i, s := range servers {
		backup := ""
		if s.Backup {
			backup = " backup"
		}
		fmt.Fprintf(&b, "    server o%d %s maxconn %d%s\n", i+1, s.Addr, s.MaxConn, backup)
	}
	return b.String()
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
