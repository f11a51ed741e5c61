#!/usr/bin/env bash
# End-to-end suite for Kubernetes mode: the daemon (build/talos-csr-signer) runs outside the cluster against
# a real kube-apiserver + etcd (hack/k8s/up.sh), with a ServiceAccount token minted by the TokenRequest API
# and bound to the least-privilege Role of tests/e2e/rbac.yaml. Certificate calls are made by the Talos
# client tool of tests/interop (real Talos worker code). Then tests/e2e/fakeapi.py injects the faults a
# real server cannot produce on demand (torn chunks, a 410 at a chosen moment, 429, an oversized event).
#
# Usage: tests/e2e/run.sh
# Environment:
#   TCS_BIN       daemon binary (default build/talos-csr-signer, relative to the repo root)
#   TCS_CACHE     tool cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer)
#   ROTATIONS     token rotations to time (default 20)
#   KEEP_WORK=1   keep the scratch directory (always kept after a failure)
#   CI=true       a missing tool or a failed build is a failure, never a skip
# Ends with "N passed, M failed"; exits non-zero when anything failed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/tests/e2e
HACK=$ROOT/hack/k8s
CACHE=${TCS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer}
BIN=${TCS_BIN:-build/talos-csr-signer}
[[ $BIN == /* ]] || BIN=$ROOT/$BIN
ROTATIONS=${ROTATIONS:-20}
CI=${CI:-false}
PY=/usr/bin/python3
K8S_LOG_PREFIX=e2e
# shellcheck source=../../hack/k8s/lib.sh
. "$HACK/lib.sh"

NS=tcs-e2e
SA=talos-csr-signer
CA_SECRET=talos-ca
TLS_SECRET=talos-csr-signer-tls
POD=talos-csr-signer-e2e-0
POD_UID=6d1c1c39-0e2b-4bd4-a0f1-5e2d0c3b9a11

DAEMON_PID=
FAKE_PID=

# shellcheck source=../lib.sh
. "$ROOT/tests/lib.sh"
harness_init e2e
# suite_cleanup: what tests/lib.sh's cleanup does not know about.
suite_cleanup() {
	[[ -z $FAKE_PID ]] || kill -KILL "$FAKE_PID" 2>/dev/null || true
	[[ -d $WORK/cp ]] && "$HACK/down.sh" "$WORK/cp" >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------- tools

require_tools

# ---------------------------------------------------------------- control plane

say "control plane"
"$HACK/up.sh" "$WORK/cp" >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; not_ok "control plane up"; exit 1; }
# shellcheck disable=SC1091
. "$WORK/cp/env"
ok "kube-apiserver $K8S_VERSION and etcd $ETCD_VERSION up on $APISERVER_URL"

kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG" "$@"; }
# api METHOD PATH [BODY [CONTENT-TYPE]]: admin request with the static token (no kubectl start-up time).
api() {
	curl -sS --fail-with-body --max-time 20 --cacert "$APISERVER_CA" -H "Authorization: Bearer $ADMIN_TOKEN" \
		-X "$1" ${3:+-H "Content-Type: ${4:-application/merge-patch+json}"} ${3:+--data-binary "$3"} \
		"$APISERVER_URL$2"
}
b64() { base64 -w0 <"$1"; }
b64s() { printf '%s' "$1" | base64 -w0; }

kc create namespace "$NS" >/dev/null
kc apply -f "$HERE/rbac.yaml" >/dev/null
check "Role grants exactly get/list/watch on the two Secrets and create/patch on events" \
	"$PY" - "$NS" "$SA" <<EOF
import json, subprocess, sys
role = json.loads(subprocess.check_output(["$KUBECTL", "--kubeconfig", "$KUBECONFIG", "-n", "$NS",
    "get", "role", "$SA", "-o", "json"]))
rules = sorted((tuple(r.get("apiGroups", [])), tuple(r["resources"]), tuple(sorted(r.get("resourceNames", []))),
    tuple(sorted(r["verbs"]))) for r in role["rules"])
want = sorted([(("",), ("secrets",), ("$CA_SECRET", "$TLS_SECRET"), ("get", "list", "watch")),
    (("events.k8s.io",), ("events",), (), ("create", "patch"))])
assert rules == want, rules
EOF

# ---------------------------------------------------------------- PKI and Secrets

"$TOOL" pki --family ed25519 --out "$WORK/pki1" >/dev/null
"$TOOL" pki --family ecdsa --out "$WORK/pki2" >/dev/null
mkdir -p "$WORK/pki3"
cp "$WORK/pki2/ca.crt" "$WORK/pki2/ca.key" "$WORK/pki2/token" "$WORK/pki3/"
"$TOOL" pki --family ecdsa --out "$WORK/pki3" --reuse-ca --keep-token >/dev/null

# ca_secret_json CRT KEY TOKEN_FILE [ACCEPTED]: a whole CA Secret as JSON.
ca_secret_json() {
	printf '{"apiVersion":"v1","kind":"Secret","metadata":{"name":"%s","namespace":"%s"},"type":"Opaque",' \
		"$CA_SECRET" "$NS"
	printf '"data":{"tls.crt":"%s","tls.key":"%s","token":"%s"%s}}' "$(b64 "$1")" "$(b64 "$2")" "$(b64 "$3")" \
		"${4:+,\"accepted-cas.crt\":\"$(b64 "${4:-/dev/null}")\"}"
}
# tls_secret_yaml CRT KEY CA: the serving Secret the way cert-manager writes it.
tls_secret_yaml() {
	cat <<EOF
apiVersion: v1
kind: Secret
metadata:
  name: $TLS_SECRET
  namespace: $NS
  annotations:
    cert-manager.io/certificate-name: talos-csr-signer
    cert-manager.io/issuer-name: talos-ca
type: kubernetes.io/tls
data:
  tls.crt: $(b64 "$1")
  tls.key: $(b64 "$2")
  ca.crt: $(b64 "$3")
EOF
}
api POST "/api/v1/namespaces/$NS/secrets" "$(ca_secret_json "$WORK/pki1/ca.crt" "$WORK/pki1/ca.key" \
	"$WORK/pki1/token")" application/json >/dev/null
tls_secret_yaml "$WORK/pki1/server.crt" "$WORK/pki1/server.key" "$WORK/pki1/ca.crt" |
	kc apply --server-side --field-manager=cert-manager-certificates-issuing -f - >/dev/null
kc -n "$NS" create secret generic not-for-the-daemon --from-literal=x=y >/dev/null
kc -n "$NS" create token "$SA" --duration=2h >"$WORK/sa.token"

check "TokenRequest token cannot list Secrets without a name selector" \
	bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' --cacert '$APISERVER_CA' \
		-H \"Authorization: Bearer \$(cat '$WORK/sa.token')\" \
		'$APISERVER_URL/api/v1/namespaces/$NS/secrets') == 403 ]]"
check "TokenRequest token cannot read another Secret" \
	bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' --cacert '$APISERVER_CA' \
		-H \"Authorization: Bearer \$(cat '$WORK/sa.token')\" \
		'$APISERVER_URL/api/v1/namespaces/$NS/secrets/not-for-the-daemon') == 403 ]]"
check "TokenRequest token may list its Secret by name" \
	bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' --cacert '$APISERVER_CA' \
		-H \"Authorization: Bearer \$(cat '$WORK/sa.token')\" \
		'$APISERVER_URL/api/v1/namespaces/$NS/secrets?fieldSelector=metadata.name%3D$CA_SECRET') == 200 ]]"

# ---------------------------------------------------------------- the daemon

LOG=$WORK/daemon.log
PORT=
# e2e_daemon: the daemon (tests/lib.sh start_daemon) in Kubernetes mode, logging
# to $LOG (O_APPEND: the script appends its own marker lines to the same file);
# sets DAEMON_PID and PORT.
e2e_daemon() {
	start_daemon "$(basename "$LOG" .log)" --wait listening -- CA_SECRET="$CA_SECRET" TLS_SECRET="$TLS_SECRET" \
		KUBE_NAMESPACE="$NS" KUBE_API_URL="$APISERVER_URL" KUBE_TOKEN_PATH="$WORK/sa.token" \
		KUBE_CA_PATH="$APISERVER_CA" POD_NAME="$POD" POD_NAMESPACE="$NS" POD_UID="$POD_UID" PORT=0 \
		LISTEN_ADDRESS=127.0.0.1 HTTP_ADDR= MAX_CONNECTION_AGE=2s SHUTDOWN_GRACE=1s LOG_LEVEL=info || return 1
	DAEMON_PID=$D_PID PORT=$D_PORT
	[[ -n $PORT ]]
}
mark() { printf '{"e2e":"%s"}\n' "$1" >>"$LOG"; }
# worker TOKEN_FILE ARGS...: one Talos worker call.
worker() {
	local tok=$1
	shift
	"$TOOL" worker --endpoint "127.0.0.1:$PORT" --token-file "$tok" --timeout 5s "$@"
}
gen() { grep '"msg":"credentials published"' "$LOG" | tail -n 1 | sed -n 's/.*"generation":\([0-9]*\).*/\1/p'; }
gen_at_least() { local g; g=$(gen); [[ -n $g && $g -ge $1 ]]; }
# published_ms GEN: the log time of "credentials published" for GEN, in epoch ms.
published_ms() {
	grep "\"msg\":\"credentials published\",\"generation\":$1," "$LOG" | head -n 1 |
		"$PY" -c 'import sys,json,datetime; t=json.loads(sys.stdin.readline())["time"]; d=datetime.datetime.strptime(t,"%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc); print(int(d.timestamp()*1000))'
}
# events_json: every events.k8s.io Event of the namespace.
events_json() { kc -n "$NS" get events.events.k8s.io -o json; }
# event_check PYTHON-EXPR-ON-e: at least one Event matches.
event_match() {
	events_json | "$PY" -c "
import json, sys
items = json.load(sys.stdin)['items']
ok = [e for e in items if ($1)]
sys.exit(0 if ok else 1)"
}

say "initial load from the Secrets"
check "daemon starts, waits for the Secrets and serves" e2e_daemon
check "log shows both Secrets applied from the API" \
	bash -c "grep -q '\"msg\":\"credentials \\(pending\\|published\\)\".*\"source\":\"Secret $NS/$CA_SECRET\"' '$LOG' &&
		grep -q '\"msg\":\"credentials \\(pending\\|published\\)\".*\"source\":\"Secret $NS/$TLS_SECRET\"' '$LOG'"
check "a Talos worker gets a certificate from the Secret's CA" \
	worker "$WORK/pki1/token" --ca "$WORK/pki1/ca.crt" --expect-issuer "$WORK/pki1/ca.crt" \
	--expect-ca "$WORK/pki1/ca.crt"
SERIAL1=$(grep '"outcome":"issued"' "$LOG" | tail -n 1 | sed -n 's/.*"serial":"\([0-9a-f]*\)".*/\1/p')
check "a wrong token is refused" worker "$WORK/pki2/token" --ca "$WORK/pki1/ca.crt" \
	--expect-code UNAUTHENTICATED --expect-msg "invalid token"

say "Events"
for _ in 1 2 3 4 5; do
	worker "$WORK/pki2/token" --ca "$WORK/pki1/ca.crt" --expect-code UNAUTHENTICATED >/dev/null 2>&1 || true
done
check "CertificateIssued (Normal) regards the Pod, note has peer, CN, SANs and serial" \
	wait_for 15 event_match "e['reason']=='CertificateIssued' and e['type']=='Normal' and
		e['regarding']=={'apiVersion':'v1','kind':'Pod','namespace':'$NS','name':'$POD','uid':'$POD_UID'} and
		e['reportingController']=='talos-csr-signer' and e['reportingInstance']=='$POD' and
		e['action']=='Issue' and 'peer 127.0.0.1' in e['note'] and 'CN worker-1.example.internal' in e['note'] and
		'SANs [' in e['note'] and '$SERIAL1' in e['note'] and e['eventTime'].endswith('Z')"
check "repeated AuthenticationFailed is one Warning Event with a series count" \
	wait_for 25 event_match "e['reason']=='AuthenticationFailed' and e['type']=='Warning' and
		e.get('series',{}).get('count',0)>=2 and 'invalid token' in e['note']"
events_json >"$WORK/out/events1.json"
check "no Event carries a token" bash -c "[[ -s '$WORK/out/events1.json' ]] &&
	! grep -qF -e \"\$(cat '$WORK/pki1/token')\" -e \"\$(cat '$WORK/pki2/token')\" '$WORK/out/events1.json'"

say "token rotation, timed over $ROTATIONS updates"
LAT=()
g0=$(gen)
tokdir=$WORK/tokens
mkdir -p "$tokdir"
rot_ok=1
for i in $(seq 1 "$ROTATIONS"); do
	printf 'rot%03d.%016d' "$i" "$i" | cut -c1-23 >"$tokdir/$i"
	tok=$(cat "$tokdir/$i")
	t0=$(now_ms)
	api PATCH "/api/v1/namespaces/$NS/secrets/$CA_SECRET" "{\"data\":{\"token\":\"$(b64s "$tok")\"}}" >/dev/null
	want=$((g0 + i))
	if ! wait_for 15 gen_at_least "$want"; then
		rot_ok=0
		break
	fi
	t1=$(published_ms "$want")
	LAT+=($((t1 - t0)))
	if ((i % 5 == 0)); then
		# The published token really is the one in use.
		worker "$tokdir/$i" --ca "$WORK/pki1/ca.crt" >/dev/null 2>&1 || rot_ok=0
	fi
done
if ((rot_ok)); then ok "$ROTATIONS token rotations published"; else not_ok "$ROTATIONS token rotations published"; fi
check "the newest token is accepted" worker "$tokdir/$ROTATIONS" --ca "$WORK/pki1/ca.crt"
check "the previous token is refused" worker "$tokdir/$((ROTATIONS - 1))" --ca "$WORK/pki1/ca.crt" \
	--expect-code UNAUTHENTICATED --expect-msg "invalid token"
check "the original token is refused" worker "$WORK/pki1/token" --ca "$WORK/pki1/ca.crt" \
	--expect-code UNAUTHENTICATED --expect-msg "invalid token"
if ((${#LAT[@]} > 0)); then
	STATS=$(printf '%s\n' "${LAT[@]}" | sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2;
		printf "n=%d median=%dms max=%dms min=%dms", NR, m, a[NR], a[1]}')
	echo "LATENCY Secret update -> new credentials in use: $STATS"
	echo "  (from just before the PATCH is sent to the daemon's 'credentials published' record)"
	max=$(printf '%s\n' "${LAT[@]}" | sort -n | tail -n 1)
	check "every rotation was in use within 5 s" test "$max" -lt 5000
fi
cp "$tokdir/$ROTATIONS" "$WORK/token.cur"

say "CA rotation with the old CA kept in accepted-cas.crt"
g=$(gen)
api PUT "/api/v1/namespaces/$NS/secrets/$CA_SECRET" "$(ca_secret_json "$WORK/pki2/ca.crt" "$WORK/pki2/ca.key" \
	"$WORK/token.cur" "$WORK/pki1/ca.crt")" application/json >/dev/null
check "new CA published" wait_for 15 gen_at_least $((g + 1))
check "new certificates chain to the new CA and ca carries old then new" \
	worker "$WORK/token.cur" --ca "$WORK/pki1/ca.crt" --csr-family ca --expect-issuer "$WORK/pki2/ca.crt" \
	--expect-ca "$WORK/pki1/ca.crt" --expect-ca "$WORK/pki2/ca.crt"
check "CredentialsRotated (Normal) Event relates to the CA Secret" \
	wait_for 15 event_match "e['reason']=='CredentialsRotated' and e['type']=='Normal' and
		e.get('related',{}).get('name')=='$CA_SECRET' and e['related'].get('kind')=='Secret' and
		e['regarding']['name']=='$POD'"

say "serving-certificate renewal as cert-manager writes it"
rm -f "$WORK/stop"
"$TOOL" load --endpoint "127.0.0.1:$PORT" --token-file "$WORK/token.cur" --ca "$WORK/pki1/ca.crt" \
	--ca "$WORK/pki2/ca.crt" --conns 4 --pause 50ms --duration 60s --stop-file "$WORK/stop" --max-fail 0 \
	--min-serving 2 --out "$WORK/out/load.json" >"$WORK/out/load.log" 2>&1 &
LOAD_PID=$!
BG_PIDS+=("$LOAD_PID")
sleep 2
g=$(gen)
tls_secret_yaml "$WORK/pki3/server.crt" "$WORK/pki3/server.key" "$WORK/pki3/ca.crt" |
	kc apply --server-side --field-manager=cert-manager-certificates-issuing -f - >/dev/null
check "renewed serving pair published" wait_for 15 gen_at_least $((g + 1))
check "new handshakes present the renewed certificate" \
	"$TOOL" probe --endpoint "127.0.0.1:$PORT" --ca "$WORK/pki2/ca.crt" --expect-cert "$WORK/pki3/server.crt" \
	--wait 15s
sleep 4 # MAX_CONNECTION_AGE=2s: every load connection moves over
touch "$WORK/stop"
check "no failed call during the renewal, both serving certificates seen" wait "$LOAD_PID"

say "corrupted Secret"
g=$(gen)
api PATCH "/api/v1/namespaces/$NS/secrets/$CA_SECRET" "{\"data\":{\"tls.key\":\"$(b64s "garbage, not a key")\"}}" \
	>/dev/null
check "CredentialsInvalid Warning Event about the CA Secret" \
	wait_for 15 event_match "e['reason']=='CredentialsInvalid' and e['type']=='Warning' and
		e.get('related',{}).get('name')=='$CA_SECRET' and 'still serving' in e['note'] and 'garbage' not in e['note']"
check "generation unchanged" test "$(gen)" = "$g"
check "the last good credentials keep serving" \
	worker "$WORK/token.cur" --ca "$WORK/pki2/ca.crt" --expect-issuer "$WORK/pki2/ca.crt"
api PUT "/api/v1/namespaces/$NS/secrets/$CA_SECRET" "$(ca_secret_json "$WORK/pki2/ca.crt" "$WORK/pki2/ca.key" \
	"$WORK/token.cur" "$WORK/pki1/ca.crt")" application/json >/dev/null
sleep 1
check "restoring the same content publishes nothing new" test "$(gen)" = "$g"

say "Secret deleted and recreated"
g=$(gen)
api DELETE "/api/v1/namespaces/$NS/secrets/$CA_SECRET" >/dev/null
check "deletion is reported as a Warning Event" \
	wait_for 15 event_match "e['reason']=='CredentialsInvalid' and 'was deleted' in e['note']"
check "still serving while the Secret is gone" worker "$WORK/token.cur" --ca "$WORK/pki2/ca.crt"
printf 'recrt.%016d' 7 >"$WORK/token.recreated"
api POST "/api/v1/namespaces/$NS/secrets" "$(ca_secret_json "$WORK/pki2/ca.crt" "$WORK/pki2/ca.key" \
	"$WORK/token.recreated" "$WORK/pki1/ca.crt")" application/json >/dev/null
check "the recreated Secret is published" wait_for 15 gen_at_least $((g + 1))
check "its token is accepted" worker "$WORK/token.recreated" --ca "$WORK/pki2/ca.crt"
check "the token of the deleted Secret is refused" worker "$WORK/token.cur" --ca "$WORK/pki2/ca.crt" \
	--expect-code UNAUTHENTICATED
cp "$WORK/token.recreated" "$WORK/token.cur"

# rotate_token TAG: a new token through the API; waits until it is published and accepted.
rotate_token() {
	local g
	g=$(gen)
	printf '%s.%016d' "$1" "$RANDOM" | cut -c1-23 >"$WORK/token.new"
	api PATCH "/api/v1/namespaces/$NS/secrets/$CA_SECRET" \
		"{\"data\":{\"token\":\"$(b64s "$(cat "$WORK/token.new")")\"}}" >/dev/null || return 1
	wait_for 60 gen_at_least $((g + 1)) || return 1
	worker "$WORK/token.new" --ca "$WORK/pki2/ca.crt" || return 1
	cp "$WORK/token.new" "$WORK/token.cur"
}

say "kube-apiserver killed and restarted mid-watch"
mark restart-begin
"$HACK/restart-apiserver.sh" "$WORK/cp" >"$WORK/out/restart1.log" 2>&1
check "the daemon served while the API server was away" worker "$WORK/token.cur" --ca "$WORK/pki2/ca.crt"
check "an update after the restart is picked up" rotate_token rest1
mark restart-end
check "the watch recovered (log)" grep -q '"msg":"watch Secret '"$NS/$CA_SECRET"': recovered"\|expired (410 Gone)' "$LOG"

say "forced 410 Gone: etcd compaction, then a restart with an empty watch cache"
n410=$(grep -c 'expired (410 Gone); relisting' "$LOG" || true)
for i in 1 2 3 4 5; do
	api PUT "/api/v1/namespaces/$NS/secrets/not-for-the-daemon" \
		"{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"not-for-the-daemon\",\"namespace\":\"$NS\"},\"data\":{\"x\":\"$(b64s "$i")\"}}" \
		application/json >/dev/null
done
rev=$("$HACK/etcd-compact.sh" "$WORK/cp" 2>/dev/null)
check "etcd compacted (revision $rev)" test -n "$rev"
mark restart-begin
"$HACK/restart-apiserver.sh" "$WORK/cp" >"$WORK/out/restart2.log" 2>&1
check "an update after the compaction is picked up" rotate_token gone1
mark restart-end
# The resumed watch meets 410 Gone and relists; when the restarted apiserver
# first answers 403 (its RBAC cache still warming up), the watcher relists
# after that error instead, before it could see the 410: both are a relist.
relisted_after_compaction() {
	[[ $(grep -c 'expired (410 Gone); relisting' "$LOG" || true) -gt $n410 ]] && return 0
	awk '/"e2e":"restart-begin"/ { w = 1; seen = 0 } w && /"msg":"watch Secret .*HTTP 403/ { seen = 1 }
		/"e2e":"restart-end"/ { w = 0 } END { exit !seen }' "$LOG"
}
check "the daemon relisted after 410 Gone (or after a 403 while the apiserver warmed up)" \
	relisted_after_compaction

say "least privilege"
check "the daemon got no 403 outside the API server restarts" \
	"$PY" - "$LOG" <<'EOF'
import sys
inside, bad = False, []
for line in open(sys.argv[1], errors="replace"):
    if '"e2e":"restart-begin"' in line: inside = True
    elif '"e2e":"restart-end"' in line: inside = False
    elif ("HTTP 403" in line or "forbidden" in line) and not inside: bad.append(line.strip())
if bad:
    print("\n".join(bad[:5])); sys.exit(1)
EOF
n403=$(grep -c 'HTTP 403' "$LOG" || true)
echo "  403s logged while a restarted API server warmed up its RBAC cache: $n403"

say "SIGTERM"
# e2e_stop: SIGTERM, exit 0 (tests/lib.sh stop_daemon); the time it took goes to out/stop.ms.
e2e_stop() {
	local t0 rc=0
	t0=$(now_ms)
	stop_daemon "$DAEMON_PID" || rc=$?
	DAEMON_PID=
	echo $(($(now_ms) - t0)) >"$WORK/out/stop.ms"
	return $rc
}
check "SIGTERM stops the daemon (aborting its open watches) with exit 0" e2e_stop
check "it stopped within 3 s" test "$(cat "$WORK/out/stop.ms")" -lt 3000

say "failures an operator can see: HTTP first, /readyz reasons, Events, check in Kubernetes mode"
# A second daemon with its HTTP port, started on purpose with what goes wrong in real life.
# probe_daemon NAME TOKEN_FILE ENV...: starts it; sets PD_PID and PD_HTTP; its log is $WORK/NAME.log.
probe_daemon() {
	local name=$1 tok=$2
	shift 2
	start_daemon "$name" --wait 'log:"msg":"http listening"' --timeout 15 -- TLS_SECRET="$TLS_SECRET" \
		KUBE_NAMESPACE="$NS" KUBE_API_URL="$APISERVER_URL" KUBE_TOKEN_PATH="$tok" KUBE_CA_PATH="$APISERVER_CA" \
		POD_NAME="$POD" POD_NAMESPACE="$NS" POD_UID="$POD_UID" PORT=0 LISTEN_ADDRESS=127.0.0.1 \
		HTTP_ADDR=127.0.0.1:0 SHUTDOWN_GRACE=1s CA_SECRET="$CA_SECRET" "$@" || return 1
	PD_PID=$D_PID PD_HTTP=$D_HTTP
	[[ -n $PD_HTTP ]]
}
readyz() { curl -s -w ' %{http_code}' "http://127.0.0.1:$PD_HTTP/readyz"; }
kc -n "$NS" create serviceaccount half >/dev/null
kc -n "$NS" create role half --verb=create,patch --resource=events.events.k8s.io >/dev/null
kc -n "$NS" create rolebinding half --role=half --serviceaccount="$NS:half" >/dev/null
kc -n "$NS" create token half --duration=1h >"$WORK/half.token"
check "missing RoleBinding: the HTTP port answers before any credential" probe_daemon half "$WORK/half.token"
check "... /healthz 200" bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$PD_HTTP/healthz) == 200 ]]"
check "... /readyz 503 names the Secret, the 403 and the verb" wait_for 15 bash -c "r=\$(curl -s -w ' %{http_code}' http://127.0.0.1:$PD_HTTP/readyz)
	[[ \$r == 'not ready: waiting for Secret $NS/$CA_SECRET: list: HTTP 403: '*'cannot list resource \"secrets\"'*' 503' ]] ||
	[[ \$r == 'not ready: waiting for Secret $NS/$TLS_SECRET: list: HTTP 403: '*'cannot list resource \"secrets\"'*' 503' ]]"
readyz >"$WORK/out/readyz-403.txt" || true
echo "  what the operator sees: $(cat "$WORK/out/readyz-403.txt")"
check "... a Warning Event SecretAccessFailed names the Secret and the missing verb" \
	wait_for 20 event_match "e['reason']=='SecretAccessFailed' and e['type']=='Warning' and
		'the ServiceAccount needs the \"list\" verb on secrets in namespace $NS' in e['note'] and
		e.get('related',{}).get('kind')=='Secret'"
events_json | "$PY" -c "import json,sys; [print('  Event:', e['type'], e['reason'], '-', e['note']) for e in json.load(sys.stdin)['items'] if e['reason']=='SecretAccessFailed'][:1]"
kc -n "$NS" create rolebinding half-secrets --role="$SA" --serviceaccount="$NS:half" >/dev/null
check "... after the RoleBinding is added, it serves without a restart (retried with backoff)" \
	wait_for 45 bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$PD_HTTP/readyz) == 200 ]]"
