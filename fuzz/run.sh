#!/usr/bin/env bash
# Runs every libFuzzer target for SECONDS each, starting from the committed
# seed corpora (fuzz/corpus/<name>/) plus what earlier runs found
# (fuzz/corpus-run/<name>/, git-ignored). Prints the executions per target;
# exits non-zero on any crash, leak, timeout or out-of-memory, leaving the
# reproducer in fuzz/corpus-run/artifacts/.
#
# Usage: fuzz/run.sh BUILD_DIR SECONDS [TARGET...]
#   BUILD_DIR  build tree configured with CC=clang -DBUILD_FUZZERS=ON; it is
#              configured and built here when needed (incremental).
#   TARGET     fuzz_csr, fuzz_pem, ... (default: every fuzz/fuzz_*.c)
# Reproduce a crash: BUILD_DIR/fuzz_NAME fuzz/corpus-run/artifacts/crash-...
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: fuzz/run.sh BUILD_DIR SECONDS [TARGET...]}
secs=${2:?usage: fuzz/run.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
case $build in /*) ;; *) build=$root/$build ;; esac
jobs=${JOBS:-2}

missing() {
	if [ "${CI:-}" = true ]; then
		echo "fuzz/run.sh: $1" >&2
		exit 1
	fi
	echo "SKIPPED: $1"
	exit 0
}
command -v clang >/dev/null || missing "clang is not installed (apt-get install clang)"

if [ ! -f "$build/CMakeCache.txt" ] || ! grep -q '^BUILD_FUZZERS:BOOL=ON' "$build/CMakeCache.txt"; then
	CC=clang cmake -S "$root" -B "$build" -DBUILD_FUZZERS=ON -DBUILD_TESTS=OFF >/dev/null
fi
cmake --build "$build" -j "$jobs" >/dev/null

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	for src in "$root"/fuzz/fuzz_*.c; do
		targets+=("$(basename "$src" .c)")
	done
fi

runs=$root/fuzz/corpus-run
arts=$runs/artifacts
mkdir -p "$arts"
failed=0
passed=0
printf '%-14s %12s %10s %8s %s\n' target executions exec/s corpus result
for t in "${targets[@]}"; do
	bin=$build/$t
	name=${t#fuzz_}
	[ -x "$bin" ] || { echo "fuzz/run.sh: $bin was not built" >&2; exit 1; }
	mkdir -p "$runs/$name"
	seeds=()
	[ -d "$root/fuzz/corpus/$name" ] && seeds=("$root/fuzz/corpus/$name")
	log=$runs/$name.log
	rc=0
	# -rss_limit_mb: a target must not balloon; -timeout: one input must
	# not take seconds (a parser gone quadratic); leaks fail the run.
	ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
		"$bin" -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 \
		-max_len=65536 -print_final_stats=1 -artifact_prefix="$arts/$name-" \
		"$runs/$name" "${seeds[@]}" >"$log" 2>&1 || rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	units=$(find "$runs/$name" -type f | wc -l)
	if [ $rc -eq 0 ] && [ -n "$execs" ]; then
		result=ok
		passed=$((passed + 1))
	else
		result="FAILED (exit $rc), see ${log#"$root"/}"
		failed=$((failed + 1))
		grep -E 'ERROR: |SUMMARY: |Test unit written' "$log" | head -5 | sed 's/^/    /'
	fi
	printf '%-14s %12s %10s %8s %s\n' "$t" "${execs:-?}" "${rate:-?}" "$units" "$result"
done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
