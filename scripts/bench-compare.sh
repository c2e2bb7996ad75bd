#!/usr/bin/env bash
# CPU per request: Sluice against HAProxy and nginx, each on one pinned core,
# in front of the same fast origin and under the same load.
#
# Method (docs/benchmarks.md, "CPU per request"): the origin (nginx,
# `return 200 "ok"`, keep-alive) and the load generator (wrk) share core 1;
# the proxy under test runs alone on core 0 with one worker/thread
# (HAProxy nbthread 1, nginx one process, Sluice GOMAXPROCS=1). Each run
# starts the proxy fresh, warms it up, then reads the proxy process's
# utime+stime from /proc/PID/stat before and after a fixed wrk load. The
# proxies take turns run by run so that drift on a shared machine hits all
# of them alike; the medians over RUNS runs are printed.
#
# Environment:
#   RUNS=3          runs per proxy (median reported)
#   DURATION=10s    measured wrk duration per run
#   WARMUP=2s       unmeasured wrk load before each run
#   CONNS=32        wrk connections (one wrk thread)
#   PROXIES="haproxy nginx sluice"
#                   sluice_scraped is Sluice with its admin listener on and
#                   /metrics scraped every second (curl, on LOAD_CPU), so
#                   that PROXIES="sluice sluice_scraped" measures what the
#                   metrics cost, interleaved in one run
#   PROXY_CPU=0 LOAD_CPU=1   cores for the proxy, and for origin + wrk
#   ORIGIN_CPU=     the origin's core (default LOAD_CPU; PROXY_CPU puts it
#                   on the proxy's own core)
#   SIZE=           response body bytes (default: the 2-byte "ok"); the
#                   origin then serves a file of that size
#   SLUICE_ARGS=    extra flags for sluice
#   SLUICE_BASE=    a sluice binary for PROXIES=sluice_base (another build,
#                   e.g. of an earlier commit, for a before/after ratio)
#   SKIP_BUILD=1    use bin/sluice as it is
#
# Everything listens on 127.0.0.1; every process started here is killed on
# exit and temporary files live in one mktemp directory.
set -euo pipefail

RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-32}
PROXIES=${PROXIES:-"haproxy nginx sluice"}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
ORIGIN_CPU=${ORIGIN_CPU:-$LOAD_CPU}
SIZE=${SIZE:-}
SLUICE_ARGS=${SLUICE_ARGS:-}

cd "$(dirname "$0")/.."
ROOT=$(pwd)
PATH=$PATH:/usr/sbin:/sbin

BENCH_NAME=bench-compare
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

need_tools haproxy nginx wrk taskset
build_sluice
[ -x bin/sluice ] || die "bin/sluice missing (run make build)"

bench_tmp

# cpu_ticks prints utime+stime of a process in clock ticks.
cpu_ticks() {
	# Fields after the ")" that ends the command name: utime is the 12th,
	# stime the 13th (fields 14 and 15 of proc(5)).
	local stat
	stat=$(<"/proc/$1/stat")
	stat=${stat##*) }
	# shellcheck disable=SC2086
	set -- $stat
	echo $((${12} + ${13}))
}
TCK=$(getconf CLK_TCK)

# --- the origin ---------------------------------------------------------------
ORIGIN_PORT=$(free_port)
# nginx_conf DIR HTTP_BODY writes DIR/nginx.conf: one foreground worker
# whose temporary files stay in DIR, with HTTP_BODY inside http { }.
nginx_conf() {
	mkdir -p "$1"
	cat >"$1/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    client_body_temp_path $1;
    proxy_temp_path $1;
    fastcgi_temp_path $1;
    uwsgi_temp_path $1;
    scgi_temp_path $1;
$2
}
EOF
}

ORIGIN_LOCATION='location / { return 200 "ok"; }'
if [ -n "$SIZE" ]; then
	mkdir -p "$TMP/origin/www"
	head -c "$SIZE" /dev/urandom >"$TMP/origin/www/body"
	ORIGIN_LOCATION="location / { root $TMP/origin/www; default_type application/octet-stream; try_files /body =404; }"
fi
nginx_conf "$TMP/origin" "
    keepalive_timeout 120s;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        $ORIGIN_LOCATION
    }"
taskset -c "$ORIGIN_CPU" nginx -e "$TMP/origin/error.log" -p "$TMP/origin" -c "$TMP/origin/nginx.conf" &
PIDS+=($!)
wait_http "$ORIGIN_PORT"

# --- the proxies --------------------------------------------------------------
# start_<proxy> PORT starts the proxy pinned to PROXY_CPU and sets PID.
start_haproxy() {
	mkdir -p "$TMP/haproxy"
	cat >"$TMP/haproxy/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s
frontend fe
    bind 127.0.0.1:$1
    default_backend origin
backend origin
    http-reuse always
    server o1 127.0.0.1:$ORIGIN_PORT
EOF
	taskset -c "$PROXY_CPU" haproxy -db -f "$TMP/haproxy/haproxy.cfg" >"$TMP/haproxy/out.log" 2>&1 &
	PID=$!
}