kill -TERM "$PD_PID"; wait "$PD_PID" || true

check "Secret name typo: serves HTTP, /readyz says which Secret is missing" probe_daemon typo "$WORK/sa.token" \
	CA_SECRET=talos-caa
# The Role names its Secrets, so a typo is a 403 on the name that was typed.
check "... /readyz 503 names the mistyped Secret and the 403" wait_for 15 bash -c "[[ \$(curl -s -w ' %{http_code}' \
	http://127.0.0.1:$PD_HTTP/readyz) == 'not ready: waiting for Secret $NS/talos-caa: list: HTTP 403: '*' 503' ]]"
readyz >"$WORK/out/readyz-typo.txt" || true
echo "  what the operator sees: $(cat "$WORK/out/readyz-typo.txt")"
kill -TERM "$PD_PID"; wait "$PD_PID" || true

# An expired serving certificate at start: the refusal names the serving Secret, not the CA Secret.
mkdir -p "$WORK/pki-exp"
cp "$WORK/pki2/ca.crt" "$WORK/pki2/ca.key" "$WORK/pki2/token" "$WORK/pki-exp/"
"$TOOL" pki --family ecdsa --out "$WORK/pki-exp" --reuse-ca --keep-token --serving-ttl 1s >/dev/null
sleep 2
kc -n "$NS" create secret tls expired-tls --cert="$WORK/pki-exp/server.crt" --key="$WORK/pki-exp/server.key" \
	>/dev/null
