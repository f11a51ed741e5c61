#!/usr/bin/env bash
# Builds the distroless container image from ./Dockerfile for amd64 and arm64
# without a Docker engine (Debian's buildah, chroot isolation, vfs storage, a
# debootstrap-made Debian 12 base passed as BASE_IMAGE), then proves each image
# (`make test-image`):
#   - size <= MAX_MB (default 60, decimal MB of the unpacked root filesystem);
#   - no shell, no apt/dpkg, only the expected files; user 65532:65532; the
#     image architecture and OCI labels;
#   - the image's own dynamic loader (`ld.so --list`, i.e. ldd) finds every
#     library inside the image;
#   - `talos-csr-signer --version` runs as 65532 (arm64: under qemu-user via
#     binfmt_misc, Debian's qemu-user-static);
#   - the image's daemon, run as 65532 from the image root mounted READ-ONLY
#     (chroot in a private mount namespace, the test PKI bind-mounted read-only
#     on /tmp, so nothing at all is writable), serves one Certificate call on
#     loopback to the image's own `request` client, and /readyz answers;
#   - the SPDX SBOM in the image parses, describes every library file with its
#     checksum and names the Debian package and version that shipped it.
# Outputs, in OUT_DIR (default build/image):
#   talos-csr-signer-<arch>.oci.tar    OCI archive, ref name REPO:TAG-<arch>
#   talos-csr-signer-<arch>.spdx.json  the SBOM, as stored in the image
#   images.txt                         the image names, one per architecture
#
#   hack/image/build.sh                build and check both architectures
#   hack/image/build.sh --arch amd64   one architecture
#   hack/image/build.sh --native       the Dockerfile's build stage on this
#                                      host (amd64), for machines without buildah
#
# Environment:
#   TCS_CACHE   cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer);
#               the base rootfs and buildah's storage live in $TCS_CACHE/image
#   REPO        image repository (default ghcr.io/talos-csr-signer/talos-csr-signer,
#               the chart's default; see hack/image/README.md "Push and sign")
#   TAG         image tag (default: the version in CMakeLists.txt)
#   OUT_DIR     where the archives go (default build/image)
#   MAX_MB      size limit per image (default 60)
#   MIRROR      Debian mirror (default http://deb.debian.org/debian)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${TCS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer}/image
mirror=${MIRROR:-http://deb.debian.org/debian}
suite=bookworm
version=$(sed -n 's/^project(talos-csr-signer VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
repo=${REPO:-ghcr.io/talos-csr-signer/talos-csr-signer}
tag=${TAG:-$version}
out_dir=${OUT_DIR:-$root/build/image}
max_mb=${MAX_MB:-60}
arches=(amd64 arm64)
mode=buildah
while [ $# -gt 0 ]; do
	case $1 in
	--native) mode=native; shift ;;
	--arch) IFS=, read -r -a arches <<<"$2"; shift 2 ;;
	-h | --help) sed -n '2,43p' "$0"; exit 0 ;;
	*) echo "usage: $0 [--native] [--arch amd64,arm64]" >&2; exit 2 ;;
	esac
done

