#!/usr/bin/env bash
# Start a single-node Kubernetes cluster that runs Pods, inside a network namespace of its own.
#
# Usage: hack/k8s/cluster-up.sh DIR        (root; stop with hack/k8s/cluster-down.sh DIR)
#
# What runs (each a plain process whose PID is recorded in DIR/*.pid):
#   a holder process that owns a fresh network namespace (`unshare --net`); everything below runs in it
#     (nsenter --net), so the bridge, the veth pairs, every iptables chain, ip_forward and route_localnet
#     live and die with that namespace, and no listener is reachable from the host's interfaces;
#   etcd + kube-apiserver (hack/k8s/up.sh, run inside the namespace; the apiserver also listens on the
#     node address so Pods reach it through the `kubernetes` Service);
#   kube-controller-manager, kube-scheduler, kube-proxy (iptables mode);
#   containerd (Debian's, started directly with its own root/state/socket under DIR) with runc;
#   kubelet (cgroupfs driver under its own cgroup root, failCgroupV1: false).
# Addresses: node 198.18.0.1 on bridge tcs0, Pods 198.18.0.0/24, Services 198.18.1.0/24 (RFC 2544
# benchmarking range: nothing real lives there, and it exists only inside the namespace).
# Images: a locally built pause image (hack/k8s/cluster-images.sh) is imported; nothing is pulled.
#
# DIR/env exports KUBECONFIG KUBECTL HELM CMCTL CLUSTER_NETNS_PID CLUSTER_NODE CLUSTER_NODE_IP CLUSTER_DIR
# CONTAINERD_SOCK and the up.sh variables. Run anything that talks to the cluster inside the namespace:
#   . DIR/env; nsenter --net=/proc/$CLUSTER_NETNS_PID/ns/net kubectl get pods -A
# (hack/k8s/lib.sh: k8s_in_cluster CMD...). On a failed start everything started is torn down again.
set -euo pipefail
K8S_LOG_PREFIX=cluster-up.sh
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