kc -n "$NS" patch role "$SA" --type json -p '[{"op":"add","path":"/rules/0/resourceNames/-","value":"expired-tls"}]' \
	>/dev/null
check "expired serving certificate at start" probe_daemon expired "$WORK/sa.token" TLS_SECRET=expired-tls
check "... the refusal names the serving Secret as the one at fault" wait_for 15 bash -c "grep '\"reason\":\"CredentialsInvalid\"' '$WORK/expired.log' |
	grep -q '\"related\":\"Secret $NS/expired-tls\"'"
check "... and its key, and says expired" bash -c "grep '\"reason\":\"CredentialsInvalid\"' '$WORK/expired.log' |
	grep -q 'Secret $NS/expired-tls key tls.crt: serving certificate: expired'"
grep -m1 '"reason":"CredentialsInvalid"' "$WORK/expired.log" | sed 's/^/  log: /' || true
kill -TERM "$PD_PID"; wait "$PD_PID" || true

# check, in Kubernetes mode, before installing: the same Secrets, through the same account.
kcheck() {
	env -i PATH=/usr/bin:/bin CA_SECRET="$CA_SECRET" TLS_SECRET="$1" KUBE_NAMESPACE="$NS" \
		KUBE_API_URL="$APISERVER_URL" KUBE_TOKEN_PATH="$2" KUBE_CA_PATH="$APISERVER_CA" "$BIN" check
}
rc=0
kcheck "$TLS_SECRET" "$WORK/sa.token" >"$WORK/out/kcheck-ok.txt" 2>&1 || rc=$?
check "check in Kubernetes mode: reads both Secrets and would serve (exit $rc)" bash -c "(( $rc <= 1 )) &&
	grep -q 'CA_SECRET: Secret $NS/$CA_SECRET read from' '$WORK/out/kcheck-ok.txt' &&
	grep -q 'daemon would load and serve' '$WORK/out/kcheck-ok.txt'"