start_nginx() {
	nginx_conf "$TMP/nginx" "
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 64;
        keepalive_requests 10000000;
    }
    server {
        listen 127.0.0.1:$1;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"
	taskset -c "$PROXY_CPU" nginx -e "$TMP/nginx/error.log" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" &
	PID=$!
}

start_sluice() {
	mkdir -p "$TMP/sluice"
	# shellcheck disable=SC2086
	GOMAXPROCS=1 taskset -c "$PROXY_CPU" "$ROOT/bin/sluice" \
		--listen "127.0.0.1:$1" --backend "http://127.0.0.1:$ORIGIN_PORT" \
		--access-log=false --log-level warn $SLUICE_ARGS >"$TMP/sluice/out.log" 2>&1 &
	PID=$!
}

# start_sluice_base is start_sluice with the binary $SLUICE_BASE: another
# build (an earlier commit) measured in the same interleaved runs, for a
# before-and-after ratio that the machine's noise affects alike.
start_sluice_base() {
	[ -x "${SLUICE_BASE:-}" ] || die "sluice_base: set SLUICE_BASE to a sluice binary"
	mkdir -p "$TMP/sluice"
	# shellcheck disable=SC2086
	GOMAXPROCS=1 taskset -c "$PROXY_CPU" "$SLUICE_BASE" \
		--listen "127.0.0.1:$1" --backend "http://127.0.0.1:$ORIGIN_PORT" \
		--access-log=false --log-level warn $SLUICE_ARGS >"$TMP/sluice/base.log" 2>&1 &
	PID=$!
}

# start_sluice_scraped is start_sluice with the admin listener on and a
# scraper reading /metrics every second, as Prometheus would; the
# scraper's own CPU is not counted, Sluice's answering it is.
start_sluice_scraped() {
	local admin
	admin=$(free_port)
	SLUICE_ARGS="$SLUICE_ARGS --admin 127.0.0.1:$admin" start_sluice "$1"
	wait_http "$admin"
	taskset -c "$LOAD_CPU" bash -c "while sleep 1; do curl -sf -o /dev/null http://127.0.0.1:$admin/metrics || exit 1; done" &
	SCRAPER=$!
	PIDS+=("$SCRAPER")
}

# one_run PROXY prints "requests/s cpu_us_per_request non2xx" for one run.
one_run() {
	local name=$1 port out t0 t1 reqs rps bad errs
	port=$(free_port)
	"start_$name" "$port"
	PIDS+=("$PID")
	wait_http "$port"
	taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$WARMUP" "http://127.0.0.1:$port/" >/dev/null
	t0=$(cpu_ticks "$PID")
	out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$port/")
	t1=$(cpu_ticks "$PID")
	if [ -n "${SCRAPER:-}" ]; then
		stop "$SCRAPER"
		SCRAPER=
	fi
	stop "$PID"
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	bad=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
	errs=$(awk '/Socket errors:/ {print $0}' <<<"$out")
	[ -n "$reqs" ] && [ "$reqs" -gt 0 ] || die "$name: wrk reported no requests:\n$out"
	if [ -n "$errs" ]; then log "  $name: $errs"; fi
	awk -v r="$rps" -v n="$reqs" -v d="$((t1 - t0))" -v tck="$TCK" -v bad="${bad:-0}" \
		'BEGIN { printf "%.0f %.2f %d\n", r, d * 1e6 / tck / n, bad }'
}


log "origin: nginx on 127.0.0.1:$ORIGIN_PORT (core $ORIGIN_CPU, body ${SIZE:-2} bytes); proxies on core $PROXY_CPU"
log "load: wrk -t1 -c$CONNS -d$DURATION (core $LOAD_CPU), $WARMUP warm-up, $RUNS runs each"
for p in $PROXIES; do : >"$TMP/$p.results"; done
for run in $(seq "$RUNS"); do
	for p in $PROXIES; do
		# Not $(one_run): a subshell would hide the proxy's PID from cleanup.
		one_run "$p" >"$TMP/run.out"
		r=$(<"$TMP/run.out")
		echo "$r" >>"$TMP/$p.results"
		read -r rps us bad <<<"$r"
		log "run $run  $(printf '%-14s %9s req/s %8s us/req' "$p" "$rps" "$us")$([ "$bad" != 0 ] && echo "  NON-2xx: $bad")"
	done
done

echo
echo "CPU per request, median of $RUNS runs (proxy on one core; wrk -t1 -c$CONNS -d$DURATION)"
printf '%-14s %12s %14s %12s %s\n' proxy "req/s" "CPU us/req" "vs haproxy" "non-2xx"
base=
if [[ " $PROXIES " == *" haproxy "* ]]; then
	base=$(awk '{print $2}' "$TMP/haproxy.results" | median)
fi
for p in $PROXIES; do
	rps=$(awk '{print $1}' "$TMP/$p.results" | median)
	us=$(awk '{print $2}' "$TMP/$p.results" | median)
	bad=$(awk '{s += $3} END {print s + 0}' "$TMP/$p.results")
	ratio=-
	if [ -n "$base" ]; then ratio=$(awk -v a="$us" -v b="$base" 'BEGIN { printf "%.2fx", a / b }'); fi
	printf '%-14s %12.0f %14.2f %12s %s\n' "$p" "$rps" "$us" "$ratio" "$bad"
done
