#!/usr/bin/env bash
# Interop suite: real Talos client code (siderolabs/talos machinery +
# siderolabs/crypto + grpc-go with ALPN enforcement) and two independent
# C-core clients (Debian's python3-grpcio on OpenSSL, PyPI's grpcio on
# BoringSSL) against the built daemon. See tests/interop/README.md.
#
# Environment:
#   TCS_BIN            daemon binary (default build/talos-csr-signer, relative to the repo root)
#   TCS_CACHE          tool cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer)
#   INTEROP_SECTIONS   space-separated subset of: matrix neg ipv6 policy accepted rotation shutdown age valgrind
#   VALGRIND           1 (default): run the valgrind section; 0: leave it out
#   KEEP_WORK          1: keep the scratch directory (it is always kept when something failed)
#   CI                 true: a missing tool or a failed build is a failure, never a skip
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/tests/interop
CACHE=${TCS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer}
BIN=${TCS_BIN:-build/talos-csr-signer}
[[ $BIN == /* ]] || BIN=$ROOT/$BIN
SECTIONS=${INTEROP_SECTIONS:-matrix neg ipv6 policy accepted rotation shutdown age valgrind}
[[ ${VALGRIND:-1} == 0 ]] && SECTIONS=${SECTIONS//valgrind/}
CI=${CI:-false}

PYPI_GRPCIO=1.85.1
PYPI_PROTOBUF=7.36.2
# Observed (see README.md): BoringSSL-based grpcio does not offer Ed25519 in
# its signature_algorithms, so it cannot handshake with an Ed25519 serving
# key. Asserted, so that a change in either direction is noticed.
PYPI_ED25519_EXPECT=HANDSHAKE_FAIL

# The tool behaves like a modern grpc-go client only with ALPN enforcement on.
unset GRPC_ENFORCE_ALPN_ENABLED

declare -A MATRIX=()
MATRIX_CLIENTS=()
# shellcheck source=tests/lib.sh
. "$ROOT/tests/lib.sh"
harness_init interop
# What a passing check shows of its output; check returns its result (the
# sections use `if ! check ...` and `check ... || true`).
CHECK_SHOW='^(ok |outcome:|\{)'
CHECK_STATUS=1

# cell CLIENT CA CSR RESULT: one entry of the summary matrix.
cell() {
	local key="$1|$2|$3"
	MATRIX[$key]=$4
	local c
	for c in "${MATRIX_CLIENTS[@]}"; do [[ $c == "$1" ]] && return 0; done
	MATRIX_CLIENTS+=("$1")
}

# ---------------------------------------------------------------- tools

build_tool() {
	if ! command -v go >/dev/null 2>&1; then
		skip_or_fail "go toolchain not found (needed for the Talos client)"
		return 1
	fi
	if ! TOOL=$("$ROOT/hack/gotool.sh" tcsinterop "$HERE" ./cmd/tcsinterop); then
		if [[ $CI == true ]]; then
			not_ok "build tcsinterop"
		else
			skip_or_fail "could not build tests/interop/cmd/tcsinterop"
		fi
		return 1
	fi
}

PY_DEBIAN=/usr/bin/python3
PY_PYPI=

setup_python_debian() {
	if [[ -x $PY_DEBIAN ]] && "$PY_DEBIAN" -c 'import grpc, google.protobuf' 2>/dev/null; then
		return 0
	fi
	echo "installing python3-grpcio python3-protobuf (apt)"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-grpcio python3-protobuf >"$WORK/apt.log" 2>&1; then
		apt-get update -q >>"$WORK/apt.log" 2>&1 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-grpcio python3-protobuf >>"$WORK/apt.log" 2>&1 || true
	fi
	if [[ -x $PY_DEBIAN ]] && "$PY_DEBIAN" -c 'import grpc, google.protobuf' 2>/dev/null; then
		return 0
	fi
	skip_or_fail "Debian python3-grpcio could not be installed"
	return 1
}

setup_python_pypi() {
	local venv=$CACHE/tools/py-grpcio-$PYPI_GRPCIO-protobuf-$PYPI_PROTOBUF
	if ! "$venv/bin/python" -c 'import grpc, google.protobuf' 2>/dev/null; then
		echo "installing PyPI grpcio==$PYPI_GRPCIO into $venv"
		rm -rf "$venv"
		if ! "$PY_DEBIAN" -m venv "$venv" >"$WORK/venv.log" 2>&1; then
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >>"$WORK/venv.log" 2>&1 || true
			"$PY_DEBIAN" -m venv "$venv" >>"$WORK/venv.log" 2>&1 || true
		fi
		"$venv/bin/pip" install -q --disable-pip-version-check "grpcio==$PYPI_GRPCIO" "protobuf==$PYPI_PROTOBUF" >>"$WORK/venv.log" 2>&1 || true
	fi
	if "$venv/bin/python" -c 'import grpc, google.protobuf' 2>/dev/null; then
		PY_PYPI=$venv/bin/python
		return 0
	fi
	skip_or_fail "PyPI grpcio==$PYPI_GRPCIO could not be installed (see $WORK/venv.log)"
	return 1
}

# ---------------------------------------------------------------- daemon

UNDER_VALGRIND=0

# interop_daemon NAME VAR=VALUE...: the daemon (tests/lib.sh start_daemon) on a
# free loopback port with only the given environment, still alive 0.5 s after
# "listening" (a later listener may fail after the first); under valgrind when
# UNDER_VALGRIND=1. Sets D_PORT, D_PID, D_LOG.
interop_daemon() {
	local name=$1 port secs=10
	shift
	local -a pre=()
	port=$(free_port)
	if [[ $UNDER_VALGRIND == 1 ]]; then
		pre=(--pre valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99
			--log-file="$WORK/$name.valgrind.log" --)
		secs=120
	fi
	start_daemon "$name" --wait listening --timeout "$secs" "${pre[@]}" -- PORT="$port" \
		LISTEN_ADDRESS=127.0.0.1 HTTP_ADDR= LOG_FORMAT=json LOG_LEVEL=debug SHUTDOWN_GRACE=2s "$@" || return 1
	sleep 0.5
	if ! daemon_alive; then
		echo "daemon $name exited right after listening:"
		tail -n 20 "$D_LOG"
		return 1
	fi
	D_PORT=$port
}

# interop_stop PID: SIGTERM, then the exit status must be 0 (tests/lib.sh
# stop_daemon; 120 s under valgrind).
interop_stop() {
	if [[ $UNDER_VALGRIND == 1 ]]; then stop_daemon "$1" 120; else stop_daemon "$1"; fi
}

alive() { kill -0 "$1" 2>/dev/null; }

ipv6_loopback() {
	"$PY_DEBIAN" -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1", 0))' 2>/dev/null
}

# ---------------------------------------------------------------- sections

python_checks() { # CA-family DIR PORT
	local f=$1 d=$2 port=$3 client py expect csrfam
	for client in python-debian python-pypi; do
		if [[ $client == python-debian ]]; then
			[[ $HAVE_PY_DEBIAN == 1 ]] || continue
			py=$PY_DEBIAN
			expect=OK
		else
			[[ $HAVE_PY_PYPI == 1 ]] || continue
			py=$PY_PYPI
			expect=OK
			[[ $f == ed25519 ]] && expect=$PYPI_ED25519_EXPECT
		fi
		for csrfam in ed25519 ca; do
			"$TOOL" csr --csr-family "$csrfam" --ca "$d/ca.crt" --out "$d/pycsr-$csrfam" >/dev/null
			if check "$client: CA $f, serving key $f, CSR $csrfam -> $expect" \
				"$py" "$HERE/pyclient.py" --target "127.0.0.1:$port" --ca "$d/ca.crt" \
				--token-file "$d/token" --csr "$d/pycsr-$csrfam/csr.pem" --expect "$expect"; then
				if [[ $expect == OK ]]; then cell "$client" "$f" "$csrfam" pass; else cell "$client" "$f" "$csrfam" "refused*"; fi
			else
				cell "$client" "$f" "$csrfam" FAIL
			fi
		done
		if [[ $expect == OK ]]; then
			check "$client: CA $f: wrong token -> UNAUTHENTICATED" \
				"$py" "$HERE/pyclient.py" --target "127.0.0.1:$port" --ca "$d/ca.crt" --token-file "$d/token" \
				--csr "$d/pycsr-ca/csr.pem" --case wrong-token --expect UNAUTHENTICATED || true
			check "$client: CA $f: unknown method -> UNIMPLEMENTED" \
				"$py" "$HERE/pyclient.py" --target "127.0.0.1:$port" --ca "$d/ca.crt" --token-file "$d/token" \
				--csr "$d/pycsr-ca/csr.pem" --case unknown-method --expect UNIMPLEMENTED || true
		fi
	done
}

section_matrix() {
	local f d csrfam
	# ecdsa384: a P-384 machine CA an operator brought (Talos itself makes P-256).
	for f in ed25519 ecdsa ecdsa384 rsa; do
		say "CA family $f (serving key $f, as Talos's trustd would have)"
		d=$WORK/pki-$f
		"$TOOL" pki --family "$f" --out "$d" >/dev/null
		local -a tokenenv=(TOKEN_PATH="$d/token")
		# The Go signer's drop-in variable: the token straight from the environment.
		[[ $f == ed25519 ]] && tokenenv=(TALOS_TOKEN="$(cat "$d/token")")
		if ! check "daemon starts (CA $f)" interop_daemon "matrix-$f" \
			CA_CERT_PATH="$d/ca.crt" CA_KEY_PATH="$d/ca.key" \
			TLS_CERT_PATH="$d/server.crt" TLS_KEY_PATH="$d/server.key" "${tokenenv[@]}"; then
			for csrfam in ed25519 ca; do cell talos-go "$f" "$csrfam" FAIL; done
			continue
		fi
		local port=$D_PORT pid=$D_PID
		local -a E=(--endpoint "127.0.0.1:$port" --ca "$d/ca.crt" --token-file "$d/token")
		for csrfam in ed25519 ca; do
			# ed25519 = what Talos <= 1.10 sends; ca = Talos 1.11+ (the CA's family).
			# --trustd-ca: the certificate must equal what siderolabs/crypto (trustd's
			# signer) issues for the same CSR and CA: signature algorithm, extensions,
			# criticality, subject, SANs, validity length.
			if check "talos-go: CA $f, CSR $csrfam: issued, equal to trustd's certificate" \
				"$TOOL" worker "${E[@]}" --csr-family "$csrfam" --expect-ca "$d/ca.crt" --expect-issuer "$d/ca.crt" \
				--trustd-ca "$d" --label "ca=$f csr=$csrfam"; then
				cell talos-go "$f" "$csrfam" pass
			else
				cell talos-go "$f" "$csrfam" FAIL
			fi
		done
		check "talos-go: CA $f: O=os:admin,os:impersonator requested, no O issued, equal to trustd's" \
			"$TOOL" worker "${E[@]}" --csr-family ca --org os:admin --org os:impersonator --expect-issuer "$d/ca.crt" \
			--trustd-ca "$d" --label "ca=$f org=os:admin" || true
		check "talos-go: CA $f: serving cert, ALPN h2, TLS 1.3" \
			"$TOOL" probe "${E[@]}" --expect-cert "$d/server.crt" || true
		check "talos-go: CA $f: TLS 1.2 handshake, ALPN h2" \
			"$TOOL" probe "${E[@]}" --tls12 --expect-cert "$d/server.crt" || true
		python_checks "$f" "$d" "$port"
		check "daemon (CA $f) exits 0 on SIGTERM" interop_stop "$pid" || true
	done
}

section_neg() {
	say "negative cases (CA ed25519)"
	if ! command -v openssl >/dev/null 2>&1; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssl >"$WORK/apt-openssl.log" 2>&1 || true
		command -v openssl >/dev/null 2>&1 || skip_or_fail "openssl (for s_client) could not be installed"
	fi
	local d=$WORK/pki-neg
	"$TOOL" pki --family ed25519 --out "$d" >/dev/null
	check "daemon starts (negative cases)" interop_daemon neg \
		CA_CERT_PATH="$d/ca.crt" CA_KEY_PATH="$d/ca.key" \
		TLS_CERT_PATH="$d/server.crt" TLS_KEY_PATH="$d/server.key" TOKEN_PATH="$d/token" || return 0
	local port=$D_PORT pid=$D_PID logf=$D_LOG
	local -a E=(--endpoint "127.0.0.1:$port" --ca "$d/ca.crt" --token-file "$d/token")

	# case  expected-code  expected-message ('-' = any)
	local spec
	while read -r spec; do
		[[ -z $spec ]] && continue
		local c=${spec%%;*} rest=${spec#*;}
		local code=${rest%%;*} msg=${rest#*;}
		check "neg: $c -> $code${msg:+ \"$msg\"}, then still serving" \
			"$TOOL" neg "${E[@]}" --case "$c" --expect-code "$code" --expect-msg "${msg:--}" || true
	done <<-'EOF'
		missing-token;UNAUTHENTICATED;missing token
		wrong-token;UNAUTHENTICATED;invalid token
		token-prefix;UNAUTHENTICATED;invalid token
		token-suffix;UNAUTHENTICATED;invalid token
		empty-token;UNAUTHENTICATED;
		dup-token;UNAUTHENTICATED;
		dup-token-same;UNAUTHENTICATED;
		unknown-method;UNIMPLEMENTED;
		unknown-service;UNIMPLEMENTED;
		unknown-method-notoken;UNIMPLEMENTED|UNAUTHENTICATED;
		empty;INVALID_ARGUMENT;failed to decode CSR
		garbage;INVALID_ARGUMENT;failed to decode CSR
		cert-pem;INVALID_ARGUMENT;failed to parse CSR
		pem-garbage-der;INVALID_ARGUMENT;failed to parse CSR
		bad-sig;INVALID_ARGUMENT;failed to parse CSR
		truncated;INVALID_ARGUMENT;
		bad-wiretype;INVALID_ARGUMENT;
		oversized;RESOURCE_EXHAUSTED;
	EOF
	check "neg: per-RPC token of a worker, no token -> UNAUTHENTICATED \"missing token\"" \
		"$TOOL" worker "${E[@]}" --no-token --expect-code UNAUTHENTICATED --expect-msg "missing token" || true
	# Thousands of SANs: the default policy (MAX_SANS 256, MAX_CSR_BYTES 16 KiB)
	# refuses them cleanly; the policy section shows they pass when allowed.
	check "neg: CSR with 2000 IP + 300 DNS SANs (> MAX_CSR_BYTES) under the default policy -> refused, still serving" \
		"$TOOL" neg "${E[@]}" --case many-sans --gen-ips 2000 --gen-dns 300 \
		--expect-code "INVALID_ARGUMENT|PERMISSION_DENIED|FAILED_PRECONDITION|RESOURCE_EXHAUSTED" || true
	check "neg: CSR with 300 IP SANs (> MAX_SANS 256, < 16 KiB) under the default policy -> refused, still serving" \
		"$TOOL" neg "${E[@]}" --case many-sans --gen-ips 300 \
		--expect-code "INVALID_ARGUMENT|PERMISSION_DENIED|FAILED_PRECONDITION|RESOURCE_EXHAUSTED" || true
	check "neg: CSR with 250 SANs (within MAX_SANS) is issued with every SAN" \
		"$TOOL" worker "${E[@]}" --gen-ips 200 --gen-dns 43 --label 250-sans || true

	say "ALPN and TLS oddities"
	check "openssl s_client -alpn h2: ALPN protocol h2, chain verified" \
		bash -c "openssl s_client -connect 127.0.0.1:$port -alpn h2 -CAfile '$d/ca.crt' </dev/null 2>&1 | tee /dev/stderr | grep -q '^ALPN protocol: h2' && kill -0 $pid" || true
	check "openssl s_client without -alpn: handshake completes, no ALPN selected, daemon survives" \
		bash -c "openssl s_client -connect 127.0.0.1:$port -CAfile '$d/ca.crt' </dev/null 2>&1 | tee /dev/stderr | grep -q '^No ALPN negotiated' && sleep 0.2 && kill -0 $pid" || true
	check "TLS client without ALPN: no successful call" "$TOOL" noalpn "${E[@]}" || true
	check "TLS client offering only http/1.1: no successful call, no unoffered protocol" \
		"$TOOL" noalpn "${E[@]}" --offer http/1.1 || true
	check "plain-text HTTP/1.1 and a half-open connection on the TLS port: daemon survives" \
		raw_tcp_abuse "$port" "$pid" || true
	check "daemon still alive and issuing after every bad input" \
		"$TOOL" worker "${E[@]}" --label after-negatives || true
	check "audit log: issued and rejected records present" \
		bash -c "grep '\"msg\":\"audit\"' '$logf' | grep -q '\"outcome\":\"issued\"' && grep '\"msg\":\"audit\"' '$logf' | grep -q '\"outcome\":\"rejected\"'" || true
	check "the token never appears in the log" bash -c "! grep -qF -- \"\$(cat '$d/token')\" '$logf'" || true
	alive "$pid" || true
	check "daemon (negative cases) exits 0 on SIGTERM" interop_stop "$pid" || true
}

# raw_tcp_abuse PORT PID: plain HTTP/1.1 instead of TLS, a connection that
# sends nothing, one that sends half a ClientHello; the daemon must live on.
raw_tcp_abuse() {
	"$PY_DEBIAN" - "$1" <<-'PY'
		import socket, sys, time
		port = int(sys.argv[1])
		def conn():
		    s = socket.create_connection(("127.0.0.1", port), timeout=5)
		    return s
		s = conn()
		try:
		    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		    s.recv(4096)
		except OSError as e:
		    print("plain HTTP: %s" % e)
		s.close()
		idle = conn()
		half = conn()
		half.sendall(bytes.fromhex("160301020001"))  # a TLS record header announcing 512 bytes, then nothing
		time.sleep(0.5)
		idle.close()
		half.close()
		print("ok raw tcp abuse done")
	PY
	sleep 0.3
	kill -0 "$2"
}

section_ipv6() {
	say "dual-stack listen (LISTEN_ADDRESS=127.0.0.1,::1)"
	if ! ipv6_loopback; then
		echo "no IPv6 loopback on this machine: section left out"
		return 0
	fi
	local d=$WORK/pki-v6
	"$TOOL" pki --family ed25519 --out "$d" >/dev/null
	check "daemon starts (LISTEN_ADDRESS=127.0.0.1,::1)" interop_daemon ipv6 LISTEN_ADDRESS=127.0.0.1,::1 \
		CA_CERT_PATH="$d/ca.crt" CA_KEY_PATH="$d/ca.key" TLS_CERT_PATH="$d/server.crt" TLS_KEY_PATH="$d/server.key" \
		TOKEN_PATH="$d/token" || return 0
	local port=$D_PORT pid=$D_PID
	check "talos-go over IPv6 [::1] (ServerName ::1)" \
		"$TOOL" worker --endpoint "[::1]:$port" --ca "$d/ca.crt" --token-file "$d/token" --label ipv6 || true
	check "talos-go with an endpoint list (talosroundrobin over 127.0.0.1 and [::1])" \
		"$TOOL" load --endpoint "127.0.0.1:$port,[::1]:$port" --ca "$d/ca.crt" --token-file "$d/token" \
		--conns 2 --pause 10ms --duration 2s --min-ok 4 || true
	check "daemon (dual-stack) exits 0 on SIGTERM" interop_stop "$pid" || true
}

section_policy() {
	say "policy: thousands of SANs when allowed"
	local d=$WORK/pki-policy
	"$TOOL" pki --family ecdsa --out "$d" >/dev/null
	check "daemon starts (MAX_SANS=5000 MAX_CSR_BYTES=60000)" interop_daemon policy \
		CA_CERT_PATH="$d/ca.crt" CA_KEY_PATH="$d/ca.key" TLS_CERT_PATH="$d/server.crt" TLS_KEY_PATH="$d/server.key" \
		TOKEN_PATH="$d/token" MAX_SANS=5000 MAX_CSR_BYTES=60000 || return 0
	local pid=$D_PID
	check "talos-go: 2000 IP + 300 DNS SANs copied verbatim" \
		"$TOOL" worker --endpoint "127.0.0.1:$D_PORT" --ca "$d/ca.crt" --token-file "$d/token" \
		--csr-family ca --gen-ips 2000 --gen-dns 300 --label many-sans || true
	check "daemon (policy) exits 0 on SIGTERM" interop_stop "$pid" || true
}

section_accepted() {
	say "accepted CAs (CA rotation as Talos does it), CERT_TTL and CERT_BACKDATE"
	local old=$WORK/pki-acc-old new=$WORK/pki-acc-new
	"$TOOL" pki --family ed25519 --out "$old" >/dev/null
	"$TOOL" pki --family ecdsa --out "$new" >/dev/null
	check "daemon starts (ACCEPTED_CAS_PATH, CERT_TTL=90m, CERT_BACKDATE=2m)" interop_daemon accepted \
		CA_CERT_PATH="$new/ca.crt" CA_KEY_PATH="$new/ca.key" TLS_CERT_PATH="$new/server.crt" TLS_KEY_PATH="$new/server.key" \
		TOKEN_PATH="$new/token" ACCEPTED_CAS_PATH="$old/ca.crt" CERT_TTL=90m CERT_BACKDATE=2m || return 0
	local pid=$D_PID
	check "talos-go v1.8+ worker (accepted CAs old+new): ca = old then issuing CA, 90m lifetime" \
		"$TOOL" worker --endpoint "127.0.0.1:$D_PORT" --ca "$old/ca.crt" --ca "$new/ca.crt" --token-file "$new/token" \
		--csr-family ed25519 --expect-ca "$old/ca.crt" --expect-ca "$new/ca.crt" --expect-issuer "$new/ca.crt" \
		--ttl 90m --backdate 2m --label accepted || true
	check "talos-go v1.11 worker (CSR follows the last accepted CA: ECDSA)" \
		"$TOOL" worker --endpoint "127.0.0.1:$D_PORT" --ca "$old/ca.crt" --ca "$new/ca.crt" --token-file "$new/token" \
		--csr-family ca --expect-ca "$old/ca.crt" --expect-ca "$new/ca.crt" --expect-issuer "$new/ca.crt" \
		--ttl 90m --backdate 2m --label accepted-ca || true
	check "daemon (accepted CAs) exits 0 on SIGTERM" interop_stop "$pid" || true
}

# only_refusals JSON: every failed call of a load summary failed to connect
# (the daemon had closed its port); none was cut off, cancelled or refused
# once it had reached the daemon. Prints the summary.
only_refusals() {
	jq -c '{calls, ok, failed, failures}' "$1"
	jq -e '.ok > 0 and ([.failures // {} | keys[] | select(test("connect: connection refused") | not)] | length == 0)' \
		"$1" >/dev/null
}

section_shutdown() {
	say "SIGTERM under load: every call that reached the daemon is answered"
	local d=$WORK/pki-shutdown round pid lp
	"$TOOL" pki --family ed25519 --out "$d" >/dev/null
	local -a env=(CA_CERT_PATH="$d/ca.crt" CA_KEY_PATH="$d/ca.key" TLS_CERT_PATH="$d/server.crt"
		TLS_KEY_PATH="$d/server.key" TOKEN_PATH="$d/token")
	# 32 callers on 8 connections keep calls waiting in gRPC's queue at the
	# moment of the SIGTERM: the gRPC core's own shutdown cancels those.
	for round in 1 2 3; do
		check "daemon starts (shutdown round $round)" interop_daemon "shutdown-$round" SHUTDOWN_GRACE=5s \
			"${env[@]}" || return 0
		pid=$D_PID
		"$TOOL" load --endpoint "127.0.0.1:$D_PORT" --ca "$d/ca.crt" --token-file "$d/token" \
			--conns 8 --per-conn 4 --duration 4s --max-fail 100000000 \
			--out "$WORK/shutdown-$round.json" >"$WORK/shutdown-$round.load" 2>&1 &
		lp=$!
		sleep 1.5
		check "round $round: SIGTERM under load, exit 0" interop_stop "$pid" || true
		wait "$lp" || true
		check "round $round: no call lost (only connection refusals after the port closed)" \
			only_refusals "$WORK/shutdown-$round.json" || true
		check "round $round: the front door drained before gRPC shut down" \
			has "$D_LOG" '"msg":"connections drained in [0-9]+ ms"' || true
	done
	# A client that never answers the drain PING holds the drain for the
	# grace, no longer, and the daemon still stops cleanly.
	check "daemon starts (shutdown with a silent client)" interop_daemon shutdown-silent SHUTDOWN_GRACE=2s \
		"${env[@]}" || return 0
	pid=$D_PID
	(sleep 30 | openssl s_client -quiet -alpn h2 -connect "127.0.0.1:$D_PORT" >/dev/null 2>&1) &
	lp=$!
	BG_PIDS+=("$lp")
	sleep 1
	local t0
	t0=$(now_ms)
	check "silent client: SIGTERM, exit 0" interop_stop "$pid" || true
	check "silent client: the drain waited for the grace (2 s) and no more than 5 s in all" \
		test $(($(now_ms) - t0)) -ge 2000 -a $(($(now_ms) - t0)) -lt 5000 || true
	check "silent client: the log says the drain grace ran out" \
		has "$D_LOG" '"msg":"drain grace over' || true
	kill "$lp" 2>/dev/null || true
}

# gRPC closes a connection at MAX_CONNECTION_AGE once its last call is done,
# and its final GOAWAY says which streams it took. A client may open one more
# in the meantime: the front door finds gRPC's end closed when it relays that
# stream, and must still deliver the GOAWAY (the client then retries the
# stream on a new connection) before closing. Before it did, about one call
# in 600 here failed with "error reading from server: EOF, received prior
# goaway". 16 connections with 4 callers each, aged every 50 ms, for 10 s.
section_age() {
	say "connections aged every 50 ms under load: no call lost"
	local d=$WORK/pki-age
	"$TOOL" pki --family ed25519 --out "$d" >/dev/null
	check "daemon starts (MAX_CONNECTION_AGE=50ms)" interop_daemon age MAX_CONNECTION_AGE=50ms \
		CA_CERT_PATH="$d/ca.crt" CA_KEY_PATH="$d/ca.key" TLS_CERT_PATH="$d/server.crt" \
		TLS_KEY_PATH="$d/server.key" TOKEN_PATH="$d/token" || return 0
	local pid=$D_PID
	check "10 s of calls over connections aged every 50 ms: none failed" \
		"$TOOL" load --endpoint "127.0.0.1:$D_PORT" --ca "$d/ca.crt" --token-file "$d/token" \
		--conns 16 --per-conn 4 --duration 10s --min-ok 500 --out "$WORK/age.json" || true
	check "daemon (age) exits 0 on SIGTERM" interop_stop "$pid" || true
}

# swap_file SRC DST: atomic replacement by rename in DST's directory.
swap_file() {
	cp "$1" "$(dirname "$2")/.swap.$(basename "$2")"
	mv -f "$(dirname "$2")/.swap.$(basename "$2")" "$2"
}

KUBE_GEN=0
# kube_publish DIR NAME=SRC...: what the kubelet does for a Secret volume:
# a new timestamped directory, a ..data_tmp symlink renamed over ..data, the
# per-key symlinks NAME -> ..data/NAME, the old directory removed.
kube_publish() {
	local dir=$1
	shift
	KUBE_GEN=$((KUBE_GEN + 1))
	local ts
	ts=..$(date +%Y_%m_%d_%H_%M_%S).$KUBE_GEN$RANDOM
	mkdir -p "$dir/$ts"
	local kv
	for kv in "$@"; do
		cp "${kv#*=}" "$dir/$ts/${kv%%=*}"
	done
	local old=
	[[ -L $dir/..data ]] && old=$(readlink "$dir/..data")
	ln -s "$ts" "$dir/..data_tmp"
	mv -T "$dir/..data_tmp" "$dir/..data"
	for kv in "$@"; do
		[[ -L $dir/${kv%%=*} ]] || ln -s "..data/${kv%%=*}" "$dir/${kv%%=*}"
	done
	[[ -n $old && $old != "$ts" ]] && rm -rf "${dir:?}/$old"
	return 0
}

section_rotation_one() { # files | kubelet
	local layout=$1 r=$WORK/rot-$1
	say "rotation under load ($layout): CA + serving cert, then the token"
	mkdir -p "$r"
	"$TOOL" pki --family ed25519 --out "$r/old" >/dev/null
	"$TOOL" pki --family ecdsa --out "$r/new" >/dev/null
	local -a env
	if [[ $layout == files ]]; then
		mkdir -p "$r/live"
		cp "$r/old/"{ca.crt,ca.key,server.crt,server.key,token} "$r/live/"
		env=(CA_CERT_PATH="$r/live/ca.crt" CA_KEY_PATH="$r/live/ca.key" TLS_CERT_PATH="$r/live/server.crt"
			TLS_KEY_PATH="$r/live/server.key" TOKEN_PATH="$r/live/token")
	else
		mkdir -p "$r/ca-secret" "$r/tls-secret"
		kube_publish "$r/ca-secret" tls.crt="$r/old/ca.crt" tls.key="$r/old/ca.key" token="$r/old/token"
		kube_publish "$r/tls-secret" tls.crt="$r/old/server.crt" tls.key="$r/old/server.key" ca.crt="$r/old/ca.crt"
		env=(CA_CERT_PATH="$r/ca-secret/tls.crt" CA_KEY_PATH="$r/ca-secret/tls.key" TOKEN_PATH="$r/ca-secret/token"
			TLS_CERT_PATH="$r/tls-secret/tls.crt" TLS_KEY_PATH="$r/tls-secret/tls.key")
	fi
	check "daemon starts (rotation, $layout, MAX_CONNECTION_AGE=2s)" interop_daemon "rot-$layout" \
		"${env[@]}" MAX_CONNECTION_AGE=2s || return 0
	local port=$D_PORT pid=$D_PID
	# Workers that trust both CAs (Talos v1.8+ acceptedCAs) and keep the token.
	local -a E=(--endpoint "127.0.0.1:$port" --ca "$r/old/ca.crt" --ca "$r/new/ca.crt")
	cp "$r/old/token" "$r/token-kept"
	"$TOOL" load "${E[@]}" --token-file "$r/token-kept" --conns 4 --pause 20ms --duration 120s \
		--stop-file "$r/stop" --min-ok 50 --min-serving 2 --min-issuers 2 --last-issuer "$r/new/ca.crt" \
		>"$r/load.out" 2>&1 &
	local loadpid=$!
	BG_PIDS+=("$loadpid")
	sleep 2

	# A broken update first: garbage CA key, serving key that does not match
	# the serving cert. The daemon must keep the last good credentials.
	printf -- '-----BEGIN PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END PRIVATE KEY-----\n' >"$r/garbage.key"
	if [[ $layout == files ]]; then
		swap_file "$r/garbage.key" "$r/live/ca.key"
		swap_file "$r/new/server.key" "$r/live/server.key"
	else
		kube_publish "$r/ca-secret" tls.crt="$r/old/ca.crt" tls.key="$r/garbage.key" token="$r/old/token"
		kube_publish "$r/tls-secret" tls.crt="$r/old/server.crt" tls.key="$r/new/server.key" ca.crt="$r/old/ca.crt"
	fi
	sleep 1
	check "rotation ($layout): broken CA key / mismatched serving pair ignored, last good CA still issues" \
		"$TOOL" worker --endpoint "127.0.0.1:$port" --ca "$r/old/ca.crt" --token-file "$r/old/token" \
		--expect-issuer "$r/old/ca.crt" --expect-ca "$r/old/ca.crt" --label broken-update || true
	check "rotation ($layout): broken update ignored, new connections still get the last good serving cert" \
		"$TOOL" probe --endpoint "127.0.0.1:$port" --ca "$r/old/ca.crt" --expect-cert "$r/old/server.crt" || true

	if [[ $layout == files ]]; then
		swap_file "$r/new/ca.key" "$r/live/ca.key"
		swap_file "$r/new/ca.crt" "$r/live/ca.crt"
		swap_file "$r/new/server.key" "$r/live/server.key"
		swap_file "$r/new/server.crt" "$r/live/server.crt"
	else
		kube_publish "$r/ca-secret" tls.crt="$r/new/ca.crt" tls.key="$r/new/ca.key" token="$r/old/token"
		kube_publish "$r/tls-secret" tls.crt="$r/new/server.crt" tls.key="$r/new/server.key" ca.crt="$r/new/ca.crt"
	fi
	check "rotation ($layout): new connections present the new serving certificate (serial)" \
		"$TOOL" probe --endpoint "127.0.0.1:$port" --ca "$r/new/ca.crt" --expect-cert "$r/new/server.crt" --wait 15s || true
	check "rotation ($layout): new certificates chain to the new CA, ca = new CA" \
		"$TOOL" worker --endpoint "127.0.0.1:$port" --ca "$r/new/ca.crt" --token-file "$r/old/token" \
		--expect-issuer "$r/new/ca.crt" --expect-ca "$r/new/ca.crt" --attempts 4 --label rotated || true
	sleep 4 # keep the load going across several connection-age reconnects
	touch "$r/stop"
	check "rotation ($layout): zero failed calls under load (4 connections), old and new serving cert and CA seen" \
		wait_and_show "$loadpid" "$r/load.out" || true

	# Token rotation: the retired token must stop working, the new one start.
	if [[ $layout == files ]]; then
		swap_file "$r/new/token" "$r/live/token"
	else
		kube_publish "$r/ca-secret" tls.crt="$r/new/ca.crt" tls.key="$r/new/ca.key" token="$r/new/token"
	fi
	check "rotation ($layout): the new token is accepted" \
		"$TOOL" worker --endpoint "127.0.0.1:$port" --ca "$r/new/ca.crt" --token-file "$r/new/token" --attempts 5 \
		--expect-issuer "$r/new/ca.crt" --label new-token || true
	check "rotation ($layout): the retired token -> UNAUTHENTICATED \"invalid token\"" \
		"$TOOL" worker --endpoint "127.0.0.1:$port" --ca "$r/new/ca.crt" --token-file "$r/old/token" \
		--expect-code UNAUTHENTICATED --expect-msg "invalid token" --label retired-token || true
	check "rotation ($layout): load with the new token, zero failures" \
		"$TOOL" load --endpoint "127.0.0.1:$port" --ca "$r/new/ca.crt" --token-file "$r/new/token" --conns 3 \
		--pause 10ms --duration 3s --min-ok 10 --last-issuer "$r/new/ca.crt" || true
	check "daemon (rotation, $layout) exits 0 on SIGTERM" interop_stop "$pid" || true
}

wait_and_show() {
	local rc=0
	wait "$1" || rc=$?
	cat "$2"
	return "$rc"
}

section_rotation() {
	section_rotation_one files
	section_rotation_one kubelet
}

section_valgrind() {
	say "valgrind: one short scenario, clean exit after SIGTERM"
	if ! command -v valgrind >/dev/null 2>&1; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind >"$WORK/apt-valgrind.log" 2>&1 ||
			{ apt-get update -q >>"$WORK/apt-valgrind.log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind >>"$WORK/apt-valgrind.log" 2>&1; } || true
	fi
	if ! command -v valgrind >/dev/null 2>&1; then
		skip_or_fail "valgrind could not be installed"
		return 0
	fi
	local d=$WORK/pki-vg
	"$TOOL" pki --family ed25519 --out "$d" >/dev/null
	UNDER_VALGRIND=1
	# Valgrind does not emulate seccomp(2): the keeper's filter is off here (debugging knob).
	check "daemon starts under valgrind" interop_daemon valgrind GRPC_THREADS=2 TCS_KEEPER_SECCOMP=off \
		CA_CERT_PATH="$d/ca.crt" CA_KEY_PATH="$d/ca.key" TLS_CERT_PATH="$d/server.crt" TLS_KEY_PATH="$d/server.key" \
		TOKEN_PATH="$d/token" || { UNDER_VALGRIND=0; return 0; }
	local pid=$D_PID
	local -a E=(--endpoint "127.0.0.1:$D_PORT" --ca "$d/ca.crt" --token-file "$d/token" --timeout 60s)
	check "valgrind: worker call issued" "$TOOL" worker "${E[@]}" --label valgrind || true
	check "valgrind: wrong token" "$TOOL" neg "${E[@]}" --case wrong-token --then-ok=false || true
	check "valgrind: corrupted CSR signature" "$TOOL" neg "${E[@]}" --case bad-sig --then-ok=false || true
	check "valgrind: unknown method" "$TOOL" neg "${E[@]}" --case unknown-method --then-ok=false || true
	check "valgrind: oversized request" "$TOOL" neg "${E[@]}" --case oversized --then-ok=false || true
	check "valgrind: 2s of load over 2 connections" "$TOOL" load "${E[@]}" --conns 2 --duration 2s --min-ok 2 || true
	# A reload: new serving cert and CA key files, then SIGHUP.
	mkdir -p "$d/next"
	cp "$d/ca.crt" "$d/ca.key" "$d/next/"
	"$TOOL" pki --reuse-ca --keep-token --out "$d/next" --serving-family ecdsa >/dev/null
	swap_file "$d/next/server.key" "$d/server.key"
	swap_file "$d/next/server.crt" "$d/server.crt"
	kill -HUP "$pid"
	check "valgrind: reloaded serving certificate presented" \
		"$TOOL" probe "${E[@]}" --expect-cert "$d/server.crt" --wait 60s || true
	check "valgrind: issuing after the reload" "$TOOL" worker "${E[@]}" --label valgrind-reload || true
	check "valgrind: exit 0 after SIGTERM, no errors, no definite leaks" interop_stop "$pid" || true
	check "valgrind: its report says 0 errors" \
		bash -c "grep -E 'ERROR SUMMARY|definitely lost|indirectly lost' '$WORK/valgrind.valgrind.log'; grep -q 'ERROR SUMMARY: 0 errors' '$WORK/valgrind.valgrind.log'" || true
	UNDER_VALGRIND=0
}

# ---------------------------------------------------------------- main

print_matrix() {
	say "summary matrix (client x CA family x CSR family)"
	local -a cols=(ed25519/ed25519 ed25519/ca ecdsa/ed25519 ecdsa/ca ecdsa384/ed25519 ecdsa384/ca rsa/ed25519 rsa/ca)
	printf '%-16s' "client \\ CA/CSR"
	local c
	for c in "${cols[@]}"; do printf ' %-14s' "$c"; done
	printf '\n'
	local client
	for client in "${MATRIX_CLIENTS[@]}"; do
		printf '%-16s' "$client"
		for c in "${cols[@]}"; do
			printf ' %-14s' "${MATRIX[$client|${c%%/*}|${c##*/}]:--}"
		done
		printf '\n'
	done
	echo "CSR 'ed25519' = Talos <= 1.10 worker; 'ca' = Talos 1.11+ (CSR key of the CA's family)."
	echo "refused* = expected: BoringSSL-based grpcio cannot verify an Ed25519 serving key (README.md)."
}

main() {
	[[ -x $BIN ]] || unavailable "daemon binary $BIN not found (run make build)"
	echo "daemon: $BIN"
	TOOL=
	build_tool || true
	if [[ -z $TOOL ]]; then
		harness_finish
		return
	fi
	check "checker self-test (go test: the response checker rejects what trustd never issues)" \
		bash -c "cd '$HERE' && GOFLAGS='-mod=readonly -buildvcs=false' go test ./..." || true
	HAVE_PY_DEBIAN=0
	HAVE_PY_PYPI=0
	if [[ " $SECTIONS " == *" matrix "* ]]; then
		setup_python_debian && HAVE_PY_DEBIAN=1
		setup_python_pypi && HAVE_PY_PYPI=1
	fi
	local s
	for s in $SECTIONS; do
		"section_$s"
	done
	[[ ${#MATRIX_CLIENTS[@]} -gt 0 ]] && print_matrix
	harness_finish
}

main "$@"