kc -n "$NS" create serviceaccount nobody >/dev/null
kc -n "$NS" create token nobody --duration=1h >"$WORK/nobody.token"
rc=0
kcheck "$TLS_SECRET" "$WORK/nobody.token" >"$WORK/out/kcheck-403.txt" 2>&1 || rc=$?
check "check in Kubernetes mode without RBAC: exit 2, the 403 and the verb named" bash -c "(( $rc == 2 )) &&
	grep -Eq '^error +CA_SECRET \\(Secret $NS/$CA_SECRET\\): HTTP 403: .*cannot list resource' '$WORK/out/kcheck-403.txt'"
sed 's/^/  check: /' "$WORK/out/kcheck-403.txt" | head -4
rc=0
kcheck expired-tls "$WORK/sa.token" >"$WORK/out/kcheck-exp.txt" 2>&1 || rc=$?
check "check in Kubernetes mode: an expired serving Secret is an error naming it" bash -c "(( $rc == 2 )) &&
	grep -q 'Secret $NS/expired-tls key tls.crt: serving certificate: expired' '$WORK/out/kcheck-exp.txt'"

say "faults from fakeapi.py: 429, torn chunks, ERROR 410, oversized event, HTTP 410, 401 after a token rotation"
F=$WORK/fake
mkdir -p "$F/secrets" "$F/pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=fakeapi-ca \
	-keyout "$F/pki/ca.key" -out "$F/pki/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=fakeapi \
	-keyout "$F/pki/srv.key" -out "$F/pki/srv.csr" 2>/dev/null
