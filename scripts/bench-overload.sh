#!/usr/bin/env bash
# Overload goodput, priority, fairness and backend QoS: Sluice against
# HAProxy (tuned, untuned, leastconn over redundant origins), nginx and no
# proxy, in front of the same simulated origins under the same open-loop
# load (docs/benchmarks.md, "Overload, priority and fairness" and "Backend
# quality of service").
#
# Installs haproxy and nginx from the Debian packages if they are missing,
# builds the binaries unless SKIP_BUILD=1, then runs
# `bin/sluice-bench scenario $SCENARIO` (default all; SCENARIO=qos runs the
# backend-QoS part alone, as `make bench-qos` does). Arguments are passed
# on, e.g.
#   scripts/bench-overload.sh --quick
#   scripts/bench-overload.sh --json overload.json --cpu 0
#   SCENARIO=qos-fail scripts/bench-overload.sh
# Everything listens on 127.0.0.1; sluice-bench kills every process it
# started on exit (also on Ctrl-C). About 8.5 minutes (qos alone about 4);
# --quick about 3 minutes. Exits 1 when a floor for Sluice fails or could
# not be measured.
set -euo pipefail

cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

missing=()
for p in haproxy nginx; do
	have "$p" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing ${missing[*]} (Debian packages)" >&2
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	if command -v apt-get >/dev/null 2>&1; then
		$SUDO apt-get update -qq
		$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy nginx
		# The packages start system services; the benchmark runs its own.
		$SUDO systemctl stop haproxy nginx >/dev/null 2>&1 || true
	else
		echo "apt-get not found: ${missing[*]} will be skipped" >&2
	fi
fi

if [ "${SKIP_BUILD:-}" != "1" ]; then
	go build -o bin/ ./cmd/...
fi

exec bin/sluice-bench scenario "${SCENARIO:-all}" --sluice bin/sluice "$@"
