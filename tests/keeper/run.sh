#!/usr/bin/env bash
# Keeper suite: the CA key lives only in the keeper process.
#
#  memory    scan every readable mapping of the network process (/proc/PID/mem)
#            for the CA key's bytes (the Ed25519 seed, the PKCS#8 DER, the PEM
#            body) after start and after a CA rotation through the files; they
#            must be absent. The same scan of the keeper must find them (the
#            control that proves the scan can see a key).
#  seccomp   the running keeper has its filter (/proc/PID/status Seccomp: 2).
#  kill      kill -9 of the keeper: a call fails (UNAVAILABLE or a closed
#            connection), the network process exits non-zero within a few
#            seconds; kill -9 of the network process: the keeper exits.
#  stall     a keeper that stops answering (SIGSTOP): a call is UNAVAILABLE
#            once the 10 s reply time-out passes, not before; once the keeper
#            runs again (SIGCONT) its late reply is dropped and calls succeed.
#  shutdown  SIGTERM: the network process exits 0 after the keeper, which
#            logs that it stopped.
#  talos     the real Talos client code (tests/interop's tool) gets a
#            certificate through the keeper.
#
# Environment: TCS_BIN (default build/talos-csr-signer), CI (true: a missing
# tool is a failure), KEEPER_SECTIONS (subset of the sections above).
# Needs root or CAP_SYS_PTRACE for /proc/PID/mem (the daemon is not dumpable).
# Ends with "N passed, M failed"; exits non-zero when anything failed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${TCS_BIN:-build/talos-csr-signer}
[[ $BIN == /* ]] || BIN=$ROOT/$BIN
SECTIONS=${KEEPER_SECTIONS:-memory seccomp kill stall shutdown talos}
# shellcheck source=tests/lib.sh
source "$ROOT/tests/lib.sh"
harness_init keeper

[[ -x $BIN ]] || unavailable "daemon binary $BIN is missing (run make build)"
command -v python3 >/dev/null || unavailable "python3 is missing"
command -v openssl >/dev/null || unavailable "openssl is missing"

# start NAME PKI_DIR: the daemon in files mode on free ports (tests/lib.sh
# start_daemon). Sets D_PID (network process), K_PID (keeper), D_PORT, D_HTTP, D_LOG.
start() {
	local name=$1 p=$2
	if ! start_daemon "$name" --wait serving -- CA_CERT_PATH="$p/ca.crt" CA_KEY_PATH="$p/ca.key" \
		TLS_CERT_PATH="$p/server.crt" TLS_KEY_PATH="$p/server.key" TOKEN_PATH="$p/token" PORT=0 \
		LISTEN_ADDRESS=127.0.0.1 HTTP_ADDR=127.0.0.1:0 SHUTDOWN_GRACE=2s >"$WORK/out/$name.start" 2>&1; then
		not_ok "$name: the daemon did not start" "$(cat "$WORK/out/$name.start")"
		return 1
	fi
	K_PID=$(pgrep -P "$D_PID" | head -1)
	DAEMON_PIDS+=("$K_PID")
}

# request PKI_DIR: one certificate through the `request` subcommand.
request() {
	"$BIN" request --endpoint "127.0.0.1:$D_PORT" --ca "$1/ca.crt" --token-file "$1/token" \
		--ip 127.0.0.1 --timeout 5s
}

# scan PID PEM_KEY: exit 0 when some bytes of the key are in the process's
# memory (prints which), 1 when none are, 2 when the memory cannot be read.
scan() {
	python3 - "$1" "$2" <<'PY'
import base64, re, sys
pid, keyfile = sys.argv[1], sys.argv[2]
pem = open(keyfile, 'rb').read()
body = b''.join(l for l in pem.splitlines() if l and not l.startswith(b'-----'))
der = base64.b64decode(body)
needles = {'PKCS#8 DER': der, 'PEM body': body, 'PEM text': pem.strip()}
# Ed25519 PKCS#8: 16 bytes of header, then the 32-byte seed.
if der.startswith(bytes.fromhex('302e020100300506032b657004220420')):
    needles['Ed25519 seed'] = der[16:]
found, readable = set(), 0
with open('/proc/%s/maps' % pid) as maps, open('/proc/%s/mem' % pid, 'rb', 0) as mem:
    for line in maps:
        f = line.split()
        if f[1][0] != 'r' or (len(f) > 5 and f[5] in ('[vvar]', '[vsyscall]')):
            continue
        lo, hi = (int(x, 16) for x in f[0].split('-'))
        try:
            mem.seek(lo)
            data = mem.read(hi - lo)
        except OSError:
            continue
        readable += len(data)
        for name, n in needles.items():
            if n in data:
                found.add(name)
if readable == 0:
    sys.exit(2)
print('scanned %d bytes; found: %s' % (readable, ', '.join(sorted(found)) or 'nothing'))
sys.exit(0 if found else 1)
PY
}

absent() { # NAME PID KEY
	local rc=0 out
	out=$(scan "$2" "$3") || rc=$?
	case $rc in
	1) ok "$1 ($out)" ;;
	2) skip_or_fail "cannot read /proc/$2/mem (needs root or CAP_SYS_PTRACE)" ;;
	*) not_ok "$1" "$out" ;;
	esac
}
present() { # NAME PID KEY
	local rc=0 out
	out=$(scan "$2" "$3") || rc=$?
	case $rc in
	0) ok "$1 ($out)" ;;
	2) skip_or_fail "cannot read /proc/$2/mem (needs root or CAP_SYS_PTRACE)" ;;
	*) not_ok "$1" "$out" ;;
	esac
}

gen() { curl -s "http://127.0.0.1:$D_HTTP/metrics" | awk '/^talos_csr_signer_credential_generation /{print $2}'; }

section_memory() {
	say "memory: the CA key is in the keeper only, before and after a rotation"
	local live=$WORK/live new=$WORK/new g
	"$ROOT/hack/dev-pki.sh" "$live" --ip 127.0.0.1 >/dev/null
	"$ROOT/hack/dev-pki.sh" "$new" --ip 127.0.0.1 >/dev/null
	cp "$live/ca.key" "$WORK/old-ca.key"
	start memory "$live" || return 0
	check "memory: a certificate is issued (the key was used)" request "$live"
	absent "memory: network process holds no byte form of the CA key" "$D_PID" "$live/ca.key"
	present "memory: the keeper holds it (control: the scan sees a key)" "$K_PID" "$live/ca.key"

	# Rotation through the files source: new CA, serving pair and token.
	g=$(gen)
	for f in ca.crt ca.key server.crt server.key token; do
		cp "$new/$f" "$live/.$f.tmp"
		mv "$live/.$f.tmp" "$live/$f"
	done
	check "memory: the rotation is applied" wait_for 20 bash -c "(( \$(curl -s http://127.0.0.1:$D_HTTP/metrics | awk '/^talos_csr_signer_credential_generation /{print \$2}') > $g ))"
	check "memory: a certificate from the new CA" wait_for 10 request "$live"
	absent "memory: after rotation, no byte of the new CA key in the network process" "$D_PID" "$live/ca.key"
	absent "memory: ... nor of the old one" "$D_PID" "$WORK/old-ca.key"
	present "memory: the keeper holds the new key" "$K_PID" "$live/ca.key"
	stop_daemon "$D_PID" >/dev/null || true
}

section_seccomp() {
	say "seccomp: the running keeper is filtered, the network process is not the keeper"
	local p=$WORK/sc
	"$ROOT/hack/dev-pki.sh" "$p" --ip 127.0.0.1 >/dev/null
	start seccomp "$p" || return 0
	check "seccomp: keeper has a filter (Seccomp: 2)" grep -Eq '^Seccomp:[[:space:]]+2$' "/proc/$K_PID/status"
	check "seccomp: keeper has no listening socket" bash -c \
		"! ls -l /proc/$K_PID/fd 2>/dev/null | grep -o 'socket:\[[0-9]*\]' | grep -o '[0-9]*' | \
		 while read -r i; do awk -v i=\$i '\$10 == i && \$4 == \"0A\"' /proc/net/tcp /proc/net/tcp6; done | grep -q ."
	check "seccomp: the keeper's log lines carry proc=keeper" grep -q '"proc":"keeper"' "$D_LOG"
	stop_daemon "$D_PID" >/dev/null || true
}

section_kill() {
	say "kill: the keeper dies -> UNAVAILABLE and exit; the network side dies -> the keeper exits"
	local p=$WORK/kill rc=0 t0
	"$ROOT/hack/dev-pki.sh" "$p" --ip 127.0.0.1 >/dev/null
	start kill1 "$p" || return 0
	check "kill: a certificate before" request "$p"
	t0=$(now_ms)
	kill -KILL "$K_PID"
	# A call now: UNAVAILABLE, or the connection closes as the process exits.
	check "kill: a call after the keeper died does not get a certificate" bash -c "! timeout 10 $(printf '%q ' "$BIN") request --endpoint 127.0.0.1:$D_PORT --ca $p/ca.crt --token-file $p/token --ip 127.0.0.1 --timeout 3s"
	timeout 10 tail --pid="$D_PID" -f /dev/null || true
	wait "$D_PID" || rc=$?
	check "kill: the network process exited within 10 s" bash -c "! kill -0 $D_PID 2>/dev/null"
	check "kill: ... with a non-zero status ($rc)" test "$rc" -ne 0
	check "kill: ... and said why" grep -q 'keeper process killed by signal 9' "$D_LOG"
	echo "      network process gone $(($(now_ms) - t0)) ms after the keeper"

	start kill2 "$p" || return 0
	kill -KILL "$D_PID"
	check "kill: the keeper exits when the network process dies" wait_for 5 bash -c "! kill -0 $K_PID 2>/dev/null"
}

section_stall() {
	say "stall: a keeper that stops answering -> UNAVAILABLE after the reply time-out, then service resumes"
	local p=$WORK/stall out t0 ms
	"$ROOT/hack/dev-pki.sh" "$p" --ip 127.0.0.1 >/dev/null
	start stall "$p" || return 0
	check "stall: a certificate before" request "$p"
	kill -STOP "$K_PID"
	t0=$(now_ms)
	out=$("$BIN" request --endpoint "127.0.0.1:$D_PORT" --ca "$p/ca.crt" --token-file "$p/token" \
		--ip 127.0.0.1 --timeout 30s 2>&1 || true)
	ms=$(($(now_ms) - t0))
	kill -CONT "$K_PID"
	echo "      answered after $ms ms: $(tail -1 <<<"$out")"
	check "stall: the call is refused UNAVAILABLE" grep -q 'UNAVAILABLE' <<<"$out"
	check "stall: ... once the 10 s reply time-out passed, not before" test "$ms" -ge 9500
	check "stall: ... and not much later (the sweep runs every second)" test "$ms" -le 20000
	check "stall: the log says no reply came" grep -q 'no reply within 10000 ms' "$D_LOG"
	check "stall: a certificate once the keeper runs again" request "$p"
	check "stall: the keeper was never declared gone" bash -c "! grep -q 'refusing calls' '$D_LOG'"
	check "stall: both processes still run" bash -c "kill -0 $D_PID && kill -0 $K_PID"
	stop_daemon "$D_PID" >/dev/null || true
}

section_shutdown() {
	say "shutdown: SIGTERM drains, closes the channels, reaps the keeper, exit 0"
	local p=$WORK/term rc=0
	"$ROOT/hack/dev-pki.sh" "$p" --ip 127.0.0.1 >/dev/null
	start term "$p" || return 0
	check "shutdown: a certificate" request "$p"
	kill -TERM "$D_PID"
	wait "$D_PID" || rc=$?
	check "shutdown: exit status 0" test "$rc" -eq 0
	check "shutdown: the keeper is gone" bash -c "! kill -0 $K_PID 2>/dev/null"
	check "shutdown: the keeper stopped before the network process" bash -c \
		"grep -n '\"msg\":\"keeper: stopped\"' '$D_LOG' | cut -d: -f1 | head -1 | \
		 { read -r k; s=\$(grep -n '\"msg\":\"stopped\"' '$D_LOG' | cut -d: -f1 | head -1); (( k < s )); }"
}

section_talos() {
	say "talos: the real Talos client code gets a certificate through the keeper"
	local p=$WORK/talos
	build_tool
	"$TOOL" pki --family ed25519 --out "$p" >/dev/null
	start talos "$p" || return 0
	check "talos: worker (Talos <= 1.10 CSR) issued, equal to trustd's certificate" \
		"$TOOL" worker --endpoint "127.0.0.1:$D_PORT" --ca "$p/ca.crt" --token-file "$p/token" \
		--csr-family ed25519 --expect-ca "$p/ca.crt" --expect-issuer "$p/ca.crt" --trustd-ca "$p" \
		--label keeper
	stop_daemon "$D_PID" >/dev/null || true
}

for s in $SECTIONS; do
	"section_$s"
done
harness_finish
