#!/usr/bin/env bash
# Operability suite: the /healthz /readyz /metrics listener, policy refusals
# and their audit records, the per-address rate limit and its bounded memory,
# and the `request` and `check` subcommands, all against the built daemon on
# loopback addresses with throwaway PKIs (hack/dev-pki.sh, openssl ca).
#
# Environment:
#   TCS_BIN      daemon binary (default build/talos-csr-signer, relative to the repo root)
#   TCS_CACHE    cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer);
#                the Python venv (prometheus_client, h2 from PyPI) lives in venv-ops,
#                promtool (hack/k8s/tools.sh) in tools/
#   OPS_SECTIONS space-separated subset of: metrics readiness policy ratelimit memory request check
#   OPS_SPRAY    source addresses per round of the memory test (default 3000; two rounds)
#   KEEP_WORK    1: keep the scratch directory (it is always kept when something failed)
#   CI           true: a missing tool is a failure, never a skip
#
# Ends with "ops: N passed, M failed, K skipped" (tests/lib.sh); exits non-zero when anything failed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/tests/ops
CACHE=${TCS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer}
VENV=$CACHE/venv-ops
BIN=${TCS_BIN:-build/talos-csr-signer}
[[ $BIN == /* ]] || BIN=$ROOT/$BIN
SECTIONS=${OPS_SECTIONS:-metrics readiness policy ratelimit memory request check}
SPRAY=${OPS_SPRAY:-3000}
CI=${CI:-false}
PROMETHEUS_CLIENT=0.26.0
H2=4.4.1

# shellcheck source=tests/lib.sh
. "$ROOT/tests/lib.sh"
harness_init ops

# ---------------------------------------------------------------- tools

setup_venv() {
	if ! "$VENV/bin/python" -c 'import prometheus_client, h2' 2>/dev/null; then
		echo "installing prometheus_client==$PROMETHEUS_CLIENT h2==$H2 into $VENV"
		rm -rf "$VENV"
		if ! python3 -m venv "$VENV" >"$WORK/venv.log" 2>&1; then
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >>"$WORK/venv.log" 2>&1 || true
			python3 -m venv "$VENV" >>"$WORK/venv.log" 2>&1 || true
		fi
		"$VENV/bin/pip" install -q --disable-pip-version-check \
			"prometheus_client==$PROMETHEUS_CLIENT" "h2==$H2" >>"$WORK/venv.log" 2>&1 || true
	fi
	if "$VENV/bin/python" -c 'import prometheus_client, h2' 2>/dev/null; then
		PY=$VENV/bin/python
		return 0
	fi
	skip_or_fail "PyPI prometheus_client/h2 could not be installed (see $WORK/venv.log)"
	return 1
}

for tool in openssl curl python3; do
	if ! command -v "$tool" >/dev/null; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$tool" >/dev/null 2>&1 ||
			{ apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$tool" >/dev/null 2>&1; } || true
	fi
done
if [[ ! -x $BIN ]]; then
	unavailable "daemon binary $BIN not built (make build)"
fi
PY=
setup_venv || true
# promtool (Prometheus's linter), built once into the tool cache; only when
# the metrics section runs.
PROMTOOL=
if [[ " $SECTIONS " == *" metrics "* ]]; then
	if env_lines=$(TCS_TOOLS_ONLY=promtool "$ROOT/hack/k8s/tools.sh" 2>"$WORK/promtool.log"); then
		eval "$env_lines"
	else
		tail -n 5 "$WORK/promtool.log"
	fi
	[[ -x ${PROMTOOL:-} ]] || PROMTOOL=
fi

# ---------------------------------------------------------------- PKI

dev_pki() { # DIR ARGS...
	"$ROOT/hack/dev-pki.sh" "$@" >/dev/null
}

# utc OFFSET_SECONDS: an openssl-ca date (YYMMDDHHMMSSZ) relative to now.
utc() { date -u -d "@$(($(date +%s) + $1))" +%y%m%d%H%M%SZ; }

# ca_conf DIR: a minimal `openssl ca` setup in DIR (for certificates with exact dates).
ca_conf() {
	local d=$1
	mkdir -p "$d/new"
	: >"$d/index.txt"
	echo 1000 >"$d/serial"
	cat >"$d/ca.cnf" <<-EOF
	[ca]
	default_ca = d
	[d]
	database = $d/index.txt
	new_certs_dir = $d/new
	serial = $d/serial
	default_md = sha256
	policy = p
	unique_subject = no
	email_in_dn = no
	[p]
	commonName = optional
	organizationName = optional
	[v3ca]
	basicConstraints = critical,CA:TRUE
	keyUsage = critical,keyCertSign,digitalSignature
	subjectKeyIdentifier = hash
	[v3leaf]
	basicConstraints = CA:FALSE
	keyUsage = critical,digitalSignature
	extendedKeyUsage = serverAuth
	subjectAltName = \${ENV::LEAF_SAN}
	authorityKeyIdentifier = keyid
	EOF
}

# dated_ca DIR FROM TO: self-signed ECDSA CA valid FROM..TO seconds from now.
dated_ca() {
	local d=$1
	ca_conf "$d"
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/ca.key" 2>/dev/null
	openssl req -new -key "$d/ca.key" -subj "/O=talos" -out "$d/ca.csr" 2>/dev/null
	LEAF_SAN=IP:127.0.0.1 openssl ca -batch -notext -config "$d/ca.cnf" -selfsign -keyfile "$d/ca.key" \
		-in "$d/ca.csr" -startdate "$(utc "$2")" -enddate "$(utc "$3")" -extensions v3ca \
		-out "$d/ca.crt" 2>"$d/ca.err"
}

# dated_leaf CADIR KEY OUT FROM TO [SAN]: serving certificate for KEY signed by CADIR's CA.
dated_leaf() {
	local d=$1 key=$2 out=$3
	openssl req -new -key "$key" -subj "/CN=talos-csr-signer" -out "$out.csr" 2>/dev/null
	LEAF_SAN=${6:-IP:127.0.0.1} openssl ca -batch -notext -config "$d/ca.cnf" -cert "$d/ca.crt" \
		-keyfile "$d/ca.key" -in "$out.csr" -startdate "$(utc "$4")" -enddate "$(utc "$5")" \
		-extensions v3leaf -out "$out.tmp" 2>"$out.err"
	mv "$out.tmp" "$out"
}

# pki_env DIR: the daemon settings for a dev-pki directory.
pki_env() {
	echo "CA_CERT_PATH=$1/ca.crt CA_KEY_PATH=$1/ca.key TLS_CERT_PATH=$1/server.crt TLS_KEY_PATH=$1/server.key TOKEN_PATH=$1/token"
}

# ---------------------------------------------------------------- daemon

# ops_daemon NAME PKI_DIR [VAR=VALUE...]: the daemon (tests/lib.sh start_daemon)
# serving on free loopback ports (gRPC and HTTP both ask the kernel for port 0
# and are read back from the log). Sets D_PID, D_PORT, D_HTTP, D_LOG.
ops_daemon() {
	local name=$1 pki=$2
	shift 2
	# shellcheck disable=SC2046
	start_daemon "$name" --wait serving --timeout 10 -- $(pki_env "$pki") PORT=0 LISTEN_ADDRESS=127.0.0.1 \
		HTTP_ADDR=127.0.0.1:0 LOG_FORMAT=json LOG_LEVEL=info SHUTDOWN_GRACE=1s "$@" >"$WORK/out/start-$name" ||
		{ not_ok "daemon $name did not start" "$(cat "$D_LOG")"; return 1; }
}

# ops_stop PID: SIGTERM and wait (the exit status is not asserted here).
ops_stop() { stop_daemon "$1" >/dev/null || true; }

# scrape PORT OUT: /metrics through prometheus_client's parser.
scrape() { "$PY" "$HERE/metrics.py" "http://127.0.0.1:$1/metrics" >"$2"; }

# promtool_metrics PORT: `promtool check metrics` (Prometheus's own linter)
# on whatever /metrics exposes: naming, units, HELP, types. Any finding fails.
promtool_metrics() {
	local out
	out=$(curl -sf "http://127.0.0.1:$1/metrics" | "$PROMTOOL" check metrics 2>&1) || { echo "$out"; return 1; }
	[[ -z $out ]] || { echo "$out"; return 1; }
}

# metric PORT 'sample{labels}': its value from a fresh scrape (empty if absent).
metric() {
	local f=$WORK/scrape.$$.txt
	scrape "$1" "$f" || return 1
	awk -v k="$2" '$1 == k { print $2 }' "$f"
}

# wait_metric PORT SAMPLE MIN: wait up to 8s until SAMPLE >= MIN.
wait_metric() {
	local i v
	for ((i = 0; i < 80; i++)); do
		v=$(metric "$1" "$2" || true)
		if [[ -n $v ]] && awk -v v="$v" -v m="$3" 'BEGIN { exit !(v >= m) }'; then
			return 0
		fi
		sleep 0.1
	done
	echo "$2 = ${v:-absent}, want >= $3"
	return 1
}

# readyz PORT: "CODE BODY"
readyz() { curl -s -o "$WORK/readyz.body" -w '%{http_code}' "http://127.0.0.1:$1/readyz"; echo " $(cat "$WORK/readyz.body")"; }

# audit LOG REGEX...: some "msg":"audit" record matches every regex.
audit() {
	local f=$1 line re ok
	shift
	while IFS= read -r line; do
		ok=1
		for re in "$@"; do
			[[ $line =~ $re ]] || { ok=0; break; }
		done
		[[ $ok == 1 ]] && return 0
	done < <(grep '"msg":"audit"' "$f")
	echo "no audit record in $f matches: $*"
	grep '"msg":"audit"' "$f" | tail -n 5
	return 1
}

# request ARGS...: the subcommand under test.
request() { "$BIN" request "$@"; }


# ---------------------------------------------------------------- sections

PKI=$WORK/pki
dev_pki "$PKI"
OTHER=$WORK/other
dev_pki "$OTHER"

section_metrics() {
	say "metrics: parsed by prometheus_client, values move with requests"
	[[ -n $PY ]] || { skip_or_fail "metrics: no Python venv"; return 0; }
	ops_daemon metrics "$PKI" || return 0
	local s=$WORK/m0.txt s2=$WORK/m1.txt ca_na tls_na
	check "metrics: /metrics parses with prometheus_client" scrape "$D_HTTP" "$s"
	check "metrics: every family has its Prometheus type" has "$s" \
		'^TYPE talos_csr_signer_build_info gauge$' \
		'^TYPE talos_csr_signer_requests counter$' \
		'^TYPE talos_csr_signer_signing_duration_seconds histogram$' \
		'^TYPE talos_csr_signer_credential_generation gauge$' \
		'^TYPE talos_csr_signer_certificate_expiry_timestamp_seconds gauge$' \
		'^TYPE talos_csr_signer_credential_last_reload_success gauge$' \
		'^TYPE talos_csr_signer_credential_last_reload_timestamp_seconds gauge$' \
		'^TYPE process_cpu_seconds counter$' \
		'^TYPE process_resident_memory_bytes gauge$' \
		'^TYPE process_open_fds gauge$' \
		'^TYPE process_max_fds gauge$' \
		'^TYPE process_start_time_seconds gauge$' \
		'^TYPE talos_csr_signer_credential_reloads counter$' \
		'^TYPE talos_csr_signer_watch_restarts counter$' \
		'^TYPE talos_csr_signer_events_posted counter$' \
		'^TYPE talos_csr_signer_events_dropped counter$'
	check "metrics: build info, generation 1, one successful load" has "$s" \
		'^talos_csr_signer_build_info\{commit="[^"]+",version="[0-9][^"]*"\} 1.0$' \
		'^talos_csr_signer_credential_generation\{\} 1.0$' \
		'^talos_csr_signer_credential_reloads_total\{result="success"\} 1.0$' \
		'^talos_csr_signer_requests_total\{result="issued"\} 0.0$'
	ca_na=$(date -u -d "$(openssl x509 -in "$PKI/ca.crt" -noout -enddate | cut -d= -f2)" +%s)
	tls_na=$(date -u -d "$(openssl x509 -in "$PKI/server.crt" -noout -enddate | cut -d= -f2)" +%s)
	check "metrics: expiry timestamps are the certificates' notAfter" has "$s" \
		"^talos_csr_signer_certificate_expiry_timestamp_seconds\\{certificate=\"ca\"\\} $ca_na.0$" \
		"^talos_csr_signer_certificate_expiry_timestamp_seconds\\{certificate=\"serving\"\\} $tls_na.0$"
	check "metrics: the files source's last reload succeeded" has "$s" \
		'^talos_csr_signer_credential_last_reload_success\{source="files"\} 1.0$' \
		'^talos_csr_signer_credential_last_reload_timestamp_seconds\{source="files"\} [0-9.e+]+$'
	check "metrics: process metrics are the daemon's own" awk -v pid="$D_PID" \
		-v fds="$(ls "/proc/$D_PID/fd" | wc -l)" \
		-v rss="$(awk '/^VmRSS/ { print $2 * 1024 }' "/proc/$D_PID/status")" '
		$1 == "process_open_fds{}" { f = ($2 > 0 && $2 <= fds + 2 && $2 >= fds - 2) }
		$1 == "process_resident_memory_bytes{}" { r = ($2 > rss / 2 && $2 < rss * 2) }
		$1 == "process_start_time_seconds{}" { t = ($2 > systime() - 120 && $2 <= systime() + 1) }
		END { exit !(f && r && t) }' "$s"
	check "metrics: every exposed family is listed in docs/operations.md" \
		"$PY" - "$s" "$ROOT/docs/operations.md" <<-'PY'
			import re, sys
			fams = {l.split()[1] for l in open(sys.argv[1]) if l.startswith("TYPE ")}
			doc = open(sys.argv[2]).read()
			table = doc[doc.index("## Metrics"):doc.index("## Troubleshooting")]
			listed = set(re.findall(r"`([a-z_]+)[{`]", table))
			# prometheus_client names a counter family without its _total suffix.
			missing = sorted(f for f in fams if f not in listed and f + "_total" not in listed)
			if missing:
			    sys.exit("not in docs/operations.md: %s" % missing)
		PY
	if [[ -n $PROMTOOL ]]; then
		check "metrics: promtool check metrics finds no problem" promtool_metrics "$D_HTTP"
	else
		skip_or_fail "metrics: promtool not built (hack/k8s/tools.sh TCS_TOOLS_ONLY=promtool)"
	fi

	request --endpoint "127.0.0.1:$D_PORT" --ca "$PKI/ca.crt" --token-file "$PKI/token" --cn m1 >/dev/null 2>&1 || true
	request --endpoint "127.0.0.1:$D_PORT" --ca "$PKI/ca.crt" --token-file "$PKI/token" --cn m2 --key-type ecdsa >/dev/null 2>&1 || true
	request --endpoint "127.0.0.1:$D_PORT" --ca "$PKI/ca.crt" --token-file "$OTHER/token" --cn m3 >/dev/null 2>&1 || true
	check "metrics: /metrics still parses after requests" scrape "$D_HTTP" "$s2"
	check "docs: the audit example of docs/operations.md has the fields and types of a real record" \
		"$PY" - "$ROOT/docs/operations.md" "$D_LOG" <<-'PY'
			import json, re, sys
			doc = open(sys.argv[1]).read()
			ex = json.loads(re.search(r'^(\{.*"msg":"audit".*\})$', doc, re.M).group(1))
			real = next(json.loads(l) for l in open(sys.argv[2])
			            if '"msg":"audit"' in l and '"outcome":"issued"' in l)
			shape = lambda d: {k: type(v).__name__ for k, v in d.items()}
			if shape(ex) != shape(real):
			    sys.exit("doc %s\nreal %s" % (shape(ex), shape(real)))
			assert ":" not in real["peer"] or real["peer"].count(":") > 1, "peer carries a port"
		PY
	check "metrics: counters and the histogram moved" has "$s2" \
		'^talos_csr_signer_requests_total\{result="issued"\} 2.0$' \
		'^talos_csr_signer_requests_total\{result="unauthenticated"\} 1.0$' \
		'^talos_csr_signer_signing_duration_seconds_count\{\} 2.0$' \
		'^talos_csr_signer_signing_duration_seconds_bucket\{le="\+Inf"\} 2.0$'
	check "metrics: the signing time sum is positive" awk '$1 == "talos_csr_signer_signing_duration_seconds_sum{}" { found = 1; exit !($2 > 0) } END { if (!found) exit 1 }' "$s2"
	if [[ -n $PROMTOOL ]]; then
		check "metrics: promtool check metrics after requests" promtool_metrics "$D_HTTP"
	fi
	check "metrics: the self-probe of the gRPC port passed and is exported" has "$s2" \
		'^TYPE talos_csr_signer_self_probe_up gauge$' \
		'^talos_csr_signer_self_probe_up\{\} 1.0$' \
		'^talos_csr_signer_self_probe_total\{result="failure"\} 0.0$'
	check "metrics: /healthz answers ok" bash -c "[[ \$(curl -s http://127.0.0.1:$D_HTTP/healthz) == ok ]]"
	check "metrics: unknown path is 404" bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$D_HTTP/nope) == 404 ]]"
	ops_stop "$D_PID"
}

section_readiness() {
	say "readiness: flips as credentials break and appear again"
	[[ -n $PY ]] || { skip_or_fail "readiness: no Python venv"; return 0; }
	local R=$WORK/ready
	dev_pki "$R" --family ecdsa
	ca_conf "$R"
	ops_daemon ready "$R" || return 0
	local h=$D_HTTP r
	check "readiness: /healthz 200" bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$h/healthz) == 200 ]]"
	r=$(readyz "$h")
	check "readiness: ready with valid credentials ($r)" test "$r" = "200 ready"

	# A broken file keeps the last good credentials: still ready, failure counted.
	cp "$R/server.crt" "$R/server.crt.good"
	echo "garbage" >"$R/server.crt.new" && mv "$R/server.crt.new" "$R/server.crt"
	check "readiness: a broken serving certificate is counted as a failed reload" \
		wait_metric "$h" 'talos_csr_signer_credential_reloads_total{result="failure"}' 1
	check "readiness: ... and the files source's last reload is a failure" \
		bash -c "[[ \$(curl -s http://127.0.0.1:$h/metrics | awk '/^talos_csr_signer_credential_last_reload_success\\{source=\"files\"\\}/ { print \$2 }') == 0 ]]"
	r=$(readyz "$h")
	check "readiness: still ready on the last good credentials ($r)" test "$r" = "200 ready"
	check "readiness: the refusal is audited as CredentialsInvalid" has "$D_LOG" '"reason":"CredentialsInvalid"'

	# A serving certificate that expires in a few seconds: loaded, then expired.
	dated_leaf "$R" "$R/server.key" "$R/server.crt" -60 6
	check "readiness: the short-lived certificate is loaded (generation 2)" \
		wait_metric "$h" 'talos_csr_signer_credential_generation{}' 2
	r=$(readyz "$h")
	check "readiness: ready while it is valid ($r)" test "$r" = "200 ready"
	sleep 7
	r=$(readyz "$h")
	check "readiness: 503 with the reason once it has expired ($r)" \
		bash -c "[[ '$r' == '503 not ready: serving certificate expired'* ]]"

	# Valid credentials appear again.
	dated_leaf "$R" "$R/server.key" "$R/server.crt" -60 86400
	check "readiness: the renewed certificate is loaded (generation 3)" \
		wait_metric "$h" 'talos_csr_signer_credential_generation{}' 3
	r=$(readyz "$h")
	check "readiness: ready again ($r)" test "$r" = "200 ready"
	ops_stop "$D_PID"
	check "readiness: SIGTERM exits 0 and stops the listener" bash -c \
		"! curl -s -m 2 http://127.0.0.1:$h/healthz >/dev/null"
}

section_policy() {
	say "policy: each rule refuses with PERMISSION_DENIED, is audited and counted"
	ops_daemon policy "$PKI" MAX_CSR_BYTES=2048 MAX_SANS=4 ALLOWED_KEY_TYPES=ed25519,rsa MIN_RSA_BITS=3072 || return 0
	local p=$D_PORT log=$D_LOG h=$D_HTTP
	local -a base=(--endpoint "127.0.0.1:$p" --ca "$PKI/ca.crt" --token-file "$PKI/token" --json)
	local -a big=()
	local i
	for ((i = 0; i < 40; i++)); do big+=(--dns "name-$i.a-rather-long-domain-name.example.org"); done

	expect_exit "policy: a CSR over MAX_CSR_BYTES is refused" 9 request "${base[@]}" --cn big "${big[@]}"
	check "policy: ... with PERMISSION_DENIED and the reason" has "$LAST_OUT" 'PERMISSION_DENIED: CSR refused by policy: CSR too large'
	check "policy: ... and audited as PolicyDenied" audit "$log" '"outcome":"rejected"' '"reason":"PolicyDenied"' 'CSR too large'

	expect_exit "policy: more SANs than MAX_SANS are refused" 9 request "${base[@]}" --cn sans --dns a --dns b --dns c --ip 10.0.0.1 --ip 10.0.0.2
	check "policy: ... with PERMISSION_DENIED and the reason" has "$LAST_OUT" 'PERMISSION_DENIED: CSR refused by policy: 5 SANs exceed the limit of 4'
	check "policy: ... and audited with the CSR's CN and SANs" audit "$log" '"reason":"PolicyDenied"' '"cn":"sans"' '"sans":\["a","b","c","10.0.0.1","10.0.0.2"\]' 'exceed the limit'

	expect_exit "policy: a key type outside ALLOWED_KEY_TYPES is refused" 9 request "${base[@]}" --cn ec --key-type ecdsa
	check "policy: ... with PERMISSION_DENIED and the reason" has "$LAST_OUT" 'PERMISSION_DENIED: CSR refused by policy: key type ecdsa-p256 not allowed'
	check "policy: ... and audited with the key type" audit "$log" '"reason":"PolicyDenied"' '"key_type":"ecdsa-p256"' 'not allowed'

	expect_exit "policy: an RSA key below MIN_RSA_BITS is refused" 9 request "${base[@]}" --cn rsa --key-type rsa --rsa-bits 2048
	check "policy: ... with PERMISSION_DENIED and the reason" has "$LAST_OUT" 'PERMISSION_DENIED: CSR refused by policy: RSA key of 2048 bits is below 3072'
	check "policy: ... and audited" audit "$log" '"reason":"PolicyDenied"' '"key_type":"rsa"' 'below 3072'

	expect_exit "policy: a CSR within every limit is issued" 0 request "${base[@]}" --cn fine --dns a --ip 10.0.0.1
	expect_exit "policy: an RSA key at MIN_RSA_BITS is issued" 0 request "${base[@]}" --cn rsa3072 --key-type rsa --rsa-bits 3072
	[[ -n $PY ]] && check "policy: refusals are counted as policy_denied" \
		wait_metric "$h" 'talos_csr_signer_requests_total{result="policy_denied"}' 4
	ops_stop "$D_PID"

	ops_daemon peer "$PKI" REQUIRE_PEER_IP_SAN=true || return 0
	base=(--endpoint "127.0.0.1:$D_PORT" --ca "$PKI/ca.crt" --token-file "$PKI/token" --json)
	expect_exit "policy: REQUIRE_PEER_IP_SAN refuses a CSR without the caller's address" 9 request "${base[@]}" --cn far --ip 192.0.2.10
	check "policy: ... with PERMISSION_DENIED and the reason" has "$LAST_OUT" "PERMISSION_DENIED: CSR refused by policy: caller address is not among the CSR's IP SANs"
	check "policy: ... and audited with the peer" audit "$D_LOG" '"reason":"PolicyDenied"' '"peer":"127.0.0.1"' '"cn":"far"'
	expect_exit "policy: REQUIRE_PEER_IP_SAN issues when the caller's address is an IP SAN" 0 request "${base[@]}" --cn near --ip 127.0.0.1
	ops_stop "$D_PID"
}

section_ratelimit() {
	say "rate limit: a burst from one source address is limited, another address is served"
	[[ -n $PY ]] || { skip_or_fail "ratelimit: no Python venv (h2 client)"; return 0; }
	ops_daemon ratelimit "$PKI" RATE_LIMIT_RPS=0.1 RATE_LIMIT_BURST=3 || return 0
	local p=$D_PORT h=$D_HTTP log=$D_LOG out
	openssl genpkey -algorithm ed25519 -out "$WORK/rl.key" 2>/dev/null
	openssl req -new -key "$WORK/rl.key" -subj /CN=rl-worker -out "$WORK/rl.csr" 2>/dev/null
	local -a call=("$PY" "$HERE/grpc_h2.py" call --target "127.0.0.1:$p" --ca "$PKI/ca.crt" --token-file "$PKI/token" --csr "$WORK/rl.csr")

	out=$("${call[@]}" --source 127.0.0.2 --count 6 2>&1 | tr '\n' ' ' || true)
	check "ratelimit: 127.0.0.2 gets its burst of 3, then RESOURCE_EXHAUSTED ($out)" test "$out" = "0 0 0 8 8 8 "
	out=$("${call[@]}" --source 127.0.0.3 --count 1 2>&1 | tr '\n' ' ' || true)
	check "ratelimit: 127.0.0.3 is still served ($out)" test "$out" = "0 "
	out=$("${call[@]}" --source 127.0.0.2 --count 1 2>&1 | tr '\n' ' ' || true)
	check "ratelimit: 127.0.0.2 stays limited on a new connection ($out)" test "$out" = "8 "
	check "ratelimit: refusals are audited as RateLimited with the source address" \
		audit "$log" '"peer":"127.0.0.2"' '"outcome":"rejected"' '"reason":"RateLimited"'
	check "ratelimit: refusals are counted by result" wait_metric "$h" 'talos_csr_signer_requests_total{result="rate_limited"}' 4

	# The request subcommand from 127.0.0.1: three issued, then exit 10.
	local i rc codes=""
	for ((i = 0; i < 4; i++)); do
		rc=0
		request --endpoint "127.0.0.1:$p" --ca "$PKI/ca.crt" --token-file "$PKI/token" --cn "burst-$i" >"$WORK/out/rl-req-$i" 2>&1 || rc=$?
		codes="$codes$rc "
	done
	check "ratelimit: request exits 10 once rate limited ($codes)" test "$codes" = "0 0 0 10 "
	check "ratelimit: ... naming RESOURCE_EXHAUSTED" has "$WORK/out/rl-req-3" 'rate limited \(exit 10\): RESOURCE_EXHAUSTED'
	ops_stop "$D_PID"
}

section_memory() {
	say "rate limit: memory stays bounded under many source addresses ($SPRAY x 2)"
	[[ -n $PY ]] || { skip_or_fail "memory: no Python venv (h2 client)"; return 0; }
	ops_daemon memory "$PKI" RATE_LIMIT_RPS=1 RATE_LIMIT_BURST=5 || return 0
	local p=$D_PORT h=$D_HTTP pid=$D_PID r0 r1 r2 out1 out2
	local -a spray=("$PY" "$HERE/grpc_h2.py" spray --target "127.0.0.1:$p" --ca "$PKI/ca.crt" --threads 4)
	# Warm-up so that gRPC's and OpenSSL's lazily built state is in the baseline.
	"${spray[@]}" --first 200000 --count 300 >/dev/null 2>&1 || true
	r0=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
	out1=$("${spray[@]}" --first 0 --count "$SPRAY" 2>&1 || true)
	r1=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
	out2=$("${spray[@]}" --first "$SPRAY" --count "$SPRAY" 2>&1 || true)
	r2=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
	echo "      VmRSS: ${r0} kB after warm-up, ${r1} kB after $SPRAY addresses, ${r2} kB after $((2 * SPRAY))"
	check "memory: every sprayed call reached the daemon (round 1: $out1)" test "$out1" = "{\"16\": $SPRAY}"
	check "memory: ... round 2 ($out2)" test "$out2" = "{\"16\": $SPRAY}"
	check "memory: the daemon saw $((2 * SPRAY)) distinct source addresses" bash -c \
		"[[ \$(grep -o '\"peer\":\"127\\.[0-9]*\\.[0-9]*\\.[0-9]*\"' '$D_LOG' | sort -u | wc -l) -ge $((2 * SPRAY)) ]]"
	# The exact bound (a fixed table) is asserted in tests/unit/test_ratelimit.c;
	# here the whole process must not grow with the number of callers.
	check "memory: RSS grew less than 8 MiB over $((2 * SPRAY)) addresses ($r0 -> $r2 kB)" test $((r2 - r0)) -lt 8192
	check "memory: the second round ($SPRAY new addresses) added less than 2 MiB ($r1 -> $r2 kB)" test $((r2 - r1)) -lt 2048
	check "memory: none of them was rate limited (fresh buckets)" bash -c \
		"[[ \$(curl -s http://127.0.0.1:$h/metrics | awk '/^talos_csr_signer_requests_total\\{result=\"rate_limited\"\\}/ { print \$2 }') == 0 ]]"
	ops_stop "$pid"
}

section_request() {
	say "request: each key family, and each failure mode with its exit code"
	local fam ca_fam
	ops_daemon req "$PKI" || return 0
	local p=$D_PORT h=$D_HTTP log=$D_LOG
	local -a base=(--endpoint "127.0.0.1:$p" --ca "$PKI/ca.crt" --token-file "$PKI/token")
	for fam in ed25519 ecdsa rsa; do
		expect_exit "request: $fam key against an Ed25519 CA" 0 request "${base[@]}" --key-type "$fam" --rsa-bits 2048 \
			--cn "worker-$fam" --dns "worker-$fam" --ip 10.0.0.5 --json
		check "request: ... JSON summary" has "$LAST_OUT" '"ok":true' "\"subject\":\"CN=worker-$fam\"" \
			'"sans":\["DNS:worker-'"$fam"'","IP:10.0.0.5"\]' '"issuer":"O=talos"' '"lifetime_seconds":86460' '"key_type":"(ed25519|ecdsa-p256|rsa)"'
	done
	expect_exit "request: human summary, Organization stripped" 0 request "${base[@]}" --cn w --org os:admin
	check "request: ... summary lines" has "$LAST_OUT" '^subject +CN=w$' '^issuer +O=talos$' '^serial +[0-9a-f]{20,}$' '^result +ok'
	check "request: ... audited as issued with org_removed" audit "$log" '"cn":"w"' '"outcome":"issued"' '"org_removed":true'
	TALOS_TOKEN=$(cat "$PKI/token") expect_exit "request: token from TALOS_TOKEN" 0 request --endpoint "127.0.0.1:$p" --ca "$PKI/ca.crt" --cn env
	expect_exit "request: first endpoint down, second used" 0 \
		request --endpoint "127.0.0.1:$(free_port)" --endpoint "127.0.0.1:$p" --ca "$PKI/ca.crt" --token-file "$PKI/token" --json
	check "request: ... the failed endpoint is reported" has "$LAST_OUT" '"failed_attempts":\[\{"endpoint":"127.0.0.1:[0-9]+","exit_code":4'

	for ca_fam in ecdsa rsa; do
		local d=$WORK/pki-$ca_fam
		dev_pki "$d" --family "$ca_fam"
		ops_daemon "req-$ca_fam" "$d" || continue
		expect_exit "request: against an $ca_fam CA (key follows the CA, as Talos 1.11)" 0 \
			request --endpoint "127.0.0.1:$D_PORT" --ca "$d/ca.crt" --token-file "$d/token" --key-type "$ca_fam" --rsa-bits 2048 --cn "w-$ca_fam" --json
		check "request: ... issued" has "$LAST_OUT" '"ok":true'
		ops_stop "$D_PID"
	done

	# Failure modes, one exit code each.
	expect_exit "request: usage error" 2 request --endpoint "127.0.0.1:$p"
	expect_exit "request: an endpoint that is not an IP" 2 request --endpoint signer.example.org --ca "$PKI/ca.crt"
	expect_exit "request: no token" 3 env -u TALOS_TOKEN "$BIN" request "${base[@]:0:4}"
	expect_exit "request: unreadable --ca" 3 request --endpoint "127.0.0.1:$p" --ca "$WORK/nope.crt" --token-file "$PKI/token"
	expect_exit "request: connection refused" 4 request --endpoint "127.0.0.1:$(free_port)" --ca "$PKI/ca.crt" --token-file "$PKI/token"
	expect_exit "request: TLS handshake against a plain-HTTP port" 5 request --endpoint "127.0.0.1:$h" --ca "$PKI/ca.crt" --token-file "$PKI/token"
	expect_exit "request: CA not accepted" 6 request --endpoint "127.0.0.1:$p" --ca "$OTHER/ca.crt" --token-file "$PKI/token"
	check "request: ... says so" has "$LAST_OUT" 'CA not accepted'
	expect_exit "request: token refused" 8 request --endpoint "127.0.0.1:$p" --ca "$PKI/ca.crt" --token-file "$OTHER/token"
	check "request: ... says UNAUTHENTICATED" has "$LAST_OUT" 'token refused \(exit 8\): UNAUTHENTICATED: invalid token'
	check "request: ... audited as AuthenticationFailed" audit "$log" '"reason":"AuthenticationFailed"' 'invalid token'
	expect_exit "request: all endpoints fail: the last one's code" 4 request --endpoint "127.0.0.1:$p" \
		--endpoint "127.0.0.1:$(free_port)" --ca "$OTHER/ca.crt" --token-file "$PKI/token"
	ops_stop "$D_PID"

	# TLS name mismatch: the serving certificate is for 127.0.0.9 only.
	local nm=$WORK/pki-name
	dev_pki "$nm" --ip 127.0.0.9
	if ops_daemon name "$nm"; then
		expect_exit "request: TLS name mismatch (no IP SAN for the dialed address)" 7 \
			request --endpoint "127.0.0.1:$D_PORT" --ca "$nm/ca.crt" --token-file "$nm/token"
		check "request: ... names the certificate's IPs" has "$LAST_OUT" 'valid for IP 127.0.0.9, not 127.0.0.1'
		ops_stop "$D_PID"
	fi

	# Fake signers for what the real one never does.
	if [[ -n $PY ]]; then
		local mode port want
		for mode in noalpn:5 silent:11 badcrt:12; do
			want=${mode#*:}
			mode=${mode%:*}
			rm -f "$WORK/fake.port"
			"$PY" "$HERE/grpc_h2.py" serve --cert "$PKI/server.crt" --key "$PKI/server.key" --ca "$PKI/ca.crt" \
				--mode "$mode" --port-file "$WORK/fake.port" 2>"$WORK/fake-$mode.log" &
			BG_PIDS+=("$!")
			local fpid=$! i
			for ((i = 0; i < 50; i++)); do [[ -s $WORK/fake.port ]] && break; sleep 0.1; done
			port=$(cat "$WORK/fake.port" 2>/dev/null || echo 1)
			expect_exit "request: fake signer '$mode'" "$want" request --endpoint "127.0.0.1:$port" \
				--ca "$PKI/ca.crt" --token-file "$PKI/token" --timeout 2s
			kill "$fpid" 2>/dev/null || true
		done
		check "request: ... ALPN refusal explained" has "$WORK/out/request__fake_signer__noalpn_.out" 'ALPN'
		check "request: ... a certificate for another key is rejected as apid would" \
			has "$WORK/out/request__fake_signer__badcrt_.out" 'does not carry the public key of the request'
	else
		skip_or_fail "request: fake signers need the Python venv"
	fi
}

section_check() {
	say "check: good and broken configurations"
	local C=$WORK/check bad
	local -a good
	read -r -a good <<<"$(pki_env "$PKI")"
	expect_exit "check: a good configuration" 0 env "${good[@]}" "$BIN" check --endpoint 127.0.0.1
	check "check: ... says all is well" has "$LAST_OUT" '^check: all is well$' 'daemon would load and serve'
	expect_exit "check: a good configuration, JSON" 0 env "${good[@]}" "$BIN" check --json
	check "check: ... JSON verdict" has "$LAST_OUT" '"ok":true,"errors":0,"warnings":0,"exit_code":0'
	expect_exit "check: --endpoint that is not an IP SAN" 2 env "${good[@]}" "$BIN" check --endpoint 127.0.0.9
	check "check: ... names the endpoint" has "$LAST_OUT" 'endpoint 127.0.0.9 is not an IP SAN'
	expect_exit "check: certificate inside --warn-within is a warning" 1 env "${good[@]}" "$BIN" check --warn-within 400d
	check "check: ... says when" has "$LAST_OUT" '^warning +serving certificate .*within the warning window'
	expect_exit "check: CA key does not match the CA certificate" 2 env "${good[@]}" "$BIN" check --ca-key-path "$OTHER/ca.key"
	check "check: ... reported, and the daemon would refuse" has "$LAST_OUT" 'CA key .* does not match the CA certificate' 'daemon would refuse'
	expect_exit "check: serving key does not match the serving certificate" 2 env "${good[@]}" "$BIN" check --tls-key-path "$OTHER/server.key"
	# check and the daemon judge with one validator: what the daemon serves with a
	# warning is a warning here (exit 1), what it refuses is an error (exit 2).
	expect_exit "check: serving certificate not chaining to an accepted CA (served, warned)" 1 env "${good[@]}" \
		"$BIN" check --tls-cert-path "$OTHER/server.crt" --tls-key-path "$OTHER/server.key"
	check "check: ... reported as the daemon's warning, and the daemon would serve" \
		has "$LAST_OUT" '^warning +serving certificate does not chain to an accepted CA' 'daemon would load and serve'
	printf 'not-a-talos-token\n' >"$WORK/badtoken"
	expect_exit "check: token that does not look like a Talos token (served, warned)" 1 env "${good[@]}" \
		TOKEN_PATH="$WORK/badtoken" "$BIN" check
	check "check: ... reported as a warning naming the file" \
		has "$LAST_OUT" "^warning +TOKEN_PATH \\($WORK/badtoken\\): the token does not look like a Talos token" \
		'daemon would load and serve'
	check "check: ... no error line contradicts the verdict" bash -c "! grep -q '^error' '$LAST_OUT'"
	printf 'abcdef.0123456789abcdef\nshort\n' >"$WORK/acctokens"
	expect_exit "check: an odd accepted token (served, warned)" 1 env "${good[@]}" \
		ACCEPTED_TOKENS_PATH="$WORK/acctokens" "$BIN" check
	check "check: ... names ACCEPTED_TOKENS_PATH" has "$LAST_OUT" '^warning +ACCEPTED_TOKENS_PATH .*accepted token 2'
	expect_exit "check: an accepted CA that is not a CA (refused)" 2 env "${good[@]}" \
		ACCEPTED_CAS_PATH="$PKI/server.crt" "$BIN" check
	check "check: ... and the daemon would refuse it" has "$LAST_OUT" 'daemon would refuse .*not a CA certificate'
	expect_exit "daemon: an accepted CA that is not a CA is refused at start" 1 env "${good[@]}" \
		ACCEPTED_CAS_PATH="$PKI/server.crt" HTTP_ADDR= PORT=0 LISTEN_ADDRESS=127.0.0.1 timeout 10 "$BIN"
	check "daemon: ... naming the setting" has "$LAST_OUT" 'ACCEPTED_CAS_PATH .*not a CA certificate'
	bad=$C/rsa1024
	mkdir -p "$bad"
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out "$bad/ca.key" 2>/dev/null
	openssl req -x509 -new -key "$bad/ca.key" -subj /O=talos -days 30 -addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign,digitalSignature -out "$bad/ca.crt" 2>/dev/null
	expect_exit "check: an RSA CA key under 2048 bits (refused)" 2 env "${good[@]}" \
		CA_CERT_PATH="$bad/ca.crt" CA_KEY_PATH="$bad/ca.key" "$BIN" check
	check "check: ... as the daemon says it" has "$LAST_OUT" '^error +CA_KEY_PATH .*1024 bits is too small'
	expect_exit "daemon: the same RSA CA key is refused at start" 1 env "${good[@]}" \
		CA_CERT_PATH="$bad/ca.crt" CA_KEY_PATH="$bad/ca.key" HTTP_ADDR= PORT=0 LISTEN_ADDRESS=127.0.0.1 timeout 10 "$BIN"
	check "daemon: ... in the same words" has "$LAST_OUT" 'CA_KEY_PATH .*1024 bits is too small'
	expect_exit "check: unreadable file" 2 env "${good[@]}" "$BIN" check --ca-cert-path "$WORK/missing.crt"
	check "check: ... names the setting" has "$LAST_OUT" 'CA_CERT_PATH .*cannot read'
	expect_exit "check: configuration error" 2 env "${good[@]}" CERT_TTL=10s "$BIN" check
	check "check: ... names the setting" has "$LAST_OUT" 'CERT_TTL'
	expect_exit "check: usage error" 3 env "${good[@]}" "$BIN" check --warn-within soon
	expect_exit "check: CERT_TTL=1d is a duration" 0 env "${good[@]}" CERT_TTL=1d "$BIN" check
	expect_exit "daemon: a duration it cannot read is refused at start" 1 env "${good[@]}" CERT_TTL=1x "$BIN"
	check "daemon: ... one JSON record naming the setting and the accepted format" has "$LAST_OUT" \
		'^\{"time":"[^"]*","level":"error","msg":"configuration error","error":"CERT_TTL: invalid value \\"1x\\" \(from environment\): want a duration such as 1d, 24h'
	expect_exit "daemon: ... and one text record with LOG_FORMAT=text" 1 env "${good[@]}" CERT_TTL=1x LOG_FORMAT=text "$BIN"
	check "daemon: ... in the text format" has "$LAST_OUT" '^time=.* level=error msg="configuration error" error="CERT_TTL: invalid value'

	# Dated PKIs: expired and nearly expired CA and serving certificates.
	bad=$C/expired-ca
	mkdir -p "$bad"
	dated_ca "$bad" -864000 -3600
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$bad/server.key" 2>/dev/null
	dated_leaf "$bad" "$bad/server.key" "$bad/server.crt" -86400 -7200
	cp "$PKI/token" "$bad/token"
	read -r -a good <<<"$(pki_env "$bad")"
	expect_exit "check: expired CA and serving certificate" 2 env "${good[@]}" "$BIN" check
	check "check: ... both reported" has "$LAST_OUT" '^error +CA certificate .*expired at' '^error +serving certificate .*expired at'

	bad=$C/soon
	mkdir -p "$bad"
	dated_ca "$bad" -3600 $((3 * 86400))
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$bad/server.key" 2>/dev/null
	dated_leaf "$bad" "$bad/server.key" "$bad/server.crt" -3600 $((2 * 86400))
	cp "$PKI/token" "$bad/token"
	read -r -a good <<<"$(pki_env "$bad")"
	expect_exit "check: CA and serving certificate expiring within the default 7d" 1 env "${good[@]}" "$BIN" check
	check "check: ... two warnings" has "$LAST_OUT" '^warning +CA certificate' '^warning +serving certificate' '0 error\(s\), 2 warning\(s\)'
	expect_exit "check: ... fine with --warn-within 1d" 0 env "${good[@]}" "$BIN" check --warn-within 1d

	bad=$C/nosan
	dev_pki "$bad"
	ca_conf "$bad"
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$bad/ca.key" 2>/dev/null
	openssl req -new -key "$bad/ca.key" -subj "/O=talos" -out "$bad/ca.csr" 2>/dev/null
	LEAF_SAN=DNS:x openssl ca -batch -notext -config "$bad/ca.cnf" -selfsign -keyfile "$bad/ca.key" -in "$bad/ca.csr" \
		-days 30 -extensions v3ca -out "$bad/ca.crt" 2>/dev/null
	dated_leaf "$bad" "$bad/server.key" "$bad/server.crt" -60 86400 DNS:signer.example.org
	read -r -a good <<<"$(pki_env "$bad")"
	expect_exit "check: serving certificate with no IP SAN at all (served, warned)" 1 env "${good[@]}" "$BIN" check
	check "check: ... reported" has "$LAST_OUT" '^warning +serving certificate has no IP SAN'
}

for s in $SECTIONS; do
	"section_$s"
done

harness_finish
