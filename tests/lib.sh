# tests/lib.sh: the one test harness of the shell suites (tests/*/run.sh,
# bench/run.sh). Source it after setting ROOT (and BIN, PY where used).
#
#   harness_init NAME        counters, $WORK (scratch, kept on failure or
#                            KEEP_WORK=1), $CI, cleanup traps (every PID in
#                            DAEMON_PIDS and BG_PIDS is stopped, then
#                            suite_cleanup runs if the suite defines it)
#   harness_finish           "failed: ..." then "NAME: N passed, M failed,
#                            K skipped"; returns 1 if anything failed
#   say TEXT                 a section title
#   ok NAME / not_ok NAME [DETAIL] / skip NAME
#                            record one result; the only output format:
#                              ok   - NAME
#                              FAIL - NAME   (DETAIL indented below)
#                              skip - NAME
#   check NAME CMD...        CMD must succeed (returns 0 either way unless
#                            CHECK_STATUS=1); its output is kept in
#                            $WORK/out/<NAME>.out ($LAST_OUT, copied to
#                            $WORK/out/last) and shown on failure
#   expect_exit NAME CODE CMD...   CMD must exit with CODE
#   has FILE REGEX...        every extended regex matches a line of FILE
#   unavailable WHY          a missing tool for the whole suite: a failure
#                            under CI=true (exit 1), SKIPPED locally (exit 0,
#                            or $TCS_SKIP_CODE: ctest sets 77)
#   skip_or_fail WHY         a missing tool for one part: a failure under
#                            CI=true, a skip locally; the suite goes on
#   free_port                a free loopback TCP port
#   start_daemon NAME [--wait WHAT] [--pre CMD...] -- VAR=VALUE...
#                            the daemon with only the given environment (plus
#                            PATH, HOME, TMPDIR and the sanitizer options)
#   stop_daemon [PID]        SIGTERM, wait, exit status must be 0
#   kill_daemon [PID]        SIGKILL and reap (no assertion)
#   daemon_alive [PID]       the daemon is running
#   now_ms, wait_for SECS CMD..., build_tool, require_tools
# shellcheck shell=bash

: "${CI:=false}"
: "${PASSED:=0}" "${FAILED:=0}" "${SKIPPED:=0}"
[[ ${FAILED_NAMES+set} == set ]] || FAILED_NAMES=()
[[ ${DAEMON_PIDS+set} == set ]] || DAEMON_PIDS=()
[[ ${BG_PIDS+set} == set ]] || BG_PIDS=()

# harness_init NAME: the suite's name (used in the summary), its scratch
# directory and the cleanup trap.
harness_init() {
	SUITE=$1
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/tcs-$SUITE.XXXXXX")
	mkdir -p "$WORK/out"
	trap harness_cleanup EXIT
	trap 'exit 130' INT TERM
}

# harness_cleanup: the EXIT trap; stops what the suite started, keeps $WORK
# when something failed (or KEEP_WORK=1) and removes it otherwise.
harness_cleanup() {
	local rc=$? pid
	trap - EXIT
	for pid in "${BG_PIDS[@]}" "${DAEMON_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	sleep 0.3
	for pid in "${BG_PIDS[@]}" "${DAEMON_PIDS[@]}"; do
		kill -KILL "$pid" 2>/dev/null || true
	done
	if declare -F suite_cleanup >/dev/null; then
		suite_cleanup || true
	fi
	if [[ -n ${WORK:-} && -d $WORK ]]; then
		if [[ ${KEEP_WORK:-0} == 1 || $FAILED -gt 0 || ($rc -ne 0 && $rc -ne ${TCS_SKIP_CODE:-0}) ]]; then
			echo "scratch directory kept: $WORK"
		else
			rm -rf "$WORK"
		fi
	fi
	exit "$rc"
}

# harness_finish: the summary; returns 0 only when nothing failed.
harness_finish() {
	echo
	if ((FAILED > 0)); then
		printf 'failed: %s\n' "${FAILED_NAMES[@]}"
	fi
	echo "${SUITE:-suite}: $PASSED passed, $FAILED failed, $SKIPPED skipped"
	((FAILED == 0))
}

say() { printf '\n== %s\n' "$*"; }
ok() { PASSED=$((PASSED + 1)); printf 'ok   - %s\n' "$1"; }
not_ok() {
	FAILED=$((FAILED + 1))
	FAILED_NAMES+=("$1")
	printf 'FAIL - %s\n' "$1"
	[[ -z ${2:-} ]] || printf '%s\n' "$2" | tail -n 15 | cut -c1-400 | sed 's/^/       /'
	return 0
}
skip() { SKIPPED=$((SKIPPED + 1)); printf 'skip - %s\n' "$1"; }

