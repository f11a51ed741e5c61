#!/usr/bin/env bash
# Builds the container image from ./Dockerfile without a Docker engine:
# Debian's buildah with --isolation chroot and vfs storage, on a Debian 12 base
# image made here with debootstrap (passed as --build-arg BASE_IMAGE), then
# runs the image's binary with --version as the image's user, and serves one
# Certificate call from the image (daemon and worker-like client both in it).
#
#   hack/image/build.sh            build the image with buildah (default)
#   hack/image/build.sh --native   run the Dockerfile's build steps on this host
#                                  instead (same package lists and commands), for
#                                  machines where buildah cannot run
#
# Environment:
#   TCS_CACHE   cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer);
#               the base rootfs and the buildah storage live in $TCS_CACHE/image
#   IMAGE       image name (default localhost/talos-csr-signer:dev)
#   MIRROR      Debian mirror for debootstrap (default http://deb.debian.org/debian)
#   SUITE       Debian suite (default bookworm)
#   OCI_ARCHIVE if set, also write the image there as an OCI archive
# See hack/image/README.md for what was verified and what can fail.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${TCS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer}/image
image=${IMAGE:-localhost/talos-csr-signer:dev}
mirror=${MIRROR:-http://deb.debian.org/debian}
suite=${SUITE:-bookworm}
base=localhost/tcs-debian-base:$suite
mode=buildah
case "${1:-}" in
--native) mode=native ;;
"" | --buildah) ;;
-h | --help) sed -n '2,20p' "$0"; exit 0 ;;
*) echo "usage: $0 [--buildah|--native]" >&2; exit 2 ;;
esac

log() { printf 'image: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# dockerfile_arg NAME: the default of `ARG NAME="..."` in the Dockerfile, so
# that the native path installs exactly the image's package lists.
dockerfile_arg() {
	sed -n "s/^ARG $1=\"\\(.*\\)\"\$/\\1/p" "$root/Dockerfile" | head -1
}
BUILD_DEPS=$(dockerfile_arg BUILD_DEPS)
RUNTIME_DEPS=$(dockerfile_arg RUNTIME_DEPS)
[ -n "$BUILD_DEPS" ] && [ -n "$RUNTIME_DEPS" ] || die "BUILD_DEPS/RUNTIME_DEPS not found in Dockerfile"

apt_install() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
		{ apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
}

version=$(sed -n 's/^project(talos-csr-signer VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
revision=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)

if [ "$mode" = native ]; then
	# The Dockerfile's build stage, command for command, on this host.
	apt_install $BUILD_DEPS $RUNTIME_DEPS
	out=$root/build-image
	cmake -S "$root" -B "$out" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTS=OFF >/dev/null
	cmake --build "$out" --target talos-csr-signer -j "$(nproc)"
	strip --strip-unneeded "$out/talos-csr-signer"
	"$out/talos-csr-signer" --version
	# Every shared library the binary needs must come from a runtime package,
	# from a package those pull in, or from libc6 / libgcc-s1 (in every base).
	closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
		--no-breaks --no-replaces --no-enhances $RUNTIME_DEPS 2>/dev/null |
		sed -n 's/^\(  [A-Za-z]*Depends: \)\{0,1\}<\{0,1\}\([a-z0-9][a-z0-9.+-]*\)>\{0,1\}$/\2/p' | sort -u)
	closure=$(printf '%s\n' $RUNTIME_DEPS libc6 libgcc-s1 "$closure")
	bad=0
	while read -r lib; do
		pkg=$(dpkg -S "$(readlink -f "$lib")" 2>/dev/null | head -1 | cut -d: -f1 || true)
		[ -n "$pkg" ] || pkg=$(dpkg -S "$lib" 2>/dev/null | head -1 | cut -d: -f1 || true)
		if [ -z "$pkg" ]; then
			log "no package owns $lib"
			bad=1
		elif ! grep -qx -- "$pkg" <<<"$closure"; then
			log "$lib comes from $pkg, which RUNTIME_DEPS does not pull in"
			bad=1
		fi
	done < <(ldd "$out/talos-csr-signer" | awk '/=> \// {print $3}')
	[ "$bad" -eq 0 ] || die "RUNTIME_DEPS in the Dockerfile miss a library the binary links"
	log "native build OK: $out/talos-csr-signer"
	exit 0
fi

apt_install buildah debootstrap
mkdir -p "$cache"
bah() { buildah --root "$cache/storage" --runroot "$cache/run" --storage-driver vfs "$@"; }

