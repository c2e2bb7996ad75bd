#!/usr/bin/env bash
# CPU per request across a matrix: response sizes, client connections, and
# the origin on another core or on the proxy's own. Each cell is one
# scripts/bench-compare.sh run (Sluice, HAProxy and nginx interleaved,
# medians of RUNS); this prints Sluice's and nginx's CPU per request as a
# ratio to HAProxy's for every cell, and PASS/FAIL against the floor
# (Sluice <= 1.2x HAProxy in every cell). Exits 1 when a cell fails.
#
#   SIZES="0 1024 16384 262144"   response body bytes
#   CONNS_LIST="32 256"           wrk connections
#   PLACES="other same"           the origin's core: the load's, or the proxy's
#   RUNS=3 DURATION=5s            per cell, passed to bench-compare.sh
#   FLOOR=1.2
#
# About SIZES × CONNS_LIST × PLACES × 3 proxies × RUNS × (DURATION + 2 s):
# 16 cells × 9 runs × 7 s ≈ 17 minutes with the defaults. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES:-"0 1024 16384 262144"}
CONNS_LIST=${CONNS_LIST:-"32 256"}
PLACES=${PLACES:-"other same"}
RUNS=${RUNS:-3}
DURATION=${DURATION:-5s}
FLOOR=${FLOOR:-1.2}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

if [ -z "${SKIP_BUILD:-}" ]; then
	make -s build
fi

rows=()
fail=0
for size in $SIZES; do
	for conns in $CONNS_LIST; do
		for place in $PLACES; do
			ocpu=$LOAD_CPU
			[ "$place" = same ] && ocpu=$PROXY_CPU
			out=$(SKIP_BUILD=1 SIZE="$size" CONNS="$conns" ORIGIN_CPU="$ocpu" RUNS="$RUNS" DURATION="$DURATION" \
				PROXIES="haproxy nginx sluice" scripts/bench-compare.sh 2>/dev/null)
			h=$(awk '$1 == "haproxy" {print $3}' <<<"$out")
			n=$(awk '$1 == "nginx" {print $4}' <<<"$out")
			s=$(awk '$1 == "sluice" {print $3}' <<<"$out")
			r=$(awk '$1 == "sluice" {print $4}' <<<"$out")
			verdict=$(awk -v r="${r%x}" -v f="$FLOOR" 'BEGIN { print (r != "" && r + 0 <= f) ? "PASS" : "FAIL" }')
			[ "$verdict" = PASS ] || fail=1
			rows+=("$(printf '%-8s %-6s %-6s %10s %10s %8s %8s  %s' "$size" "$conns" "$place" "$s" "$h" "$r" "$n" "$verdict")")
			printf '%s\n' "${rows[-1]}" >&2
		done
	done
done
echo
echo "CPU per request (us), medians of $RUNS interleaved runs per cell; floor: sluice <= ${FLOOR}x haproxy"
printf '%-8s %-6s %-6s %10s %10s %8s %8s  %s\n' bytes conns origin sluice haproxy sluice/h nginx/h verdict
printf '%s\n' "${rows[@]}"
exit $fail
