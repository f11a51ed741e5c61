#!/usr/bin/env bash
# Builds talos-csr-signer for TARGETARCH and assembles the distroless runtime
# root filesystem in OUT (the Dockerfile's build stage runs it; so does
# `hack/image/build.sh --native` on a Debian 12 host, amd64 only):
#
#   OUT/usr/bin/talos-csr-signer               stripped binary
#   OUT/usr/lib/<triplet>/*.so*                 every shared library it loads:
#                                               the DT_NEEDED closure, plus the
#                                               SONAMEs named in the binary
#                                               (dlopen), resolved in the
#                                               multiarch directories (checked
#                                               against ldd when native)
#   OUT/usr/lib64 or OUT/usr/lib: ld.so link    the program interpreter
#   OUT/lib, OUT/lib64 -> usr/...               merged-/usr links, as in Debian
#   OUT/etc/ssl/certs/ca-certificates.crt       CA bundle (+ OpenSSL's default paths)
#   OUT/etc/passwd, group, nsswitch.conf        root and nonroot (65532)
#   OUT/tmp (1777), OUT/proc, OUT/dev, OUT/sys  empty mount points
#   OUT/usr/share/doc/<pkg>/copyright           for every Debian package used
#   OUT/usr/share/doc/talos-csr-signer/         LICENSE files and sbom.spdx.json
#
# The SBOM (SPDX 2.3 JSON) lists the Debian package, version and architecture
# owning each copied file (dpkg -S / dpkg-query on this build side), every
# file with its SHA-1 and SHA-256, and the binary itself.
#
# Environment: TARGETARCH (default: this machine's), VERSION, REVISION, CREATED,
# BUILD_DIR (default /tmp/tcs-build).
set -euo pipefail

out=${1:?usage: rootfs.sh OUT}
src=$(pwd)
build_arch=$(dpkg --print-architecture)
arch=${TARGETARCH:-$build_arch}
version=${VERSION:-dev}
revision=${REVISION:-unknown}
created=${CREATED:-1970-01-01T00:00:00Z}
bdir=${BUILD_DIR:-/tmp/tcs-build}

log() { printf 'rootfs: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

case "$arch" in
amd64) triplet=x86_64-linux-gnu machine='Advanced Micro Devices X86-64' processor=x86_64 ;;
arm64) triplet=aarch64-linux-gnu machine=AArch64 processor=aarch64 ;;
*) die "unsupported TARGETARCH $arch" ;;
esac

# 1. Compile.
cmake_args=(-DCMAKE_BUILD_TYPE=Release -DBUILD_TESTS=OFF)
[ "$revision" = unknown ] || cmake_args+=("-DTCS_COMMIT=$revision")
strip=strip
if [ "$arch" != "$build_arch" ]; then
	cmake_args+=(-DCMAKE_SYSTEM_NAME=Linux "-DCMAKE_SYSTEM_PROCESSOR=$processor"
		"-DCMAKE_C_COMPILER=$triplet-gcc")
	# The host's pkg-config, reading the target's .pc files only.
	export PKG_CONFIG_LIBDIR=/usr/lib/$triplet/pkgconfig:/usr/share/pkgconfig
	strip=$triplet-strip
fi
rm -rf "$bdir"
cmake -S "$src" -B "$bdir" "${cmake_args[@]}" >/dev/null
cmake --build "$bdir" --target talos-csr-signer -j "$(nproc)"
bin=$bdir/talos-csr-signer
$strip --strip-unneeded "$bin"
readelf -h "$bin" | grep -q "Machine: *$machine" || die "$bin is not a $arch binary"
[ "$arch" != "$build_arch" ] || "$bin" --version

