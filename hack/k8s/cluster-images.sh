#!/usr/bin/env bash
# Container images for the single-node cluster (hack/k8s/cluster-up.sh), built locally with buildah
# because no registry is reachable. Each is written once as a docker-archive under
# $TCS_CACHE/cluster/images/ (keyed by the hash of what goes in) for `ctr -n k8s.io images import`.
#
# Usage: eval "$(hack/k8s/cluster-images.sh pause)"         PAUSE_IMAGE, PAUSE_ARCHIVE
#        eval "$(hack/k8s/cluster-images.sh cert-manager)"  CM_IMAGE, CM_ARCHIVE (needs CERT_MANAGER_CONTROLLER)
#        eval "$(hack/k8s/cluster-images.sh tcs)"           TCS_IMAGE, TCS_ARCHIVE, TCS_IMAGE_REBUILT, TCS_ARCHIVE_REBUILT
#
#   pause         hack/k8s/pause/pause.c, compiled statically, alone in a scratch image (user 65535)
#   cert-manager  the cert-manager-controller binary of tools.sh + the host's CA bundle, scratch, user 1000
#   tcs           the project's image from hack/image/build.sh. TCS_IMAGE_ARCHIVE=FILE (docker- or
#                 oci-archive) takes a ready one; otherwise the image in hack/image's buildah storage is
#                 used when its revision label is this checkout's commit, else build.sh runs. A second
#                 tag (":rebuilt", a new image ID: one more label) is made for the rolling-update test.
# Progress goes to stderr; stdout carries only the export lines.
set -euo pipefail
K8S_LOG_PREFIX=cluster-images.sh
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib.sh"

CACHE=${TCS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer}
OUT=$CACHE/cluster/images
mkdir -p "$OUT" "$CACHE/cluster/buildah"
bah() {
	buildah --root "$CACHE/cluster/buildah/storage" --runroot "$CACHE/cluster/buildah/run" \
		--storage-driver vfs "$@"
}
exec 9>"$CACHE/cluster/.images.lock"
flock 9

# scratch_image NAME ARCHIVE USER ENTRYPOINT SRC:DST...: a scratch image holding the files, saved as ARCHIVE
scratch_image() {
	local name=$1 archive=$2 user=$3 entry=$4 ctr f
	shift 4
	ctr=$(bah from scratch)
	for f in "$@"; do
		bah copy --chmod 0755 "$ctr" "${f%%:*}" "${f#*:}" >/dev/null
	done
	bah config --user "$user" --entrypoint "[\"$entry\"]" --cmd '[]' \
		--label "org.opencontainers.image.source=talos-csr-signer/hack/k8s" "$ctr"
	bah commit --quiet "$ctr" "$name" >/dev/null
	bah rm "$ctr" >/dev/null
	rm -f "$archive.tmp"
	bah push --quiet "$name" "docker-archive:$archive.tmp:$name" >/dev/null
	bah rmi "$name" >/dev/null 2>&1 || true
	mv "$archive.tmp" "$archive"
}

pause_image() {
	local key src=$HERE/pause/pause.c archive bin
	key=$(cat "$src" <(gcc --version | head -1) | sha256sum | cut -c1-12)
	archive=$OUT/pause-$key.tar
	if [[ ! -s $archive ]]; then
		k8s_log "building the pause image ($key)"
		bin=$(mktemp -d)
		gcc -static -Os -Wall -Wextra -Werror -o "$bin/pause" "$src"
		strip "$bin/pause"
		scratch_image "localhost/tcs-pause:$key" "$archive" 65535:65535 /pause "$bin/pause:/pause"
		rm -rf "$bin"
	fi
	printf 'export PAUSE_IMAGE=%q PAUSE_ARCHIVE=%q\n' "localhost/tcs-pause:$key" "$archive"
}

cert_manager_image() {
	local bin=${CERT_MANAGER_CONTROLLER:-} key archive dir
	[[ -x $bin ]] || k8s_die "CERT_MANAGER_CONTROLLER is not set to the built controller (hack/k8s/tools.sh)"
	key=$(sha256sum "$bin" | cut -c1-12)
	archive=$OUT/cert-manager-controller-$key.tar
	if [[ ! -s $archive ]]; then
		k8s_log "building the cert-manager controller image ($key)"
		dir=$(mktemp -d)
		cp "$bin" "$dir/cert-manager-controller"
		cp /etc/ssl/certs/ca-certificates.crt "$dir/ca-certificates.crt"
		scratch_image "localhost/cert-manager-controller:$key" "$archive" 1000:1000 /cert-manager-controller \
			"$dir/cert-manager-controller:/cert-manager-controller" "$dir/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt"
		rm -rf "$dir"
	fi
	printf 'export CM_IMAGE=%q CM_ARCHIVE=%q\n' "localhost/cert-manager-controller:$key" "$archive"
}

