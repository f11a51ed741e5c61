#!/usr/bin/env bash
# hack/stages.sh: `make test` and CI as named stages.
#
# Usage: hack/stages.sh [STAGE...]   (default: every stage of `make test`, in order,
#        after the stages named in PRE_STAGES, e.g. PRE_STAGES=tools)
#
# Each stage is one make target (or tool step) run with its output both on the
# terminal and in $STAGE_LOGS/NAME.log (default build/stages). The first failing
# stage stops the run with "stage NAME FAILED (log: ...)". At the end every
# stage's duration is printed.
#
# Stages that share no state with the suites may run alongside them: with
# ALONGSIDE="lint fuzz-smoke" (what .ci/run sets) those stages start in the
# background once the `build` stage is done and run beside the unit and
# sanitizer stages (no timing assertions there; lint reads ./build, fuzz
# builds in ./build-fuzz); their output goes to their log only, and they are
# awaited before the first integration suite, so that no suite with timing
# bounds (abuse, faults, soak) shares the 2 cores with them. The cluster stage
# owns machine-wide state (containerd, kubelet, iptables) and always runs last
# and alone.
#
# EARLY="cluster-tools" (what .ci/run sets) starts the slow build of
# promtool (for ops and chart, which wait for it on tools.sh's lock) and of the
# cluster-only tools (kubelet, scheduler, controller-manager, kube-proxy,
# cert-manager's controller, cmctl) in the background at the lowest CPU
# priority right after the `tools` stage, and awaits it only before the
# cluster stage: on a cold machine it fills the cores the suites leave idle
# (most integration suites mostly wait) instead of adding half an hour before
# the first test. With a warm cache it returns at once.
set -uo pipefail
cd "$(dirname "$0")/.."

ALL_STAGES="build unit asan tsan interop ops abuse keeper e2e runbook faults soak chart image cluster"
# Stages that can run in the background beside unit/asan/tsan.
CAN_RUN_ALONGSIDE="lint fuzz-smoke"
STAGE_LOGS=${STAGE_LOGS:-$PWD/build/stages}
MAKE=${MAKE:-make}
mkdir -p "$STAGE_LOGS"

declare -A T_START T_DUR RESULT BG_PID EARLY_PID
ORDER=()
T0=$(date +%s)

now() { date +%s; }

# target NAME: the make target (or command) of a stage.
stage_cmd() {
	case $1 in
	build) echo "$MAKE build" ;;
	# The tools most suites need; the Go build cache is kept for cluster-tools, which reuses most of
	# kube-apiserver's compiled packages and drops the cache when it is done. cluster-tools builds
	# promtool first: the ops and chart suites that need it wait on tools.sh's lock until it is there.
	tools) echo "env TCS_KEEP_GOCACHE=1 hack/k8s/tools.sh" ;;
	cluster-tools) echo "nice -n 19 env TCS_TOOLS_ONLY=promtool,cluster hack/k8s/tools.sh" ;;
	lint | fuzz-smoke) echo "$MAKE $1" ;;
	*) echo "$MAKE test-$1" ;;
	esac
}

# run NAME: one stage in the foreground; exits the runner on failure.
run() {
	local name=$1 rc=0 log=$STAGE_LOGS/$1.log
	ORDER+=("$name")
	T_START[$name]=$(now)
	printf '\n######## stage %s: %s\n' "$name" "$(stage_cmd "$name")"
	# shellcheck disable=SC2046
	$(stage_cmd "$name") 2>&1 | tee "$log" || rc=$?
	T_DUR[$name]=$(($(now) - T_START[$name]))
	if ((rc != 0)); then
		RESULT[$name]=FAILED
		printf '\n######## stage %s FAILED (exit %d, %ds; log: %s)\n' "$name" "$rc" "${T_DUR[$name]}" "$log"
		finish 1
	fi
	RESULT[$name]=ok
	printf '######## stage %s: ok (%ds)\n' "$name" "${T_DUR[$name]}"
}

