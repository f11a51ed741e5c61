#!/usr/bin/env bash
# Builds one of the project's Go test tools (tests/interop's Talos client,
# bench/loadgen) into the tool cache, once per source and Go version, and
# prints the binary's path. Every suite that needs a tool calls this, so they
# share one cache key and one build.
#
# Usage: hack/gotool.sh NAME MODULE_DIR [PACKAGE]   (PACKAGE default ".")
# Environment: TCS_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer)
# Exits non-zero (after saying why on stderr) when Go is missing or the build fails.
set -euo pipefail

name=${1:?usage: hack/gotool.sh NAME MODULE_DIR [PACKAGE]}
mod=${2:?usage: hack/gotool.sh NAME MODULE_DIR [PACKAGE]}
pkg=${3:-.}
cache=${TCS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer}

command -v go >/dev/null 2>&1 || { echo "gotool: go is not installed" >&2; exit 1; }
key=$(cd "$mod" && { cat go.mod go.sum; find . -name '*.go' | LC_ALL=C sort | xargs cat; go version; } |
	sha256sum | cut -c1-16)
bin=$cache/tools/$name-$key/$name
if [[ ! -x $bin ]]; then
	echo "gotool: building $name into $(dirname "$bin")" >&2
	mkdir -p "$(dirname "$bin")"
	(cd "$mod" && GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath -o "$bin.tmp" "$pkg") >&2 ||
		{ echo "gotool: building $name from $mod failed" >&2; exit 1; }
	mv "$bin.tmp" "$bin"
fi
echo "$bin"
