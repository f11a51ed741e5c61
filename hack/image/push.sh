#!/usr/bin/env bash
# Publishes the multi-arch image that hack/image/build.sh built and checked:
# the manifest list REPO:TAG with its amd64 and arm64 images, in one
# `buildah manifest push --all`, then optionally signs it by digest.
#
#   hack/image/push.sh                       push to docker://REPO:TAG
#   DEST=oci:/tmp/layout hack/image/push.sh  any containers-transports(5) target
#   SIGN=cosign hack/image/push.sh           then `cosign sign` the pushed digest
#                                            and attach each SBOM as an attestation
#   SIGN_BY=<gpg fingerprint> hack/image/push.sh
#                                            buildah's own simple signing (GPG)
#
# Environment: REPO, TAG, TCS_CACHE as for build.sh; DEST (default
# docker://REPO:TAG); OUT_DIR (default build/image, where the digest and the
# SBOMs are); AUTHFILE (registry credentials, see `buildah login`).
# See hack/image/README.md "Push and sign".
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${TCS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer}/image
version=$(sed -n 's/^project(talos-csr-signer VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
repo=${REPO:-ghcr.io/talos-csr-signer/talos-csr-signer}
tag=${TAG:-$version}
dest=${DEST:-docker://$repo:$tag}
out_dir=${OUT_DIR:-$root/build/image}
bah() { buildah --root "$cache/storage" --runroot "$cache/run" --storage-driver vfs "$@"; }
log() { printf 'push: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

bah manifest inspect "$repo:$tag" >/dev/null 2>&1 ||
	die "no manifest list $repo:$tag in $cache/storage: run hack/image/build.sh first (same REPO/TAG)"
args=(--all --format oci --digestfile "$out_dir/digest")
[ -z "${AUTHFILE:-}" ] || args+=(--authfile "$AUTHFILE")
[ -z "${SIGN_BY:-}" ] || args+=(--sign-by "$SIGN_BY")
mkdir -p "$out_dir"
bah manifest push "${args[@]}" "$repo:$tag" "$dest"
digest=$(cat "$out_dir/digest")
log "pushed $repo:$tag to $dest, manifest list digest $digest"

if [ "${SIGN:-}" = cosign ]; then
	command -v cosign >/dev/null || die "cosign not found (see hack/image/README.md)"
	[ "${dest#docker://}" != "$dest" ] || die "cosign signs registry images only (DEST=docker://...)"
	ref=${dest#docker://}
	ref=${ref%:*}@$digest
	cosign sign --yes "$ref"
	for a in amd64 arm64; do
		# The per-architecture image digest, from the manifest list.
		d=$(bah manifest inspect "$repo:$tag" | python3 -c "import json,sys
print([m['digest'] for m in json.load(sys.stdin)['manifests'] if m['platform']['architecture'] == '$a'][0])")
		cosign attest --yes --type spdxjson --predicate "$out_dir/talos-csr-signer-$a.spdx.json" "${ref%@*}@$d"
	done
	log "signed $ref and attested the SBOMs"
fi
