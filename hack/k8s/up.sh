#!/usr/bin/env bash
# Start a throwaway Kubernetes control plane (etcd + kube-apiserver, no controller-manager, no scheduler)
# on 127.0.0.1 with free ports, RBAC authorization and a ServiceAccount token issuer.
#
# Usage: hack/k8s/up.sh DIR
# DIR (created if missing, should be empty) receives:
#   env          shell-sourceable: KUBECONFIG APISERVER_URL APISERVER_CA APISERVER_PORT ADMIN_TOKEN
#                ADMIN_CERT ADMIN_KEY ETCD_ENDPOINT ETCD_PID APISERVER_PID SA_ISSUER K8S_DIR and the tool paths
#   kubeconfig   admin (client certificate with O=system:masters)
#   pki/         ca.crt/ca.key (signs the serving and admin certs), apiserver.crt/.key, admin.crt/.key,
#                sa.key/sa.pub (ServiceAccount token signing), tokens.csv (static admin token)
#   etcd.log apiserver.log, etcd-data/, apiserver.args (the exact flags, reused by restart-apiserver.sh)
# Extra kube-apiserver flags: APISERVER_EXTRA_ARGS="--watch-cache=false --min-request-timeout=60" (space-separated).
# APISERVER_EXTRA_SANS="IP:198.18.1.1,DNS:x" adds subjectAltNames to the serving certificate.
# APISERVER_DISABLE_ADMISSION (default ServiceAccount) is --disable-admission-plugins; empty keeps every default
# plugin (hack/k8s/cluster-up.sh needs the ServiceAccount plugin so Pods get their token volume).
# Stop with hack/k8s/down.sh DIR.
set -euo pipefail
K8S_LOG_PREFIX=up.sh
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"

