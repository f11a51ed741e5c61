# tests/lib.sh: assertion and tool helpers shared by the suites that run the
# daemon against the real apiserver (tests/e2e/run.sh, tests/faults/run.sh).
# Source it after setting ROOT, CACHE, CI, WORK, PASSED=0, FAILED=0 and
# FAILED_NAMES=(). Defines say, ok, not_ok, check, unavailable, now_ms,
# wait_for, build_tool (sets TOOL to the Talos client tool of tests/interop)
# and require_tools (needs BIN and PY, and hack/k8s/lib.sh sourced).
# shellcheck shell=bash

say() { printf '\n== %s\n' "$*"; }
ok() { PASSED=$((PASSED + 1)); printf 'ok   - %s\n' "$1"; }
not_ok() {
	FAILED=$((FAILED + 1))
	FAILED_NAMES+=("$1")
	printf 'FAIL - %s\n' "$1"
	[[ -z ${2:-} ]] || printf '       %s\n' "$2"
}
# check NAME CMD...: one assertion; its output is kept in $WORK/out/last and shown on failure.
check() {
	local name=$1
	shift
	if "$@" >"$WORK/out/last" 2>&1; then
		ok "$name"
	else
		not_ok "$name" "$(tail -n 5 "$WORK/out/last" | tr '\n' ' ')"
	fi
}
# unavailable WHY: a missing tool is a failure under CI=true, a skip locally.
unavailable() {
	if [[ $CI == true ]]; then
		not_ok "unavailable: $1"
		exit 1
	fi
	echo "SKIPPED: $1"
	exit 0
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
