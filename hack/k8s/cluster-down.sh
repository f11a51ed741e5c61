#!/usr/bin/env bash
# Tear down the cluster started by hack/k8s/cluster-up.sh DIR and leave the machine as it was.
# Safe to run twice, and after a start-up that failed half-way. Order:
#   1. the kubelet stops, then every process in the cluster's cgroups (the containers) gets SIGKILL;
#   2. kube-proxy, the containerd shims of this DIR, containerd, scheduler, controller-manager
#      (SIGTERM, then SIGKILL), then kube-apiserver and etcd (hack/k8s/down.sh);
#   3. the namespace holder: with it the network namespace goes, and with that the bridge, the veths,
#      the iptables chains and the namespace's sysctls;
#   4. every mount under DIR (Pod volumes, rootfs, shm, Pod network namespaces), deepest first;
#   5. the cgroups under /sys/fs/cgroup/*/<cluster id>;
#   6. the paths outside DIR (K8S_CLUSTER_GLOBAL_PATHS in lib.sh) that did not exist before cluster-up.sh.
# DIR keeps the logs; containerd's root and state (image layers) are deleted.
set -uo pipefail
K8S_LOG_PREFIX=cluster-down.sh
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

[[ $# -eq 1 ]] || k8s_die "usage: $0 DIR"
[[ -d $1 ]] || k8s_die "$1: no such directory"
DIR=$(cd "$1" && pwd)
[[ -f $DIR/cluster-id ]] || { k8s_log "$DIR was not started by cluster-up.sh (no cluster-id); nothing to do"; exit 0; }
ID=$(cat "$DIR/cluster-id")
[[ $ID == tcs-* ]] || k8s_die "bad cluster id '$ID'"

cgroup_pids() {
	local d
	for d in /sys/fs/cgroup/*/"$ID"; do
		[[ -d $d ]] && find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null
	done | sort -un
}
# pids_with_arg STRING: processes whose command line contains STRING (this DIR's socket path)
pids_with_arg() {
	grep -laF -- "$1" /proc/[0-9]*/cmdline 2>/dev/null | sed -n 's#^/proc/\([0-9]*\)/cmdline$#\1#p' | grep -vx "$$"
}
# stop_pidfile NAME: stop the process recorded in DIR/NAME.pid if it still runs what it ran
stop_pidfile() {
	local name=$1 pid exe
	[[ -f $DIR/$name.pid ]] || return 0
	pid=$(cat "$DIR/$name.pid")
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 0
	k8s_stop "$pid" "$exe" "$name"
}

# 1. the kubelet (so that it restarts nothing), then the containers
stop_pidfile kubelet
for _ in 1 2 3 4 5; do
	pids=$(cgroup_pids)
	[[ -z $pids ]] && break
	# shellcheck disable=SC2086
	kill -KILL $pids 2>/dev/null
	sleep 0.5
done

# 2. the node's daemons, then the control plane
stop_pidfile kube-proxy
if [[ -d $DIR/containerd ]]; then
	for pid in $(pids_with_arg "$DIR/containerd/containerd.sock"); do
		exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
		[[ $exe == */containerd-shim* ]] && k8s_stop "$pid" "$exe" containerd-shim
	done
fi
stop_pidfile containerd
stop_pidfile kube-scheduler
stop_pidfile kube-controller-manager
[[ -d $DIR/cp ]] && "$HERE/down.sh" "$DIR/cp" >/dev/null 2>&1
# Anything else still started from this DIR (a daemon whose pid file was not written yet).
for pid in $(pids_with_arg "$DIR/"); do
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
	case ${exe##*/} in
	etcd | kube-apiserver | kube-controller-manager | kube-scheduler | kubelet | kube-proxy | containerd | containerd-shim* | runc)
		k8s_stop "$pid" "$exe" "${exe##*/}" ;;
	esac
done

# 3. the network namespace
if [[ -f $DIR/netns.pid ]]; then
	pid=$(cat "$DIR/netns.pid")
	if [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == */sleep &&
		$(readlink "/proc/$pid/ns/net" 2>/dev/null) != "$(readlink /proc/self/ns/net)" ]]; then
		kill -KILL "$pid" 2>/dev/null
		k8s_log "network namespace holder ($pid) stopped"
	fi
fi

# 4. mounts under DIR (and under the global paths this cluster created), deepest first
created_globals() {
	local p
	for p in $K8S_CLUSTER_GLOBAL_PATHS; do
		[[ -e $p || -L $p ]] || continue
		grep -qxF -- "$p" "$DIR/preexisting" 2>/dev/null && continue
		printf '%s\n' "$p"
	done
}
[[ -f $DIR/preexisting ]] && globals=$(created_globals) || globals=
for _ in 1 2 3; do
	# mountinfo field 5 is the mount point (octal escapes for spaces; our paths have none)
	mounts=$(awk '{print $5}' /proc/self/mountinfo | while read -r m; do
		case $m in "$DIR"/*) printf '%s\n' "$m" ;; esac
		for g in $globals; do case $m in "$g" | "$g"/*) printf '%s\n' "$m" ;; esac; done
	done | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-)
	[[ -z $mounts ]] && break
	while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done <<<"$mounts"
done

# 5. cgroups (children first; a cgroup is removable once its processes are gone)
for _ in 1 2 3 4 5 6 7 8 9 10; do
	left=0
	for d in /sys/fs/cgroup/*/"$ID"; do
		[[ -d $d ]] || continue
		find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
		[[ -d $d ]] && left=1
	done
	((left)) || break
	kill -KILL $(cgroup_pids) 2>/dev/null
	sleep 0.5
done
((left)) && k8s_log "WARNING: cgroups left under /sys/fs/cgroup/*/$ID"

# 6. paths outside DIR that this cluster created, and the bulky parts of DIR
for g in $globals; do
	rm -rf -- "$g" && k8s_log "removed $g (created by the cluster)"
done
rm -rf -- "$DIR/containerd/root" "$DIR/containerd/state" "$DIR/containerd/runc" "$DIR/kubelet/pods" 2>/dev/null
rm -f "$DIR/env"
k8s_log "cluster $ID down"