# 1. Base image: a minimal Debian rootfs made with debootstrap, imported once.
if ! bah inspect --type image "$base" >/dev/null 2>&1; then
	rootfs=$cache/rootfs-$suite
	if [ ! -f "$rootfs/etc/debian_version" ]; then
		log "debootstrap --variant=minbase $suite (first run only)"
		rm -rf "$rootfs.tmp"
		debootstrap --variant=minbase "$suite" "$rootfs.tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
			die "debootstrap failed, see $cache/debootstrap.log"
		mv "$rootfs.tmp" "$rootfs"
	fi
	log "importing $rootfs as $base"
	ctr=$(bah from scratch)
	mnt=$(bah mount "$ctr")
	tar -C "$rootfs" --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' \
		--exclude='./var/cache/apt/archives/*.deb' -cf - . | tar -C "$mnt" -xpf -
	bah umount "$ctr" >/dev/null
	bah config --cmd /bin/bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
	bah commit --quiet "$ctr" "$base" >/dev/null
	bah rm "$ctr" >/dev/null
fi

# 2. The image itself.
log "buildah build -t $image (isolation chroot, storage vfs)"
bah build --isolation chroot --layers=false \
	--build-arg BASE_IMAGE="$base" \
	--build-arg VERSION="$version" --build-arg REVISION="$revision" --build-arg CREATED="$created" \
	-f "$root/Dockerfile" -t "$image" "$root"

# 3. Checks on the result: the configured user, labels, the binary runs as
#    65532 and finds all its libraries in the runtime image.
user=$(bah inspect --type image --format '{{.OCIv1.Config.User}}' "$image")
[ "$user" = "65532:65532" ] || die "image user is '$user', want 65532:65532"
title=$(bah inspect --type image --format '{{index .OCIv1.Config.Labels "org.opencontainers.image.title"}}' "$image")
[ "$title" = talos-csr-signer ] || die "OCI title label missing"
ctr=$(bah from "$image")
trap 'bah rm "$ctr" >/dev/null 2>&1 || true' EXIT
out=$(bah run --isolation chroot --user 65532:65532 "$ctr" -- /usr/bin/talos-csr-signer --version) ||
	die "the image's binary does not run"
log "image binary says: $out"
if bah run --isolation chroot "$ctr" -- sh -c 'ldd /usr/bin/talos-csr-signer | grep "not found"' 2>/dev/null; then
	die "a shared library is missing from the runtime image"
fi
if bah run --isolation chroot "$ctr" -- sh -c 'command -v cmake || command -v gcc' 2>/dev/null; then
	die "build tools leaked into the runtime image"
fi

# 4. One Certificate call. Chroot isolation shares the host's network, so the
#    image's daemon serves on host loopback and the image's own `request`
#    (a worker-like client) asks it for a certificate, both as user 65532.
pki=$(mktemp -d)
trap 'bah rm "$ctr" >/dev/null 2>&1 || true; pkill -f "talos-csr-signer --port $port" 2>/dev/null || true; rm -rf "$pki"' EXIT
"$root/hack/dev-pki.sh" "$pki" --ip 127.0.0.1 >/dev/null
chmod -R a+rX "$pki" # a throwaway PKI, readable by the image's user
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
bah run --isolation chroot --user 65532:65532 -v "$pki:/etc/tcs-pki:ro" \
	--env CA_CERT_PATH=/etc/tcs-pki/ca.crt --env CA_KEY_PATH=/etc/tcs-pki/ca.key \
	--env TLS_CERT_PATH=/etc/tcs-pki/server.crt --env TLS_KEY_PATH=/etc/tcs-pki/server.key \
	--env TOKEN_PATH=/etc/tcs-pki/token --env LISTEN_ADDRESS=127.0.0.1 --env HTTP_ADDR= \
	"$ctr" -- /usr/bin/talos-csr-signer --port "$port" >"$cache/serve.log" 2>&1 &
served=0
for _ in $(seq 1 60); do
	if out=$(bah run --isolation chroot --user 65532:65532 -v "$pki:/etc/tcs-pki:ro" "$ctr" -- \
		/usr/bin/talos-csr-signer request --endpoint "127.0.0.1:$port" --ca /etc/tcs-pki/ca.crt \
		--token-file /etc/tcs-pki/token --cn image-check --ip 10.0.0.7 --timeout 2s 2>&1); then
		served=1
		break
	fi
	sleep 0.5
done
pkill -f "talos-csr-signer --port $port" 2>/dev/null || true
wait 2>/dev/null || true
[ $served = 1 ] || die "no certificate from the image's daemon: $out (log: $cache/serve.log)"
log "image served a Certificate call: $(echo "$out" | grep -E '^(serial|result)' | tr '\n' ' ')"

if [ -n "${OCI_ARCHIVE:-}" ]; then
	bah push "$image" "oci-archive:$OCI_ARCHIVE:$image"
	log "wrote $OCI_ARCHIVE"
fi
log "OK: $image"