log() { printf 'image: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# A missing tool skips locally and fails under CI=true (BRIEF: honest suites).
skip() {
	[ "${CI:-}" = true ] && die "$* (CI=true: not skipping)"
	log "SKIPPED: $*"
	exit 0
}

apt_install() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" >/dev/null ||
		{ apt-get update >/dev/null &&
			apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" >/dev/null; }
}

# The libraries hack/deps.sh builds against must all be in the Dockerfile's
# BUILD_LIBS (a new dependency added to one and not the other fails here).
build_libs=" $(sed -n 's/^ARG BUILD_LIBS="\(.*\)"$/\1/p' "$root/Dockerfile") "
for p in $(sed -n '/^build_pkgs=(/,/^)/p' "$root/hack/deps.sh" | tr -s ' \t()' '\n' | grep -E '^lib.*-dev$'); do
	[[ "$build_libs" == *" $p "* ]] || die "hack/deps.sh builds against $p, which BUILD_LIBS in the Dockerfile lacks"
done

revision=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
build_arch=$(dpkg --print-architecture)

if [ "$mode" = native ]; then
	# The Dockerfile's build stage, on this host: same rootfs script, same checks
	# (ldd against the closure, --version). Needs hack/deps.sh build.
	"$root/hack/deps.sh" build
	cd "$root"
	BUILD_DIR=$root/build-image TARGETARCH=$build_arch VERSION=$version REVISION=$revision \
		CREATED=$created hack/image/rootfs.sh "$root/build-image/rootfs"
	log "native build OK: $root/build-image/rootfs ($(du -sh "$root/build-image/rootfs" | cut -f1))"
	exit 0
fi

[ "$(id -u)" -eq 0 ] || skip "needs root (buildah chroot isolation, chroot, mount namespaces)"
apt_install buildah debootstrap qemu-user-static binfmt-support python3 python3-venv curl openssl ||
	skip "cannot install buildah/debootstrap/qemu-user-static"
mkdir -p "$cache" "$out_dir"
bah() { buildah --root "$cache/storage" --runroot "$cache/run" --storage-driver vfs "$@"; }

# 1. Base image: a Debian 12 minbase rootfs made with debootstrap, with the
#    same apt sources as debian:12-slim (main, updates, security), imported
#    once. Keyed by suite and recipe version; the build stage runs
#    `apt-get upgrade`, so an old base still yields current packages.
base_key=$suite-v2
base=localhost/tcs-debian-base:$base_key
if ! bah inspect --type image "$base" >/dev/null 2>&1; then
	rootfs=$cache/rootfs-$base_key
	if [ ! -f "$rootfs/etc/debian_version" ]; then
		log "debootstrap --variant=minbase $suite (first run only, ~2 min)"
		# An interrupted debootstrap leaves /proc (and more) mounted inside.
		awk -v d="$rootfs.tmp/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r |
			while read -r m; do umount -l "$m"; done
		rm -rf --one-file-system "$rootfs.tmp"
		debootstrap --variant=minbase "$suite" "$rootfs.tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
			die "debootstrap failed, see $cache/debootstrap.log"
		rm -f "$rootfs.tmp/etc/apt/sources.list"
		cat >"$rootfs.tmp/etc/apt/sources.list.d/debian.sources" <<-EOF
			Types: deb
			URIs: $mirror
			Suites: $suite $suite-updates
			Components: main
			Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

			Types: deb
			URIs: http://deb.debian.org/debian-security
			Suites: $suite-security
			Components: main
			Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
		EOF
		rm -rf "$rootfs.tmp/var/cache/apt/archives/"*.deb "$rootfs.tmp/var/lib/apt/lists/"*
		mv "$rootfs.tmp" "$rootfs"
	fi
	log "importing $rootfs as $base"
	ctr=$(bah from scratch)
	mnt=$(bah mount "$ctr")
	tar -C "$rootfs" --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' -cf - . |
		tar -C "$mnt" -xpf -
	bah umount "$ctr" >/dev/null
	bah config --arch "$build_arch" --os linux --cmd /bin/bash \
		--env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
	bah commit --quiet "$ctr" "$base" >/dev/null
	bah rm "$ctr" >/dev/null
fi

# 2. binfmt_misc for the foreign architectures (qemu-user-static registers
#    itself with the F flag, so chroots into an arm64 root work).
need_binfmt() {
	local a=$1 q
	case $a in arm64) q=qemu-aarch64 ;; *) die "no qemu mapping for $a" ;; esac
	if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
		mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null ||
			skip "cannot mount binfmt_misc (needed to run $a binaries under qemu-user)"
	fi
	[ -e "/proc/sys/fs/binfmt_misc/$q" ] || update-binfmts --import "$q" >/dev/null 2>&1 || true
	update-binfmts --enable "$q" >/dev/null 2>&1 || true
	grep -q '^enabled' "/proc/sys/fs/binfmt_misc/$q" 2>/dev/null ||
		skip "binfmt_misc entry $q is not enabled"
	grep -q '^flags: .*F' "/proc/sys/fs/binfmt_misc/$q" ||
		die "binfmt_misc entry $q lacks the F flag (chroot would not find qemu)"
}

# The SPDX validator (spdx-tools from PyPI), in a venv cached by version.
spdx_tools=0.8.5
spdx_venv=$cache/spdx-tools-$spdx_tools
if [ ! -x "$spdx_venv/bin/pyspdxtools" ]; then
	log "pip install spdx-tools==$spdx_tools (first run only)"
	rm -rf "$spdx_venv"
	{ python3 -m venv "$spdx_venv" && "$spdx_venv/bin/pip" install -q "spdx-tools==$spdx_tools"; } >"$cache/spdx-install.log" 2>&1 ||
		skip "cannot install spdx-tools from PyPI (see $cache/spdx-install.log)"
