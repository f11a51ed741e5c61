#!/usr/bin/env bash
# The rotation runbooks of docs/operations.md, executed as written: every fenced
# block that starts with a "# runbook: NAME STEP" line is extracted and run, in
# order, with kubectl against a real kube-apiserver + etcd (hack/k8s/up.sh) and the
# daemon in Kubernetes mode, while Talos worker clients (tests/interop's tool, real
# Talos client code) ask for certificates the whole time. Asserted: a token
# migration and a CA rotation refuse no worker at any point (zero failed calls),
# and each step has the effect the document says.
#
# Usage: tests/runbook/run.sh
# Environment: TCS_BIN, TCS_CACHE, KEEP_WORK=1, CI=true (see tests/e2e/run.sh).
# Ends with "N passed, M failed"; exits non-zero when anything failed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HACK=$ROOT/hack/k8s
DOC=${TCS_RUNBOOK_DOC:-$ROOT/docs/operations.md} # another copy: to prove a bad runbook fails
CACHE=${TCS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer}
BIN=${TCS_BIN:-build/talos-csr-signer}
[[ $BIN == /* ]] || BIN=$ROOT/$BIN
CI=${CI:-false}
PY=/usr/bin/python3
K8S_LOG_PREFIX=runbook
# shellcheck source=../../hack/k8s/lib.sh
. "$HACK/lib.sh"

NS=tcs-e2e # tests/e2e/rbac.yaml's namespace and names
SA=talos-csr-signer
CA_SECRET=talos-ca
TLS_SECRET=talos-csr-signer-tls
POD=talos-csr-signer-runbook-0

DAEMON_PID=

# shellcheck source=../lib.sh
. "$ROOT/tests/lib.sh"
harness_init runbook
# suite_cleanup: what tests/lib.sh's cleanup does not know about.
suite_cleanup() { [[ -d $WORK/cp ]] && "$HACK/down.sh" "$WORK/cp" >/dev/null 2>&1 || true; }

# ---------------------------------------------------------------- the blocks

say "runbook blocks in docs/operations.md"
RB=$WORK/rb
mkdir -p "$RB"
# Each fenced block whose first line is "# runbook: NAME STEP" becomes $RB/NAME-STEP.sh
# (the indentation of a list item removed).
awk -v dir="$RB" '
	/^[ ]*```/ {
		if (!inblock) { inblock = 1; first = 1; out = ""; match($0, /^[ ]*/); ind = RLENGTH; next }
		inblock = 0; if (out != "") close(out); out = ""; next
	}
	inblock && first {
		first = 0
		if ($0 ~ /^[ ]*# runbook: [a-z]+ [0-9]+[ ]*$/) { split($0, w, " "); out = dir "/" w[3] "-" w[4] ".sh" }
	}
	inblock && out != "" { print substr($0, ind + 1) > out }
' "$DOC"
ls "$RB" >"$WORK/out/blocks"
check "the token runbook has its blocks (1, 2, 4)" bash -c "cd '$RB' && test -s token-1.sh -a -s token-2.sh -a -s token-4.sh"
check "the CA runbook has its blocks (1, 3, 4, 6)" bash -c "cd '$RB' && test -s ca-1.sh -a -s ca-3.sh -a -s ca-4.sh -a -s ca-6.sh"
check "the token one-liner makes a Talos-shaped token, 20 times out of 20" bash -c "
	for i in \$(seq 20); do NEW=; . '$RB/token-1.sh' 2>/dev/null || true; grep -Eqx '[a-z0-9]{6}\\.[a-z0-9]{16}' <<<\"\$NEW\" || exit 1; done"

require_tools

# run_block NAME-STEP: runs one block as an operator would (bash, set -e, kubectl on
# PATH pointed at the cluster, NS/CA_SECRET/TLS_SECRET set, in a directory holding
# the repository's hack/); variables it sets stay set for the next block.
mkdir -p "$WORK/bin"
run_block() {
	(cd "$RB" && env PATH="$WORK/bin:$PATH" NS="$NS" CA_SECRET="$CA_SECRET" TLS_SECRET="$TLS_SECRET" \
		bash -e -c '. ./.state; before=$(compgen -v); . "./$1.sh"
			for v in $(compgen -v); do grep -qx -- "$v" <<<"$before" || declare -p "$v"; done >>./.state' _ "$1")
}
state() { (cd "$RB" && bash -c '. ./.state; printf "%s" "${!1}"' _ "$1"); }
: >"$RB/.state"
ln -s "$ROOT/hack" "$RB/hack"

# ---------------------------------------------------------------- cluster and daemon

say "control plane"
"$HACK/up.sh" "$WORK/cp" >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; not_ok "control plane up"; exit 1; }
# shellcheck disable=SC1091
. "$WORK/cp/env"
ok "kube-apiserver $K8S_VERSION and etcd $ETCD_VERSION up on $APISERVER_URL"
printf '#!/bin/sh\nexec "%s" --kubeconfig "%s" "$@"\n' "$KUBECTL" "$KUBECONFIG" >"$WORK/bin/kubectl"
chmod +x "$WORK/bin/kubectl"
kc() { "$WORK/bin/kubectl" "$@"; }

kc create namespace "$NS" >/dev/null
kc apply -f "$ROOT/tests/e2e/rbac.yaml" >/dev/null
"$TOOL" pki --family ed25519 --out "$WORK/pki1" >/dev/null
"$TOOL" pki --family ecdsa --out "$WORK/pki2" >/dev/null # the new CA (and its serving certificate)
kc -n "$NS" create secret generic "$CA_SECRET" --from-file=tls.crt="$WORK/pki1/ca.crt" \
	--from-file=tls.key="$WORK/pki1/ca.key" --from-file=token="$WORK/pki1/token" >/dev/null
kc -n "$NS" create secret tls "$TLS_SECRET" --cert="$WORK/pki1/server.crt" --key="$WORK/pki1/server.key" >/dev/null
kc -n "$NS" create token "$SA" --duration=2h >"$WORK/sa.token"

LOG=$WORK/daemon.log
start_daemon daemon --wait listening --timeout 30 -- CA_SECRET="$CA_SECRET" TLS_SECRET="$TLS_SECRET" \
	KUBE_NAMESPACE="$NS" KUBE_API_URL="$APISERVER_URL" KUBE_TOKEN_PATH="$WORK/sa.token" KUBE_CA_PATH="$APISERVER_CA" \
	POD_NAME="$POD" POD_NAMESPACE="$NS" PORT=0 LISTEN_ADDRESS=127.0.0.1 HTTP_ADDR= \
	MAX_CONNECTION_AGE=2s SHUTDOWN_GRACE=1s || { not_ok "daemon starts"; exit 1; }
DAEMON_PID=$D_PID PORT=$D_PORT
ok "daemon serves on 127.0.0.1:$PORT from the Secrets"
gen() { grep '"msg":"credentials published"' "$LOG" | tail -n 1 | sed -n 's/.*"generation":\([0-9]*\).*/\1/p'; }
gen_at_least() { local g; g=$(gen); [[ -n $g && $g -ge $1 ]]; }
worker() { "$TOOL" worker --endpoint "127.0.0.1:$PORT" --timeout 5s "$@"; }
# load NAME TOKEN_FILE CA...: worker-like load in the background until $WORK/stop-NAME exists;
# every call must succeed (--max-fail 0).
load() {
	local name=$1 tok=$2 a=()
	shift 2
	for c in "$@"; do a+=(--ca "$c"); done
	rm -f "$WORK/stop-$name"
	"$TOOL" load --endpoint "127.0.0.1:$PORT" --token-file "$tok" "${a[@]}" --conns 2 --pause 100ms \
		--duration 600s --stop-file "$WORK/stop-$name" --max-fail 0 --min-ok 5 --out "$WORK/out/load-$name.json" \
		>"$WORK/out/load-$name.log" 2>&1 &
	BG_PIDS+=("$!")
	eval "LOAD_$name=$!"
}
# finish NAME: stops a load; it must have exited 0 (no call failed).
finish() {
	local pid
	eval "pid=\$LOAD_$1"
	touch "$WORK/stop-$1"
	wait "$pid"
}
calls() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print("calls=%s ok=%s failed=%s issuers=%d serving=%d" % (d.get("calls"), d.get("ok"), d.get("failed"), len(d.get("issuers") or {}), len(d.get("serving_serials") or {})))' "$WORK/out/load-$1.json" 2>/dev/null || echo "no summary"; }

# ---------------------------------------------------------------- token migration

say "token migration, as docs/operations.md 'Rotating the token' says"
check "runbook token 1: new token generated, current one read from the Secret" run_block token-1
state OLD >"$WORK/old.tok"
state NEW >"$WORK/new.tok"
check "the current token is the Secret's" cmp -s "$WORK/old.tok" "$WORK/pki1/token"
load old "$WORK/old.tok" "$WORK/pki1/ca.crt" # every worker, before the migration
sleep 2
g=$(gen)
check "runbook token 2: new token accepted next to the current one" run_block token-2
check "... published" wait_for 15 gen_at_least $((g + 1))
check "a worker with the new token is served at once" worker --token-file "$WORK/new.tok" --ca "$WORK/pki1/ca.crt"
check "a worker with the old token still is" worker --token-file "$WORK/old.tok" --ca "$WORK/pki1/ca.crt"
load new "$WORK/new.tok" "$WORK/pki1/ca.crt" # the workers already moved
sleep 3
check "workers on the old token: no call refused until they all moved" finish old
echo "     load with the old token: $(calls old)"
g=$(gen)
check "runbook token 4: the new token is the token, the list dropped" run_block token-4
check "... published" wait_for 15 gen_at_least $((g + 1))
sleep 3
check "workers on the new token: no call refused during the whole migration" finish new
echo "     load with the new token: $(calls new)"
check "the old token is refused now" worker --token-file "$WORK/old.tok" --ca "$WORK/pki1/ca.crt" \
	--expect-code UNAUTHENTICATED --expect-msg "invalid token"
check "the Secret holds the new token and no accepted-tokens" bash -c "
	[[ \$(kc() { '$WORK/bin/kubectl' \"\$@\"; }; kc -n $NS get secret $CA_SECRET -o jsonpath='{.data.token}' | base64 -d) == \$(cat '$WORK/new.tok') ]] &&
	[[ -z \$('$WORK/bin/kubectl' -n $NS get secret $CA_SECRET -o jsonpath='{.data.accepted-tokens}') ]]"

# ---------------------------------------------------------------- CA rotation

say "CA rotation, as docs/operations.md 'Rotating the CA' says"
# The new bundle, in the layout of 'talosctl gen secrets', with its own (new) token.
{
	printf 'trustdinfo:\n    token: bndl01.0123456789abcdef\ncerts:\n    os:\n'
	printf '        crt: %s\n        key: %s\n' "$(base64 -w0 <"$WORK/pki2/ca.crt")" "$(base64 -w0 <"$WORK/pki2/ca.key")"
} >"$RB/new-secrets.yaml"
# Step 2 (workers accept the new CA) is the load's trust: both CAs.
load ca "$WORK/new.tok" "$WORK/pki1/ca.crt" "$WORK/pki2/ca.crt"
sleep 2
check "runbook ca 1: old CA and current token saved" run_block ca-1
check "... old-ca.crt is the current CA" cmp -s "$RB/old-ca.crt" "$WORK/pki1/ca.crt"
g=$(gen)
check "runbook ca 3: the Secret holds the new CA, the old one accepted, the current token kept" run_block ca-3
check "... published" wait_for 15 gen_at_least $((g + 1))
check "new certificates come from the new CA; ca is old then new" worker --token-file "$WORK/new.tok" \
	--ca "$WORK/pki1/ca.crt" --csr-family ca --expect-issuer "$WORK/pki2/ca.crt" \
	--expect-ca "$WORK/pki1/ca.crt" --expect-ca "$WORK/pki2/ca.crt"
check "the bundle's new token is not in use (the workers' token was kept)" worker \
	--token-file <(printf 'bndl01.0123456789abcdef') --ca "$WORK/pki1/ca.crt" --expect-code UNAUTHENTICATED
check "runbook ca 4: serving Secret deleted for re-issue" run_block ca-4
sleep 2
check "while it is gone, the last good serving certificate keeps serving" worker --token-file "$WORK/new.tok" \
	--ca "$WORK/pki1/ca.crt"
# What cert-manager's CA Issuer does next: a serving certificate from the new CA.
g=$(gen)
kc -n "$NS" create secret tls "$TLS_SECRET" --cert="$WORK/pki2/server.crt" --key="$WORK/pki2/server.key" >/dev/null
check "re-issued serving certificate published" wait_for 15 gen_at_least $((g + 1))
check "new handshakes present it" "$TOOL" probe --endpoint "127.0.0.1:$PORT" --ca "$WORK/pki2/ca.crt" \
	--expect-cert "$WORK/pki2/server.crt" --wait 15s
sleep 3 # MAX_CONNECTION_AGE=2s: the load's connections move over
g=$(gen)
check "runbook ca 6: the old CA no longer accepted" run_block ca-6
check "... published" wait_for 15 gen_at_least $((g + 1))
check "ca holds only the new CA now" worker --token-file "$WORK/new.tok" --ca "$WORK/pki2/ca.crt" \
	--expect-issuer "$WORK/pki2/ca.crt" --expect-ca "$WORK/pki2/ca.crt"
sleep 2
check "workers during the CA rotation: no call refused at any point" finish ca
echo "     load during the CA rotation: $(calls ca)"
check "the runbook cleaned up after itself" bash -c "! test -e '$RB/old-ca.crt' && ! test -e '$RB/current-token'"
# The one CredentialsInvalid record expected: step ca 4's deletion of the serving Secret.
check "the daemon refused no credentials during the runbooks (only step ca 4's deletion was noted)" bash -c "
	[[ \$(grep '\"reason\":\"CredentialsInvalid\"' '$LOG' | grep -vc 'Secret $NS/$TLS_SECRET was deleted; still serving') == 0 ]]"

harness_finish
