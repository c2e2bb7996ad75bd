#!/usr/bin/env bash
# Overload goodput, priority and fairness: Sluice against HAProxy (tuned and
# untuned), nginx and no proxy, in front of the same simulated origin under
# the same open-loop load (docs/benchmarks.md, "Overload, priority and
# fairness").
#
# Installs haproxy and nginx from the Debian packages if they are missing,
# builds the binaries unless SKIP_BUILD=1, then runs
# `bin/sluice-bench scenario all`. Arguments are passed on, e.g.
#   scripts/bench-overload.sh --quick
#   scripts/bench-overload.sh --json overload.json --cpu 0
# Everything listens on 127.0.0.1; sluice-bench kills every process it
# started on exit (also on Ctrl-C). About 5 minutes; --quick about 1 minute.
# Exits 1 when a floor for Sluice fails or could not be measured.
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

exec bin/sluice-bench scenario all --sluice bin/sluice "$@"