openssl x509 -req -in "$F/pki/srv.csr" -CA "$F/pki/ca.crt" -CAkey "$F/pki/ca.key" -CAcreateserial -days 1 \
	-extfile <(printf 'subjectAltName=IP:127.0.0.1\n') -out "$F/pki/srv.crt" 2>/dev/null
printf 'fake-sa-token-one\n' >"$F/token"
cp "$F/token" "$F/sa.token"
printf 'fakeA.%016d' 1 >"$F/token.A"
printf 'fakeB.%016d' 2 >"$F/token.B"
ca_data() { printf '{"tls.crt":"%s","tls.key":"%s","token":"%s"}' "$(b64 "$WORK/pki2/ca.crt")" \
	"$(b64 "$WORK/pki2/ca.key")" "$(b64 "$1")"; }
ca_data "$WORK/token.cur" >"$F/secrets/$CA_SECRET.json"
ca_data "$F/token.A" >"$F/secrets/$CA_SECRET-next.json"
ca_data "$F/token.B" >"$F/secrets/$CA_SECRET-last.json"
printf '{"tls.crt":"%s","tls.key":"%s"}' "$(b64 "$WORK/pki3/server.crt")" "$(b64 "$WORK/pki3/server.key")" \
	>"$F/secrets/$TLS_SECRET.json"