# out_file NAME: where check and expect_exit keep the output of NAME.
out_file() {
	mkdir -p "$WORK/out"
	printf '%s/out/%s.out' "$WORK" "$(printf '%s' "$1" | tr -c 'A-Za-z0-9_.-' '_' | cut -c1-150)"
}

# check NAME CMD...: one assertion. On success the lines of its output that
# match $CHECK_SHOW (a regex; none when empty) are shown; on failure its tail.
# Returns 0 either way, so that a failed assertion never stops a `set -e`
# suite, unless the suite sets CHECK_STATUS=1 (then 1 on failure: call it as
# `if check ...` or `check ... || true`).
check() {
	local name=$1
	shift
	LAST_OUT=$(out_file "$name")
	if "$@" >"$LAST_OUT" 2>&1; then
		cp -f "$LAST_OUT" "$WORK/out/last"
		ok "$name"
		if [[ -n ${CHECK_SHOW:-} ]]; then
			grep -E -- "$CHECK_SHOW" "$LAST_OUT" | head -3 | cut -c1-240 | sed 's/^/       /' || true
		fi
		return 0
	fi
	cp -f "$LAST_OUT" "$WORK/out/last"
	not_ok "$name" "$(cat "$LAST_OUT")"
	[[ ${CHECK_STATUS:-0} != 1 ]] # 0 unless the suite asked for the status
}

# expect_exit NAME CODE CMD...: CMD must exit with CODE.
expect_exit() {
	local name=$1 want=$2 rc=0
	shift 2
	LAST_OUT=$(out_file "$name")
	"$@" >"$LAST_OUT" 2>&1 || rc=$?
	if [[ $rc == "$want" ]]; then
		ok "$name (exit $rc)"
	else
		not_ok "$name: exit $rc, want $want" "$(cat "$LAST_OUT")"
	fi
}

# has FILE REGEX...: every extended regex matches some line of FILE.
has() {
	local f=$1 re
	shift
	for re in "$@"; do
		if ! grep -Eq -- "$re" "$f"; then
			echo "no line of $f matches: $re"
			tail -n 8 "$f"
			return 1
		fi
	done
}

# unavailable WHY: the suite cannot run at all; a failure under CI=true.
unavailable() {
	if [[ $CI == true ]]; then
		not_ok "unavailable: $1 (CI=true: a missing tool is a failure)"
		[[ -z ${SUITE:-} ]] || harness_finish || true
		exit 1
	fi
	echo "SKIPPED: $1"
	skip "$1"
	[[ -z ${SUITE:-} ]] || harness_finish || true
	exit "${TCS_SKIP_CODE:-0}" # ctest sets 77 (SKIP_RETURN_CODE)
}

# skip_or_fail WHY: one part cannot run; a failure under CI=true, a skip locally.
skip_or_fail() {
	if [[ $CI == true ]]; then
		not_ok "unavailable: $1 (CI=true: a missing tool is a failure)"
	else
		echo "SKIPPED: $1"
		skip "$1"
	fi
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }
# wait_for SECONDS CMD...: poll every 0.1 s until CMD succeeds.
wait_for() {
	local secs=$1 end
	shift
	end=$(($(now_ms) + secs * 1000))
	while (($(now_ms) < end)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	"$@"
}

# free_port: a loopback TCP port nobody listens on (the kernel picks it).
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_daemon NAME [--wait WHAT] [--timeout SECS] [--append] [--nofile N] [--pre CMD... --] VAR=VALUE...
# Starts $BIN with only the given environment, plus PATH, HOME, TMPDIR and the
# sanitizer options of the caller (ASAN_OPTIONS, LSAN_OPTIONS, UBSAN_OPTIONS,
# TSAN_OPTIONS); stdout and stderr go to $WORK/NAME.log (appended with
# --append, so that the suite may write its own marker lines into it).
# --pre runs the daemon under a wrapper (valgrind ...), ended by "--";
# --nofile sets its open-file limit.
# WHAT is one of: listening (default), serving, published (the first
# "credentials published"), readyz (HTTP 200 from /readyz, needs
# HTTP_ADDR=127.0.0.1:0), none, or log:TEXT (a line containing TEXT).
# Sets D_PID, D_LOG, D_PORT (gRPC) and D_HTTP (HTTP, when enabled), records
# the PID in DAEMON_PIDS; returns 1 (with the log's tail) if the daemon exited
# or did not reach WHAT in time.
start_daemon() {
	local name=$1 what=listening secs=20 append=0 nofile= i
	local -a pre=() passenv=()
	shift
	while (($#)); do
		case $1 in
		--wait) what=$2; shift 2 ;;
		--timeout) secs=$2; shift 2 ;;
		--append) append=1; shift ;;
		--nofile) nofile=$2; shift 2 ;;
		--pre)
			shift
			while (($#)) && [[ $1 != -- ]]; do pre+=("$1"); shift; done
			shift
			;;
		--) shift; break ;;
		*) break ;;
		esac
	done
	for i in ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS TSAN_OPTIONS; do
		[[ -z ${!i:-} ]] || passenv+=("$i=${!i}")
	done
	D_LOG=$WORK/$name.log D_PORT= D_HTTP=
	((append)) || : >"$D_LOG"
	(
		[[ -z $nofile ]] || ulimit -n "$nofile"
		exec env -i PATH="$PATH" HOME="${HOME:-/}" TMPDIR="${TMPDIR:-/tmp}" "${passenv[@]}" "$@" \
			"${pre[@]}" "$BIN"
	) >>"$D_LOG" 2>&1 &
	D_PID=$!
	DAEMON_PIDS+=("$D_PID")
	if ! daemon_wait "$what" "$secs"; then
		echo "daemon $name did not reach \"$what\" within ${secs}s:"
		tail -n 20 "$D_LOG"
		return 1
	fi
}

