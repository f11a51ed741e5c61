#!/usr/bin/env bash
# Builds the Kubernetes test tools from the Go module proxy into a cache outside the repo:
#   kube-apiserver, kubectl (k8s.io/kubernetes), etcd (go.etcd.io/etcd/server/v3), helm (helm.sh/helm/v3),
#   and extracts cert-manager's CRD manifests from its Go module.
#   On request (TCS_TOOLS_ONLY), for the single-node cluster of hack/k8s/cluster-up.sh: kubelet,
#   kube-scheduler, kube-controller-manager, kube-proxy (k8s.io/kubernetes), cert-manager-controller
#   (cert-manager's controller packages wired by hack/k8s/cert-manager-controller/main.go) and cmctl.
# Every tool is built only when its binary is missing, so later runs reuse the cache.
#
# Usage: eval "$(hack/k8s/tools.sh)"     # prints export lines on stdout; progress goes to stderr
#        hack/k8s/tools.sh --env-file     # only prints the path of the env file it writes
# Environment:
#   TCS_CACHE        cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer)
#   K8S_VERSION, ETCD_VERSION, HELM_VERSION, CERT_MANAGER_VERSION, CMCTL_VERSION   override the pinned versions
#   TCS_TOOLS_ONLY   space-separated subset of: kube-apiserver kubectl etcd helm cert-manager-crds
#                    kubelet kube-scheduler kube-controller-manager kube-proxy cert-manager-controller cmctl
#                    (default: the first five; TCS_TOOLS_ONLY=cluster means all of them)
#   TCS_GO_SHARED_CACHES=1  use the user's normal GOMODCACHE/GOCACHE instead of ones inside TCS_CACHE
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
HELM_VERSION=${HELM_VERSION:-v3.22.0}
CERT_MANAGER_VERSION=${CERT_MANAGER_VERSION:-v1.21.2}
# cmctl moved to its own module (github.com/cert-manager/cmctl/v2); v2.2.0 is the newest the module proxy and
# the checksum database both serve here (v2.3.0's go.mod is missing from sum.golang.org, v2.4.0 is refused).
CMCTL_VERSION=${CMCTL_VERSION:-v2.2.0}

CACHE=${TCS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer}
TOOLS=$CACHE/tools
BUILD=$CACHE/build
ENV_FILE=$TOOLS/env.sh
ONLY=${TCS_TOOLS_ONLY:-kube-apiserver kubectl etcd helm cert-manager-crds}
CLUSTER_TOOLS="kube-apiserver kubectl etcd helm cert-manager-crds kubelet kube-scheduler kube-controller-manager kube-proxy cert-manager-controller cmctl"
[[ $ONLY != cluster ]] || ONLY=$CLUSTER_TOOLS
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

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
HELM=$TOOLS/helm-$HELM_VERSION/bin/helm
CERT_MANAGER_CRDS=$TOOLS/cert-manager-crds-$CERT_MANAGER_VERSION/crds
KUBELET=$TOOLS/kubelet-$K8S_VERSION/bin/kubelet
KUBE_SCHEDULER=$TOOLS/kube-scheduler-$K8S_VERSION/bin/kube-scheduler
KUBE_CONTROLLER_MANAGER=$TOOLS/kube-controller-manager-$K8S_VERSION/bin/kube-controller-manager
KUBE_PROXY=$TOOLS/kube-proxy-$K8S_VERSION/bin/kube-proxy
# The controller's key covers our main.go too, so an edit to it rebuilds.
cm_main_key=$(sha256sum "$HERE/cert-manager-controller/main.go" | cut -c1-12)
CERT_MANAGER_CONTROLLER=$TOOLS/cert-manager-controller-$CERT_MANAGER_VERSION-$cm_main_key/bin/cert-manager-controller
CMCTL=$TOOLS/cmctl-$CMCTL_VERSION/bin/cmctl

