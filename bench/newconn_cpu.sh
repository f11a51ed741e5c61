#!/usr/bin/env bash
# Server CPU per new connection + one Certificate call, the way a Talos
# worker calls: each `tcsinterop worker` run (the real Talos client code,
# tests/interop) is one process, one TLS connection, one call. The daemon's
# CPU (user + system, all threads, /proc/PID/stat) over N calls, divided by N.
# Several daemon binaries are measured in interleaved rounds, so that the
# shared machine's noise hits them alike; compare ratios within one run.
#
# Usage: bench/newconn_cpu.sh N ROUNDS BIN [BIN...]
# Prints one line per binary and round: "BIN round R calls N cpu_ms_per_call X".
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:?usage: bench/newconn_cpu.sh N ROUNDS BIN [BIN...]}
rounds=${2:?usage}
shift 2
tool=$("$root/hack/gotool.sh" tcsinterop "$root/tests/interop" ./cmd/tcsinterop)
work=$(mktemp -d "${TMPDIR:-/tmp}/tcs-newconn.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$root/hack/dev-pki.sh" "$work/pki" --ip 127.0.0.1 >/dev/null
tck=$(getconf CLK_TCK)

one() { # BIN ROUND
	local bin=$1 r=$2 log=$work/daemon.log pid port a b i
	CA_CERT_PATH=$work/pki/ca.crt CA_KEY_PATH=$work/pki/ca.key \
		TLS_CERT_PATH=$work/pki/server.crt TLS_KEY_PATH=$work/pki/server.key \
		TOKEN_PATH=$work/pki/token LISTEN_ADDRESS=127.0.0.1 PORT=0 HTTP_ADDR= \
		LOG_FORMAT=json "$bin" 2>"$log" &
	pid=$!
	for i in $(seq 100); do grep -q '"msg":"listening"' "$log" && break; sleep 0.1; done
	port=$(grep -o '"msg":"listening","addr":"[^"]*","port":[0-9]*' "$log" | head -1 | grep -o '[0-9]*$')
	call() { "$tool" worker -endpoint "127.0.0.1:$port" -ca "$work/pki/ca.crt" \
		-token-file "$work/pki/token" >/dev/null 2>&1 </dev/null; }
	call || { echo "$bin: first call failed" >&2; kill "$pid"; return 1; }
	a=$(awk '{print $14 + $15}' "/proc/$pid/stat")
	for i in $(seq "$n"); do call || echo "$bin: call $i failed" >&2; done
	b=$(awk '{print $14 + $15}' "/proc/$pid/stat")
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	echo "$bin round $r calls $n cpu_ms_per_call $(echo "scale=3; ($b - $a) * 1000 / $tck / $n" | bc)"
}

for r in $(seq "$rounds"); do
	for bin in "$@"; do
		one "$bin" "$r"
	done
done
