#!/usr/bin/env bash
# stream-check.sh: a 1 GiB download, a 1 GiB upload and a 1 GiB chunked
# upload through Sluice (curl -> bin/sluice -> nginx, all on 127.0.0.1),
# then Sluice's peak resident memory. Streaming means that peak stays at a
# few MiB whatever the body size. Installs nginx and curl if missing.
#
#   make stream-check            SIZE=256M make stream-check
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZE=${SIZE:-1G}
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo

missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ -x "$ROOT/bin/sluice" ] || (cd "$ROOT" && go build -o bin/ ./cmd/sluice)

TMP=$(mktemp -d)
PIDS=()
cleanup() {
	for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port() { echo $((20000 + RANDOM % 12000)); }
wait_port() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "nothing listens on 127.0.0.1:$1" >&2
	exit 1
}

ORIGIN=$(port)
PROXY=$(port)
truncate -s "$SIZE" "$TMP/big.bin" # sparse: costs no disk
cat >"$TMP/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $TMP;
    proxy_temp_path $TMP;
    fastcgi_temp_path $TMP;
    uwsgi_temp_path $TMP;
    scgi_temp_path $TMP;
    server {
        listen 127.0.0.1:$ORIGIN;
        root $TMP;
        client_max_body_size 0;
        location /sink { return 200 "received\n"; }
    }
}
EOF
nginx -e "$TMP/error.log" -p "$TMP" -c "$TMP/nginx.conf" &
PIDS+=($!)
wait_port "$ORIGIN"
"$ROOT/bin/sluice" --listen "127.0.0.1:$PROXY" --backend "http://127.0.0.1:$ORIGIN" \
	--access-log=false --log-level warn &
SLUICE=$!
PIDS+=("$SLUICE")
wait_port "$PROXY"

url="http://127.0.0.1:$PROXY"
curl -sS -o /dev/null --max-time 120 -w "download        status %{http_code}  %{size_download} bytes  %{time_total}s\n" "$url/big.bin"
curl -sS -o /dev/null --max-time 120 -w "upload          status %{http_code}  %{size_upload} bytes  %{time_total}s\n" -T "$TMP/big.bin" "$url/sink"
curl -sS -o /dev/null --max-time 120 -w "chunked upload  status %{http_code}  %{size_upload} bytes (with chunk framing)  %{time_total}s\n" \
	-H "Transfer-Encoding: chunked" -T - "$url/sink" <"$TMP/big.bin"
echo "sluice peak RSS: $(awk '/VmHWM/ {print $2, $3}' "/proc/$SLUICE/status")"