[[ $# -eq 1 ]] || k8s_die "usage: $0 DIR"
mkdir -p "$1"
DIR=$(cd "$1" && pwd)
[[ ! -e $DIR/env ]] || k8s_die "$DIR/env exists: already up? (run down.sh first or use an empty DIR)"

for c in curl openssl; do
	k8s_need_cmd "$c" || k8s_skip_or_fail "$c is missing and could not be installed"
done
k8s_load_tools

ETCD_PID=
APISERVER_PID=
cleanup_on_failure() {
	local rc=$?
	if ((rc != 0)); then
		k8s_log "start-up failed (exit $rc); stopping what was started. Logs in $DIR"
		[[ -f $DIR/apiserver.pid ]] && k8s_stop "$(cat "$DIR/apiserver.pid")" "$KUBE_APISERVER" kube-apiserver
		[[ -n $ETCD_PID ]] && k8s_stop "$ETCD_PID" "$ETCD" etcd
	fi
}
trap cleanup_on_failure EXIT

# ---- PKI
PKI=$DIR/pki
mkdir -p "$PKI"
ossl() { openssl "$@" 2>>"$PKI/openssl.log"; }
ec_key() { ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
# sign NAME SUBJECT EXTENSIONS: key NAME.key, cert NAME.crt signed by ca
sign() {
	local name=$1 subj=$2 ext=$3
	ec_key "$PKI/$name.key"
	ossl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr"
	printf '%b' "$ext" >"$PKI/$name.ext"
	ossl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
		-set_serial "0x$(openssl rand -hex 16)" -days 30 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt"
	rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}
ec_key "$PKI/ca.key"
ossl req -x509 -new -key "$PKI/ca.key" -subj "/CN=talos-csr-signer-test-ca" -days 30 -sha256 \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$PKI/ca.crt"
sign apiserver "/CN=kube-apiserver" \
	"basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc${APISERVER_EXTRA_SANS:+,$APISERVER_EXTRA_SANS}\n"
sign admin "/O=system:masters/CN=tcs-admin" \
	"basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key"
ossl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
ADMIN_TOKEN=$(openssl rand -hex 24)
printf '%s,tcs-admin-token,tcs-admin-token-uid,"system:masters"\n' "$ADMIN_TOKEN" >"$PKI/tokens.csv"
chmod 600 "$PKI"/*.key "$PKI/tokens.csv"

# ---- etcd
# Another run on this machine may take a port between our pick and etcd's bind: pick again then.
for attempt in 1 2 3; do
	k8s_free_port ETCD_PORT
	k8s_free_port ETCD_PEER_PORT
	ETCD_ENDPOINT=http://127.0.0.1:$ETCD_PORT
	"$ETCD" --name tcs --data-dir "$DIR/etcd-data" \
		--listen-client-urls "$ETCD_ENDPOINT" --advertise-client-urls "$ETCD_ENDPOINT" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster "tcs=http://127.0.0.1:$ETCD_PEER_PORT" \
		--log-level warn --unsafe-no-fsync >"$DIR/etcd.log" 2>&1 </dev/null &
	ETCD_PID=$!
	printf '%s\n' "$ETCD_PID" >"$DIR/etcd.pid"
	if k8s_wait_until 60 "$ETCD_PID" k8s_etcd_healthy "$ETCD_ENDPOINT"; then
		break
	fi
	tail -n 30 "$DIR/etcd.log" >&2 || true
	if ((attempt < 3)) && grep -q 'address already in use' "$DIR/etcd.log"; then
		k8s_log "etcd: a port was taken meanwhile; picking others"
		k8s_stop "$ETCD_PID" "$ETCD" etcd || true
		rm -rf "$DIR/etcd-data"
		continue
	fi
	k8s_die "etcd did not become healthy on $ETCD_ENDPOINT"
done
k8s_free_port APISERVER_PORT
k8s_log "etcd $ETCD_VERSION ready on $ETCD_ENDPOINT (pid $ETCD_PID)"

# ---- kube-apiserver
APISERVER_URL=https://127.0.0.1:$APISERVER_PORT
SA_ISSUER=https://kubernetes.default.svc.cluster.local
mkdir -p "$DIR/apiserver-certs"
args=(
	--etcd-servers="$ETCD_ENDPOINT"
	--bind-address=127.0.0.1
	--advertise-address=127.0.0.1
	--endpoint-reconciler-type=none
	--secure-port="$APISERVER_PORT"
	--cert-dir="$DIR/apiserver-certs"
	--tls-cert-file="$PKI/apiserver.crt"
	--tls-private-key-file="$PKI/apiserver.key"
	--client-ca-file="$PKI/ca.crt"
	--token-auth-file="$PKI/tokens.csv"
	--authorization-mode=RBAC
	--anonymous-auth=true
	--service-account-issuer="$SA_ISSUER"
	--service-account-key-file="$PKI/sa.pub"
	--service-account-signing-key-file="$PKI/sa.key"
	--service-cluster-ip-range=10.0.0.0/24
	--allow-privileged=true
	--profiling=false
	--v=1
)
disable_admission=${APISERVER_DISABLE_ADMISSION-ServiceAccount}
[[ -z $disable_admission ]] || args+=(--disable-admission-plugins="$disable_admission")
if [[ -n ${APISERVER_EXTRA_ARGS:-} ]]; then
	read -r -a extra <<<"$APISERVER_EXTRA_ARGS"
	args+=("${extra[@]}")
fi
printf '%s\n' "${args[@]}" >"$DIR/apiserver.args"
printf '%s\n' "$KUBE_APISERVER" >"$DIR/apiserver.bin"
printf '%s\n' "$APISERVER_URL" >"$DIR/apiserver.url"
: >"$DIR/apiserver.log"
k8s_start_apiserver "$DIR" || k8s_die "kube-apiserver failed to start (log: $DIR/apiserver.log)"
APISERVER_PID=$(cat "$DIR/apiserver.pid")

# ---- kubeconfig (admin by client certificate)
cat >"$DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tcs
  cluster:
    server: $APISERVER_URL
    certificate-authority: $PKI/ca.crt
users:
- name: tcs-admin
  user:
    client-certificate: $PKI/admin.crt
    client-key: $PKI/admin.key
contexts:
- name: tcs
  context:
    cluster: tcs
    user: tcs-admin
current-context: tcs
EOF
chmod 600 "$DIR/kubeconfig"

# The apiserver creates the default/kube-system namespaces shortly after it is ready.
k8s_wait_until 60 "$APISERVER_PID" "$KUBECTL" --kubeconfig "$DIR/kubeconfig" get namespace default ||
	k8s_die "namespace default did not appear"

{
	printf '# generated by hack/k8s/up.sh\n'
	for v in KUBECONFIG APISERVER_URL APISERVER_CA APISERVER_PORT ADMIN_TOKEN ADMIN_CERT ADMIN_KEY \
		ETCD_ENDPOINT ETCD_PID APISERVER_PID SA_ISSUER K8S_DIR \
		KUBE_APISERVER KUBECTL ETCD HELM CERT_MANAGER_CRDS K8S_VERSION ETCD_VERSION HELM_VERSION CERT_MANAGER_VERSION; do
		case $v in
		KUBECONFIG) val=$DIR/kubeconfig ;;
		APISERVER_CA) val=$PKI/ca.crt ;;
		ADMIN_CERT) val=$PKI/admin.crt ;;
		ADMIN_KEY) val=$PKI/admin.key ;;
		K8S_DIR) val=$DIR ;;
		*) val=${!v-} ;;
		esac
		printf 'export %s=%q\n' "$v" "$val"
	done
} >"$DIR/env.tmp"
mv "$DIR/env.tmp" "$DIR/env"
trap - EXIT
k8s_log "kube-apiserver $K8S_VERSION ready on $APISERVER_URL (pid $APISERVER_PID); source $DIR/env"
