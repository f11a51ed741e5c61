#!/usr/bin/env bash
# Smoke test of the real test control plane: RBAC with resourceNames, TokenRequest tokens, LIST/GET/WATCH
# of one Secret with curl, bookmarks, 410 Gone after an etcd compaction, events.k8s.io/v1 Event creation.
# Usage: hack/k8s/smoke.sh   (KEEP=1 keeps the work dir; prints "N passed, M failed"; exit 1 on a failure)
set -euo pipefail
K8S_LOG_PREFIX=smoke.sh
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

for c in curl openssl jq; do
	k8s_need_cmd "$c" || k8s_skip_or_fail "$c is missing and could not be installed"
done
k8s_load_tools # SKIPPED (exit 0) locally / failure under CI=true when the tools cannot be built

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tcs-k8s-smoke.XXXXXX")
BG_PIDS=()
cleanup() {
	local rc=$? p
	for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	"$HERE/down.sh" "$WORK/cp" >/dev/null 2>&1 || true
	if [[ ${KEEP:-0} == 1 || $rc -ne 0 ]]; then
		k8s_log "work dir kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); printf 'ok   - %s\n' "$1"; }
not_ok() { FAIL=$((FAIL + 1)); printf 'FAIL - %s\n' "$1"; [[ -z ${2:-} ]] || printf '       %s\n' "$2"; }
# expect_eq NAME WANT GOT
expect_eq() { if [[ $2 == "$3" ]]; then ok "$1"; else not_ok "$1" "want [$2] got [$3]"; fi; }
# expect_match NAME ERE TEXT
expect_match() { if [[ $3 =~ $2 ]]; then ok "$1"; else not_ok "$1" "[$3] does not match /$2/"; fi; }

"$HERE/up.sh" "$WORK/cp" || k8s_die "up.sh failed"
. "$WORK/cp/env"
ok "control plane up: kube-apiserver $K8S_VERSION, etcd $ETCD_VERSION"

kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG" "$@"; }
NS=tcs-smoke
SA=talos-csr-signer
ALLOWED=talos-ca
OTHER=not-for-you

kc create namespace "$NS" >/dev/null
kc -n "$NS" create secret generic "$ALLOWED" --from-literal=token=v1 >/dev/null
kc -n "$NS" create secret generic "$OTHER" --from-literal=token=secret >/dev/null
kc -n "$NS" create serviceaccount "$SA" >/dev/null
kc apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: $SA, namespace: $NS}
rules:
- apiGroups: [""]
  resources: ["secrets"]
  resourceNames: ["$ALLOWED"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: $SA, namespace: $NS}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: $SA}
subjects:
- {kind: ServiceAccount, name: $SA, namespace: $NS}
EOF

# No kube-controller-manager: no token Secrets; a bound token comes from the TokenRequest API.
TOKEN=$(kc -n "$NS" create token "$SA" --duration=10m)
expect_match "kubectl create token returns a JWT" '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' "$TOKEN"
printf '%s' "$TOKEN" >"$WORK/token"

# api METHOD PATH [CURL_ARGS...]: prints the HTTP status; the body goes to $WORK/body
api() {
	local method=$1 path=$2
	shift 2
	curl -sS --max-time 20 -o "$WORK/body" -w '%{http_code}' --cacert "$APISERVER_CA" \
		-H "Authorization: Bearer $TOKEN" -X "$method" "$@" "$APISERVER_URL$path"
}
SECRETS=/api/v1/namespaces/$NS/secrets

# ---- RBAC with resourceNames
code=$(api GET "$SECRETS?fieldSelector=metadata.name%3D$ALLOWED")
expect_eq "LIST with fieldSelector=metadata.name=$ALLOWED is allowed" 200 "$code"
expect_eq "the LIST holds exactly that Secret" "1 $ALLOWED" "$(jq -r '"\(.items|length) \(.items[0].metadata.name)"' "$WORK/body")"
LIST_RV=$(jq -r .metadata.resourceVersion "$WORK/body")
expect_match "the LIST carries a collection resourceVersion" '^[0-9]+$' "$LIST_RV"

code=$(api GET "$SECRETS")
expect_eq "LIST without the name fieldSelector is forbidden" 403 "$code"
code=$(api GET "$SECRETS?fieldSelector=metadata.name%3D$OTHER")
expect_eq "LIST with fieldSelector for another Secret is forbidden" 403 "$code"
code=$(api GET "$SECRETS/$ALLOWED")
expect_eq "GET $ALLOWED is allowed" 200 "$code"
expect_eq "GET returns the data base64-encoded" "v1" "$(jq -r .data.token "$WORK/body" | base64 -d)"
code=$(api GET "$SECRETS/$OTHER")
expect_eq "GET of another Secret is forbidden" 403 "$code"
expect_eq "403 body is a Status with reason Forbidden" "Status Forbidden 403" \
	"$(jq -r '"\(.kind) \(.reason) \(.code)"' "$WORK/body")"
