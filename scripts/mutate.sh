#!/usr/bin/env bash
# mutate.sh: the mutation pass. Plants the bugs listed in scripts/mutants.txt
# one at a time and runs the tests of the package each one names; a mutant is
# CAUGHT when those tests fail and SURVIVED when they pass.
#
#   scripts/mutate.sh                 every mutant (make mutate)
#   scripts/mutate.sh ID...           only these
#   scripts/mutate.sh --check         only verify the list: every anchor is
#                                     found exactly once in its file (make test)
#   scripts/mutate.sh --list          print the IDs
#
# Options: --file F (another list), --no-baseline (skip the unmutated runs),
# --keep-logs DIR (keep each run's output there).
#
# The source tree is never modified. A mutant is the original file with its
# anchor text replaced, written to a temporary directory and handed to the
# go command with -overlay, which builds it in place of the real file. So an
# interrupted run (Ctrl-C, a crash, a killed machine) cannot leave a planted
# bug behind, and nothing needs restoring; the trap only removes the
# temporary directory and stops the go command it started.
#
# Before the mutants, each distinct test command runs once unmutated (the
# baseline): a test that fails anyway would make every mutant look caught.
#
# Exit status: 0 when every must-catch mutant was caught; 1 when one
# survived, or the list is broken (an anchor missing or found twice, a
# mutant that does not compile, a -run pattern that matches no test, a
# baseline that fails), so the list cannot rot silently as the code moves.
set -uo pipefail
shopt -u patsub_replacement 2>/dev/null || true # '&' in a replacement is literal

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LIST="$ROOT/scripts/mutants.txt"
GO=${GO:-go}
MODE=run
BASELINE=1
LOGS=""
SELECT=()

while [ $# -gt 0 ]; do
	case "$1" in
	--check) MODE=check ;;
	--list) MODE=list ;;
	--file) LIST=$2; shift ;;
	--no-baseline) BASELINE=0 ;;
	--keep-logs) LOGS=$2; shift ;;
	-h | --help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) echo "mutate: unknown option $1" >&2; exit 2 ;;
	*) SELECT+=("$1") ;;
	esac
	shift
done

# ---- parsing ---------------------------------------------------------------
#
# A block starts with "=== ID". Then "key: value" lines (file, pkg, run,
# flags, timeout, must, why), then "--- original" and the anchor text, then
# "+++ mutant" and its replacement. Text lines are taken verbatim (tabs
# included); trailing blank lines of each text are dropped. A line that
# starts with "#" is a comment anywhere, in the texts too: no Go line does.

IDS=()
declare -A F_FILE F_PKG F_RUN F_FLAGS F_TIMEOUT F_MUST F_WHY F_ORIG F_REPL F_LINE

die() { echo "mutate: $*" >&2; exit 2; }

trim_trailing_blank() { # $1: text; prints it without trailing newlines
	local s=$1
	while [[ $s == *$'\n' ]]; do s=${s%$'\n'}; done
	printf '%s' "$s"
}