# start_bg NAME: one stage in the background, output to its log only.
start_bg() {
	local name=$1 log=$STAGE_LOGS/$1.log
	ORDER+=("$name")
	T_START[$name]=$(now)
	printf '\n######## stage %s: %s (in the background; log: %s)\n' "$name" "$(stage_cmd "$name")" "$log"
	# shellcheck disable=SC2046
	{ $(stage_cmd "$name") >"$log" 2>&1; echo $? >"$log.rc"; } &
	BG_PID[$name]=$!
}

# await_bg: waits for the background stages; exits the runner if one failed.
await_bg() {
	local name rc bad=0
	for name in "${!BG_PID[@]}"; do
		wait "${BG_PID[$name]}" 2>/dev/null || true
		rc=$(cat "$STAGE_LOGS/$name.log.rc" 2>/dev/null || echo 1)
		T_DUR[$name]=$(($(now) - T_START[$name]))
		if [[ $rc == 0 ]]; then
			RESULT[$name]=ok
			printf '######## stage %s: ok (%ds, in the background)\n' "$name" "${T_DUR[$name]}"
		else
			RESULT[$name]=FAILED
			printf '\n######## stage %s FAILED (exit %s, %ds; log: %s); its last lines:\n' \
				"$name" "$rc" "${T_DUR[$name]}" "$STAGE_LOGS/$name.log"
			tail -n 40 "$STAGE_LOGS/$name.log"
			bad=1
		fi
		unset "BG_PID[$name]"
	done
	((bad == 0)) || finish 1
}

# await_early: waits for the EARLY stages (before the cluster stage); exits the runner if one failed.
await_early() {
	local name
	for name in "${!EARLY_PID[@]}"; do
		BG_PID[$name]=${EARLY_PID[$name]}
		unset "EARLY_PID[$name]"
	done
	await_bg
}

# finish RC: the table of stages and their durations, then exit RC.
finish() {
	local name total=0
	trap - EXIT
	for name in "${!BG_PID[@]}" "${!EARLY_PID[@]}"; do
		kill -TERM "${BG_PID[$name]:-${EARLY_PID[$name]:-}}" 2>/dev/null || true
		RESULT[$name]=stopped
	done
	echo
	echo "stages ($STAGE_LOGS):"
	for name in "${ORDER[@]}"; do
		printf '  %-14s %-8s %5ss\n' "$name" "${RESULT[$name]:-running}" "${T_DUR[$name]:-?}"
		total=$((total + ${T_DUR[$name]:-0}))
	done
	printf '  %-14s %-8s %5ss (sum of stage times; %ss of wall time)\n' total "" "$total" "$(($(now) - T0))"
	exit "$1"
}
trap 'finish 130' INT TERM

stages=("$@")
((${#stages[@]})) || read -r -a stages <<<"${PRE_STAGES:-} $ALL_STAGES"
alongside=()
for s in ${ALONGSIDE:-}; do
	[[ " $CAN_RUN_ALONGSIDE " == *" $s "* ]] || { echo "stages: $s cannot run alongside" >&2; exit 2; }
	alongside+=("$s")
done

early=()
for s in ${EARLY:-}; do
	[[ $s == cluster-tools ]] || { echo "stages: $s cannot run early" >&2; exit 2; }
	early+=("$s")
done
# start_early: the EARLY stages, in the background (their own table, awaited before cluster).
start_early() {
	local a
	for a in "${early[@]}"; do
		start_bg "$a"
		EARLY_PID[$a]=${BG_PID[$a]}
		unset "BG_PID[$a]"
	done
	early=()
}

for s in "${stages[@]}"; do
	case $s in
	build | unit | asan | tsan | tools | lint | fuzz-smoke) ;;
	cluster) await_bg && await_early ;;
	*) await_bg ;; # an integration suite: nothing else runs beside it but the EARLY stages
	esac
	[[ $s == tools ]] || start_early
	run "$s"
	[[ $s != tools ]] || start_early
	if [[ $s == build ]] && ((${#alongside[@]})); then
		for a in "${alongside[@]}"; do start_bg "$a"; done
		alongside=()
	fi
done
await_bg
await_early
# Asked to run alongside, but there was no build stage to start them after.
for a in "${alongside[@]}"; do run "$a"; done
finish 0