code=$(api GET "$SECRETS?watch=1&timeoutSeconds=1")
expect_eq "WATCH without the name fieldSelector is forbidden" 403 "$code"
code=$(curl -sS -o "$WORK/body" -w '%{http_code}' --cacert "$APISERVER_CA" -H "Authorization: Bearer x$TOKEN" \
	"$APISERVER_URL$SECRETS/$ALLOWED")
expect_eq "a bad token gets 401 Status Unauthorized" "401 Status Unauthorized" \
	"$code $(jq -r '"\(.kind) \(.reason)"' "$WORK/body")"

# ---- WATCH from the list resourceVersion sees a change
# watch_start NAME QUERY [CURL_ARGS...]: stream into $WORK/NAME.out (headers in NAME.hdr); sets WATCH_PID
watch_start() {
	local name=$1 query=$2
	shift 2
	: >"$WORK/$name.out"
	curl -sS -N --max-time 120 --cacert "$APISERVER_CA" -H "Authorization: Bearer $TOKEN" "$@" \
		-D "$WORK/$name.hdr" -o "$WORK/$name.out" "$APISERVER_URL$SECRETS?$query" 2>"$WORK/$name.err" &
	WATCH_PID=$!
	BG_PIDS+=("$WATCH_PID")
}
# wait_for_line FILE JQ_FILTER SECONDS: true once a line of FILE satisfies the filter
wait_for_line() {
	local file=$1 filter=$2 secs=$3 i
	for i in $(seq 1 $((secs * 10))); do
		if [[ -s $file ]] && jq -e -c "select($filter)" "$file" 2>/dev/null | grep -q .; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}
SEL="fieldSelector=metadata.name%3D$ALLOWED"

watch_start w1 "$SEL&watch=1&allowWatchBookmarks=true&resourceVersion=$LIST_RV&timeoutSeconds=60" --http1.1
w1=$WATCH_PID
sleep 1
kc -n "$NS" patch secret "$ALLOWED" --type=merge -p '{"data":{"token":"'"$(printf v2 | base64)"'"}}' >/dev/null
if wait_for_line "$WORK/w1.out" '.type=="MODIFIED" and .object.metadata.name=="'"$ALLOWED"'"' 20; then
	ok "WATCH (allowWatchBookmarks=true, resourceVersion=list RV) streams MODIFIED on change"
else
	not_ok "WATCH streams MODIFIED on change" "$(cat "$WORK/w1.out" "$WORK/w1.err")"
fi
expect_eq "MODIFIED event carries the new data" v2 \
	"$(jq -r 'select(.type=="MODIFIED") | .object.data.token' "$WORK/w1.out" | head -n 1 | base64 -d)"
expect_match "watch answers HTTP/1.1 200" 'HTTP/1.1 200' "$(head -n 1 "$WORK/w1.hdr")"
expect_match "watch Content-Type is application/json" '[Cc]ontent-[Tt]ype: application/json' "$(cat "$WORK/w1.hdr")"
expect_match "watch uses Transfer-Encoding: chunked" '[Tt]ransfer-[Ee]ncoding: chunked' "$(cat "$WORK/w1.hdr")"
kill "$w1" 2>/dev/null || true

# ---- BOOKMARKs
# Watch with resourceVersion unset: synthetic ADDED for the current object, then a BOOKMARK annotated
# k8s.io/initial-events-end=true (sent by 1.37 even without sendInitialEvents=true).
watch_start w2 "$SEL&watch=1&allowWatchBookmarks=true&timeoutSeconds=3"
wait "$WATCH_PID" 2>/dev/null || true
expect_eq "WATCH without resourceVersion: ADDED, then BOOKMARK with k8s.io/initial-events-end" \
	"ADDED $ALLOWED|BOOKMARK true" \
	"$(jq -r 'if .type=="BOOKMARK" then "\(.type) \(.object.metadata.annotations["k8s.io/initial-events-end"])" else "\(.type) \(.object.metadata.name)" end' "$WORK/w2.out" 2>/dev/null | paste -sd '|')"