fi

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

ctrs=()
pids=()
tmps=()
cleanup() {
	local c p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for c in "${ctrs[@]}"; do bah rm "$c" >/dev/null 2>&1 || true; done
	for p in "${tmps[@]}"; do rm -rf "$p"; done
}
trap cleanup EXIT

# in_image MNT PKI CMD...: run CMD as 65532:65532 chrooted into the image
# root MNT, itself bind-mounted read-only in a private mount namespace, with
# /proc mounted and PKI (read-only) on /tmp. Environment: PATH and the
# assignments in the array ienv, nothing else. It execs: call it in a
# subshell ($(...) or &), so that $! is the command itself.
ienv=()
in_image() {
	exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "${ienv[@]}" \
		unshare --mount --propagation private sh -ec '
		mnt=$1 pki=$2; shift 2
		mount --bind "$mnt" "$mnt"
		mount -o remount,bind,ro "$mnt"
		mount --bind -o ro "$pki" "$mnt/tmp"
		mount -t proc proc "$mnt/proc"
		exec chroot --userspec=65532:65532 "$mnt" "$@"' in_image "$@"
}

# 3. Build and check each architecture.
check_arch() {
	local arch=$1 image triplet interp t0 ctr mnt
	image=$repo:$tag-$arch
	case $arch in
	amd64) triplet=x86_64-linux-gnu interp=/lib64/ld-linux-x86-64.so.2 ;;
	arm64) triplet=aarch64-linux-gnu interp=/lib/ld-linux-aarch64.so.1 ;;
	*) die "unsupported architecture $arch" ;;
	esac
	[ "$arch" = "$build_arch" ] || need_binfmt "$arch"

	# The toolchain stage (apt: compilers, -dev packages), built once per
	# architecture, Dockerfile stage text, base and ISO week (so the libraries
	# copied into the image are at most a week behind Debian's security updates;
	# FRESH=1 forces a rebuild, as a release should).
	local key toolchain
	key=$({ sed -n '/ AS toolchain$/,/^FROM /p' "$root/Dockerfile"; echo "$base"; } | sha256sum | cut -c1-12)
	toolchain=localhost/tcs-toolchain:$arch-$(date -u +%G-%V)-$key
	t0=$(date +%s)
	if [ "${FRESH:-0}" = 1 ] || ! bah inspect --type image "$toolchain" >/dev/null 2>&1; then
		log "building the $arch toolchain stage as $toolchain (cached afterwards)"
		bah build --isolation chroot --layers=false --platform "linux/$build_arch" \
			--build-arg TARGETARCH="$arch" --build-arg BASE_IMAGE="$base" --target toolchain \
			-f "$root/Dockerfile" -t "$toolchain" "$root" >"$cache/toolchain-$arch.log" 2>&1 ||
			{ tail -30 "$cache/toolchain-$arch.log" >&2; die "toolchain build failed for $arch (log: $cache/toolchain-$arch.log)"; }
		# Older toolchains of this architecture are no longer needed.
		bah images --format '{{.Name}}:{{.Tag}}' | grep "^localhost/tcs-toolchain:$arch-" |
			{ grep -v -x -F "$toolchain" || true; } | while read -r old; do bah rmi "$old" >/dev/null 2>&1 || true; done
		log "$arch toolchain built in $(($(date +%s) - t0))s"
		t0=$(date +%s)
	fi
	# Every stage runs on the build machine (buildah 1.28 would look for arm64
	# variants of the local base/toolchain images otherwise); TARGETARCH selects
	# the cross-build, and the image's platform is set explicitly afterwards.
	log "buildah build TARGETARCH=$arch -t $image (chroot isolation, vfs)"
	bah build --isolation chroot --layers=false --platform "linux/$build_arch" \
		--build-arg TARGETARCH="$arch" --build-arg BASE_IMAGE="$base" --build-arg TOOLCHAIN_IMAGE="$toolchain" \
		--build-arg VERSION="$version" --build-arg REVISION="$revision" --build-arg CREATED="$created" \
		-f "$root/Dockerfile" -t "$image" "$root" >"$cache/build-$arch.log" 2>&1 ||
		{ tail -30 "$cache/build-$arch.log" >&2; die "build failed for $arch (log: $cache/build-$arch.log)"; }
	if [ "$arch" != "$build_arch" ]; then
		ctr=$(bah from --pull-never --platform "linux/$build_arch" "$image")
		bah config --arch "$arch" --os linux "$ctr"
		bah commit --quiet --rm "$ctr" "$image" >/dev/null
	fi
	log "$arch built in $(($(date +%s) - t0))s"

	# Configuration.
	local got
	got=$(bah inspect --type image --format '{{.OCIv1.Config.User}} {{.OCIv1.Architecture}} {{.OCIv1.OS}}' "$image")
	[ "$got" = "65532:65532 $arch linux" ] || die "$image: user/arch/os is '$got', want '65532:65532 $arch linux'"
	for l in title version revision created licenses; do
		got=$(bah inspect --type image --format "{{index .OCIv1.Config.Labels \"org.opencontainers.image.$l\"}}" "$image")
		[ -n "$got" ] || die "$image: label org.opencontainers.image.$l missing"
	done
	got=$(bah inspect --type image --format '{{index .OCIv1.Config.Labels "org.opencontainers.image.revision"}}' "$image")
	[ "$got" = "$revision" ] || die "$image: revision label '$got', want $revision"

	ctr=$(bah from --pull-never --platform "linux/$arch" "$image")
	ctrs+=("$ctr")
	mnt=$(bah mount "$ctr")

	# Size, contents.
	local bytes
	bytes=$(du -sb "$mnt" | cut -f1)
	log "$arch image root: $((bytes / 1000000)) MB ($bytes bytes); buildah images: $(bah images --format '{{.Size}}' "$image")"
	[ "$bytes" -le $((max_mb * 1000000)) ] || die "$image is $bytes bytes, over $max_mb MB"
	local f
	for f in bin/sh usr/bin/sh bin/bash usr/bin/bash bin/busybox usr/bin/apt usr/bin/apt-get usr/bin/dpkg var/lib/dpkg; do
		[ ! -e "$mnt/$f" ] && [ ! -L "$mnt/$f" ] || die "$image contains /$f"
	done
	# Every file must be one of: the binary, a library in the multiarch dir,
	# the CA bundle, passwd/group/nsswitch.conf, a document in /usr/share/doc.
	local unexpected
	unexpected=$(cd "$mnt" && find . \( -type f -o -type l \) | sed 's|^\.||' | grep -v -E \
		"^(/usr/bin/talos-csr-signer|/usr/lib/$triplet/[^/]+\\.so[.0-9]*|/etc/(passwd|group|nsswitch\\.conf|ssl/certs/ca-certificates\\.crt)|/usr/share/doc/[^/]+/[^/]+|/lib|/lib64|/usr/lib64/ld-linux-x86-64\\.so\\.2|/usr/lib/ld-linux-aarch64\\.so\\.1|/usr/lib/ssl/(certs|cert\\.pem))$" || true)
	[ -z "$unexpected" ] || die "$image holds unexpected files: $unexpected"
	if find "$mnt" -type f -perm -0100 | grep -v -E "/usr/bin/talos-csr-signer$|/usr/lib/$triplet/" | grep -q .; then
		die "$image holds executables besides the binary and ld.so: $(find "$mnt" -type f -perm -0100 | head)"
	fi
	readelf -h "$mnt/usr/bin/talos-csr-signer" | grep -q -E "Machine: +$( [ "$arch" = amd64 ] && echo 'Advanced Micro Devices X86-64' || echo AArch64)\$" ||
		die "$image: the binary is not an $arch executable"
	[ "$(stat -c %a "$mnt/tmp")" = 1777 ] || die "$image: /tmp is not 1777"
	grep -q '^nonroot:x:65532:65532:' "$mnt/etc/passwd" || die "$image: no passwd entry for 65532"

	# ldd, done by the image's own loader (under qemu for arm64).
	local listing pki
	pki=$(mktemp -d)
	tmps+=("$pki")
	chmod 0755 "$pki"
	listing=$(in_image "$mnt" "$pki" "$interp" --list /usr/bin/talos-csr-signer) ||
		die "$arch: $interp --list failed: $listing"
	! grep -q 'not found' <<<"$listing" || die "$arch: missing libraries: $(grep 'not found' <<<"$listing")"
	grep -q "libgrpc.so" <<<"$listing" || die "$arch: ld.so --list output unexpected: $listing"
	# Libraries loaded with dlopen: every SONAME the binary names is in the
	# image, and the image's loader resolves its dependencies too.
	local so
	for so in $(strings -a "$mnt/usr/bin/talos-csr-signer" | grep -oE 'lib[A-Za-z0-9_+-]+\.so\.[0-9]+' | sort -u); do
		[ -e "$mnt/usr/lib/$triplet/$so" ] || die "$arch: the binary names $so (dlopen?), which the image lacks"
		listing=$(in_image "$mnt" "$pki" "$interp" --list "/usr/lib/$triplet/$so") ||
			die "$arch: $interp --list $so failed: $listing"
		! grep -q 'not found' <<<"$listing" || die "$arch: $so misses: $(grep 'not found' <<<"$listing")"
	done

	# --version as 65532, read-only root.
	got=$(in_image "$mnt" "$pki" /usr/bin/talos-csr-signer --version) || die "$arch: --version failed: $got"
	grep -q "^talos-csr-signer $version (commit $revision)" <<<"$got" ||
		die "$arch: --version printed: $got"
	log "$arch --version: $(head -1 <<<"$got")"

	# One Certificate call: daemon and client from the image, read-only root.
	"$root/hack/dev-pki.sh" "$pki" --ip 127.0.0.1 >/dev/null
	chmod -R a+rX "$pki" # a throwaway PKI, readable by the image's user
	local gport hport pid served=0 reply i
	gport=$(port)
	hport=$(port)
	ienv=(CA_CERT_PATH=/tmp/ca.crt CA_KEY_PATH=/tmp/ca.key TLS_CERT_PATH=/tmp/server.crt
		TLS_KEY_PATH=/tmp/server.key TOKEN_PATH=/tmp/token LISTEN_ADDRESS=127.0.0.1
		"HTTP_ADDR=127.0.0.1:$hport")
	# qemu-user does not emulate seccomp (the keeper's filter fails with "Operation not supported" and
	# the keeper, rightly, refuses to run unfiltered): a foreign architecture's daemon runs with the
	# filter off. The host's architecture keeps it on; make test-keeper tests the filter itself.
	if [ "$arch" != "$(dpkg --print-architecture)" ]; then
		ienv+=(TCS_KEEPER_SECCOMP=off)
		log "$arch: under qemu-user, the keeper's seccomp filter is off for this call (qemu has no seccomp)"
	fi
	in_image "$mnt" "$pki" /usr/bin/talos-csr-signer --port "$gport" >"$cache/serve-$arch.log" 2>&1 &
	ienv=()
	pid=$!
	pids+=("$pid")
	for i in $(seq 1 120); do
		if reply=$(in_image "$mnt" "$pki" /usr/bin/talos-csr-signer request --endpoint "127.0.0.1:$gport" \
			--ca /tmp/ca.crt --token-file /tmp/token --cn "image-$arch" --ip 10.0.0.7 --timeout 5s 2>&1); then
			served=1
			break
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.5
	done
	[ $served = 1 ] || die "$arch: no certificate from the image's daemon: $reply (log: $cache/serve-$arch.log)"
	grep -q -E '^result +ok' <<<"$reply" || die "$arch: request did not verify: $reply"
	curl -fsS "http://127.0.0.1:$hport/readyz" >/dev/null || die "$arch: /readyz did not answer"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	log "$arch image served a Certificate call (read-only root, user 65532): $(grep -E '^result' <<<"$reply")"

	# SBOM: parses, covers every library file with its checksum and package.
	cp "$mnt/usr/share/doc/talos-csr-signer/sbom.spdx.json" "$out_dir/talos-csr-signer-$arch.spdx.json"
	python3 - "$mnt" "$arch" "$triplet" <<-'EOF' || die "$arch: SBOM check failed"
		import hashlib, json, os, sys
		mnt, arch, triplet = sys.argv[1:4]
		d = json.load(open(os.path.join(mnt, "usr/share/doc/talos-csr-signer/sbom.spdx.json")))
		assert d["spdxVersion"] == "SPDX-2.3" and d["dataLicense"] == "CC0-1.0", "not SPDX 2.3"
		pkgs = {p["SPDXID"]: p for p in d["packages"]}
		files = {f["fileName"]: f for f in d["files"]}
		contains = {r["relatedSpdxElement"]: r["spdxElementId"] for r in d["relationships"]
		            if r["relationshipType"] == "CONTAINS" and r["spdxElementId"] != "SPDXRef-image"}
		libdir = os.path.join(mnt, "usr/lib", triplet)
		libs = sorted(os.listdir(libdir))
		assert libs, "no libraries in the image"
		for lib in libs:
		    f = files.get("./usr/lib/%s/%s" % (triplet, lib))
		    assert f, "%s is not in the SBOM" % lib
		    sha = {c["algorithm"]: c["checksumValue"] for c in f["checksums"]}
		    assert sha["SHA256"] == hashlib.sha256(open(os.path.join(libdir, lib), "rb").read()).hexdigest(), lib
		    p = pkgs[contains[f["SPDXID"]]]
		    assert p["versionInfo"] and "arch=%s" % arch in p["externalRefs"][0]["referenceLocator"] \
		        or "arch=all" in p["externalRefs"][0]["referenceLocator"], (lib, p)
		names = {p["name"] for p in d["packages"]}
		for want in ("libc6", "libssl3", "libgrpc29", "libcurl4", "libprotobuf-c1", "libcjson1",
		             "libmicrohttpd12", "ca-certificates", "talos-csr-signer"):
		    assert want in names, "%s missing from the SBOM" % want
		print("image: %s SBOM: %d Debian packages, %d files" % (arch, len(names) - 2, len(files)))
	EOF

	# and the SPDX project's own validator accepts it.
	"$spdx_venv/bin/pyspdxtools" -i "$out_dir/talos-csr-signer-$arch.spdx.json" >"$cache/spdx-$arch.log" 2>&1 ||
		{ tail -5 "$cache/spdx-$arch.log" >&2; die "$arch: pyspdxtools $spdx_tools rejects the SBOM"; }
	log "$arch SBOM valid for pyspdxtools $spdx_tools"

	bah umount "$ctr" >/dev/null

	# OCI archive for other consumers (containerd import in the cluster test).
	rm -f "$out_dir/talos-csr-signer-$arch.oci.tar"
	bah push --quiet "$image" "oci-archive:$out_dir/talos-csr-signer-$arch.oci.tar:$image" >/dev/null
	log "$arch OCI archive: $out_dir/talos-csr-signer-$arch.oci.tar ($(($(stat -c %s "$out_dir/talos-csr-signer-$arch.oci.tar") / 1000000)) MB)"
	echo "$image" >>"$out_dir/images.txt"
}

