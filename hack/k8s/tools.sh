#!/usr/bin/env bash
# Builds the Kubernetes test tools from the Go module proxy into a cache outside the repo:
#   kube-apiserver, kubectl (k8s.io/kubernetes), etcd (go.etcd.io/etcd/server/v3), helm (helm.sh/helm/v3),
#   promtool (github.com/prometheus/prometheus, only when asked for by TCS_TOOLS_ONLY),
#   and extracts cert-manager's CRD manifests from its Go module.
# Every tool is built only when its binary is missing, so later runs reuse the cache.
#
# Usage: eval "$(hack/k8s/tools.sh)"     # prints export lines on stdout; progress goes to stderr
#        hack/k8s/tools.sh --env-file     # only prints the path of the env file it writes
# Environment:
#   TCS_CACHE        cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer)
#   K8S_VERSION, ETCD_VERSION, HELM_VERSION, CERT_MANAGER_VERSION, PROMETHEUS_VERSION   override the pinned versions
#   TCS_TOOLS_ONLY   space-separated subset of: kube-apiserver kubectl etcd helm cert-manager-crds promtool
#                    (default: all but promtool)
#   TCS_GO_SHARED_CACHES=1  use the user's normal GOMODCACHE/GOCACHE instead of ones inside TCS_CACHE
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
HELM_VERSION=${HELM_VERSION:-v3.22.0}
CERT_MANAGER_VERSION=${CERT_MANAGER_VERSION:-v1.21.2}
PROMETHEUS_VERSION=${PROMETHEUS_VERSION:-v0.316.0}
# Bumped whenever the way a tool is built changes (not its version), so a cached binary built the old
# way is not reused: helm 2 = helm built with upstream's default-Kubernetes-version ldflags.
HELM_BUILD=2

CACHE=${TCS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer}
TOOLS=$CACHE/tools
BUILD=$CACHE/build
ENV_FILE=$TOOLS/env.sh
ONLY=${TCS_TOOLS_ONLY:-kube-apiserver kubectl etcd helm cert-manager-crds}

