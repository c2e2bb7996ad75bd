#!/usr/bin/env bash
# clients.sh: hostile clients beside a well-behaved one, through Sluice,
# nginx and HAProxy (issue 13). An origin with 8 synchronous workers (a
# worker is held from reading a request to writing its last byte); groups of
# slow readers (a large answer read a few bytes a second), slow uploads (a
# 100 kB body sent ten bytes a second) and idle keep-alive connections; a
# client sending 50 requests/s to a quick path beside each group. Prints one
# table row per group and proxy: the well-behaved client's success and p99,
# the proxy's peak RSS (its processes together) and open descriptors at the
# start, at the peak and 2 s after the hostile clients left.
#
#   scripts/clients.sh                           defaults (about 2 minutes)
#   scripts/clients.sh --slow 50 --size 33554432 --idle 10000   issue 13's sizes
#   scripts/clients.sh --peers sluice,sluice-unbuffered          Sluice with and without buffering
#
# Everything runs on 127.0.0.1, bounded by --duration (10s a group). nginx
# and HAProxy are looked up on PATH and in the sbin directories, and skipped
# when missing (--nginx, --haproxy name others).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
$GO build -o bin/ ./cmd/sluice
exec $GO run ./bench/clients --sluice bin/sluice "$@"