# daemon_ports: D_PORT and D_HTTP from the daemon's log (its first lines).
daemon_ports() {
	D_PORT=$(grep -o '"msg":"listening","addr":"[^"]*","port":[0-9]*' "$D_LOG" | head -n 1 | grep -o '[0-9]*$' || true)
	D_HTTP=$(grep -o '"msg":"http listening","addr":"[^"]*","port":[0-9]*' "$D_LOG" | head -n 1 | grep -o '[0-9]*$' || true)
}

# daemon_reached WHAT: 0 once the daemon of D_LOG has reached WHAT.
daemon_reached() {
	case $1 in
	none) return 0 ;;
	listening) grep -q '"msg":"listening"' "$D_LOG" ;;
	serving) grep -q '"msg":"serving"' "$D_LOG" ;;
	published) grep -q '"msg":"credentials published"' "$D_LOG" ;;
	readyz)
		daemon_ports
		[[ -n $D_HTTP ]] && [[ $(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$D_HTTP/readyz") == 200 ]]
		;;
	log:*) grep -qF -- "${1#log:}" "$D_LOG" ;;
	*) echo "start_daemon: unknown --wait $1" >&2; return 2 ;;
	esac
}

# daemon_wait WHAT SECS: wait until the daemon of D_PID/D_LOG reaches WHAT;
# 1 if it exits first or time runs out. Sets D_PORT and D_HTTP.
daemon_wait() {
	local what=$1 end rc
	end=$(($(now_ms) + $2 * 1000))
	while (($(now_ms) < end)); do
		rc=0
		daemon_reached "$what" 2>/dev/null || rc=$?
		if ((rc == 0)); then
			daemon_ports
			return 0
		fi
		((rc != 2)) || return 1
		kill -0 "$D_PID" 2>/dev/null || { echo "daemon exited"; return 1; }
		sleep 0.1
	done
	return 1
}

# stop_daemon [PID [SECS]]: SIGTERM (default D_PID), wait up to SECS (15),
# SIGKILL after that; 0 only if it exited with status 0 in time.
stop_daemon() {
	local pid=${1:-$D_PID} secs=${2:-15} i rc=0
	[[ -n $pid ]] || return 1
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < secs * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "still running ${secs}s after SIGTERM"
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		return 1
	fi
	wait "$pid" 2>/dev/null || rc=$?
	echo "exit status $rc"
	[[ $rc == 0 ]]
}

# kill_daemon [PID]: SIGKILL (default D_PID) and reap it; for suites that do
# not assert a clean stop.
kill_daemon() {
	kill -KILL "${1:-$D_PID}" 2>/dev/null || true
	wait "${1:-$D_PID}" 2>/dev/null || true
}

# daemon_alive [PID]: the daemon (default D_PID) is running.
daemon_alive() { kill -0 "${1:-$D_PID}" 2>/dev/null; }

# build_tool: builds (once, cached, by hack/gotool.sh, shared with every
# suite) the Talos client tool of tests/interop and sets TOOL.
build_tool() {
	command -v go >/dev/null 2>&1 || unavailable "go is missing (needed for the Talos client tool)"
	TOOL=$("$ROOT/hack/gotool.sh" tcsinterop "$ROOT/tests/interop" ./cmd/tcsinterop) ||
		unavailable "could not build tests/interop/cmd/tcsinterop"
}

# require_tools: the daemon binary, python, curl, openssl, the Kubernetes tools
# (built once by hack/k8s/tools.sh; SKIPPED locally, a failure under CI=true)
# and the Talos client tool.
require_tools() {
	[[ -x $BIN ]] || unavailable "daemon binary $BIN is missing (run make build)"
	[[ -x $PY ]] || unavailable "$PY is missing"
	k8s_need_cmd curl || unavailable "curl is missing"
	k8s_need_cmd openssl || unavailable "openssl is missing"
	k8s_load_tools
	build_tool
}
