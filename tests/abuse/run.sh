#!/usr/bin/env bash
# Abuse suite (issue 10): each attack, bounded in count and time and aimed at
# loopback only, runs against a fresh daemon (file mode, dev PKI) while a
# legitimate Talos worker (tests/interop's tcsinterop `pace`: a new TLS
# connection, a fresh key and CSR, one Certificate call, about once a second)
# calls it. The attacker is tests/abuse/cmd/tcsabuse; it dials from other
# loopback addresses than the worker (127.0.0.2, or 127.77.x.y when spread),
# as a hostile host would. Asserted, as the issue words them:
#
#   connect     ~1,100 TCP connects, daemon under `ulimit -n 1024`: a legitimate
#               call succeeds within 5 s after they close, the listener keeps
#               accepting, and /healthz tells the truth about it
#   hpack       4 never-ending-HPACK-integer connections: >= 95% of legitimate
#               calls during the attack succeed
#   rapidreset  4 connections x 15 s (150,000 streams at most) of HEADERS +
#               RST_STREAM: RSS grows < 64 MiB,
#               legitimate p99 < 1 s, the log grows < 100 KB
#   flood       20,000 half-open TLS handshakes, then 5,000 idle HTTP/2
#               connections: peak RSS of each phase within the bound the
#               connection caps imply (see conn_bound), that bound within the
#               chart's memory limit, >= 95% of legitimate calls succeed
#   slowloris   70 slowloris connections on the HTTP port: each of 10 /healthz
#               probes answered within 1 s
#   bigexp      4 connections x 16 calls in flight, with the token and an RSA-3072 CSR whose
#               public exponent has 3,064 bits: legitimate p99 < 1 s
#
# Prints a table (attack x legitimate success and latency, RSS, log growth),
# then "abuse: N passed, M failed, K skipped"; exits non-zero when anything failed.
#
# Environment:
#   TCS_BIN         daemon binary (default build/talos-csr-signer)
#   TCS_CACHE       tool cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer)
#   ABUSE_SECTIONS  subset of: connect hpack rapidreset flood slowloris bigexp
#   ABUSE_CONN_KIB  per-connection memory budget of the RSS bound (default 40,
#                   the issue's goal for an idle connection)
#   KEEP_WORK       1: keep the scratch directory (always kept on failure)
#   CI              true: a missing tool is a failure, never a skip
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${TCS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer}
BIN=${TCS_BIN:-build/talos-csr-signer}
[[ $BIN == /* ]] || BIN=$ROOT/$BIN
SECTIONS=${ABUSE_SECTIONS:-connect hpack rapidreset flood slowloris bigexp}
CONN_KIB=${ABUSE_CONN_KIB:-40}
CI=${CI:-false}
PY=${PY:-python3}

TABLE=()

# shellcheck source=tests/lib.sh
source "$ROOT/tests/lib.sh"
harness_init abuse

# ---------------------------------------------------------------- tools

[[ -x $BIN ]] || unavailable "daemon binary $BIN is missing (run make build)"
command -v "$PY" >/dev/null 2>&1 || unavailable "$PY is missing"
command -v curl >/dev/null 2>&1 || unavailable "curl is missing"
command -v openssl >/dev/null 2>&1 || unavailable "openssl is missing"
build_tool
ABUSE=$("$ROOT/hack/gotool.sh" tcsabuse "$ROOT/tests/abuse" ./cmd/tcsabuse) ||
	unavailable "could not build tests/abuse/cmd/tcsabuse"
"$ROOT/hack/dev-pki.sh" "$WORK/pki" --ip 127.0.0.1 >"$WORK/out/pki.log" 2>&1 ||
	{ not_ok "dev PKI" "$(tail -3 "$WORK/out/pki.log")"; exit 1; }

# ---------------------------------------------------------------- helpers

# abuse_daemon NAME NOFILE [VAR=VALUE...]: a fresh daemon (tests/lib.sh
# start_daemon) on free loopback ports, its open-file limit set to NOFILE ("-"
# keeps the inherited one). Sets D_PID, D_PORT, D_HTTP, D_LOG. The self-probe
# runs every second and fails /healthz after 3 s, so that the suite can see it speak.
abuse_daemon() {
	local name=$1 nofile=$2
	local -a lim=()
	shift 2
	[[ $nofile == - ]] || lim=(--nofile "$nofile")
	start_daemon "$name" --wait serving --timeout 10 "${lim[@]}" -- CA_CERT_PATH="$WORK/pki/ca.crt" \
		CA_KEY_PATH="$WORK/pki/ca.key" TLS_CERT_PATH="$WORK/pki/server.crt" \
		TLS_KEY_PATH="$WORK/pki/server.key" TOKEN_PATH="$WORK/pki/token" \
		PORT=0 LISTEN_ADDRESS=127.0.0.1 HTTP_ADDR=127.0.0.1:0 LOG_FORMAT=json \
		SHUTDOWN_GRACE=1s HEALTH_PROBE_INTERVAL=1s HEALTH_PROBE_FAIL_AFTER=3s "$@" >/dev/null ||
		{ not_ok "$name: daemon did not start" "$(tail -3 "$D_LOG")"; return 1; }
}

# legit_start NAME: the legitimate worker, one call per second, into $WORK/NAME.calls.
legit_start() {
	L_OUT=$WORK/$1.calls
	L_STOP=$WORK/$1.stop
	: >"$L_OUT"
	"$TOOL" pace --endpoint "127.0.0.1:$D_PORT" --ca "$WORK/pki/ca.crt" \
		--token-file "$WORK/pki/token" --interval 1s --timeout 5s --duration 5m \
		--out "$L_OUT" --stop-file "$L_STOP" >"$WORK/out/$1.pace" 2>&1 &
	L_PID=$!
	BG_PIDS+=("$L_PID")
}

legit_stop() {
	touch "$L_STOP"
	wait "$L_PID" 2>/dev/null || true
}

# calls FROM_MS TO_MS: "n ok pct p50_ms p99_ms" of the calls started in the
# window; a failed call counts as an infinite latency.
calls() { "$PY" - "$L_OUT" "$1" "$2" <<'EOF'
import json, math, sys
path, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [json.loads(l) for l in open(path) if l.strip()]
rows = [r for r in rows if lo <= r["start_ms"] <= hi]
lat = sorted(r["ms"] if r["ok"] else math.inf for r in rows)
ok = sum(1 for r in rows if r["ok"])
def q(p):
    return lat[max(0, math.ceil(p * len(lat)) - 1)] if lat else math.inf
fmt = lambda v: "inf" if v == math.inf else "%.0f" % v
print(len(rows), ok, "%.0f" % (100.0 * ok / len(rows) if rows else 0), fmt(q(0.5)), fmt(q(0.99)))
EOF
}

# first_ok_after FROM_MS: milliseconds from FROM_MS to the end of the first
# successful call started at or after it, or "none".
first_ok_after() { "$PY" - "$L_OUT" "$1" <<'EOF'
import json, sys
path, lo = sys.argv[1], int(sys.argv[2])
for l in open(path):
    if not l.strip():
        continue
    r = json.loads(l)
    if r["ok"] and r["start_ms"] >= lo:
        print("%.0f" % (r["start_ms"] + r["ms"] - lo))
        break
else:
    print("none")
EOF
}

# settle PID MAX_S: waits until the process uses less than 10% of a core
# over a second (or MAX_S pass); prints how many seconds that took.
settle() {
	local pid=$1 max=$2 i a b hz
	hz=$(getconf CLK_TCK)
	for ((i = 0; i < max; i++)); do
		a=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
		sleep 1
		b=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
		((b - a >= hz / 10)) || break
	done
	echo "$i"
}

# reset_peak PID: restarts the kernel's peak-RSS count (VmHWM) from now.
reset_peak() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || true; }

kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
mib() { echo $((${1:-0} / 1024)); }
fsize() { stat -c %s "$1" 2>/dev/null || echo 0; }
healthz() { curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$D_HTTP/healthz" || true; }

# row ATTACK "N OK PCT P50 P99" RSS_TEXT LOG_KB VERDICT: one line of the table.
row() {
	local a=$1 s=$2 rss=$3 logkb=$4 v=$5 n ok pct p50 p99
	read -r n ok pct p50 p99 <<<"$s"
	TABLE+=("$(printf '| %-10s | %3s/%-3s (%3s%%) | %7s | %7s | %-22s | %8s | %-4s |' \
		"$a" "$ok" "$n" "$pct" "$p50" "$p99" "$rss" "$logkb" "$v")")
}

# verdict NAME COND_RESULT...: PASS/FAIL for the table from the assertions just made.
SECTION_FAILED=0
assert() { # assert NAME DETAIL CMD...
	local name=$1 detail=$2
	shift 2
	if "$@"; then ok "$name"; else
		not_ok "$name" "$detail"
		SECTION_FAILED=1
	fi
}
lt() { [[ $1 != inf && $1 != none ]] && awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
ge() { [[ $1 != inf && $1 != none ]] && awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }
verdict() { if ((SECTION_FAILED)); then echo FAIL; else echo pass; fi; }

# conn_bound RSS0_KIB ATTEMPTED: sets BOUND, the RSS (KiB) that the daemon's caps allow
# while ATTEMPTED connections knock: its baseline, plus CONN_KIB for every
# connection it may hold, plus 48 MiB for TLS/HTTP/2 working memory and
# allocator slack. The connections it may hold are the smallest of the
# attempt, its global connection cap (a *MAX_CONNECTIONS* setting of
# --help, default value), and its open-file limit: sets BOUND_CAP to it.
conn_bound() {
	local rss0=$1 tried=$2 cap nofile help
	# --help is read whole first: awk leaving early would SIGPIPE it under pipefail.
	help=$("$BIN" --help 2>&1)
	cap=$(awk '$2 ~ /^[A-Z_]*MAX_CONNECTIONS$/ && $2 !~ /PER_/ && cap == "" {
		for (i = 3; i < NF; i++) if ($i == "[default:") { v = $(i + 1); gsub(/[^0-9]/, "", v); cap = v } }
		END { print cap }' <<<"$help")
	nofile=$(awk '/Max open files/ { print $4 }' "/proc/$D_PID/limits")
	[[ -n $cap ]] || cap=$nofile
	((cap < nofile)) || cap=$nofile
	((cap < tried)) || cap=$tried
	BOUND_CAP=$cap
	BOUND=$((rss0 + cap * CONN_KIB + 48 * 1024))
	CONN_MEM=$((rss0 + cap * CONN_KIB))
}

# ---------------------------------------------------------------- attacks

attack_connect() {
	say "connect: ~1,100 TCP connects, daemon under ulimit -n 1024"
	SECTION_FAILED=0
	abuse_daemon connect 1024 || return 0
	legit_start connect
	sleep 2
	local t0 t1 s first late hz last3
	t0=$(now_ms)
	"$ABUSE" connect --addr "127.0.0.1:$D_PORT" --srcs 64 --count 1100 --hold 2s >"$WORK/out/connect.json" 2>&1 || true
	t1=$(now_ms)
	sleep 12
	legit_stop
	s=$(calls "$t0" "$t1")
	first=$(first_ok_after "$t1")
	late=$(calls $((t1 + 5000)) $((t1 + 12000)))
	assert "connect: a legitimate call succeeds within 5 s after the connects close (took ${first} ms)" \
		"$(cat "$WORK/out/connect.json")" lt "$first" 5000
	read -r _ _ pct _ _ <<<"$late"
	assert "connect: the listener still accepts 5-12 s later (${pct}% of calls ok)" \
		"$(grep -c Failed "$D_LOG" || true) accept failures logged" ge "$pct" 100
	hz=$(healthz)
	last3=$(tail -n 3 "$L_OUT" | grep -c '"ok":true' || true)
	if ((last3 == 3)); then
		assert "connect: /healthz 200 while the port serves (got $hz)" "" test "$hz" = 200
	else
		assert "connect: /healthz 503 while the port is deaf (got $hz)" \
			"the last 3 legitimate calls failed, /healthz answered $hz" test "$hz" = 503
	fi
	row connect "$(calls "$t0" $((t1 + 12000)))" "-" \
		$((($(fsize "$D_LOG") + 1023) / 1024)) "$(verdict)"
	kill_daemon
}

# attack_window NAME ATTACKER_ARGS...: runs the attacker in the foreground
# with RSS and log measured around it. Sets T0 T1 RSS0 HWM LOG0 LOG1.
attack_window() {
	local name=$1
	shift
	RSS0=$(kib "$D_PID" VmRSS)
	LOG0=$(fsize "$D_LOG")
	T0=$(now_ms)
	"$ABUSE" "$@" >"$WORK/out/$name.json" 2>&1 || true
	T1=$(now_ms)
	sleep 2
	HWM=$(kib "$D_PID" VmHWM)
	LOG1=$(fsize "$D_LOG")
}

attack_hpack() {
	say "hpack: 4 connections whose HPACK integer never ends"
	SECTION_FAILED=0
	abuse_daemon hpack - || return 0
	legit_start hpack
	sleep 2
	attack_window hpack hpack --addr "127.0.0.1:$D_PORT" --conns 4 --duration 15s
	legit_stop
	local s pct
	s=$(calls "$T0" "$T1")
	read -r _ _ pct _ _ <<<"$s"
	assert "hpack: >= 95% of legitimate calls during the attack succeed (${pct}%)" \
		"$(cat "$WORK/out/hpack.json")" ge "$pct" 95
	row hpack "$s" "$(mib "$RSS0")->$(mib "$HWM") MiB" $(((LOG1 - LOG0) / 1024)) "$(verdict)"
	kill_daemon
}

attack_rapidreset() {
	say "rapidreset: HEADERS then RST_STREAM, 4 connections, 15 s"
	SECTION_FAILED=0
	abuse_daemon rapidreset - || return 0
	legit_start rapidreset
	sleep 2
	attack_window rapidreset rapidreset --addr "127.0.0.1:$D_PORT" --conns 4 --duration 15s
	legit_stop
	local s p99 grow logb busy
	s=$(calls "$T0" $((T1 + 2000)))
	read -r _ _ _ _ p99 <<<"$s"
	# The log of a backlog is written after the attack: wait for it (30 s at most).
	busy=$(settle "$D_PID" 30)
	HWM=$(kib "$D_PID" VmHWM)
	LOG1=$(fsize "$D_LOG")
	echo "rapidreset: daemon busy for $((busy + 2)) s after the attack stopped"
	grow=$((HWM - RSS0))
	logb=$((LOG1 - LOG0))
	assert "rapidreset: RSS grows < 64 MiB ($(mib "$grow") MiB)" "$(cat "$WORK/out/rapidreset.json")" \
		test "$grow" -lt $((64 * 1024))
	assert "rapidreset: legitimate p99 < 1 s (${p99} ms)" "" lt "$p99" 1000
	assert "rapidreset: log grows < 100 KB ($((logb / 1000)) KB)" "" test "$logb" -lt 100000
	row rapidreset "$s" "$(mib "$RSS0")->$(mib "$HWM") MiB" $((logb / 1024)) "$(verdict)"
	kill_daemon
}

attack_flood() {
	say "flood: 20,000 half-open TLS handshakes, then 5,000 idle HTTP/2 connections"
	SECTION_FAILED=0
	abuse_daemon flood - || return 0
	legit_start flood
	sleep 2
	local rss0 rss1 t0 t1 t2 hwm1 hwm2 bound1 bound2 s pct
	rss0=$(kib "$D_PID" VmRSS)
	LOG0=$(fsize "$D_LOG")
	t0=$(now_ms)
	# Two attacker processes: each holds 10,000 descriptors.
	"$ABUSE" halfopen --addr "127.0.0.1:$D_PORT" --srcs 250 --count 10000 --hold 8s >"$WORK/out/halfopen1.json" 2>&1 &
	local a1=$!
	"$ABUSE" halfopen --addr "127.0.0.1:$D_PORT" --srcs 250 --count 10000 --hold 8s >"$WORK/out/halfopen2.json" 2>&1 || true
	wait "$a1" || true
	t1=$(now_ms)
	hwm1=$(kib "$D_PID" VmHWM)
	conn_bound "$rss0" 20000
	local cap1=$BOUND_CAP conn_mem=$CONN_MEM
	bound1=$BOUND
	sleep 1
	rss1=$(kib "$D_PID" VmRSS)
	reset_peak "$D_PID"
	"$ABUSE" idle --addr "127.0.0.1:$D_PORT" --srcs 250 --count 5000 --hold 8s >"$WORK/out/idle.json" 2>&1 || true
	t2=$(now_ms)
	sleep 2
	legit_stop
	hwm2=$(kib "$D_PID" VmHWM)
	conn_bound "$rss1" 5000
	bound2=$BOUND
	LOG1=$(fsize "$D_LOG")
	assert "flood: half-open peak RSS $(mib "$hwm1") MiB within the bound of $(mib "$bound1") MiB ($cap1 connections x ${CONN_KIB} KiB)" \
		"$(cat "$WORK/out/halfopen1.json" "$WORK/out/halfopen2.json")" test "$hwm1" -le "$bound1"
	assert "flood: idle-HTTP/2 peak RSS $(mib "$hwm2") MiB within the bound of $(mib "$bound2") MiB ($BOUND_CAP connections x ${CONN_KIB} KiB)" \
		"$(cat "$WORK/out/idle.json")" test "$hwm2" -le "$bound2"
	s=$(calls "$t0" "$t2")
	read -r _ _ pct _ _ <<<"$s"
	assert "flood: >= 95% of legitimate calls during the flood succeed (${pct}%)" "" ge "$pct" 95
	# The caps are only worth their name if the connections they admit
	# (baseline + cap x CONN_KIB, no slack) fit the chart's memory limit.
	local limit
	limit=$(awk '/^resources:/ { r = 1 } r && /limits:/ { l = 1 } l && /memory:/ { v = $2; sub(/Mi$/, "", v); print v; exit }' \
		"$ROOT/charts/talos-csr-signer/values.yaml")
	assert "flood: $cap1 connections x ${CONN_KIB} KiB + baseline ($(mib "$conn_mem") MiB) fit the chart's memory limit (${limit} MiB)" "" \
		test "$(mib "$conn_mem")" -le "${limit:-0}"
	row flood "$s" "$(mib "$rss0")->$(mib "$hwm1"), $(mib "$rss1")->$(mib "$hwm2") MiB" $(((LOG1 - LOG0) / 1024)) "$(verdict)"
	kill_daemon
}

attack_slowloris() {
	say "slowloris: 70 connections on the HTTP port"
	SECTION_FAILED=0
	abuse_daemon slowloris - || return 0
	legit_start slowloris
	sleep 1
	"$ABUSE" slowloris --addr "127.0.0.1:$D_HTTP" --conns 70 --duration 14s >"$WORK/out/slowloris.json" 2>&1 &
	local a=$! t0 i answered=0 out code tt worst=0
	sleep 2
	t0=$(now_ms)
	for ((i = 0; i < 10; i++)); do
		out=$(curl -s -o /dev/null -m 1 -w '%{http_code} %{time_total}' "http://127.0.0.1:$D_HTTP/healthz" || true)
		read -r code tt <<<"$out"
		[[ $code == 200 ]] && answered=$((answered + 1))
		tt=$(awk -v t="${tt:-1}" 'BEGIN { printf "%d", t * 1000 }')
		((tt > worst)) && worst=$tt
		sleep 1
	done
	wait "$a" || true
	legit_stop
	assert "slowloris: /healthz answered 200 within 1 s to $answered of 10 probes (slowest ${worst} ms)" \
		"$(cat "$WORK/out/slowloris.json")" test "$answered" -eq 10
	row slowloris "$(calls "$t0" "$(now_ms)")" "probes $answered/10" "-" "$(verdict)"
	kill_daemon
}

attack_bigexp() {
	say "bigexp: RSA-3072 CSRs with a 3,064-bit public exponent, with the token"
	SECTION_FAILED=0
	abuse_daemon bigexp - || return 0
	legit_start bigexp
	sleep 2
	attack_window bigexp bigexp --addr "127.0.0.1:$D_PORT" --token-file "$WORK/pki/token" --conns 4 --duration 15s
	legit_stop
	local s p99
	s=$(calls "$T0" "$T1")
	read -r _ _ _ _ p99 <<<"$s"
	assert "bigexp: legitimate p99 < 1 s (${p99} ms)" "$(cat "$WORK/out/bigexp.json")" lt "$p99" 1000
	row bigexp "$s" "$(mib "$RSS0")->$(mib "$HWM") MiB" $(((LOG1 - LOG0) / 1024)) "$(verdict)"
	kill_daemon
}

for s in $SECTIONS; do
	case $s in
	connect | hpack | rapidreset | flood | slowloris | bigexp) "attack_$s" ;;
	*)
		echo "unknown section $s" >&2
		exit 2
		;;
	esac
done

say "outcomes ($("$BIN" --version 2>/dev/null | head -1))"
echo "| attack     | legitimate ok  | p50 ms  | p99 ms  | RSS before->peak       | log KiB  |      |"
echo "| ---        | ---            | ---     | ---     | ---                    | ---      | ---  |"
printf '%s\n' "${TABLE[@]}"
harness_finish