# archive_revision ARCHIVE: the org.opencontainers.image.revision label of the image in an OCI archive.
archive_revision() {
	python3 - "$1" <<-'PY'
		import json, sys, tarfile
		t = tarfile.open(sys.argv[1])
		blob = lambda d: json.load(t.extractfile("blobs/" + d.replace(":", "/")))
		m = blob(json.load(t.extractfile("index.json"))["manifests"][0]["digest"])
		print(blob(m["config"]["digest"]).get("config", {}).get("Labels", {}).get("org.opencontainers.image.revision", ""))
	PY
}

# tcs_image: the only place that knows where the project image comes from (adapts to hack/image).
tcs_image() {
	local image rev label archive rebuilt ctr id store=bah
	rev=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
	archive=$OUT/talos-csr-signer.tar
	if [[ -z ${TCS_IMAGE_ARCHIVE:-} ]]; then
		# hack/image/build.sh (make test-image) writes one OCI archive per architecture; this
		# node is amd64. Rebuilt only when the archive is missing or from another revision.
		TCS_IMAGE_ARCHIVE=$ROOT/build/image/talos-csr-signer-amd64.oci.tar
		label=""
		if [[ -s $TCS_IMAGE_ARCHIVE && -s $ROOT/build/image/images.txt ]]; then
			TCS_IMAGE=${TCS_IMAGE:-$(grep -- '-amd64$' "$ROOT/build/image/images.txt" | head -1)}
			label=$(archive_revision "$TCS_IMAGE_ARCHIVE" 2>/dev/null || true)
		fi
		if [[ -z $label || $rev != "$label"* ]]; then
			k8s_log "building the image with hack/image/build.sh --arch amd64 (archive revision '${label:-none}', checkout $rev)"
			"$ROOT/hack/image/build.sh" --arch amd64 >&2 || k8s_die "hack/image/build.sh failed"
			TCS_IMAGE=$(grep -- '-amd64$' "$ROOT/build/image/images.txt" | head -1)
		fi
	fi
	image=${TCS_IMAGE:-localhost/talos-csr-signer:dev}
	rebuilt=${image%:*}:rebuilt
	# The archive is loaded into this script's own storage (hack/image's is left alone).
	[[ -s $TCS_IMAGE_ARCHIVE ]] || k8s_die "TCS_IMAGE_ARCHIVE=$TCS_IMAGE_ARCHIVE does not exist"
	bah rmi -f "$image" "$rebuilt" >/dev/null 2>&1 || true
	case $(tar -tf "$TCS_IMAGE_ARCHIVE" | head -50) in
	*index.json*) bah pull --quiet "oci-archive:$TCS_IMAGE_ARCHIVE" >/dev/null ;;
	*) bah pull --quiet "docker-archive:$TCS_IMAGE_ARCHIVE" >/dev/null ;;
	esac
	bah inspect --type image "$image" >/dev/null 2>&1 ||
		k8s_die "$TCS_IMAGE_ARCHIVE does not hold $image (set TCS_IMAGE to its name)"
	id=$("$store" inspect --type image --format '{{.FromImageID}}' "$image")
	if [[ -s $archive && -s $archive.rebuilt && $(cat "$archive.id" 2>/dev/null) == "$id" ]]; then
		printf 'export TCS_IMAGE=%q TCS_ARCHIVE=%q TCS_IMAGE_REBUILT=%q TCS_ARCHIVE_REBUILT=%q\n' \
			"$image" "$archive" "$rebuilt" "$archive.rebuilt"
		return 0
	fi
	rm -f "$archive" "$archive.rebuilt" "$archive.id"
	"$store" push --quiet "$image" "docker-archive:$archive:$image" >/dev/null
	# The "rebuilt" image: same content plus one label, so a new image ID under a new tag.
	ctr=$("$store" from "$image")
	"$store" config --label "talos-csr-signer.test/rebuilt=$(date -u +%FT%TZ)" "$ctr"
	"$store" commit --quiet "$ctr" "$rebuilt" >/dev/null
	"$store" rm "$ctr" >/dev/null
	"$store" push --quiet "$rebuilt" "docker-archive:$archive.rebuilt:$rebuilt" >/dev/null
	printf '%s\n' "$id" >"$archive.id"
	printf 'export TCS_IMAGE=%q TCS_ARCHIVE=%q TCS_IMAGE_REBUILT=%q TCS_ARCHIVE_REBUILT=%q\n' \
		"$image" "$archive" "$rebuilt" "$archive.rebuilt"
}

case ${1:-} in
pause) pause_image ;;
cert-manager) cert_manager_image ;;
tcs) tcs_image ;;
*) k8s_die "usage: $0 pause|cert-manager|tcs" ;;
esac
