# shellcheck shell=bash
# Helpers shared by the hack/k8s scripts. Source it; it defines functions only.

K8S_HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

k8s_log() { printf '%s: %s\n' "${K8S_LOG_PREFIX:-k8s}" "$*" >&2; }
k8s_die() { k8s_log "ERROR: $*"; exit 1; }

# k8s_skip_or_fail MESSAGE: under CI=true a missing prerequisite is a failure; locally it is a skip.
k8s_skip_or_fail() {
	if [[ ${CI:-} == true ]]; then
		k8s_die "$*"
	fi
	printf 'SKIPPED: %s\n' "$*"
	exit 0
}

# k8s_need_cmd CMD [DEBIAN_PACKAGE]: install the Debian package if the command is missing.
k8s_need_cmd() {
	local cmd=$1 pkg=${2:-$1}
	command -v "$cmd" >/dev/null 2>&1 && return 0
	k8s_log "installing $pkg"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null 2>&1; then
		apt-get update -q >/dev/null 2>&1 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null 2>&1 || true
	fi
	command -v "$cmd" >/dev/null 2>&1
}

# k8s_free_port VAR: set VAR to a TCP port on 127.0.0.1 that nothing listens on right now and that
# this shell has not handed out before (not run in a subshell, so the taken list persists).
k8s_free_port() {
	local -n k8s_port_out=$1
	local p _
	for _ in $(seq 1 200); do
		# Below the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by
		# default): a port there can be held by any outgoing connection on this machine
		# (an apt download, another suite's client), which no connect test sees.
		p=$((10000 + (RANDOM * 32768 + RANDOM) % 22000))
		[[ " ${K8S_PORTS_TAKEN:-} " == *" $p "* ]] && continue
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			K8S_PORTS_TAKEN="${K8S_PORTS_TAKEN:-} $p"
			# shellcheck disable=SC2034 # nameref to the caller's variable
			k8s_port_out=$p
			return 0
		fi
	done
	return 1
}

# k8s_pid_is PID BINARY: true if PID is alive and runs BINARY (guards against a reused PID).
k8s_pid_is() {
	local pid=$1 bin=$2 exe
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
	bin=$(readlink -f "$bin" 2>/dev/null || printf '%s' "$bin")
	[[ -z $exe || $exe == "$bin" || $exe == "$bin (deleted)" ]]
}

# k8s_stop PID BINARY NAME: SIGTERM, wait up to 15 s, then SIGKILL.
k8s_stop() {
	local pid=$1 bin=$2 name=$3
	k8s_pid_is "$pid" "$bin" || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 1 150); do
		kill -0 "$pid" 2>/dev/null || { k8s_log "$name ($pid) stopped"; return 0; }
		sleep 0.1
	done
	k8s_log "$name ($pid) did not stop on SIGTERM; SIGKILL"
	kill -KILL "$pid" 2>/dev/null || true
	for _ in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
}

# k8s_load_tools: make KUBE_APISERVER, KUBECTL, ETCD and CERT_MANAGER_CRDS available (building if needed;
# TCS_TOOLS_ONLY chooses; HELM is exported when it is in the cache).
# On failure: fails under CI=true, prints SKIPPED and exits 0 otherwise.
k8s_load_tools() {
	local out
	if ! out=$(TCS_TOOLS_ONLY=${TCS_TOOLS_ONLY:-kube-apiserver kubectl etcd cert-manager-crds} "$K8S_HACK_DIR/tools.sh"); then
		k8s_skip_or_fail "building the Kubernetes test tools failed (hack/k8s/tools.sh)"
	fi
	eval "$out"
	local v
	for v in KUBE_APISERVER KUBECTL ETCD; do
		[[ -n ${!v:-} && -x ${!v} ]] || k8s_skip_or_fail "$v was not built"
	done
}

# k8s_wait_until SECONDS PID CMD...: run CMD every 0.25 s until it succeeds (0), PID dies (1) or time runs out (1).
k8s_wait_until() {
	local secs=$1 pid=$2
	shift 2
	for _ in $(seq 1 $((secs * 4))); do
		"$@" >/dev/null 2>&1 && return 0
		[[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null && return 1
		sleep 0.25
	done
	return 1
}

# k8s_http_ok URL CURL_ARGS...: true if URL answers 200 with a body starting "ok".
k8s_http_ok() {
	local url=$1 body
	shift
	body=$(curl -fsS --max-time 2 "$@" "$url") && [[ $body == ok* ]]
}

# k8s_etcd_healthy ENDPOINT: true if etcd reports itself healthy.
k8s_etcd_healthy() {
	curl -fsS --max-time 2 "$1/health" | grep -q '"health":"true"'
}

# k8s_start_apiserver DIR: start kube-apiserver with the arguments saved in DIR/apiserver.args
# (one per line), append to DIR/apiserver.log, record DIR/apiserver.pid, wait for /readyz.
k8s_start_apiserver() {
	local dir=$1 bin pid
	local -a args
	bin=$(cat "$dir/apiserver.bin")
	mapfile -t args <"$dir/apiserver.args"
	printf '\n==== start %s ====\n' "$(date -u +%FT%TZ)" >>"$dir/apiserver.log"
	"$bin" "${args[@]}" >>"$dir/apiserver.log" 2>&1 </dev/null &
	pid=$!
	printf '%s\n' "$pid" >"$dir/apiserver.pid"
	if ! k8s_wait_until "${K8S_WAIT:-180}" "$pid" k8s_http_ok "$(cat "$dir/apiserver.url")/readyz" \
		--cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key"; then
		k8s_log "kube-apiserver did not become ready; last log lines:"
		tail -n 30 "$dir/apiserver.log" >&2 || true
		return 1
	fi
}

# k8s_cluster_packages: the Debian packages the single-node cluster needs (hack/k8s/cluster-up.sh),
# installed when a command is missing. The lock timeout waits for another apt run instead of failing.
k8s_cluster_packages() {
	local missing=() pair
	for pair in containerd:containerd runc:runc iptables:iptables conntrack:conntrack buildah:buildah \
		nsenter:util-linux gcc:gcc ip:iproute2; do
		command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
	done
	[[ -x ${CNI_BIN_DIR:-/usr/lib/cni}/bridge ]] || missing+=(containernetworking-plugins)
	# gcc -static needs libc.a
	[[ -e /usr/lib/x86_64-linux-gnu/libc.a || -e /usr/lib/aarch64-linux-gnu/libc.a ]] || missing+=(libc6-dev)
	((${#missing[@]} == 0)) && return 0
	k8s_log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
		{ apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null 2>&1 &&
			apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; }
}

# k8s_in_cluster CMD...: run CMD in the network namespace of the cluster whose DIR/env is sourced
# (CLUSTER_NETNS_PID). Only the network namespace changes: files, mounts and users are the host's.
k8s_in_cluster() {
	nsenter --net="/proc/${CLUSTER_NETNS_PID:?source the cluster env first}/ns/net" "$@"
}

# Paths outside the cluster's DIR that containerd, runc, the CNI plugins, iptables or the kubelet may create
# even with every directory option pointed into DIR. cluster-up.sh records which existed before;
# cluster-down.sh removes the others; cluster-state.sh compares them before and after.
K8S_CLUSTER_GLOBAL_PATHS="/run/containerd /var/lib/containerd /opt/containerd /run/runc /var/lib/cni /etc/cni
/opt/cni /run/netns /var/lib/kubelet /var/log/pods /var/log/containers /etc/kubernetes /run/xtables.lock
/var/lib/dockershim /run/calico /var/run/kubernetes"