parse() {
	local id="" section="" line n=0 orig="" repl=""
	flush() {
		[ -z "$id" ] && return
		F_ORIG[$id]=$(trim_trailing_blank "$orig")
		F_REPL[$id]=$(trim_trailing_blank "$repl")
	}
	while IFS= read -r line || [ -n "$line" ]; do
		n=$((n + 1))
		if [[ $line == "=== "* ]]; then
			flush
			id=${line#=== }
			id=${id%% *}
			[ -n "${F_LINE[$id]:-}" ] && die "$LIST:$n: duplicate mutant $id (first at line ${F_LINE[$id]})"
			IDS+=("$id")
			F_LINE[$id]=$n
			F_FILE[$id]="" F_PKG[$id]="" F_RUN[$id]="" F_FLAGS[$id]="" F_TIMEOUT[$id]="2m"
			F_MUST[$id]="no" F_WHY[$id]=""
			section=keys orig="" repl=""
			continue
		fi
		case "$section" in
		"")
			[[ -z $line || $line == "#"* ]] || die "$LIST:$n: text outside a mutant block"
			;;
		keys)
			if [[ $line == "--- original" ]]; then section=orig; continue; fi
			[[ -z $line || $line == "#"* ]] && continue
			local key=${line%%:*} val=${line#*:}
			val=${val# }
			case "$key" in
			file) F_FILE[$id]=$val ;;
			pkg) F_PKG[$id]=$val ;;
			run) F_RUN[$id]=$val ;;
			flags) F_FLAGS[$id]=$val ;;
			timeout) F_TIMEOUT[$id]=$val ;;
			must) F_MUST[$id]=$val ;;
			why) F_WHY[$id]=$val ;;
			*) die "$LIST:$n: unknown key '$key' in mutant $id" ;;
			esac
			;;
		orig)
			[[ $line == "#"* ]] && continue
			if [[ $line == "+++ mutant" ]]; then section=repl; continue; fi
			orig+="$line"$'\n'
			;;
		repl)
			[[ $line == "#"* ]] && continue
			repl+="$line"$'\n'
			;;
		esac
	done <"$LIST"
	flush
}

