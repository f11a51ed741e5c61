#!/usr/bin/env bash
# Print what a cluster run could leave behind on this machine, in a stable form, so that two snapshots
# (before cluster-up.sh, after cluster-down.sh) can be compared with diff:
#   the host namespace's iptables/ip6tables rules, its network links and addresses, the sysctls the
#   kubelet, kube-proxy and CNI plugins set, every mount point, which of K8S_CLUSTER_GLOBAL_PATHS exist,
#   the top-level cgroups of every hierarchy, and processes of the cluster's binaries started from DIR.
# Usage: hack/k8s/cluster-state.sh [DIR] > FILE
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
DIR=${1:-}

section() { printf '## %s\n' "$1"; }
section iptables
for t in iptables-save ip6tables-save; do
	command -v "$t" >/dev/null 2>&1 && "$t" 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'
done
section links
ip -o link show | awk '{print $2, $3}' | sed 's/@[^:]*:/:/'
section addresses
ip -o addr show | awk '{print $2, $3, $4}'
section sysctls
for s in net.ipv4.ip_forward net.ipv6.conf.all.forwarding net.ipv4.conf.all.route_localnet \
	net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables net.netfilter.nf_conntrack_max; do
	printf '%s=%s\n' "$s" "$(sysctl -n "$s" 2>/dev/null || echo absent)"
done
section mounts
# Other users of this machine mount things too: only mounts a cluster could make are listed.
awk '{print $5, $9}' /proc/self/mountinfo | grep -E "${DIR:+$DIR|}containerd|kubelet|netns|cni|/run/runc|overlay|nsfs" | sort
section paths
for p in $K8S_CLUSTER_GLOBAL_PATHS; do
	[[ -e $p || -L $p ]] && printf '%s\n' "$p"
done
section cgroups
for c in /sys/fs/cgroup/*/; do
	find "$c" -mindepth 1 -maxdepth 1 -type d 2>/dev/null
done | grep -E '/(tcs-[0-9a-f]+|kubepods[^/]*)$' | sort
section processes
if [[ -n $DIR ]]; then
	for f in $(grep -laF -- "$DIR" /proc/[0-9]*/cmdline 2>/dev/null); do
		{ tr '\0' ' ' <"$f"; } 2>/dev/null | grep -E 'etcd|kube|containerd|runc|tcs-netns' || true
	done | sort
fi
