// Command clients puts hostile clients (slow readers, slow uploads, idle
// keep-alive connections) beside a well-behaved client, in front of an
// origin with a few synchronous workers, through Sluice, nginx and HAProxy
// in turn, and reports the well-behaved client's success and p99 and each
// proxy's peak resident memory and open descriptors (and, for Sluice,
// its goroutines, from its admin listener's go_goroutines). Everything runs on
// loopback, bounded in rate and duration. scripts/clients.sh runs it.
//
// The origin is a pre-fork application server in miniature: a worker is
// taken for the whole request, from reading its body to writing the last
// byte of its answer (as gunicorn's sync workers, unicorn or PHP-FPM do),
// and the rest wait for one. A proxy that relays a large answer at the
// client's pace lends the client a worker for as long as it reads.
//
// Why a command of its own rather than a scenario of bench/scenario: the
// hostile groups need tens of thousands of raw connections and a process
// tree's memory and descriptors read from /proc, which the scenario
// runner (one load generator, one origin per run) does not model; the
// peers' configurations and how they are found are bench/scenario's
// (NginxConfig, HAProxyConfig, LookBinary, FreeAddr), so a proxy is set up
// the same way in both. One file, main.go, holds the origin, the clients
// and the measurement: each is a few dozen lines and they only make sense
// together.
package main
