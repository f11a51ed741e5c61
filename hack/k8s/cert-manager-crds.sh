#!/usr/bin/env bash
# Install cert-manager's CRDs (from its Go module, extracted by tools.sh) into the control plane of
# hack/k8s/up.sh DIR and wait until they are Established. Only the API types: no cert-manager controller
# runs, so Certificates are accepted and validated by the schema but never issued.
# Server-side apply is required: the challenges CRD (~270 kB) exceeds the 256 kB limit of the
# last-applied-configuration annotation that client-side `kubectl apply` writes.
# Usage: hack/k8s/cert-manager-crds.sh DIR
set -euo pipefail
K8S_LOG_PREFIX=cert-manager-crds.sh
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"

[[ $# -eq 1 ]] || k8s_die "usage: $0 DIR"
[[ -f $1/env ]] || k8s_die "$1/env missing: is the control plane up?"
. "$1/env"
if [[ -z ${CERT_MANAGER_CRDS:-} ]] || ! compgen -G "$CERT_MANAGER_CRDS/*.yaml" >/dev/null; then
	eval "$(TCS_TOOLS_ONLY=cert-manager-crds "$K8S_HACK_DIR/tools.sh")" ||
		k8s_skip_or_fail "cert-manager CRDs could not be fetched"
fi
"$KUBECTL" --kubeconfig "$KUBECONFIG" apply --server-side --field-manager=tcs-test -f "$CERT_MANAGER_CRDS" >&2
"$KUBECTL" --kubeconfig "$KUBECONFIG" wait --for condition=Established --timeout=60s \
	crd/certificates.cert-manager.io crd/issuers.cert-manager.io crd/clusterissuers.cert-manager.io \
	crd/certificaterequests.cert-manager.io >&2
k8s_log "cert-manager $CERT_MANAGER_VERSION CRDs established"
