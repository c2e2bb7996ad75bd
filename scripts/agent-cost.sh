#!/usr/bin/env bash
# agent-cost.sh: the CPU that sluice-agent itself uses, as a share of one
# core. Starts bin/sluice-agent on 127.0.0.1 with the flags given (default
# flags otherwise: one sample a second, host figures only), lets it settle,
# then reads its utime+stime from /proc/PID/stat before and after DURATION
# seconds (30 by default) and prints it over the wall time between the two
# readings. Start-up (the Go
# runtime, the first samples) is outside the window. With POLL=1, a client
# reads /load once a second meanwhile, as the gateway's monitor does, so
# serving is counted too. Exits 1 if the share is not under LIMIT (1%).
#
#   make agent-cost
#   scripts/agent-cost.sh --process sshd --cgroup /sys/fs/cgroup/unified
#   DURATION=60 POLL=1 scripts/agent-cost.sh --agent-check 127.0.0.1:0
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-30}
POLL=${POLL:-0}
LIMIT=${LIMIT:-1}
[ -x "$ROOT/bin/sluice-agent" ] || (cd "$ROOT" && go build -o bin/ ./cmd/sluice-agent)

TMP=$(mktemp -d)
pid=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

"$ROOT/bin/sluice-agent" --listen 127.0.0.1:0 "$@" 2>"$TMP/log" &
pid=$!
for _ in $(seq 50); do
	grep -qs '"listening"' "$TMP/log" && break
	sleep 0.1
done
addr=$(sed -n 's/.*"addr":"\([^"]*\)".*"listening".*/\1/p' "$TMP/log" | head -1)
[ -n "$addr" ] || { cat "$TMP/log"; echo "agent did not start" >&2; exit 1; }
sleep 2

ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
start=$(date +%s.%N)
t0=$(ticks)
if [ "$POLL" = 1 ]; then
	for _ in $(seq "$DURATION"); do
		curl -fsS --max-time 1 "http://$addr/load" >/dev/null
		sleep 1
	done
else
	sleep "$DURATION"
fi
t1=$(ticks)
elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {print e - s}')
rss=$(awk '/VmRSS/ {print $2 " " $3}' "/proc/$pid/status")

awk -v t0="$t0" -v t1="$t1" -v hz="$hz" -v d="$elapsed" -v limit="$LIMIT" -v rss="$rss" -v flags="$*" -v poll="$POLL" 'BEGIN {
	cpu = (t1 - t0) / hz
	share = 100 * cpu / d
	printf "sluice-agent %s (poll=%s): %.2f s of CPU in %.1f s = %.3f%% of one core, RSS %s\n", flags, poll, cpu, d, share, rss
	if (share >= limit) { printf "FAIL  not under %s%%\n", limit; exit 1 }
	printf "PASS  under %s%%\n", limit
}'
