# bench-lib.sh: what the CPU comparisons (bench-compare.sh, bench-cache.sh)
# share, sourced after `cd` to the repository root with BENCH_NAME set to
# the script's name: messages, the tools from the Debian packages, the
# build, one temporary directory and the processes started in it, loopback
# ports, and medians.

log() { printf '%s\n' "$*" >&2; }
die() { log "$BENCH_NAME: $*"; exit 1; }

# need_tools CMD... installs what is missing of the commands named, from
# the Debian packages (taskset is util-linux's), and checks for two cores:
# the proxy on one, the origin and the load on the other.
need_tools() {
	local missing=() cmd
	for cmd in "$@"; do
		if ! command -v "$cmd" >/dev/null; then
			case $cmd in
			taskset) missing+=(util-linux) ;;
			*) missing+=("$cmd") ;;
			esac
		fi
	done
	if ((${#missing[@]})); then
		log "installing ${missing[*]} from the Debian packages"
		local sudo=
		if [ "$(id -u)" != 0 ]; then
			command -v sudo >/dev/null || die "need root or sudo to install ${missing[*]}"
			sudo=sudo
		fi
		$sudo apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
	[ "$(nproc)" -ge 2 ] || die "needs at least 2 cores (proxy on one, origin and load on another)"
}

# build_sluice runs make build unless SKIP_BUILD is set.
build_sluice() {
	if [ -z "${SKIP_BUILD:-}" ]; then
		make -s build
	fi
}

# bench_tmp makes TMP, the run's directory, and PIDS, the processes to
# kill on exit; both go when the script ends.
bench_tmp() {
	TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-$BENCH_NAME.XXXXXX")
	PIDS=()
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

bench_cleanup() {
	for pid in "${PIDS[@]:-}"; do
		[ -n "$pid" ] && kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]:-}"; do
		[ -n "$pid" ] && wait "$pid" 2>/dev/null || true
	done
	rm -rf "$TMP"
}

# free_port prints a loopback port nothing listens on, below the usual
# ephemeral range (32768 and up) so that no client socket holds it either.
free_port() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	die "no free port"
}

# wait_http waits until 127.0.0.1:$1 answers.
wait_http() {
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	die "nothing answers on 127.0.0.1:$1"
}

# stop kills one process started here and waits for it.
stop() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# median prints the median of the numbers on stdin, one a line.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