[ -f "$LIST" ] || die "no mutant list at $LIST"
parse
[ ${#IDS[@]} -gt 0 ] || die "$LIST holds no mutants"

if [ "$MODE" = list ]; then
	printf '%s\n' "${IDS[@]}"
	exit 0
fi

if [ ${#SELECT[@]} -gt 0 ]; then
	for s in "${SELECT[@]}"; do
		[ -n "${F_LINE[$s]:-}" ] || die "no mutant $s in $LIST"
	done
	RUN_IDS=("${SELECT[@]}")
else
	RUN_IDS=("${IDS[@]}")
fi

# ---- checking the list -----------------------------------------------------

# count_in TEXT NEEDLE: how many times NEEDLE occurs in TEXT.
count_in() {
	local text=$1 needle=$2
	local rest=${text//"$needle"/}
	echo $(((${#text} - ${#rest}) / ${#needle}))
}

problems=0
check_one() {
	local id=$1 where="$LIST:${F_LINE[$1]}: mutant $1"
	local f=${F_FILE[$id]}
	if [ -z "$f" ]; then echo "$where: no file" >&2; return 1; fi
	if [ ! -f "$ROOT/$f" ]; then echo "$where: file $f does not exist" >&2; return 1; fi
	if [ -z "${F_ORIG[$id]}" ]; then echo "$where: empty original text" >&2; return 1; fi
	if [ "${F_ORIG[$id]}" = "${F_REPL[$id]}" ]; then echo "$where: the mutant equals the original" >&2; return 1; fi
	case "${F_MUST[$id]}" in yes | no) ;; *) echo "$where: must is '${F_MUST[$id]}', want yes or no" >&2; return 1 ;; esac
	local n
	n=$(count_in "$(<"$ROOT/$f")" "${F_ORIG[$id]}")
	if [ "$n" -eq 0 ]; then
		echo "$where: anchor not found in $f (the code changed: update the mutant)" >&2
		printf '%s\n' "${F_ORIG[$id]}" | sed 's/^/    | /' >&2
		return 1
	fi
	if [ "$n" -gt 1 ]; then
		echo "$where: anchor found $n times in $f (make it unique)" >&2
		return 1
	fi
	return 0
}

for id in "${RUN_IDS[@]}"; do
	check_one "$id" || problems=$((problems + 1))
done

if [ "$MODE" = check ]; then
	if [ $problems -gt 0 ]; then
		echo "mutate: $problems of ${#RUN_IDS[@]} mutants do not apply to the code ($LIST)" >&2
		exit 1
	fi
	echo "mutate: all ${#RUN_IDS[@]} mutant anchors found ($LIST)"
	exit 0
fi
[ $problems -eq 0 ] || { echo "mutate: fix the list first" >&2; exit 1; }

# ---- running ---------------------------------------------------------------

cd "$ROOT" || exit 2
TMP=$(mktemp -d)
CHILD=""
cleanup() {
	[ -n "$CHILD" ] && kill -TERM "$CHILD" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'echo; echo "mutate: interrupted" >&2; exit 130' INT TERM
if [ -n "$LOGS" ]; then mkdir -p "$LOGS" && LOGS=$(cd "$LOGS" && pwd); else LOGS="$TMP/logs"; mkdir -p "$LOGS"; fi

pkg_of() { local p=${F_PKG[$1]}; [ -n "$p" ] || p="./$(dirname "${F_FILE[$1]}")/"; echo "$p"; }

# seconds TIMEOUT: a go duration (90s, 3m) in whole seconds, for the outer
# guard around the go command.
seconds() {
	local d=$1
	case "$d" in
	*m) echo $((${d%m} * 60)) ;;
	*s) echo "${d%s}" ;;
	*) echo "$d" ;;
	esac
}

# gotest LOG TIMEOUT PKG RUN FLAGS [OVERLAY]: runs the tests; prints the go
# command's status. -vet=off: a mutant that trips vet must be judged by the
# tests, not by vet. -failfast: one failing test is enough.
gotest() {
	local log=$1 to=$2 pkg=$3 run=$4 flags=$5 overlay=${6:-}
	local args=(test -count=1 -vet=off -failfast -timeout "$to")
	[ -n "$overlay" ] && args+=(-overlay "$overlay")
	[ -n "$run" ] && args+=(-run "$run")
	# shellcheck disable=SC2206 # flags are words by design
	[ -n "$flags" ] && args+=($flags)
	args+=("$pkg")
	local guard=$(($(seconds "$to") + 120))
	# timeout puts the go command in a process group of its own and passes
	# a TERM on to all of it (the test binary too): see cleanup.
	timeout -k 10 "$guard" "$GO" "${args[@]}" >"$log" 2>&1 &
	CHILD=$!
	wait "$CHILD"
	local rc=$?
	CHILD=""
	return $rc
}

# caught_by LOG: the top-level tests that failed, or why the run stopped.
caught_by() {
	local log=$1 names
	if grep -q '^panic: test timed out' "$log"; then echo "timeout"; return; fi
	names=$(grep -oE '^--- FAIL: [^ ]+' "$log" | awk '{print $3}' | sort -u | paste -sd, -)
	if [ -z "$names" ]; then
		names=$(grep -m1 -oE '^panic: .{0,60}' "$log" || true)
	fi
	echo "${names:-failed}"
}

built_badly() { grep -qE '\[build failed\]|\[setup failed\]|^# ' "$1"; }
no_tests() { grep -q 'no tests to run' "$1"; } # '[no tests to run]' after ok

declare -A BASE_OK
errors=0
if [ $BASELINE -eq 1 ]; then
	echo "baseline: each test command once, unmutated"
	for id in "${RUN_IDS[@]}"; do
		key="$(pkg_of "$id")|${F_RUN[$id]}|${F_FLAGS[$id]}|${F_TIMEOUT[$id]}"
		[ -n "${BASE_OK[$key]:-}" ] && continue
		log="$LOGS/baseline-$(printf '%s' "$key" | md5sum | cut -c1-8).log"
		start=$SECONDS
		if gotest "$log" "${F_TIMEOUT[$id]}" "$(pkg_of "$id")" "${F_RUN[$id]}" "${F_FLAGS[$id]}"; then
			if no_tests "$log"; then
				BASE_OK[$key]=norun
				printf '  %-8s %s: -run '"'"'%s'"'"' matches no test\n' "ERROR" "$(pkg_of "$id")" "${F_RUN[$id]}"
			else
				BASE_OK[$key]=ok
				printf '  %-8s %s %s%s-timeout %s (%ds)\n' "ok" "$(pkg_of "$id")" "${F_RUN[$id]:+-run ${F_RUN[$id]} }" "${F_FLAGS[$id]:+${F_FLAGS[$id]} }" "${F_TIMEOUT[$id]}" $((SECONDS - start))
			fi
		else
			BASE_OK[$key]=fail
			printf '  %-8s %s %s%s: fails unmutated (%s), see %s\n' "ERROR" "$(pkg_of "$id")" "${F_RUN[$id]:+-run ${F_RUN[$id]} }" "${F_FLAGS[$id]}" "$(caught_by "$log")" "$log"
		fi
	done
fi

declare -A RESULT BY TOOK
caught=0 survived=0 must_survived=0
total_start=$SECONDS
echo "mutants: ${#RUN_IDS[@]}"
for id in "${RUN_IDS[@]}"; do
	f=${F_FILE[$id]} pkg=$(pkg_of "$id")
	key="$pkg|${F_RUN[$id]}|${F_FLAGS[$id]}|${F_TIMEOUT[$id]}"
	log="$LOGS/$id.log"
	base=${BASE_OK[$key]:-ok}
	if [ "$base" != ok ]; then
		if [ "$base" = norun ]; then
			BY[$id]="its -run pattern matches no test"
		else
			BY[$id]="its tests fail unmutated: nothing to judge"
		fi
		RESULT[$id]=ERROR TOOK[$id]=0
		errors=$((errors + 1))
		printf '%-9s %-36s %s\n' "ERROR" "$id" "${BY[$id]}"
		continue
	fi
	mkdir -p "$TMP/src/$(dirname "$f")"
	content=$(<"$ROOT/$f")
	printf '%s\n' "${content/"${F_ORIG[$id]}"/"${F_REPL[$id]}"}" >"$TMP/src/$f"
	printf '{"Replace":{"%s":"%s"}}\n' "$ROOT/$f" "$TMP/src/$f" >"$TMP/overlay.json"
	start=$SECONDS
	gotest "$log" "${F_TIMEOUT[$id]}" "$pkg" "${F_RUN[$id]}" "${F_FLAGS[$id]}" "$TMP/overlay.json"
	rc=$?
	TOOK[$id]=$((SECONDS - start))
	if [ $rc -eq 0 ]; then
		if no_tests "$log"; then
			RESULT[$id]=ERROR BY[$id]="-run matches no test"
			errors=$((errors + 1))
		else
			RESULT[$id]=SURVIVED BY[$id]=""
			survived=$((survived + 1))
			[ "${F_MUST[$id]}" = yes ] && must_survived=$((must_survived + 1))
		fi
	elif built_badly "$log"; then
		RESULT[$id]=ERROR BY[$id]="does not compile: $(grep -m1 -E '\.go:[0-9]+' "$log" | sed "s|$TMP/src/||")"
		errors=$((errors + 1))
	else
		RESULT[$id]=CAUGHT BY[$id]=$(caught_by "$log")
		caught=$((caught + 1))
	fi
	mark=""
	[ "${F_MUST[$id]}" = yes ] && mark=" [must]"
	printf '%-9s %-36s %4ss  %s%s\n' "${RESULT[$id]}" "$id" "${TOOK[$id]}" "${BY[$id]}" "$mark"
	if [ "${RESULT[$id]}" != CAUGHT ] && [ -n "${F_WHY[$id]}" ]; then
		printf '%-9s %-36s        %s\n' "" "" "${F_WHY[$id]}"
	fi
	rm -f "$TMP/src/$f"
done

echo
echo "summary: ${#RUN_IDS[@]} mutants, $caught caught, $survived survived, $errors errors ($((SECONDS - total_start))s)"
for id in "${RUN_IDS[@]}"; do
	case "${RESULT[$id]}" in
	SURVIVED) printf '  survived%s: %s (%s)\n' "$([ "${F_MUST[$id]}" = yes ] && echo ' MUST-CATCH')" "$id" "${F_FILE[$id]}" ;;
	ERROR) printf '  error: %s: %s\n' "$id" "${BY[$id]}" ;;
	esac
done
[ "$LOGS" = "$TMP/logs" ] || echo "logs: $LOGS"
if [ $must_survived -gt 0 ] || [ $errors -gt 0 ]; then
	exit 1
fi
exit 0