# 2. The shared-library closure, as the dynamic loader resolves it: DT_NEEDED
#    names looked up in Debian's default search directories for the target.
libdirs=("/lib/$triplet" "/usr/lib/$triplet" /lib /usr/lib)
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'; }
resolve() {
	local d
	for d in "${libdirs[@]}"; do
		[ -e "$d/$1" ] && { echo "$d/$1"; return 0; }
	done
	return 1
}
# Libraries loaded with dlopen (the daemon may load libcurl or libmicrohttpd
# only when a feature needs them) are not in DT_NEEDED, but their SONAMEs are
# strings in the binary: every one found is copied too, with its own closure.
sonames() { strings -a "$1" | grep -oE 'lib[A-Za-z0-9_+-]+\.so\.[0-9]+' | sort -u; }
declare -A lib=() # soname -> path found
queue=($(needed "$bin") $(sonames "$bin"))
while [ ${#queue[@]} -gt 0 ]; do
	name=${queue[0]}
	queue=("${queue[@]:1}")
	[ -z "${lib[$name]:-}" ] || continue
	path=$(resolve "$name") || die "$name (needed or named by the binary) not found for $arch: add its -dev package to BUILD_LIBS"
	lib[$name]=$path
	queue+=($(needed "$path"))
done
interp=$(readelf -l "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)\]$/\1/p')
[ -n "$interp" ] || die "no program interpreter in $bin"
if [ "$arch" = "$build_arch" ]; then
	# ldd (the dynamic loader itself) must agree with the closure.
	while read -r name; do
		[ -n "${lib[$name]:-}" ] || die "ldd lists $name, which the closure missed"
	done < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $1}')
fi

# 3. Lay out the root filesystem.
rm -rf "$out"
install -d -m 0755 "$out/usr/bin" "$out/usr/lib/$triplet" "$out/etc/ssl/certs" \
	"$out/usr/share/doc/talos-csr-signer" "$out/proc" "$out/dev" "$out/sys"
install -d -m 1777 "$out/tmp"
ln -s usr/lib "$out/lib"
install -m 0755 "$bin" "$out/usr/bin/talos-csr-signer"
declare -A file_src=() # path in the image -> path on the build side
for name in "${!lib[@]}"; do
	cp -L --preserve=mode "${lib[$name]}" "$out/usr/lib/$triplet/$name" # ld.so stays executable
	file_src[/usr/lib/$triplet/$name]=${lib[$name]}
done
# The interpreter path (/lib64/ld-linux-x86-64.so.2, /lib/ld-linux-aarch64.so.1)
# points at the copy libc's closure brought in, as in Debian.
iname=$(basename "$interp")
[ -e "$out/usr/lib/$triplet/$iname" ] || die "the interpreter $interp is not in the closure"
idir=/usr${interp%/*}
idir=${idir#/usr/usr}
[ "$idir" = /usr/lib64 ] && ln -s usr/lib64 "$out/lib64"
install -d "$out$idir"
[ -e "$out$idir/$iname" ] || ln -sr "$out/usr/lib/$triplet/$iname" "$out$idir/$iname"

cp -L /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/ca-certificates.crt"
chmod 0644 "$out/etc/ssl/certs/ca-certificates.crt"
install -d "$out/usr/lib/ssl"
ln -s ../../../etc/ssl/certs "$out/usr/lib/ssl/certs"
ln -s ../../../etc/ssl/certs/ca-certificates.crt "$out/usr/lib/ssl/cert.pem"
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
	'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$out/etc/passwd"
printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' >"$out/etc/group"
printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' >"$out/etc/nsswitch.conf"
chmod 0644 "$out/etc/passwd" "$out/etc/group" "$out/etc/nsswitch.conf"
cp "$src/LICENSE" "$src/LICENSE-MPL-2.0" "$out/usr/share/doc/talos-csr-signer/"

# 4. Owners of the copied files. dpkg's database holds the paths packages
#    ship (often /lib/... under merged /usr), so try the found path, the real
#    path, and both without /usr.
owner() {
	local p c
	for p in "$1" "$(readlink -f "$1")"; do
		for c in "$p" "${p#/usr}"; do
			dpkg -S "$c" 2>/dev/null | sed -n 's/^\([^ ,]*\): .*/\1/p' | head -1 | grep . && return 0
		done
	done
	return 1
}
declare -A pkg_of=() # image path -> package[:arch]
for f in "${!file_src[@]}"; do
	pkg_of[$f]=$(owner "${file_src[$f]}") || die "no Debian package owns ${file_src[$f]}"
done
pkg_of[/etc/ssl/certs/ca-certificates.crt]=ca-certificates # built from its certificates
declare -A pkgs=()
for f in "${!pkg_of[@]}"; do pkgs[${pkg_of[$f]}]=1; done
for p in "${!pkgs[@]}"; do
	d=/usr/share/doc/${p%%:*}
	if [ -f "$d/copyright" ]; then
		install -d "$out$d"
		install -m 0644 "$d/copyright" "$out$d/copyright"
	fi
done

# 5. SPDX 2.3 SBOM. Names, versions and paths here are Debian's and ours (no
#    characters needing JSON escapes); checked by the caller with a JSON parser.
# vcode FILE...: SPDX package verification code of image files (SHA-1 of
# their sorted SHA-1s, concatenated).
vcode() {
	local f
	for f in "$@"; do sha1sum "$out$f" | cut -d' ' -f1; done | sort | tr -d '\n' | sha1sum | cut -d' ' -f1
}
spdxid() { printf 'SPDXRef-%s' "$(printf '%s' "$1" | tr -c 'A-Za-z0-9.\n-' '-')"; }
sbom=$out/usr/share/doc/talos-csr-signer/sbom.spdx.json
distro=debian-$(cut -d. -f1 /etc/debian_version)
{
	printf '{\n  "spdxVersion": "SPDX-2.3",\n  "dataLicense": "CC0-1.0",\n'
	printf '  "SPDXID": "SPDXRef-DOCUMENT",\n  "name": "talos-csr-signer-%s-%s",\n' "$version" "$arch"
	printf '  "documentNamespace": "https://spdx.org/spdxdocs/talos-csr-signer-%s-%s-%s",\n' \
		"$version" "$arch" "$revision"
	printf '  "creationInfo": {"created": "%s", "creators": ["Tool: talos-csr-signer hack/image/rootfs.sh"]},\n' "$created"
	printf '  "documentDescribes": ["SPDXRef-image"],\n  "packages": [\n'
	printf '    {"SPDXID": "SPDXRef-image", "name": "talos-csr-signer-image", "versionInfo": "%s",' "$version"
	printf ' "primaryPackagePurpose": "CONTAINER", "downloadLocation": "NOASSERTION", "filesAnalyzed": false,'
	printf ' "licenseDeclared": "NOASSERTION", "copyrightText": "NOASSERTION",'
	printf ' "comment": "revision %s, architecture %s"},\n' "$revision" "$arch"
	printf '    {"SPDXID": "SPDXRef-talos-csr-signer", "name": "talos-csr-signer", "versionInfo": "%s",' "$version"
	printf ' "primaryPackagePurpose": "APPLICATION", "downloadLocation": "NOASSERTION", "filesAnalyzed": true,'
	printf ' "packageVerificationCode": {"packageVerificationCodeValue": "%s"},' "$(vcode /usr/bin/talos-csr-signer)"
	printf ' "licenseConcluded": "NOASSERTION", "licenseDeclared": "Apache-2.0 AND MPL-2.0", "copyrightText": "NOASSERTION"}'
	for p in $(printf '%s\n' "${!pkgs[@]}" | sort); do
		read -r name ver parch srcname srcver < <(dpkg-query -W \
			-f='${Package} ${Version} ${Architecture} ${source:Package} ${source:Version}\n' "$p")
		printf ',\n    {"SPDXID": "%s", "name": "%s", "versionInfo": "%s",' "$(spdxid "deb-$name-$parch")" "$name" "$ver"
		printf ' "supplier": "Organization: Debian", "downloadLocation": "NOASSERTION", "filesAnalyzed": true,'
		printf ' "packageVerificationCode": {"packageVerificationCodeValue": "%s"},' \
			"$(vcode $(for f in "${!pkg_of[@]}"; do [ "${pkg_of[$f]}" = "$p" ] && echo "$f"; done))"
		printf ' "comment": "files analyzed: those of the package that are in the image",'
		printf ' "licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION", "copyrightText": "NOASSERTION",'
		printf ' "sourceInfo": "Debian source package %s %s",' "$srcname" "$srcver"
		printf ' "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",'
		printf ' "referenceLocator": "pkg:deb/debian/%s@%s?arch=%s&distro=%s"}]}' \
			"$name" "$(printf '%s' "$ver" | sed 's/:/%3A/g; s/+/%2B/g')" "$parch" "$distro"
	done
	printf '\n  ],\n  "files": [\n'
	sep=
	for f in /usr/bin/talos-csr-signer $(printf '%s\n' "${!pkg_of[@]}" | sort); do
		sha1=$(sha1sum "$out$f" | cut -d' ' -f1)
		sha256=$(sha256sum "$out$f" | cut -d' ' -f1)
		printf '%s    {"SPDXID": "%s", "fileName": ".%s", "checksums": [' "$sep" "$(spdxid "file$f")" "$f"
		printf '{"algorithm": "SHA1", "checksumValue": "%s"}, {"algorithm": "SHA256", "checksumValue": "%s"}]}' \
			"$sha1" "$sha256"
		sep=$',\n'
	done
	printf '\n  ],\n  "relationships": [\n'
	printf '    {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-image"},\n'
	printf '    {"spdxElementId": "SPDXRef-image", "relationshipType": "CONTAINS", "relatedSpdxElement": "SPDXRef-talos-csr-signer"},\n'
	printf '    {"spdxElementId": "SPDXRef-talos-csr-signer", "relationshipType": "CONTAINS", "relatedSpdxElement": "%s"}' \
		"$(spdxid file/usr/bin/talos-csr-signer)"
	for p in $(printf '%s\n' "${!pkgs[@]}" | sort); do
		read -r name parch < <(dpkg-query -W -f='${Package} ${Architecture}\n' "$p")
		printf ',\n    {"spdxElementId": "SPDXRef-image", "relationshipType": "CONTAINS", "relatedSpdxElement": "%s"}' \
			"$(spdxid "deb-$name-$parch")"
	done
	for f in $(printf '%s\n' "${!pkg_of[@]}" | sort); do
		read -r name parch < <(dpkg-query -W -f='${Package} ${Architecture}\n' "${pkg_of[$f]}")
		printf ',\n    {"spdxElementId": "%s", "relationshipType": "CONTAINS", "relatedSpdxElement": "%s"}' \
			"$(spdxid "deb-$name-$parch")" "$(spdxid "file$f")"
	done
	printf '\n  ]\n}\n'
} >"$sbom"
chmod 0644 "$sbom"
log "$arch rootfs in $out: $(du -sh "$out" | cut -f1), ${#lib[@]} libraries from ${#pkgs[@]} packages"