log() { printf 'tools.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
want() { [[ " $ONLY " == *" $1 "* ]]; }

mkdir -p "$TOOLS" "$BUILD"
if [[ ${TCS_GO_SHARED_CACHES:-0} != 1 ]]; then
	# Keep everything the builds download or compile inside the cache, so its disk use is visible
	# and `rm -rf "$TCS_CACHE"` removes it all. -modcacherw keeps the module cache deletable.
	export GOMODCACHE=$CACHE/go/mod
	export GOCACHE=$CACHE/go/build
fi
export GOFLAGS="-mod=mod -modcacherw -buildvcs=false"
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export CGO_ENABLED=${CGO_ENABLED:-0}

# Serialise concurrent runs (two test scripts starting at once must not build twice).
exec 9>"$CACHE/.tools.lock"
flock 9

# k8s version string pieces: v1.37.2 -> major 1, minor 37, staging tag v0.37.2
k8s_minor=${K8S_VERSION#v1.}
k8s_minor=${k8s_minor%%.*}
staging_version=v0.${K8S_VERSION#v1.}

# Go is needed only when something has to be built; a filled cache works without it.
need_go() {
	command -v go >/dev/null 2>&1 || die "go is not installed (needed to build $1)"
	BUILT_SOMETHING=1
}
BUILT_SOMETHING=0

# gomod DIR MODULE VERSION [REPLACE_LINES] : write a throwaway tools module that requires MODULE@VERSION
gomod() {
	local dir=$1 mod=$2 ver=$3 replaces=${4:-}
	mkdir -p "$dir"
	{
		printf 'module tcs.local/tools\n\ngo %s\n\nrequire %s %s\n' \
			"$(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')" "$mod" "$ver"
		if [[ -n $replaces ]]; then
			printf '\nreplace (\n%s)\n' "$replaces"
		fi
	} >"$dir/go.mod"
	rm -f "$dir/go.sum"
}

# tools_go DIR PKG... : a build-tagged file importing the main packages, so `go mod tidy` keeps their deps
tools_go() {
	local dir=$1
	shift
	{
		printf '//go:build tools\n\npackage tools\n\nimport (\n'
		local p
		for p in "$@"; do printf '\t_ "%s"\n' "$p"; done
		printf ')\n'
	} >"$dir/tools.go"
}

# build_into OUT_BIN DIR PKG LDFLAGS
build_into() {
	local out=$1 dir=$2 pkg=$3 ldflags=$4 start
	start=$(date +%s)
	mkdir -p "$(dirname "$out")"
	log "building $pkg -> $out"
	(cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "$pkg")
	mv -f "$out.tmp" "$out"
	log "built $(basename "$out") in $(($(date +%s) - start))s"
}

KUBE_APISERVER=$TOOLS/kube-apiserver-$K8S_VERSION/bin/kube-apiserver
KUBECTL=$TOOLS/kubectl-$K8S_VERSION/bin/kubectl
ETCD=$TOOLS/etcd-$ETCD_VERSION/bin/etcd
HELM=$TOOLS/helm-$HELM_VERSION-$HELM_BUILD/bin/helm
PROMTOOL=$TOOLS/promtool-$PROMETHEUS_VERSION/bin/promtool
CERT_MANAGER_CRDS=$TOOLS/cert-manager-crds-$CERT_MANAGER_VERSION/crds

# --- kube-apiserver and kubectl: k8s.io/kubernetes with every staging module replaced by its v0.X.Y tag
k8s_needed=()
want kube-apiserver && [[ ! -x $KUBE_APISERVER ]] && k8s_needed+=(kube-apiserver)
want kubectl && [[ ! -x $KUBECTL ]] && k8s_needed+=(kubectl)
if ((${#k8s_needed[@]})); then
	need_go "${k8s_needed[*]}"
	dir=$BUILD/kubernetes-$K8S_VERSION
	mkdir -p "$dir"
	log "resolving k8s.io/kubernetes@$K8S_VERSION"
	# The staging list changes between releases: read it from the release's own go.mod.
	k8s_gomod=$(cd "$dir" && GOFLAGS=-modcacherw go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
	[[ -f $k8s_gomod ]] || die "could not download the go.mod of k8s.io/kubernetes@$K8S_VERSION"
	replaces=$(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\) => \./staging/.*#\t\1 => \1 '"$staging_version"'#p' "$k8s_gomod")
	[[ -n $replaces ]] || die "no staging replace lines found in $k8s_gomod"
	log "$(printf '%s\n' "$replaces" | wc -l) staging modules replaced by $staging_version"
	gomod "$dir" k8s.io/kubernetes "$K8S_VERSION" "$replaces"$'\n'
	tools_go "$dir" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
	(cd "$dir" && go mod tidy) || die "go mod tidy failed for k8s.io/kubernetes@$K8S_VERSION"
	ld="-s -w"
	for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
		ld+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
		ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
	done
	for t in "${k8s_needed[@]}"; do
		case $t in
		kube-apiserver) build_into "$KUBE_APISERVER" "$dir" k8s.io/kubernetes/cmd/kube-apiserver "$ld" ;;
		kubectl) build_into "$KUBECTL" "$dir" k8s.io/kubernetes/cmd/kubectl "$ld" ;;
		esac
	done
fi

# --- etcd: the server module's main package is its root (server/main.go); it has relative replaces,
# so it is required from a tools module rather than `go install`ed.
if want etcd && [[ ! -x $ETCD ]]; then
	need_go etcd
	dir=$BUILD/etcd-$ETCD_VERSION
	gomod "$dir" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
	tools_go "$dir" go.etcd.io/etcd/server/v3
	(cd "$dir" && go mod tidy) || die "go mod tidy failed for etcd $ETCD_VERSION"
	build_into "$ETCD" "$dir" go.etcd.io/etcd/server/v3 "-s -w"
fi

# --- helm
if want helm && [[ ! -x $HELM ]]; then
	need_go helm
	dir=$BUILD/helm-$HELM_VERSION
	gomod "$dir" helm.sh/helm/v3 "$HELM_VERSION"
	tools_go "$dir" helm.sh/helm/v3/cmd/helm
	(cd "$dir" && go mod tidy) || die "go mod tidy failed for helm $HELM_VERSION"
	# As helm's own Makefile does: the Kubernetes version that `helm template` and `helm lint` assume
	# without --kube-version is the client-go version it was built with (major 0 -> 1). Without these
	# flags helm falls back to v1.20 and refuses any chart whose kubeVersion wants more.
	cg=$(cd "$dir" && go list -m -f '{{.Version}}' k8s.io/client-go) || die "no client-go in helm's build list"
	cg=${cg#v}
	kmaj=$((${cg%%.*} + 1))
	kmin=${cg#*.}
	kmin=${kmin%%.*}
	ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
	for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
		ld+=" -X $pkg.k8sVersionMajor=$kmaj -X $pkg.k8sVersionMinor=$kmin"
	done
	log "helm $HELM_VERSION: default Kubernetes version v$kmaj.$kmin (client-go v$cg)"
	build_into "$HELM" "$dir" helm.sh/helm/v3/cmd/helm "$ld"
fi

# --- promtool (check metrics / check rules), from the Prometheus module
if want promtool && [[ ! -x $PROMTOOL ]]; then
	need_go promtool
	dir=$BUILD/prometheus-$PROMETHEUS_VERSION
	gomod "$dir" github.com/prometheus/prometheus "$PROMETHEUS_VERSION"
	tools_go "$dir" github.com/prometheus/prometheus/cmd/promtool
	(cd "$dir" && go mod tidy) || die "go mod tidy failed for prometheus $PROMETHEUS_VERSION"
	build_into "$PROMTOOL" "$dir" github.com/prometheus/prometheus/cmd/promtool \
		"-s -w -X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION#v}"
fi

# --- cert-manager CRDs: plain (non-templated) CRD manifests live in deploy/crds/ of the module zip
if want cert-manager-crds && ! compgen -G "$CERT_MANAGER_CRDS/*.yaml" >/dev/null; then
	need_go "the cert-manager CRD download"
	dir=$BUILD/cert-manager-$CERT_MANAGER_VERSION
	mkdir -p "$dir"
	log "downloading github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION"
	src=$(cd "$dir" && GOFLAGS=-modcacherw go mod download -json "github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
	[[ -d $src/deploy/crds ]] || die "deploy/crds not found in cert-manager $CERT_MANAGER_VERSION module"
	mkdir -p "$CERT_MANAGER_CRDS.tmp"
	for f in "$src"/deploy/crds/*.yaml; do
		grep -q '^kind: CustomResourceDefinition' "$f" || continue
		cp "$f" "$CERT_MANAGER_CRDS.tmp/"
		chmod 644 "$CERT_MANAGER_CRDS.tmp/$(basename "$f")"
	done
	compgen -G "$CERT_MANAGER_CRDS.tmp/*.yaml" >/dev/null || die "no CRDs found in cert-manager module"
	rm -rf "$CERT_MANAGER_CRDS"
	mv "$CERT_MANAGER_CRDS.tmp" "$CERT_MANAGER_CRDS"
	log "cert-manager CRDs: $(ls "$CERT_MANAGER_CRDS" | tr '\n' ' ')"
fi

# The Go build cache (~3 GB after kube-apiserver) is of no use once the binaries exist; drop it unless asked
# to keep it. The module cache (~1 GB) is kept: it makes a version bump or a rebuild much cheaper.
if ((BUILT_SOMETHING)) && [[ ${TCS_GO_SHARED_CACHES:-0} != 1 && ${TCS_KEEP_GOCACHE:-0} != 1 ]]; then
	go clean -cache >/dev/null 2>&1 || true
fi

{
	printf '# generated by hack/k8s/tools.sh\n'
	# Every tool present in the cache is listed, built by this run or an earlier one.
	[[ -x $KUBE_APISERVER ]] && printf 'export KUBE_APISERVER=%q\n' "$KUBE_APISERVER"
	[[ -x $KUBECTL ]] && printf 'export KUBECTL=%q\n' "$KUBECTL"
	[[ -x $ETCD ]] && printf 'export ETCD=%q\n' "$ETCD"
	[[ -x $HELM ]] && printf 'export HELM=%q\n' "$HELM"
	[[ -x $PROMTOOL ]] && printf 'export PROMTOOL=%q\n' "$PROMTOOL"
	compgen -G "$CERT_MANAGER_CRDS/*.yaml" >/dev/null && printf 'export CERT_MANAGER_CRDS=%q\n' "$CERT_MANAGER_CRDS"
	printf 'export K8S_VERSION=%q ETCD_VERSION=%q HELM_VERSION=%q CERT_MANAGER_VERSION=%q PROMETHEUS_VERSION=%q\n' \
		"$K8S_VERSION" "$ETCD_VERSION" "$HELM_VERSION" "$CERT_MANAGER_VERSION" "$PROMETHEUS_VERSION"
} >"$ENV_FILE.tmp"
mv -f "$ENV_FILE.tmp" "$ENV_FILE"

if [[ ${1:-} == --env-file ]]; then
	printf '%s\n' "$ENV_FILE"
else
	cat "$ENV_FILE"
fi
