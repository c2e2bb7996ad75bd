#!/usr/bin/env bash
# CPU per cache hit: Sluice's cache against nginx's proxy_cache, the same
# stored object, the same load, in the same run.
#
# Method (docs/benchmarks.md, "Cache"): an origin (nginx) serves objects
# of each size with Cache-Control: max-age=3600, pinned with the load
# generator (wrk) to LOAD_CPU. The proxy under test runs alone on
# PROXY_CPU with one worker: Sluice with GOMAXPROCS=1 and --cache; nginx
# with worker_processes 1 and proxy_cache (master_process on, as nginx
# is deployed: the cache manager and loader are the master's children).
# Each run starts the proxy fresh, fetches the object until the proxy says
# it answered from its cache (X-Sluice-Cache: hit, X-Cache-Status: HIT),
# warms it with unmeasured load, then reads utime+stime from /proc before
# and after a fixed wrk load: for Sluice its one process (every thread:
# the Go runtime's too), for nginx the master and all its children. The
# origin's access log counts the requests that reached it during the
# measured load, which must be 0: a figure with origin traffic in it is
# not a hit's cost. The proxies take turns run by run; medians of RUNS.
#
# Environment:
#   SIZES="0 1024 16384 262144"   object body bytes
#   CONNS_LIST="32 256"           wrk connections (one wrk thread)
#   RUNS=3 DURATION=5s WARMUP=2s  per cell and proxy
#   FLOOR=1.2                     PASS when sluice <= FLOOR x nginx
#   PROXY_CPU=0 LOAD_CPU=1        cores for the proxy, and for origin + wrk
#   NGINX_SENDFILE=on             nginx's sendfile (on in Debian's default
#                                 nginx.conf, so on here)
#   NGINX_OPEN_FILE_CACHE="max=1000 inactive=60s"
#                                 nginx's open_file_cache, which proxy_cache
#                                 uses for its files too: a hit then opens
#                                 no file; "off" measures nginx without it
#   SLUICE=bin/sluice             the sluice binary (another build, e.g. of
#                                 an earlier commit, for a before/after)
#   SLUICE_ARGS=                  extra flags for sluice
#   SKIP_BUILD=1                  use bin/sluice as it is
#
# Exits 1 when a cell fails the floor or saw origin traffic while measured.
# Everything listens on 127.0.0.1; every process started here is killed on
# exit and temporary files live in one mktemp directory.
set -euo pipefail

SIZES=${SIZES:-"0 1024 16384 262144"}
CONNS_LIST=${CONNS_LIST:-"32 256"}
RUNS=${RUNS:-3}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-2s}
FLOOR=${FLOOR:-1.2}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
NGINX_SENDFILE=${NGINX_SENDFILE:-on}
NGINX_OPEN_FILE_CACHE=${NGINX_OPEN_FILE_CACHE:-"max=1000 inactive=60s"}
SLUICE=${SLUICE:-bin/sluice}
SLUICE_ARGS=${SLUICE_ARGS:-}
PROXIES="nginx sluice"

cd "$(dirname "$0")/.."
PATH=$PATH:/usr/sbin:/sbin

BENCH_NAME=bench-cache
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

need_tools nginx wrk curl taskset
build_sluice
[ -x "$SLUICE" ] || die "$SLUICE missing (run make build)"
SLUICE=$(cd "$(dirname "$SLUICE")" && pwd)/$(basename "$SLUICE")

bench_tmp

# tree_ticks prints utime+stime, in clock ticks, of a process and of its
# children (nginx's workers, cache manager and loader; none for Sluice,
# whose threads are all in its own figure).
tree_ticks() {
	local total=0 pid stat
	for pid in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
		stat=$(<"/proc/$pid/stat") || continue
		stat=${stat##*) }
		# shellcheck disable=SC2086
		set -- $stat
		# utime and stime: fields 14 and 15 of proc(5), the 12th and
		# 13th after the command name.
		total=$((total + ${12} + ${13}))
	done
	echo "$total"
}
TCK=$(getconf CLK_TCK)

# --- the origin ---------------------------------------------------------------
# nginx_conf DIR WORKER_LINES HTTP_BODY writes DIR/nginx.conf with its
# temporary files in DIR.
nginx_conf() {
	mkdir -p "$1"
	cat >"$1/nginx.conf" <<EOF
$2
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
    keepalive_requests 10000000;
    client_body_temp_path $1/client_body;
    proxy_temp_path $1/proxy_temp;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
$3
}
EOF
}

