#!/usr/bin/env bash
# stream-check.sh: a 1 GiB download, a 1 GiB upload and a 1 GiB chunked
# upload through Sluice (curl -> bin/sluice -> nginx, all on 127.0.0.1).
# Each case passes only if the bytes that arrived are the bytes sent, same
# length and same SHA-256: at the client for the download, at the origin for
# the uploads (nginx's WebDAV module stores a PUT body as a file). The body
# is random, so a dropped, repeated or reordered chunk changes the digest.
# Then Sluice's peak resident memory must stay under PEAK_MAX_KIB: streaming
# keeps it at a few MiB whatever the body size, buffering one body would not.
# Prints PASS or FAIL per check and exits 1 if any failed. Installs nginx and
# curl if missing. About a minute for 1 GiB (most of it generating and
# hashing the data); every transfer is bounded by --max-time.
#
#   make stream-check            SIZE=256M make stream-check
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZE=${SIZE:-1G}
PEAK_MAX_KIB=${PEAK_MAX_KIB:-65536}
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
mkdir "$TMP/www" "$TMP/www/up" "$TMP/body"
head -c "$SIZE" /dev/urandom >"$TMP/www/big.bin"
WANT_LEN=$(stat -c %s "$TMP/www/big.bin")
WANT_SHA=$(sha256sum "$TMP/www/big.bin" | cut -d' ' -f1)
cat >"$TMP/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $TMP/body;
    proxy_temp_path $TMP;
    fastcgi_temp_path $TMP;
    uwsgi_temp_path $TMP;
    scgi_temp_path $TMP;
    server {
        listen 127.0.0.1:$ORIGIN;
        root $TMP/www;
        client_max_body_size 0;
        location /up/ { dav_methods PUT; }
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
failed=0
# verdict NAME WANT_STATUS STATUS LEN SHA TIME: one PASS/FAIL line.
verdict() {
	local name=$1 want_status=$2 status=$3 len=$4 sha=$5 secs=$6 why=()
	[ "$status" = "$want_status" ] || why+=("status $status, want $want_status")
	[ "$len" = "$WANT_LEN" ] || why+=("$len bytes, want $WANT_LEN")
	[ "$sha" = "$WANT_SHA" ] || why+=("sha256 $sha, want $WANT_SHA")
	if [ ${#why[@]} -eq 0 ]; then
		printf 'PASS  %-15s status %s  %s bytes  sha256 %.16s…  %ss\n' "$name" "$status" "$len" "$sha" "$secs"
	else
		failed=1
		local msg
		msg=$(printf '%s; ' "${why[@]}")
		printf 'FAIL  %-15s %s\n' "$name" "${msg%; }"
	fi
}
# stored PATH: length and digest of what the origin stored, or "- -".
stored() {
	if [ -f "$1" ]; then
		echo "$(stat -c %s "$1") $(sha256sum "$1" | cut -d' ' -f1)"
	else
		echo "- -"
	fi
}

# Download: the client hashes the body as it arrives; curl counts its bytes.
meta=$(mktemp -p "$TMP")
sha=$(curl -sS --max-time 120 -w '%{stderr}written %{http_code} %{size_download} %{time_total}\n' \
	"$url/big.bin" 2>"$meta" | sha256sum | cut -d' ' -f1) || true
grep -v '^written ' "$meta" >&2 || true # curl's own error, if any
read -r _ status len secs <<<"$(grep '^written ' "$meta")" || true
verdict download 200 "${status:-none}" "${len:-0}" "$sha" "${secs:-?}"

# Uploads: PUT, so the origin stores the body it received (201 Created).
status_secs=$(curl -sS -o /dev/null --max-time 120 -w '%{http_code} %{time_total}' \
	-T "$TMP/www/big.bin" "$url/up/plain.bin") || true
read -r status secs <<<"$status_secs" || true
read -r len sha <<<"$(stored "$TMP/www/up/plain.bin")"
verdict upload 201 "${status:-none}" "$len" "$sha" "${secs:-?}"
rm -f "$TMP/www/up/plain.bin"

status_secs=$(curl -sS -o /dev/null --max-time 120 -w '%{http_code} %{time_total}' \
	-H "Transfer-Encoding: chunked" -T - "$url/up/chunked.bin" <"$TMP/www/big.bin") || true
read -r status secs <<<"$status_secs" || true
read -r len sha <<<"$(stored "$TMP/www/up/chunked.bin")"
verdict "chunked upload" 201 "${status:-none}" "$len" "$sha" "${secs:-?}"
rm -f "$TMP/www/up/chunked.bin"

peak=$(awk '/VmHWM/ {print $2}' "/proc/$SLUICE/status")
if [ "${peak:-0}" -gt 0 ] && [ "$peak" -lt "$PEAK_MAX_KIB" ]; then
	echo "PASS  sluice peak RSS $peak kB (limit $PEAK_MAX_KIB kB)"
else
	failed=1
	echo "FAIL  sluice peak RSS ${peak:-unknown} kB, limit $PEAK_MAX_KIB kB"
fi
exit "$failed"
