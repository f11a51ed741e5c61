#!/usr/bin/env bash
# Installs, idempotently, every Debian 12 package needed to build, run and test
# talos-csr-signer. `hack/deps.sh build` installs only what building and running
# need; `hack/deps.sh test` (the default) adds the test, lint and fuzz tools.
# Needs root (or sudo); does nothing when everything is already installed.
set -euo pipefail

build_pkgs=(
	build-essential cmake pkg-config git ca-certificates openssl
	libgrpc-dev protobuf-c-compiler libprotobuf-c-dev libssl-dev
	libcjson-dev libcurl4-openssl-dev libmicrohttpd-dev libsodium-dev libseccomp-dev
)
test_pkgs=(
	libcriterion-dev valgrind clang libclang-rt-14-dev clang-tidy clang-format cppcheck gnuplot-nox
	python3 python3-venv python3-grpcio python3-protobuf
	iproute2 procps curl jq
)
go_min=1.24

# The tests build Go tools (the Talos client, kube-apiserver, etcd) whose modules need
# Go $go_min or later. Debian 12's golang-go is 1.19 and cannot build them, so do not
# install it: say what is needed before installing anything.
go_ok() {
	local v
	v=$(go env GOVERSION 2>/dev/null) || return 1
	v=${v#go}
	[ "$(printf '%s\n%s\n' "$go_min" "${v%%[-+ ]*}" | sort -V | head -1)" = "$go_min" ]
}
if [ "${1:-test}" != build ] && ! go_ok; then
	found=$(command -v go >/dev/null 2>&1 && go env GOVERSION 2>/dev/null || echo "no go on PATH")
	echo "deps: the tests need Go $go_min or later (found: $found)." >&2
	echo "deps: Debian 12's golang-go (1.19) is too old; install Go >= $go_min from https://go.dev/dl/" >&2
	echo "deps: and put its bin directory first on PATH, then rerun. ('make run' needs no Go.)" >&2
	exit 1
fi

want=("${build_pkgs[@]}")
[ "${1:-test}" = build ] || want+=("${test_pkgs[@]}")

missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"; then
	$sudo apt-get update -q
	$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