ORIGIN_PORT=$(free_port)
mkdir -p "$TMP/origin/www/obj"
for size in $SIZES; do
	head -c "$size" /dev/urandom >"$TMP/origin/www/obj/$size"
done
# The origin logs every request: the count that reaches it while a proxy
# is measured must be 0.
nginx_conf "$TMP/origin" "worker_processes 1;
master_process off;" "
    access_log $TMP/origin/access.log;
    keepalive_timeout 120s;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        location /obj/ {
            root $TMP/origin/www;
            default_type application/octet-stream;
            add_header Cache-Control \"max-age=3600\";
        }
    }"
taskset -c "$LOAD_CPU" nginx -e "$TMP/origin/error.log" -p "$TMP/origin" -c "$TMP/origin/nginx.conf" &
PIDS+=($!)
wait_http "$ORIGIN_PORT"
origin_requests() { wc -l <"$TMP/origin/access.log" 2>/dev/null || echo 0; }

# --- the proxies --------------------------------------------------------------
# start_<proxy> PORT starts the proxy pinned to PROXY_CPU and sets PID.
#
# nginx: one worker, as Sluice has one P; the cache in a directory of its
# own (a fresh one each run, so every run starts from a miss), keys in a
# shared zone, the stored file read through the page cache.
start_nginx() {
	rm -rf "$TMP/nginx"
	# Started as root, the master would run its workers as nobody, who
	# cannot enter the private temporary directory that holds the cache.
	local user=
	[ "$(id -u)" = 0 ] && user="user $(id -un) $(id -gn);"
	nginx_conf "$TMP/nginx" "worker_processes 1;
master_process on;
$user" "
    access_log off;
    sendfile $NGINX_SENDFILE;
    tcp_nopush on;
    open_file_cache $NGINX_OPEN_FILE_CACHE;
    proxy_cache_path $TMP/nginx/cache levels=1:2 keys_zone=hits:10m max_size=1g inactive=60m use_temp_path=off;
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$1;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_cache hits;
            add_header X-Cache-Status \$upstream_cache_status;
        }
    }"
	taskset -c "$PROXY_CPU" nginx -e "$TMP/nginx/error.log" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" &
	PID=$!
}

start_sluice() {
	mkdir -p "$TMP/sluice"
	# shellcheck disable=SC2086
	GOMAXPROCS=1 taskset -c "$PROXY_CPU" "$SLUICE" \
		--listen "127.0.0.1:$1" --backend "http://127.0.0.1:$ORIGIN_PORT" \
		--cache --access-log=false --log-level warn $SLUICE_ARGS >"$TMP/sluice/out.log" 2>&1 &
	PID=$!
}