"$PY" "$HERE/fakeapi.py" --cert "$F/pki/srv.crt" --key "$F/pki/srv.key" --state "$F" --ns "$NS" \
	--ca-secret "$CA_SECRET" --tls-secret "$TLS_SECRET" 2>"$F/fakeapi.err" &
FAKE_PID=$!
wait_for 10 test -s "$F/port" || not_ok "fakeapi started"
APISERVER_URL=https://127.0.0.1:$(cat "$F/port") APISERVER_CA=$F/pki/ca.crt
cp "$F/sa.token" "$WORK/sa.token"
LOG=$WORK/daemon-fake.log
check "daemon starts against fakeapi (after a 429)" e2e_daemon
reqs() { "$PY" - "$F/requests.jsonl" "$1" <<'PYEOF'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
ca = [r for r in rs if r["name"] == "talos-ca" and r["auth"] == "ok"]
def step(n): return next(r for r in ca if r.get("step") == n)
exec(sys.argv[2])
PYEOF
}
check "Retry-After of the 429 was honoured" reqs 'assert step(2)["t"] - step(1)["t"] >= 0.9, step(2)["t"] - step(1)["t"]'
check "an event torn into 1-7 byte chunks is decoded (its token is accepted)" \
	wait_for 15 worker "$F/token.A" --ca "$WORK/pki2/ca.crt"