[[ $# -eq 1 ]] || k8s_die "usage: $0 DIR"
mkdir -p "$1"
DIR=$(cd "$1" && pwd)
[[ ! -e $DIR/env ]] || k8s_die "$DIR/env exists: already up? (run cluster-down.sh first or use an empty DIR)"
[[ $(id -u) == 0 ]] || k8s_skip_or_fail "the cluster needs root (network namespace, containerd, kubelet)"

NODE=tcs-node
NODE_IP=198.18.0.1
POD_CIDR=198.18.0.0/24
SERVICE_CIDR=198.18.1.0/24
KUBERNETES_SVC_IP=198.18.1.1
BRIDGE=tcs0

k8s_cluster_packages || k8s_skip_or_fail "containerd, runc, CNI plugins, iptables, conntrack or buildah missing and not installable"
TCS_TOOLS_ONLY=cluster k8s_load_tools
CNI_BIN_DIR=${CNI_BIN_DIR:-/usr/lib/cni}
[[ -x $CNI_BIN_DIR/bridge && -x $CNI_BIN_DIR/host-local && -x $CNI_BIN_DIR/portmap ]] ||
	k8s_skip_or_fail "CNI plugins (bridge, host-local, portmap) not found in $CNI_BIN_DIR"
# The pause image: built here from hack/k8s/pause/pause.c (cached), imported before the kubelet starts.
eval "$("$HERE/cluster-images.sh" pause)" || k8s_skip_or_fail "building the pause image failed"
CLUSTER_IMAGE_ARCHIVES="$PAUSE_ARCHIVE ${CLUSTER_IMAGE_ARCHIVES:-}"
CLUSTER_PAUSE_IMAGE=$PAUSE_IMAGE
for v in KUBELET KUBE_SCHEDULER KUBE_CONTROLLER_MANAGER KUBE_PROXY; do
	[[ -n ${!v:-} && -x ${!v} ]] || k8s_skip_or_fail "$v was not built"
done

# Any failure from here on: tear down whatever was started (cluster-down.sh is idempotent).
started=0
on_exit() {
	local rc=$?
	if ((rc != 0 && started)); then
		k8s_log "start-up failed (exit $rc); tearing down. Logs in $DIR"
		for f in kubelet containerd kube-proxy cp/apiserver; do
			[[ -f $DIR/$f.log ]] && { printf -- '--- last lines of %s.log\n' "$f"; tail -n 15 "$DIR/$f.log"; } >&2
		done
		"$HERE/cluster-down.sh" "$DIR" >&2 || true
	fi
}
trap on_exit EXIT
started=1

# ---- what exists outside DIR before we start: cluster-down.sh removes only what was not there
for p in $K8S_CLUSTER_GLOBAL_PATHS; do
	[[ -e $p || -L $p ]] && printf '%s\n' "$p"
done >"$DIR/preexisting"

# ---- the network namespace and its bridge
# A cgroup root of its own (unique per DIR) makes the cgroups easy to find and remove.
CLUSTER_ID=tcs-$(printf '%s' "$DIR" | sha256sum | cut -c1-10)
printf '%s\n' "$CLUSTER_ID" >"$DIR/cluster-id"
printf '%s\n' "$DIR" >"$DIR/cluster-dir" # cluster-down.sh matches processes on this string
# argv[0] names DIR, so cluster-state.sh sees a holder left behind.
unshare --net -- bash -c 'exec -a "tcs-netns $0" sleep infinity' "$DIR" </dev/null >/dev/null 2>&1 &
NETNS_PID=$!
printf '%s\n' "$NETNS_PID" >"$DIR/netns.pid"
netns_ready() { [[ $(readlink "/proc/$NETNS_PID/ns/net" 2>/dev/null) != "$(readlink /proc/self/ns/net)" ]]; }
k8s_wait_until 10 "$NETNS_PID" netns_ready || k8s_die "the namespace holder did not start"
export CLUSTER_NETNS_PID=$NETNS_PID
in_ns() { nsenter --net="/proc/$NETNS_PID/ns/net" "$@"; }
in_ns ip link set lo up
in_ns ip link add "$BRIDGE" type bridge
in_ns ip addr add "$NODE_IP/24" dev "$BRIDGE"
in_ns ip link set "$BRIDGE" up
# The node itself reaches ClusterIPs too (kube-proxy DNATs them in OUTPUT): they need a route first.
in_ns ip route add "$SERVICE_CIDR" dev "$BRIDGE"
in_ns sysctl -qw net.ipv4.ip_forward=1
# Service traffic between Pods on the same bridge must pass iptables (kube-proxy's DNAT).
if [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then in_ns sysctl -qw net.bridge.bridge-nf-call-iptables=1; fi
k8s_log "network namespace held by pid $NETNS_PID, node address $NODE_IP on $BRIDGE"

# ---- etcd + kube-apiserver, inside the namespace
APISERVER_EXTRA_SANS="IP:$KUBERNETES_SVC_IP,IP:$NODE_IP" APISERVER_DISABLE_ADMISSION= \
	APISERVER_EXTRA_ARGS="--bind-address=0.0.0.0 --advertise-address=$NODE_IP --endpoint-reconciler-type=lease --service-cluster-ip-range=$SERVICE_CIDR --kubelet-preferred-address-types=InternalIP --kubelet-client-certificate=$DIR/cp/pki/admin.crt --kubelet-client-key=$DIR/cp/pki/admin.key ${CLUSTER_APISERVER_EXTRA_ARGS:-}" \
	in_ns "$HERE/up.sh" "$DIR/cp" >"$DIR/up.log" 2>&1 || { cat "$DIR/up.log" >&2; k8s_die "up.sh failed"; }
# shellcheck disable=SC1091
. "$DIR/cp/env"
KCFG=$DIR/cp/kubeconfig
PKI=$DIR/cp/pki
kctl() { in_ns "$KUBECTL" --kubeconfig "$KCFG" "$@"; }

# start_bg NAME CMD...: start CMD in the namespace, log to DIR/NAME.log, PID to DIR/NAME.pid
start_bg() {
	local name=$1
	shift
	# A simple command in the background: its PID is the daemon's own (nsenter execs it).
	nsenter --net="/proc/$NETNS_PID/ns/net" "$@" >>"$DIR/$name.log" 2>&1 </dev/null &
	printf '%s\n' "$!" >"$DIR/$name.pid"
}

# ---- controller-manager and scheduler
start_bg kube-controller-manager "$KUBE_CONTROLLER_MANAGER" --kubeconfig="$KCFG" \
	--authentication-kubeconfig="$KCFG" --authorization-kubeconfig="$KCFG" \
	--bind-address=127.0.0.1 --secure-port=10257 --leader-elect=false \
	--service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
	--use-service-account-credentials=false --service-cluster-ip-range="$SERVICE_CIDR" --v=1
start_bg kube-scheduler "$KUBE_SCHEDULER" --kubeconfig="$KCFG" \
	--authentication-kubeconfig="$KCFG" --authorization-kubeconfig="$KCFG" \
	--bind-address=127.0.0.1 --secure-port=10259 --leader-elect=false --v=1

# ---- containerd
CTRD=$DIR/containerd
mkdir -p "$CTRD" "$DIR/cni/net.d" "$DIR/cni/ipam" "$DIR/kubelet" "$DIR/pod-logs"
CONTAINERD_SOCK=$CTRD/containerd.sock
cat >"$CTRD/config.toml" <<EOF
version = 2
root = "$CTRD/root"
state = "$CTRD/state"
# The opt plugin would create /opt/containerd. (The v1 runtime must stay: 1.6's tasks service needs it.)
disabled_plugins = ["io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[debug]
  address = ""
  level = "info"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$CLUSTER_PAUSE_IMAGE"
  # Required here: root lacks CAP_SYS_RESOURCE, so the pause container's negative oom_score_adj
  # fails in runc ("can't get final child's PID from pipe: EOF") unless it is clamped.
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
        Root = "$CTRD/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$DIR/cni/net.d"
EOF
cat >"$DIR/cni/net.d/10-tcs.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "tcs",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$DIR/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "198.18.0.10", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
start_bg containerd containerd --config "$CTRD/config.toml"
CONTAINERD_PID=$(cat "$DIR/containerd.pid")
k8s_wait_until 60 "$CONTAINERD_PID" ctr --address "$CONTAINERD_SOCK" version ||
	{ tail -n 30 "$DIR/containerd.log" >&2; k8s_die "containerd did not start"; }
k8s_log "containerd $(containerd --version | awk '{print $3}') up (pid $CONTAINERD_PID)"
for archive in $CLUSTER_IMAGE_ARCHIVES; do
	ctr --address "$CONTAINERD_SOCK" -n k8s.io images import --no-unpack "$archive" >>"$DIR/images.log" 2>&1 ||
		{ cat "$DIR/images.log" >&2; k8s_die "ctr images import $archive failed"; }
done

# ---- kubelet
for c in /sys/fs/cgroup/*/; do
	if [[ -e $c/cgroup.procs ]]; then mkdir -p "$c$CLUSTER_ID"; fi
done
# A new cgroup-v1 cpuset has no CPUs and no memory nodes: nothing could join it.
if [[ -e /sys/fs/cgroup/cpuset/cpuset.cpus ]]; then
	cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset/$CLUSTER_ID/cpuset.cpus"
	cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset/$CLUSTER_ID/cpuset.mems"
fi
cat >"$DIR/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroup v1 (hybrid) and no systemd.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$CLUSTER_ID
cgroupsPerQOS: true
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
podLogsDir: $DIR/pod-logs
address: 0.0.0.0
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: AlwaysAllow
failSwapOn: false
resolvConf: ""
clusterDomain: cluster.local
# Images cannot be pulled again here: never garbage-collect them, never evict for disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
serializeImagePulls: false
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
maxPods: 30
EOF
start_bg kubelet "$KUBELET" --config="$DIR/kubelet-config.yaml" --kubeconfig="$KCFG" --root-dir="$DIR/kubelet" \
	--hostname-override="$NODE" --node-ip="$NODE_IP" --v=2

# ---- kube-proxy
cat >"$DIR/kube-proxy-config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $KCFG}
mode: iptables
hostnameOverride: $NODE
clusterCIDR: $POD_CIDR
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32"]
iptables: {masqueradeAll: true, syncPeriod: 10s, minSyncPeriod: 0s}
# 0 = leave the (global) conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
start_bg kube-proxy "$KUBE_PROXY" --config="$DIR/kube-proxy-config.yaml" --v=1

# ---- wait for the node and the kubernetes Service
k8s_wait_until 120 "$(cat "$DIR/kubelet.pid")" kctl get node "$NODE" ||
	{ tail -n 40 "$DIR/kubelet.log" >&2; k8s_die "node $NODE did not register"; }
kctl wait --for=condition=Ready "node/$NODE" --timeout=120s >/dev/null ||
	{ tail -n 40 "$DIR/kubelet.log" >&2; k8s_die "node $NODE is not Ready"; }
k8s_wait_until 60 "" kctl -n kube-system get configmap kube-root-ca.crt ||
	k8s_die "kube-controller-manager did not publish kube-root-ca.crt"
k8s_wait_until 60 "" kctl -n default get serviceaccount default || k8s_die "no default ServiceAccount"

{
	cat "$DIR/cp/env"
	printf '# generated by hack/k8s/cluster-up.sh\n'
	for v in KUBELET KUBE_SCHEDULER KUBE_CONTROLLER_MANAGER KUBE_PROXY CERT_MANAGER_CONTROLLER CMCTL CMCTL_VERSION; do
		printf 'export %s=%q\n' "$v" "${!v-}"
	done
	printf 'export CLUSTER_DIR=%q CLUSTER_ID=%q CLUSTER_NETNS_PID=%q CLUSTER_NODE=%q CLUSTER_NODE_IP=%q\n' \
		"$DIR" "$CLUSTER_ID" "$NETNS_PID" "$NODE" "$NODE_IP"
	printf 'export CLUSTER_POD_CIDR=%q CLUSTER_SERVICE_CIDR=%q CONTAINERD_SOCK=%q\n' \
		"$POD_CIDR" "$SERVICE_CIDR" "$CONTAINERD_SOCK"
} >"$DIR/env.tmp"
mv "$DIR/env.tmp" "$DIR/env"
started=0
trap - EXIT
k8s_log "node $NODE Ready ($K8S_VERSION); source $DIR/env and run commands with nsenter --net=/proc/$NETNS_PID/ns/net"