# warm_hit fetches URL until the proxy answers it from its cache.
warm_hit() {
	local name=$1 url=$2 hdr
	for _ in $(seq 20); do
		hdr=$(curl -s -o /dev/null -D - "$url" | tr -d '\r')
		case "$name" in
		sluice) grep -qi '^X-Sluice-Cache: hit$' <<<"$hdr" && return 0 ;;
		nginx) grep -qi '^X-Cache-Status: HIT$' <<<"$hdr" && return 0 ;;
		esac
		sleep 0.1
	done
	log "$hdr"
	tail -5 "$TMP/$name"/*.log >&2 || true
	die "$name never answered $url from its cache"
}

# one_run PROXY SIZE CONNS prints "requests/s cpu_us_per_request non2xx
# origin_requests" for one run.
one_run() {
	local name=$1 size=$2 conns=$3 port url out t0 t1 o0 o1 reqs rps bad errs
	port=$(free_port)
	"start_$name" "$port"
	PIDS+=("$PID")
	wait_http "$port"
	url="http://127.0.0.1:$port/obj/$size"
	warm_hit "$name" "$url"
	taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"$WARMUP" "$url" >/dev/null
	o0=$(origin_requests)
	t0=$(tree_ticks "$PID")
	out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"$DURATION" "$url")
	t1=$(tree_ticks "$PID")
	o1=$(origin_requests)
	stop "$PID"
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	bad=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
	errs=$(awk '/Socket errors:/ {print $0}' <<<"$out")
	[ -n "$reqs" ] && [ "$reqs" -gt 0 ] || die "$name: wrk reported no requests:\n$out"
	if [ -n "$errs" ]; then log "  $name: $errs"; fi
	awk -v r="$rps" -v n="$reqs" -v d="$((t1 - t0))" -v tck="$TCK" -v bad="${bad:-0}" -v o="$((o1 - o0))" \
		'BEGIN { printf "%.0f %.2f %d %d\n", r, d * 1e6 / tck / n, bad, o }'
}


log "origin: nginx on 127.0.0.1:$ORIGIN_PORT (core $LOAD_CPU), Cache-Control: max-age=3600; proxies on core $PROXY_CPU"
log "load: wrk -t1 -d$DURATION (core $LOAD_CPU), $WARMUP warm-up, $RUNS runs per proxy and cell"
rows=()
fail=0
for size in $SIZES; do
	for conns in $CONNS_LIST; do
		for p in $PROXIES; do : >"$TMP/$p.results"; done
		for run in $(seq "$RUNS"); do
			for p in $PROXIES; do
				# Not $(one_run): a subshell would hide the proxy's PID from cleanup.
				one_run "$p" "$size" "$conns" >"$TMP/run.out"
				r=$(<"$TMP/run.out")
				echo "$r" >>"$TMP/$p.results"
				read -r rps us bad orig <<<"$r"
				log "$(printf '%7s B c%-4s run %s  %-7s %8s req/s %8s us/req' "$size" "$conns" "$run" "$p" "$rps" "$us")$([ "$bad" != 0 ] && echo "  NON-2xx: $bad")$([ "$orig" != 0 ] && echo "  ORIGIN: $orig")"
			done
		done
		s=$(awk '{print $2}' "$TMP/sluice.results" | median)
		n=$(awk '{print $2}' "$TMP/nginx.results" | median)
		srps=$(awk '{print $1}' "$TMP/sluice.results" | median)
		nrps=$(awk '{print $1}' "$TMP/nginx.results" | median)
		bad=$(cat "$TMP"/*.results | awk '{s += $3} END {print s + 0}')
		orig=$(cat "$TMP"/*.results | awk '{s += $4} END {print s + 0}')
		ratio=$(awk -v a="$s" -v b="$n" 'BEGIN { printf "%.2f", a / b }')
		verdict=$(awk -v r="$ratio" -v f="$FLOOR" 'BEGIN { print (r + 0 <= f) ? "PASS" : "FAIL" }')
		if [ "$bad" != 0 ] || [ "$orig" != 0 ]; then verdict="FAIL(non2xx=$bad,origin=$orig)"; fi
		[ "$verdict" = PASS ] || fail=1
		rows+=("$(printf '%-8s %-6s %10s %10s %8sx %10.0f %10.0f  %s' "$size" "$conns" "$s" "$n" "$ratio" "$srps" "$nrps" "$verdict")")
		log "${rows[-1]}"
	done
done
echo
echo "CPU per cache hit (us), medians of $RUNS interleaved runs per cell; wrk -t1 -d$DURATION; floor: sluice <= ${FLOOR}x nginx"
printf '%-8s %-6s %10s %10s %9s %10s %10s  %s\n' bytes conns sluice nginx ratio "sluice/s" "nginx/s" verdict
printf '%s\n' "${rows[@]}"
exit $fail