# From an explicit RV the watch cache sends a BOOKMARK ~2 s before the timeoutSeconds deadline (and about
# every 60 s), but only once its own RV for Secrets has moved past the last RV the watcher got. On a quiet
# server that happens when something triggers an etcd progress notification, e.g. a consistent LIST
# (resourceVersion unset) of Secrets after any other write. With timeoutSeconds below ~10 no deadline
# bookmark was seen.
api GET "$SECRETS?$SEL" >/dev/null
RV_NOW=$(jq -r .metadata.resourceVersion "$WORK/body")
watch_start w3 "$SEL&watch=1&allowWatchBookmarks=true&resourceVersion=$RV_NOW&timeoutSeconds=12"
sleep 1
kc -n "$NS" create configmap bump-global-revision >/dev/null
api GET "$SECRETS?$SEL" >/dev/null
wait "$WATCH_PID" 2>/dev/null || true
BM=$(jq -c 'select(.type=="BOOKMARK")' "$WORK/w3.out" 2>/dev/null | tail -n 1 || true)
expect_match "BOOKMARK before the deadline: a Secret with only metadata.resourceVersion" \
	'^\{"type":"BOOKMARK","object":\{"kind":"Secret","apiVersion":"v1","metadata":\{"resourceVersion":"[0-9]+"\}\}\}$' "$BM"
BM_RV=$(printf '%s' "$BM" | jq -r .object.metadata.resourceVersion 2>/dev/null || true)
if [[ $BM_RV =~ ^[0-9]+$ ]] && ((BM_RV > RV_NOW)); then
	ok "the BOOKMARK resourceVersion ($BM_RV) is past the watch start ($RV_NOW)"
else
	not_ok "the BOOKMARK resourceVersion is past the watch start" "start $RV_NOW bookmark [$BM_RV]"
fi
printf '%s\n' "$BM" >"$WORK/bookmark.json"

# ---- 410 Gone: history compacted in etcd, apiserver restarted (empty watch cache), watch from the old RV
for i in 3 4 5 6; do
	kc -n "$NS" patch secret "$ALLOWED" --type=merge -p '{"data":{"token":"'"$(printf '%s' "v$i" | base64)"'"}}' >/dev/null
done
COMPACT_REV=$("$HERE/etcd-compact.sh" "$WORK/cp")
expect_match "etcd compaction succeeded" '^[0-9]+$' "$COMPACT_REV"
code=$(api GET "$SECRETS?$SEL&resourceVersion=$LIST_RV&resourceVersionMatch=Exact")
expect_eq "LIST at an exact compacted resourceVersion is HTTP 410" 410 "$code"
expect_eq "its Status has reason Expired" "Status Expired 410" "$(jq -r '"\(.kind) \(.reason) \(.code)"' "$WORK/body")"
cp "$WORK/body" "$WORK/list-410.json"

# Watch from the old RV while the watch cache still holds it (no restart yet): record what happens.
watch_start w3b "$SEL&watch=1&allowWatchBookmarks=true&resourceVersion=$LIST_RV&timeoutSeconds=3"
wait "$WATCH_PID" 2>/dev/null || true
cp "$WORK/w3b.out" "$WORK/watch-before-restart.out"
expect_eq "before a restart the watch cache still serves the compacted RV (MODIFIED events, no 410)" \
	"MODIFIED" "$(jq -r .type "$WORK/w3b.out" 2>/dev/null | sort -u | paste -sd ' ')"

old_pid=$APISERVER_PID
"$HERE/restart-apiserver.sh" "$WORK/cp" >/dev/null 2>&1 || not_ok "restart-apiserver.sh succeeded"
. "$WORK/cp/env"
if [[ $APISERVER_PID != "$old_pid" ]] && kill -0 "$APISERVER_PID" 2>/dev/null; then
	ok "restart-apiserver.sh restarted kube-apiserver on the same URL ($APISERVER_URL)"
else
	not_ok "restart-apiserver.sh restarted kube-apiserver" "pid $old_pid -> $APISERVER_PID"
fi
watch_start w4 "$SEL&watch=1&allowWatchBookmarks=true&resourceVersion=$LIST_RV&timeoutSeconds=10"
w4=$WATCH_PID
wait "$w4" 2>/dev/null || true
expect_match "WATCH from a compacted RV answers HTTP 200" 'HTTP/[0-9.]+ 200' "$(head -n 1 "$WORK/w4.hdr" 2>/dev/null)"
ERR=$(jq -c 'select(.type=="ERROR")' "$WORK/w4.out" 2>/dev/null | head -n 1 || true)
expect_eq "...then streams an ERROR event with code 410, reason Expired" "Status Failure Expired 410" \
	"$(printf '%s' "$ERR" | jq -r '.object | "\(.kind) \(.status) \(.reason) \(.code)"' 2>/dev/null)"
expect_eq "...and ends the stream after it (one line)" 1 "$(grep -c . "$WORK/w4.out" || true)"
printf '%s\n' "$ERR" >"$WORK/watch-410.json"

