#!/usr/bin/env bash
# Instructions per new connection + one call, and per call on an open
# connection, of the whole daemon (every thread), counted by callgrind. The
# counts do not depend on the machine's load, so two builds can be compared
# on a busy shared machine where wall-clock figures move by 20-40%.
#
# The counts are the network process's (TLS, HTTP/2, gRPC, the token, the
# keeper round trip's network half). The keeper, forked under valgrind too
# (without its seccomp filter: valgrind cannot run that system call), is not
# counted: callgrind_control cannot reach a forked child. Its share of a call
# is signer_issue(): `bench/floor signer --iterations N` under callgrind.
#
# The daemon runs under `valgrind --tool=callgrind` on a development PKI
# (hack/dev-pki.sh: the CA of CG_FAMILY, ECDSA P-256 serving key), driven by
# the bench's load generator:
#   warm-up  CG_WARM new connections (one-time set-up: first handshake, first
#            call, lazily built tables)
#   conn     counters zeroed, CG_CONNS new TLS connections with one call each
#            (CG_PAR at once), counters dumped: Ir per new connection + call
#   steady   counters zeroed, CG_CALLS_SECONDS of calls (CG_CONC callers over
#            4 connections the load generator opens first), dumped. Ir per call
#            = (Ir - 4 x Ir per new connection + call) / (calls - 4)
# Then the top functions of each phase (inclusive and self, callgrind_annotate).
#
# Usage: bench/callgrind.sh [BIN]   (default build/talos-csr-signer)
# Environment: CG_FAMILY (ed25519), CG_WARM (8), CG_CONNS (60), CG_PAR (4),
# CG_CALLS_SECONDS (20), CG_CONC (16), CG_TOP (25), CG_OUT (directory kept
# with the callgrind files; default a temporary one, removed).
# Output: "Ir per new connection + call (network process): N" and "Ir per
# steady call (network process): N", then
# the profiles.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-build/talos-csr-signer}
case $bin in /*) ;; *) bin=$root/$bin ;; esac
fam=${CG_FAMILY:-ed25519}
warm=${CG_WARM:-8}
nconn=${CG_CONNS:-60}
par=${CG_PAR:-4}
csecs=${CG_CALLS_SECONDS:-20}
conc=${CG_CONC:-16}
top=${CG_TOP:-25}

for t in valgrind callgrind_control callgrind_annotate go openssl python3; do
	command -v "$t" >/dev/null || { echo "bench/callgrind.sh: $t is not installed" >&2; exit 1; }
done
[ -x "$bin" ] || { echo "bench/callgrind.sh: $bin not found (make build)" >&2; exit 1; }

tcsbench=$("$root/hack/gotool.sh" tcsbench "$root/bench/loadgen")
work=$(mktemp -d "${TMPDIR:-/tmp}/tcs-callgrind.XXXXXX")
out=${CG_OUT:-$work/out}
mkdir -p "$out"
dpid=
cleanup() {
	if [ -n "$dpid" ]; then
		kill "$dpid" 2>/dev/null || true
		wait "$dpid" 2>/dev/null || true
	fi
	rm -rf "$work" # with CG_OUT set, the callgrind files are outside it
}
trap cleanup EXIT

"$root/hack/dev-pki.sh" "$work/pki" --family "$fam" --ip 127.0.0.1 >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

CA_CERT_PATH=$work/pki/ca.crt CA_KEY_PATH=$work/pki/ca.key TLS_CERT_PATH=$work/pki/server.crt \
	TLS_KEY_PATH=$work/pki/server.key TOKEN_PATH=$work/pki/token LISTEN_ADDRESS=127.0.0.1 \
	PORT=$port HTTP_ADDR='' LOG_FORMAT=json LOG_LEVEL=info \
	TCS_KEEPER_SECCOMP=off \
	valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" --dump-instr=no \
	"$bin" 2>"$work/daemon.log" &
dpid=$!
for _ in $(seq 1 600); do
	grep -q '"msg":"listening"' "$work/daemon.log" 2>/dev/null && break
	kill -0 "$dpid" 2>/dev/null || { cat "$work/daemon.log" >&2; exit 1; }
	sleep 0.1
done
grep -q '"msg":"listening"' "$work/daemon.log" || { echo "the daemon did not start" >&2; exit 1; }

client() { # mode flags...
	local mode=$1
	shift
	"$tcsbench" "$mode" --endpoint "127.0.0.1:$port" --ca "$work/pki/ca.crt" \
		--token-file "$work/pki/token" --csr-family "$fam" --timeout 60s "$@"
}
# phase NAME: dumps the counters gathered since the last zeroing as NAME.
phase_dump() {
	callgrind_control -d "$1" "$dpid" >/dev/null
}

client storm --total "$warm" --parallel "$par" >/dev/null
callgrind_control -z "$dpid" >/dev/null
cj=$(client storm --total "$nconn" --parallel "$par")
phase_dump conn
callgrind_control -z "$dpid" >/dev/null
sj=$(client steady --conns 4 --concurrency "$conc" --duration "${csecs}s")
phase_dump steady

python3 - "$cj" "$sj" "$out" <<'PY'
import glob, json, re, sys
cj, sj, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
if cj["failed"] or sj["failed"]:
    sys.exit("bench/callgrind.sh: calls failed: %d (conn), %d (steady)" % (cj["failed"], sj["failed"]))
ir = {}
for f in glob.glob(out + "/callgrind.out.*"):
    desc = tot = None
    for line in open(f, errors="replace"):
        m = re.match(r"desc: Trigger: .*?(\w+)$", line.strip())
        if m and desc is None:
            desc = m.group(1)
        m = re.match(r"(summary|totals): (\d+)", line)
        if m:
            tot = int(m.group(2))
    if desc in ("conn", "steady"):
        ir[desc] = (tot, f)
conn = ir["conn"][0] / cj["ok"]
call = (ir["steady"][0] - 4 * conn) / (sj["ok"] - 4)
print("connections: %d, steady calls: %d" % (cj["ok"], sj["ok"]))
print("Ir per new connection + call (network process): %.0f" % conn)
print("Ir per steady call (network process): %.0f" % call)
PY

stop_and_wait() {
	kill "$dpid" 2>/dev/null || true
	wait "$dpid" 2>/dev/null || true
	dpid=
}
stop_and_wait
# The functions of a phase, one per line, without the thread entry points
# (callgrind_annotate charges them the cost of threads started before the
# counters were zeroed).
top_of() { # FILE yes|no
	callgrind_annotate --inclusive="$2" --threshold=100 "$1" 2>/dev/null |
		grep -E '^ *[0-9,]+ \( *[0-9.]+%\) ' | grep -v -E 'PROGRAM TOTALS|:start_thread |:clone ' |
		head -n "$top" || true # head closing the pipe early is not a failure
}
for k in conn steady; do
	f=$(grep -l "^desc: Trigger: .*$k\$" "$out"/callgrind.out.* | head -1)
	echo
	echo "== $k: top $top functions by inclusive Ir (whole phase)"
	top_of "$f" yes
	echo
	echo "== $k: top $top functions by self Ir (whole phase)"
	top_of "$f" no
done
[ -z "${CG_OUT:-}" ] || echo "callgrind files: $out"
