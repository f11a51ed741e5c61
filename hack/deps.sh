#!/usr/bin/env bash
# Installs, idempotently, every Debian 12 package needed to build, run and test
# talos-csr-signer. `hack/deps.sh build` installs only what building and running
# need; `hack/deps.sh test` (the default) adds the test, lint and fuzz tools.
# Needs root (or sudo); does nothing when everything is already installed.
set -euo pipefail

build_pkgs=(
	build-essential cmake pkg-config git ca-certificates openssl
	libgrpc-dev protobuf-c-compiler libprotobuf-c-dev libssl-dev
	libcjson-dev libcurl4-openssl-dev libmicrohttpd-dev libsodium-dev
)
test_pkgs=(
	libcriterion-dev valgrind clang libclang-rt-14-dev clang-tidy clang-format cppcheck gnuplot-nox
	python3 python3-venv python3-grpcio python3-protobuf
	iproute2 procps curl jq golang-go
)

want=("${build_pkgs[@]}")
[ "${1:-test}" = build ] || want+=("${test_pkgs[@]}")

missing=()
for p in "${want[@]}"; do
	# Go comes with the machine on our CI images; only install Debian's if none is there.
	if [ "$p" = golang-go ] && command -v go >/dev/null 2>&1; then
		continue
	fi
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
