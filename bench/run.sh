#!/usr/bin/env bash
# `make bench`: the daemon against the crypto floor.
#
# For each CA family (Ed25519, ECDSA P-256, RSA-4096; the CSRs are of the
# CA's family, as Talos 1.11+ workers send):
#   floor     the fastest implementation (libsodium for Ed25519, OpenSSL
#             otherwise), keys built once: verify the CSR + sign the
#             certificate (per call); plus the TLS 1.3 handshake's server side
#             (CertificateVerify signature + X25519) per new connection
#   signer    signer_issue() in process (the daemon's path without gRPC/TLS)
#   steady    BENCH_CONC concurrent calls over BENCH_CONNS long-lived
#             connections for BENCH_SECONDS: calls/s, p50/p90/p99, server CPU
#             per 1,000 calls (/proc/PID/stat), peak RSS (VmHWM)
#   storm     the primary workload, as Talos workers call: BENCH_STORM new
#             TLS connections with one call each, BENCH_STORM_PAR at once:
#             completions/s, p99, server CPU per connection
# and once (Ed25519): RSS idle, and with BENCH_HOLD open connections (RSS
# summed over the daemon's two processes, and, as root, each physical page
# counted once: bench/resident.py).
#
# Peer: with GO_SIGNER_SRC set to a checkout of the Go signer this project
# replaces (github.com/clastix/talos-csr-signer; its source never enters this
# repository), it is built once into the tool cache and measured in the same
# run, interleaved with the daemon for BENCH_PEER_ROUNDS rounds per family of
# BENCH_PEER_FAMILIES: server CPU per new connection + call (storm of
# BENCH_PEER_STORM), server CPU per call in the steady state, RSS idle and
# with BENCH_HOLD open connections; reported as medians and as ratios
# daemon / Go signer. Without GO_SIGNER_SRC: "peer skipped".
#
# Usage: bench/run.sh [BIN]   (default build/talos-csr-signer; `make bench`)
# Output: results/bench-<UTC time>/ with bench.json, bench.md, bench.png
# (results/ is git-ignored); the Markdown is also printed.
#
# Environment: BENCH_FAMILIES ("ed25519 ecdsa rsa"), BENCH_SECONDS (10),
# BENCH_CONC (64), BENCH_CONNS (4), BENCH_STORM (2000), BENCH_STORM_PAR (64),
# BENCH_HOLD (1000), BENCH_OUT (output directory), TCS_CACHE (tool cache),
# GO_SIGNER_SRC (unset), BENCH_PEER_FAMILIES ("ed25519 ecdsa"),
# BENCH_PEER_ROUNDS (3), BENCH_PEER_STORM (1000).
# CI=true turns a missing tool into a failure instead of a skip.
#
# Nothing here asserts a timing: the script fails only when calls fail or a
# tool is missing. The figures are for people (docs/performance.md).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-build/talos-csr-signer}
case $bin in /*) ;; *) bin=$root/$bin ;; esac
builddir=$(dirname "$bin")
families=${BENCH_FAMILIES:-ed25519 ecdsa rsa}
secs=${BENCH_SECONDS:-10}
conc=${BENCH_CONC:-64}
conns=${BENCH_CONNS:-4}
storm=${BENCH_STORM:-2000}
storm_par=${BENCH_STORM_PAR:-64}
hold=${BENCH_HOLD:-1000}
cache=${TCS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer}
peer_src=${GO_SIGNER_SRC:-}
peer_families=${BENCH_PEER_FAMILIES:-ed25519 ecdsa}
peer_rounds=${BENCH_PEER_ROUNDS:-3}
peer_storm=${BENCH_PEER_STORM:-1000}
out=${BENCH_OUT:-$root/results/bench-$(date -u +%Y%m%dT%H%M%SZ)}

missing() {
	if [ "${CI:-}" = true ]; then
		echo "bench/run.sh: $1" >&2
		exit 1
	fi
	echo "SKIPPED: $1"
	exit 0
}

apt_install() { # package...
	apt-get install -y "$@" >/dev/null 2>&1 ||
		{ apt-get update >/dev/null 2>&1 && apt-get install -y "$@" >/dev/null 2>&1; }
}

[ -x "$bin" ] || missing "daemon binary $bin not found (make build)"
[ -f "$builddir/libtcs_core.a" ] || missing "$builddir/libtcs_core.a not found (make build)"
command -v go >/dev/null || missing "go is not installed"
command -v openssl >/dev/null || missing "openssl is not installed"
command -v python3 >/dev/null || missing "python3 is not installed"
command -v gnuplot >/dev/null || apt_install gnuplot-nox || true
command -v gnuplot >/dev/null || missing "gnuplot is not installed (apt-get install gnuplot-nox)"

work=$(mktemp -d)
WORK=$work BIN=$bin ROOT=$root
# shellcheck source=tests/lib.sh
. "$root/tests/lib.sh" # start_daemon, stop_daemon, free_port
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$out"

# --- tools -----------------------------------------------------------------
# The load generator, built once per source/Go version into the cache.
lg=$root/bench/loadgen
tcsbench=$(TCS_CACHE=$cache "$root/hack/gotool.sh" tcsbench "$lg")
# The floor program links the daemon's own library (same OpenSSL, same code).
floor=$work/floor
# shellcheck disable=SC2046
cc -O2 -g -std=gnu11 -I "$root/src" -I "$builddir/proto" "$root/bench/floor.c" \
	"$builddir/libtcs_core.a" "$builddir/libtcs_proto.a" \
	$(pkg-config --libs grpc libprotobuf-c openssl libsodium libcjson libcurl libseccomp) \
	$(pkg-config --exists libmicrohttpd && pkg-config --libs libmicrohttpd) \
	-lpthread -o "$floor"

ulimit -n 16384 2>/dev/null || true
tck=$(getconf CLK_TCK)

# The daemon is two processes (the network side and its keeper child): CPU and
# memory are summed over the process and its children. A Go signer has none.
procs() { echo "$1" $(pgrep -P "$1" 2>/dev/null || true); }
cpu_ticks() {
	local p t=0
	for p in $(procs "$1"); do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}
rss_kb() {
	local p t=0
	for p in $(procs "$1"); do
		t=$((t + $(awk -v k="$2:" '$1 == k {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
	done
	echo "$t"
}
# resident_kb PID: the process and its children, each physical page once
# (bench/resident.py; "null" unless root).
resident_kb() {
	# shellcheck disable=SC2046
	python3 "$root/bench/resident.py" $(procs "$1")
}

# bench_daemon PKI_DIR -> sets dpid, dport (tests/lib.sh start_daemon)
# The load generator is one source (127.0.0.1) standing in for a fleet: the
# front door's per-source cap is lifted to the global one so that holding
# BENCH_HOLD connections measures memory, not the cap.
bench_daemon() {
	dport=$(free_port)
	start_daemon daemon --wait listening --timeout 10 -- CA_CERT_PATH="$1/ca.crt" CA_KEY_PATH="$1/ca.key" \
		TLS_CERT_PATH="$1/server.crt" TLS_KEY_PATH="$1/server.key" TOKEN_PATH="$1/token" \
		LISTEN_ADDRESS=127.0.0.1 PORT="$dport" HTTP_ADDR='' LOG_FORMAT=json LOG_LEVEL=info \
		MAX_CONNECTIONS=$((hold + 2 * storm_par + 64)) \
		MAX_CONNECTIONS_PER_SOURCE=$((hold + 2 * storm_par + 64)) >&2 ||
		{ echo "bench/run.sh: the daemon did not start" >&2; exit 1; }
	dpid=$D_PID
	pids+=("$dpid")
	sleep 0.5 # let start-up allocations settle before reading RSS
}
bench_stop() { stop_daemon "$dpid" >/dev/null || true; }

# makecsr FAMILY FILE: a worker-like CSR (the Go client's shape) for the floor.
makecsr() {
	case $1 in
	ed25519) openssl genpkey -algorithm ed25519 -out "$2.key" ;;
	ecdsa) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$2.key" ;;
	rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out "$2.key" ;;
	esac 2>/dev/null
	openssl req -new -key "$2.key" -subj "/O=os:admin/CN=worker-1" -config /dev/null \
		-addext "subjectAltName=DNS:worker-1,IP:10.0.0.1" -out "$2" 2>/dev/null
}

client() { # mode family pki flags...
	local mode=$1 fam=$2 pki=$3
	shift 3
	"$tcsbench" "$mode" --endpoint "127.0.0.1:$dport" --ca "$pki/ca.crt" \
		--token-file "$pki/token" --csr-family "$fam" "$@"
}

load0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench: families [$families], steady ${secs}s at $conc concurrent calls over $conns connections," \
	"storm $storm connections ($storm_par at once), hold $hold; output in ${out#"$root"/}"

results=()
memory='{}'
# hold_conns FAMILY PKI OUT: opens $hold connections to the server just started
# ($dpid), sets HELD to its RSS with them open (HELD_ONCE: each page once),
# then closes them; the load
# generator's report goes to OUT.
hold_conns() {
	local hp
	rm -f "$work/ready" "$work/stop"
	client hold "$1" "$2" --conns "$hold" --ready-file "$work/ready" \
		--stop-file "$work/stop" --duration 5m >"$3" &
	hp=$!
	pids+=("$hp")
	for _ in $(seq 1 1200); do
		[ -f "$work/ready" ] && break
		kill -0 "$hp" 2>/dev/null || break
		sleep 0.1
	done
	[ -f "$work/ready" ] || { echo "bench/run.sh: hold did not get ready" >&2; exit 1; }
	sleep 1
	HELD=$(rss_kb "$dpid" VmRSS)
	HELD_ONCE=$(resident_kb "$dpid")
	touch "$work/stop"
	wait "$hp" || echo "bench/run.sh: the hold client exited with an error" >&2
}

for fam in $families; do
	pki=$work/pki-$fam
	"$root/hack/dev-pki.sh" "$pki" --family "$fam" --ip 127.0.0.1 >/dev/null
	makecsr "$fam" "$work/$fam.csr"
	echo "== $fam: floor"
	fl1=$("$floor" floor --ca-key "$pki/ca.key" --csr "$work/$fam.csr" \
		--serving-key "$pki/server.key" --seconds 2)
	sg=$("$floor" signer --ca-cert "$pki/ca.crt" --ca-key "$pki/ca.key" \
		--tls-cert "$pki/server.crt" --tls-key "$pki/server.key" --token "$pki/token" \
		--csr "$work/$fam.csr" --seconds 2)

	bench_daemon "$pki"
	idle=$(rss_kb "$dpid" VmRSS)
	idle_once=$(resident_kb "$dpid")
	echo "== $fam: steady"
	client steady "$fam" "$pki" --conns "$conns" --concurrency "$conc" --duration 2s >/dev/null
	c0=$(cpu_ticks "$dpid")
	st=$(client steady "$fam" "$pki" --conns "$conns" --concurrency "$conc" --duration "${secs}s")
	c1=$(cpu_ticks "$dpid")
	hwm=$(rss_kb "$dpid" VmHWM)
	echo "== $fam: storm"
	c2=$(cpu_ticks "$dpid")
	sm=$(client storm "$fam" "$pki" --total "$storm" --parallel "$storm_par")
	c3=$(cpu_ticks "$dpid")

	if [ "$memory" = '{}' ] && [ "$hold" -gt 0 ]; then
		echo "== $fam: holding $hold connections"
		hold_conns "$fam" "$pki" "$work/hold.json"
		held=$HELD
		# The daemon hands freed heap back every 30 s (main.c housekeeping).
		sleep 32
		after=$(rss_kb "$dpid" VmRSS)
		memory=$(printf '{"family":"%s","idle_rss_kb":%s,"held_connections":%s,"held_rss_kb":%s,"rss_after_close_kb":%s,"idle_once_kb":%s,"held_once_kb":%s,"hold":%s}' \
			"$fam" "$idle" "$hold" "$held" "$after" "$idle_once" "$HELD_ONCE" "$(cat "$work/hold.json")")
	fi
	bench_stop
	# The floor again, after the load: the lower of the two is the estimate
	# least disturbed by the other processes of a shared machine.
	fl2=$("$floor" floor --ca-key "$pki/ca.key" --csr "$work/$fam.csr" \
		--serving-key "$pki/server.key" --seconds 2)
	results+=("$(printf '{"family":"%s","floor":[%s,%s],"signer":%s,"idle_rss_kb":%s,"peak_rss_kb":%s,"steady":%s,"steady_cpu_s":%s,"storm":%s,"storm_cpu_s":%s}' \
		"$fam" "$fl1" "$fl2" "$sg" "$idle" "$hwm" "$st" \
		"$(awk -v a="$c0" -v b="$c1" -v t="$tck" 'BEGIN {printf "%.2f", (b - a) / t}')" "$sm" \
		"$(awk -v a="$c2" -v b="$c3" -v t="$tck" 'BEGIN {printf "%.2f", (b - a) / t}')")")
done

# --- peer: the Go signer, side by side ---------------------------------------
# build_peer: prints the path of the Go signer built from $peer_src (cached
# by a hash of its sources and the Go version), or fails.
build_peer() {
	local key pbin
	key=$(cd "$peer_src" && { find . -name '*.go' -o -name go.mod -o -name go.sum | LC_ALL=C sort |
		xargs cat; go version; } | sha256sum | cut -c1-16)
	pbin=$cache/tools/go-signer-$key/talos-csr-signer-go
	if [ ! -x "$pbin" ]; then
		echo "bench: building the Go signer from $peer_src into $(dirname "$pbin")" >&2
		mkdir -p "$(dirname "$pbin")"
		(cd "$peer_src" && GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath -o "$pbin.tmp" .) >&2 ||
			return 1
		mv "$pbin.tmp" "$pbin"
	fi
	echo "$pbin"
}

# start_peer PKI_DIR -> sets dpid, dport (the Go signer, its own environment names).
# It binds every address, so on a shared machine the free port picked may be
# taken before it binds: then it exits, and another port is tried.
start_peer() {
	local _ _try
	for _try in 1 2 3; do
		dport=$(free_port)
		: >"$work/peer.log"
		env -i PATH="$PATH" HOME="$HOME" PORT="$dport" CA_CERT_PATH="$1/ca.crt" CA_KEY_PATH="$1/ca.key" \
			TLS_CERT_PATH="$1/server.crt" TLS_KEY_PATH="$1/server.key" TALOS_TOKEN="$(cat "$1/token")" \
			"$peer_bin" >>"$work/peer.log" 2>&1 &
		dpid=$!
		pids+=("$dpid")
		for _ in $(seq 1 100); do
			if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2)' "$dport" 2>/dev/null; then
				sleep 0.5
				return 0
			fi
			kill -0 "$dpid" 2>/dev/null || break
			sleep 0.1
		done
		grep -q 'address already in use' "$work/peer.log" || break
	done
	echo "bench/run.sh: the Go signer did not start:" >&2
	tail -5 "$work/peer.log" >&2
	exit 1
}

# stop_peer: the Go signer traps SIGTERM and never acts on it (its main
# cancels a context nothing reads), so it is killed.
stop_peer() {
	kill -KILL "$dpid" 2>/dev/null || true
	wait "$dpid" 2>/dev/null || true
}

# measure WHO FAMILY PKI: one round against the server just started (dpid,
# dport): prints {"storm_cpu_us_per_conn":..,"steady_cpu_us_per_call":..,"failed":..}
measure() {
	local fam=$2 pki=$3 c0 c1 c2 c3 sm st
	c0=$(cpu_ticks "$dpid")
	sm=$(client storm "$fam" "$pki" --total "$peer_storm" --parallel "$storm_par")
	c1=$(cpu_ticks "$dpid")
	client steady "$fam" "$pki" --conns "$conns" --concurrency "$conc" --duration 1s >/dev/null
	c2=$(cpu_ticks "$dpid")
	st=$(client steady "$fam" "$pki" --conns "$conns" --concurrency "$conc" --duration 5s)
	c3=$(cpu_ticks "$dpid")
	python3 - "$sm" "$st" "$c0" "$c1" "$c2" "$c3" "$tck" "$1" <<'PY'
import json, sys
sm, st = json.loads(sys.argv[1]), json.loads(sys.argv[2])
c0, c1, c2, c3, tck = (float(x) for x in sys.argv[3:8])
print(json.dumps({"who": sys.argv[8], "storm_cpu_us_per_conn": (c1 - c0) / tck / max(sm["ok"], 1) * 1e6,
                  "steady_cpu_us_per_call": (c3 - c2) / tck / max(st["ok"], 1) * 1e6,
                  "storm_p99_ms": sm["p99_ms"], "steady_p99_ms": st["p99_ms"],
                  "failed": sm["failed"] + st["failed"]}))
PY
}

# hold_rss PKI: RSS idle and with $hold open connections of the server just started.
hold_rss() {
	local idle once
	idle=$(rss_kb "$dpid" VmRSS)
	once=$(resident_kb "$dpid")
	hold_conns ed25519 "$1" /dev/null
	printf '{"idle_rss_kb":%s,"held_rss_kb":%s,"idle_once_kb":%s,"held_once_kb":%s,"held_connections":%s}' \
		"$idle" "$HELD" "$once" "$HELD_ONCE" "$hold"
}

peer='null'
if [ -z "$peer_src" ]; then
	echo "== peer skipped (set GO_SIGNER_SRC to a checkout of github.com/clastix/talos-csr-signer)"
elif ! peer_bin=$(build_peer); then
	echo "== peer skipped: the Go signer in $peer_src did not build (see above)"
else
	rounds=()
	for fam in $peer_families; do
		pki=$work/pki-$fam
		[ -d "$pki" ] || "$root/hack/dev-pki.sh" "$pki" --family "$fam" --ip 127.0.0.1 >/dev/null
		for r in $(seq 1 "$peer_rounds"); do
			echo "== peer: $fam round $r/$peer_rounds (daemon, then Go signer)"
			bench_daemon "$pki"
			rounds+=("$(printf '{"family":"%s","round":%s,"m":%s}' "$fam" "$r" "$(measure daemon "$fam" "$pki")")")
			bench_stop
			start_peer "$pki"
			rounds+=("$(printf '{"family":"%s","round":%s,"m":%s}' "$fam" "$r" "$(measure go "$fam" "$pki")")")
			stop_peer
		done
	done
	echo "== peer: memory, idle and with $hold open connections (Ed25519 CA)"
	pki=$work/pki-ed25519
	[ -d "$pki" ] || "$root/hack/dev-pki.sh" "$pki" --family ed25519 --ip 127.0.0.1 >/dev/null
	bench_daemon "$pki"
	mem_d=$(hold_rss "$pki")
	bench_stop
	start_peer "$pki"
	mem_g=$(hold_rss "$pki")
	stop_peer
	(IFS=,; peer=$(printf '{"source":"%s","rounds":[%s],"memory":{"daemon":%s,"go":%s}}' \
		"$(cd "$peer_src" && git rev-parse --short=12 HEAD 2>/dev/null || echo "(not a git checkout)")" \
		"${rounds[*]}" "$mem_d" "$mem_g"); echo "$peer" >"$work/peer.json")
	peer=$(cat "$work/peer.json")
fi
load1=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ----------------------------------------------------------------
machine=$(printf '{"cpu":"%s","cores":%s,"kernel":"%s","openssl":"%s","go":"%s","load_before":"%s","load_after":"%s","date":"%s","commit":"%s"}' \
	"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" "$(nproc)" "$(uname -r)" \
	"$(openssl version | cut -d' ' -f2)" "$(go version | cut -d' ' -f3)" "$load0" "$load1" \
	"$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)")
(IFS=,; printf '{"machine":%s,"config":{"seconds":%s,"concurrency":%s,"connections":%s,"storm":%s,"storm_parallel":%s},"results":[%s],"memory":%s,"peer":%s}\n' \
	"$machine" "$secs" "$conc" "$conns" "$storm" "$storm_par" "${results[*]}" "$memory" "$peer") >"$out/bench.json"

rc=0
python3 - "$out" <<'PY' || rc=$?
import json, sys
out = sys.argv[1]
d = json.load(open(out + "/bench.json"))
m, cfg = d["machine"], d["config"]
rows, plot = [], []
fail = 0
for r in d["results"]:
    f = min(r["floor"], key=lambda x: x["call_floor_us"])
    call_floor = f["call_floor_us"]
    conn_floor = min(x["connection_floor_us"] for x in r["floor"])
    st, sm = r["steady"], r["storm"]
    fail += st["failed"] + sm["failed"]
    cpu_call = r["steady_cpu_s"] / max(st["ok"], 1) * 1e6
    cpu_conn = r["storm_cpu_s"] / max(sm["ok"], 1) * 1e6
    r["derived"] = {"call_floor_us": call_floor, "connection_floor_us": conn_floor,
                    "server_cpu_us_per_call": cpu_call, "server_cpu_us_per_connection": cpu_conn,
                    "ratio_call": cpu_call / call_floor, "ratio_connection": cpu_conn / conn_floor,
                    "signer_ratio": r["signer"]["signer_issue_us"] / call_floor}
    rows.append((r, f))
    plot.append((r["family"], call_floor, r["signer"]["signer_issue_us"], cpu_call,
                 st["p50_ms"], st["p90_ms"], st["p99_ms"], sm["p99_ms"]))
json.dump(d, open(out + "/bench.json", "w"), indent=1)

L = []
L.append("## Benchmark: %s" % m["date"])
L.append("")
L.append("Machine: %s, %d cores, Linux %s, OpenSSL %s, load generator %s; commit %s. "
         "Load average %s before, %s after." % (m["cpu"], m["cores"], m["kernel"], m["openssl"], m["go"],
                                                m["commit"], m["load_before"], m["load_after"]))
L.append("")
L.append("Steady: %d concurrent calls over %d connections for %d s. Storm: %d new TLS connections, one call each, %d at once. "
         "CPU figures are server CPU time (user+system, /proc/PID/stat) per call; floors are CPU time on one core of the fastest implementation (libsodium for Ed25519, OpenSSL otherwise) with keys built once (lower of a run before and after the load)." %
         (cfg["concurrency"], cfg["connections"], cfg["seconds"], cfg["storm"], cfg["storm_parallel"]))
L.append("")
L.append("Primary workload, as Talos workers call: a new TLS connection per call.")
L.append("")
L.append("| new connection per call, CA / serving key | connections/s | p50 ms | p99 ms | server CPU per connection | floor per connection (call + handshake sign + X25519) | ratio | failed |")
L.append("|---|---|---|---|---|---|---|---|")
for r, f in rows:
    sm, dv = r["storm"], r["derived"]
    L.append("| %s / %s | %.0f | %.1f | %.1f | %.0f µs | %.0f µs | %.2fx | %d |" % (
        f["ca_key"], f["serving_key"], sm["per_second"], sm["p50_ms"], sm["p99_ms"],
        dv["server_cpu_us_per_connection"], dv["connection_floor_us"], dv["ratio_connection"], sm["failed"]))
L.append("")
L.append("Steady state: concurrent calls over long-lived connections.")
L.append("")
L.append("| CA / CSR | calls/s | p50 ms | p90 ms | p99 ms | server CPU per 1,000 calls | floor per call (verify + sign) | ratio | signer_issue in process | peak RSS |")
L.append("|---|---|---|---|---|---|---|---|---|---|")
for r, f in rows:
    st, dv = r["steady"], r["derived"]
    L.append("| %s / %s | %.0f | %.1f | %.1f | %.1f | %.0f ms | %.0f µs (%.0f + %.0f) | %.2fx | %.0f µs (%.2fx) | %.1f MiB |" % (
        f["ca_key"], f["csr_key"], st["per_second"], st["p50_ms"], st["p90_ms"], st["p99_ms"],
        dv["server_cpu_us_per_call"], dv["call_floor_us"], f["verify_us"], f["sign_us"], dv["ratio_call"],
        r["signer"]["signer_issue_us"], dv["signer_ratio"], r["peak_rss_kb"] / 1024))

mem = d["memory"]
if mem:
    L.append("")
    L.append("Memory (%s CA): RSS idle %.1f MiB; with %d open connections %.1f MiB; after they closed (32 s later) %.1f MiB." % (
        mem["family"], mem["idle_rss_kb"] / 1024, mem["held_connections"], mem["held_rss_kb"] / 1024,
        mem["rss_after_close_kb"] / 1024))
    if mem.get("idle_once_kb"):
        L.append("Each physical page counted once across the daemon's two processes: idle %.1f MiB, with %d open connections %.1f MiB." % (
            mem["idle_once_kb"] / 1024, mem["held_connections"], mem["held_once_kb"] / 1024))
peer = d.get("peer")
if peer:
    import statistics
    L.append("")
    L.append("Against the Go signer (github.com/clastix/talos-csr-signer %s), same run, %d interleaved rounds per family, medians; "
             "ratio = daemon / Go signer (below 1: the daemon spends less)." % (peer["source"], max(x["round"] for x in peer["rounds"])))
    L.append("")
    L.append("| CA | CPU per new connection + call: daemon | Go signer | ratio | steady CPU per call: daemon | Go signer | ratio | failed |")
    L.append("|---|---|---|---|---|---|---|---|")
    for fam in sorted({x["family"] for x in peer["rounds"]}, key=lambda f: ["ed25519", "ecdsa", "rsa"].index(f) if f in ["ed25519", "ecdsa", "rsa"] else 9):
        def med(who, k):
            return statistics.median(x["m"][k] for x in peer["rounds"] if x["family"] == fam and x["m"]["who"] == who)
        pf = sum(x["m"]["failed"] for x in peer["rounds"] if x["family"] == fam)
        fail += pf
        dc, gc = med("daemon", "storm_cpu_us_per_conn"), med("go", "storm_cpu_us_per_conn")
        ds, gs = med("daemon", "steady_cpu_us_per_call"), med("go", "steady_cpu_us_per_call")
        L.append("| %s | %.0f µs | %.0f µs | %.2fx | %.0f µs | %.0f µs | %.2fx | %d |" % (fam, dc, gc, dc / gc, ds, gs, ds / gs, pf))
    md, mg = peer["memory"]["daemon"], peer["memory"]["go"]
    n = md["held_connections"]
    pd = (md["held_rss_kb"] - md["idle_rss_kb"]) / n
    pg = (mg["held_rss_kb"] - mg["idle_rss_kb"]) / n
    L.append("")
    L.append("| memory (Ed25519 CA) | daemon | Go signer | ratio |")
    L.append("|---|---|---|---|")
    L.append("| RSS idle | %.1f MiB | %.1f MiB | %.2fx |" % (md["idle_rss_kb"] / 1024, mg["idle_rss_kb"] / 1024, md["idle_rss_kb"] / mg["idle_rss_kb"]))
    L.append("| RSS with %d open connections | %.1f MiB | %.1f MiB | %.2fx |" % (n, md["held_rss_kb"] / 1024, mg["held_rss_kb"] / 1024, md["held_rss_kb"] / mg["held_rss_kb"]))
    L.append("| per open connection | %.0f KiB | %.0f KiB | %.2fx |" % (pd, pg, pd / pg if pg > 0 else float("nan")))
    if md.get("idle_once_kb") and mg.get("idle_once_kb"):
        # RSS summed over the daemon's two processes counts their shared pages twice.
        L.append("| resident idle, each physical page once | %.1f MiB | %.1f MiB | %.2fx |" % (
            md["idle_once_kb"] / 1024, mg["idle_once_kb"] / 1024, md["idle_once_kb"] / mg["idle_once_kb"]))
        L.append("| resident with %d open connections, each page once | %.1f MiB | %.1f MiB | %.2fx |" % (
            n, md["held_once_kb"] / 1024, mg["held_once_kb"] / 1024, md["held_once_kb"] / mg["held_once_kb"]))
else:
    L.append("")
    L.append("Go signer: peer skipped (GO_SIGNER_SRC not set).")
L.append("")
L.append("Failed calls: %d." % fail)
open(out + "/bench.md", "w").write("\n".join(L) + "\n")
with open(out + "/plot.dat", "w") as p:
    p.write("family floor signer daemon p50 p90 p99 storm_p99\n")
    for row in plot:
        p.write("%s %.1f %.1f %.1f %.2f %.2f %.2f %.2f\n" % row)
print("\n".join(L))
sys.exit(1 if fail else 0)
PY

gnuplot <<EOF
set terminal pngcairo size 1100,480 font ",10" noenhanced
set output "$out/bench.png"
set multiplot layout 1,2 title "talos-csr-signer: cost per call against the crypto floor, and latency (${conc} concurrent calls)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top left
set ylabel "CPU µs per call (one core)"
set yrange [0:*]
set logscale y
set yrange [10:*]
plot "$out/plot.dat" using 2:xtic(1) title "floor: verify + sign", \
     "" using 3 title "signer_issue in process", \
     "" using 4 title "daemon CPU per call"
unset logscale y
set yrange [0:*]
set ylabel "latency ms"
plot "$out/plot.dat" using 5:xtic(1) title "p50", "" using 6 title "p90", "" using 7 title "p99", \
     "" using 8 title "storm p99"
unset multiplot
EOF
echo "bench: results in ${out#"$root"/}/ (bench.md, bench.json, bench.png)"
exit $rc