# --- kube-apiserver and kubectl: k8s.io/kubernetes with every staging module replaced by its v0.X.Y tag
k8s_needed=()
want kube-apiserver && [[ ! -x $KUBE_APISERVER ]] && k8s_needed+=(kube-apiserver)
want kubectl && [[ ! -x $KUBECTL ]] && k8s_needed+=(kubectl)
want kubelet && [[ ! -x $KUBELET ]] && k8s_needed+=(kubelet)
want kube-scheduler && [[ ! -x $KUBE_SCHEDULER ]] && k8s_needed+=(kube-scheduler)
want kube-controller-manager && [[ ! -x $KUBE_CONTROLLER_MANAGER ]] && k8s_needed+=(kube-controller-manager)
want kube-proxy && [[ ! -x $KUBE_PROXY ]] && k8s_needed+=(kube-proxy)
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
	# Every k8s command any run may build is listed, so go.mod/go.sum are the same whatever the subset.
	tools_go "$dir" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl \
		k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler \
		k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-proxy
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
		kubelet) build_into "$KUBELET" "$dir" k8s.io/kubernetes/cmd/kubelet "$ld" ;;
		kube-scheduler) build_into "$KUBE_SCHEDULER" "$dir" k8s.io/kubernetes/cmd/kube-scheduler "$ld" ;;
		kube-controller-manager) build_into "$KUBE_CONTROLLER_MANAGER" "$dir" k8s.io/kubernetes/cmd/kube-controller-manager "$ld" ;;
		kube-proxy) build_into "$KUBE_PROXY" "$dir" k8s.io/kubernetes/cmd/kube-proxy "$ld" ;;
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
	build_into "$HELM" "$dir" helm.sh/helm/v3/cmd/helm \
		"-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
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

# --- cert-manager's controller: its main package is a nested module (cmd/controller) that the module proxy
# does not serve, so hack/k8s/cert-manager-controller/main.go runs the root module's controller packages.
if want cert-manager-controller && [[ ! -x $CERT_MANAGER_CONTROLLER ]]; then
	need_go cert-manager-controller
	dir=$BUILD/cert-manager-controller-$CERT_MANAGER_VERSION
	gomod "$dir" github.com/cert-manager/cert-manager "$CERT_MANAGER_VERSION"
	cp "$HERE/cert-manager-controller/main.go" "$dir/main.go"
	(cd "$dir" && go mod tidy) || die "go mod tidy failed for cert-manager $CERT_MANAGER_VERSION"
	build_into "$CERT_MANAGER_CONTROLLER" "$dir" . "-s -w"
fi

# --- cmctl (its own module since v2)
if want cmctl && [[ ! -x $CMCTL ]]; then
	need_go cmctl
	dir=$BUILD/cmctl-$CMCTL_VERSION
	gomod "$dir" github.com/cert-manager/cmctl/v2 "$CMCTL_VERSION"
	tools_go "$dir" github.com/cert-manager/cmctl/v2
	(cd "$dir" && go mod tidy) || die "go mod tidy failed for cmctl $CMCTL_VERSION"
	build_into "$CMCTL" "$dir" github.com/cert-manager/cmctl/v2 "-s -w"
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
	compgen -G "$CERT_MANAGER_CRDS/*.yaml" >/dev/null && printf 'export CERT_MANAGER_CRDS=%q\n' "$CERT_MANAGER_CRDS"
	[[ -x $KUBELET ]] && printf 'export KUBELET=%q\n' "$KUBELET"
	[[ -x $KUBE_SCHEDULER ]] && printf 'export KUBE_SCHEDULER=%q\n' "$KUBE_SCHEDULER"
	[[ -x $KUBE_CONTROLLER_MANAGER ]] && printf 'export KUBE_CONTROLLER_MANAGER=%q\n' "$KUBE_CONTROLLER_MANAGER"
	[[ -x $KUBE_PROXY ]] && printf 'export KUBE_PROXY=%q\n' "$KUBE_PROXY"
	[[ -x $CERT_MANAGER_CONTROLLER ]] && printf 'export CERT_MANAGER_CONTROLLER=%q\n' "$CERT_MANAGER_CONTROLLER"
	[[ -x $CMCTL ]] && printf 'export CMCTL=%q\n' "$CMCTL"
	printf 'export K8S_VERSION=%q ETCD_VERSION=%q HELM_VERSION=%q CERT_MANAGER_VERSION=%q CMCTL_VERSION=%q\n' \
		"$K8S_VERSION" "$ETCD_VERSION" "$HELM_VERSION" "$CERT_MANAGER_VERSION" "$CMCTL_VERSION"
} >"$ENV_FILE.tmp"
mv -f "$ENV_FILE.tmp" "$ENV_FILE"

if [[ ${1:-} == --env-file ]]; then
	printf '%s\n' "$ENV_FILE"
else
	cat "$ENV_FILE"
fi