check "ERROR 410, an oversized event and HTTP 410 each lead to a relist, then a watch from the new RV" \
	wait_for 20 reqs 'assert [(r["step"], r["watch"]) for r in ca][:9] == [(1, False), (2, False), (3, True),
(4, False), (5, True), (6, False), (7, True), (8, False), (9, True)], ca; assert step(9)["rv"] == "400"; assert step(5)["rv"] == "200"'
check "the oversized event was refused, not buffered" grep -q 'event larger than' "$LOG"
check "watches ask for bookmarks, a timeout in [300, 600) s and select by name" reqs '
w = [r for r in rs if r["watch"]]
assert w and all(r["bookmarks"] == "true" and 300 <= int(r["timeoutSeconds"]) < 600 and r["name"] for r in w), w'
# Rotate the service-account token: the fake now refuses the old one; the daemon must re-read at once.
printf 'fake-sa-token-two\n' >"$WORK/sa.token"
cp "$WORK/sa.token" "$F/token"
touch "$F/flip"
check "after a 401 the token file is re-read and the watch resumes (next event applied)" \
	wait_for 15 worker "$F/token.B" --ca "$WORK/pki2/ca.crt"
check "that was a 401 followed by an authorised retry" reqs '
bad = [r for r in rs if r["auth"] == "bad"]
assert bad and step(10)["t"] - bad[0]["t"] < 3, (bad, step(10))'
check "fakeapi saw no unexpected request" reqs 'assert not [r for r in rs if r.get("unexpected")]'
check "SIGTERM stops the daemon mid-watch against fakeapi" e2e_stop
check "it stopped within 3 s" test "$(cat "$WORK/out/stop.ms")" -lt 3000
kill "$FAKE_PID" 2>/dev/null || true
wait "$FAKE_PID" 2>/dev/null || true
FAKE_PID=

# ---------------------------------------------------------------- summary

harness_finish