# ---- events.k8s.io/v1 Event
NOW=$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)
EV_NAME="$SA.$(printf '%x' "$(date +%s%N)")"
code=$(api POST "/apis/events.k8s.io/v1/namespaces/$NS/events" -H 'Content-Type: application/json' -d @- <<EOF
{"apiVersion":"events.k8s.io/v1","kind":"Event",
 "metadata":{"name":"$EV_NAME","namespace":"$NS"},
 "eventTime":"$NOW",
 "reportingController":"talos-csr-signer.siderolabs.dev/daemon","reportingInstance":"smoke-pod",
 "action":"Reload","reason":"CredentialsRotated","type":"Normal",
 "note":"smoke test event",
 "regarding":{"apiVersion":"v1","kind":"Pod","namespace":"$NS","name":"smoke-pod","uid":"00000000-0000-0000-0000-000000000001"},
 "related":{"apiVersion":"v1","kind":"Secret","namespace":"$NS","name":"$ALLOWED"}}
EOF
)
expect_eq "POST events.k8s.io/v1 Event is created" 201 "$code"
code=$(api PATCH "/apis/events.k8s.io/v1/namespaces/$NS/events/$EV_NAME" \
	-H 'Content-Type: application/merge-patch+json' \
	-d '{"series":{"count":2,"lastObservedTime":"'"$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)"'"}}')
expect_eq "PATCH of the Event series (merge-patch) is allowed" 200 "$code"
expect_eq "the patched Event has series.count 2" 2 "$(jq -r .series.count "$WORK/body")"
expect_eq "the Event is visible as core/v1 involvedObject+message" "smoke-pod smoke test event" \
	"$(kc -n "$NS" get events.v1. "$EV_NAME" -o jsonpath='{.involvedObject.name} {.message}')"
code=$(api POST "/api/v1/namespaces/$NS/events" -H 'Content-Type: application/json' \
	-d '{"apiVersion":"v1","kind":"Event","metadata":{"generateName":"x."},"involvedObject":{"kind":"Pod","namespace":"'"$NS"'","name":"smoke-pod"},"reason":"R","message":"m","type":"Normal"}')
expect_eq "core/v1 Event POST is forbidden by an events.k8s.io-only Role" 403 "$code"
code=$(api POST "/apis/events.k8s.io/v1/namespaces/$NS/events" -H 'Content-Type: application/json' \
	-d '{"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"bad.1"},"eventTime":"'"$NOW"'","reason":"R","action":"A","type":"Normal","regarding":{"kind":"Pod","namespace":"'"$NS"'","name":"p"}}')
expect_eq "events.k8s.io/v1 Event without reportingController is rejected (422)" 422 "$code"

# ---- cert-manager CRDs (API types only; no controller) and a server-side dry-run against them
if "$HERE/cert-manager-crds.sh" "$WORK/cp" 2>"$WORK/crds.log"; then
	ok "cert-manager CRDs applied (server-side) and Established"
else
	not_ok "cert-manager CRDs applied and Established" "$(tail -n 5 "$WORK/crds.log")"
fi
cm_objects() {
	cat <<EOF
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: talos-ca, namespace: $NS}
spec: {ca: {secretName: $ALLOWED}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: talos-csr-signer-serving, namespace: $NS}
spec:
  secretName: $1
  duration: 24h
  ipAddresses: ["127.0.0.1"]
  privateKey: {algorithm: ECDSA, rotationPolicy: Always}
  usages: ["server auth", "digital signature"]
  issuerRef: {name: talos-ca, kind: Issuer}
EOF
}
if cm_objects serving-cert | kc apply --dry-run=server -f - >"$WORK/dryrun.log" 2>&1; then
	ok "server-side dry-run of a cert-manager Issuer + Certificate succeeds"
else
	not_ok "server-side dry-run of a cert-manager Issuer + Certificate succeeds" "$(cat "$WORK/dryrun.log")"
fi
if cm_objects '' | sed 's/^  secretName: $/  secretName: null/' | kc apply --dry-run=server -f - >"$WORK/dryrun2.log" 2>&1; then
	not_ok "a Certificate without spec.secretName is rejected by the CRD schema"
else
	ok "a Certificate without spec.secretName is rejected by the CRD schema"
fi

# ---- down
apid=$APISERVER_PID epid=$ETCD_PID
"$HERE/down.sh" "$WORK/cp" >/dev/null 2>&1
if ! kill -0 "$apid" 2>/dev/null && ! kill -0 "$epid" 2>/dev/null; then
	ok "down.sh stopped kube-apiserver and etcd"
else
	not_ok "down.sh stopped kube-apiserver and etcd"
fi

printf '%d passed, %d failed\n' "$PASS" "$FAIL"
((FAIL == 0))