: >"$out_dir/images.txt"
t_all=$(date +%s)
for a in "${arches[@]}"; do check_arch "$a"; done

# 4. The multi-arch manifest list REPO:TAG, as the push procedure publishes it.
if [ ${#arches[@]} -gt 1 ]; then
	bah manifest rm "$repo:$tag" >/dev/null 2>&1 || true
	bah manifest create "$repo:$tag" >/dev/null
	for a in "${arches[@]}"; do bah manifest add "$repo:$tag" "containers-storage:$repo:$tag-$a" >/dev/null; done
	got=$(bah manifest inspect "$repo:$tag" | python3 -c \
		'import json,sys; print(" ".join(sorted(m["platform"]["architecture"] for m in json.load(sys.stdin)["manifests"])))')
	[ "$got" = "$(printf '%s\n' "${arches[@]}" | sort | tr '\n' ' ' | sed 's/ $//')" ] ||
		die "manifest list $repo:$tag holds '$got'"
	log "manifest list $repo:$tag: $got"
	# The push procedure, into a local OCI layout instead of a registry.
	layout=$(mktemp -d)
	tmps+=("$layout")
	DEST=oci:$layout/layout:$tag OUT_DIR=$out_dir REPO=$repo TAG=$tag TCS_CACHE=${cache%/image} \
		"$root/hack/image/push.sh" 2>&1 | tail -1 >&2
	got=$(python3 -c 'import json,sys
idx = json.load(open(sys.argv[1] + "/layout/index.json"))
top = idx["manifests"][0]
assert top["mediaType"] == "application/vnd.oci.image.index.v1+json", top
sub = json.load(open(sys.argv[1] + "/layout/blobs/" + top["digest"].replace(":", "/")))
print(" ".join(sorted(m["platform"]["architecture"] for m in sub["manifests"])))' "$layout") ||
		die "push.sh did not write an OCI index"
	[ "$got" = "amd64 arm64" ] || die "push.sh pushed '$got', want amd64 arm64"
	log "push.sh (DEST=oci:...) pushed the index with: $got"
fi
# Drop untagged images (replaced builds of REPO:TAG-<arch>).
bah rmi --prune >/dev/null 2>&1 || true
log "OK in $(($(date +%s) - t_all))s: $(tr '\n' ' ' <"$out_dir/images.txt")"
cat "$out_dir/images.txt"
