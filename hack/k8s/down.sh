#!/usr/bin/env bash
# Stop the control plane started by hack/k8s/up.sh DIR (kube-apiserver first, then etcd).
# Leaves DIR (logs, certificates, etcd data) in place. Safe to run twice.
set -euo pipefail
K8S_LOG_PREFIX=down.sh
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"

[[ $# -eq 1 ]] || k8s_die "usage: $0 DIR"
DIR=$1
[[ -d $DIR ]] || k8s_die "$DIR: no such directory"

if [[ -f $DIR/apiserver.pid && -f $DIR/apiserver.bin ]]; then
	k8s_stop "$(cat "$DIR/apiserver.pid")" "$(cat "$DIR/apiserver.bin")" kube-apiserver
fi
if [[ -f $DIR/etcd.pid ]]; then
	etcd_bin=
	[[ -f $DIR/env ]] && etcd_bin=$(. "$DIR/env" && printf '%s' "${ETCD:-}")
	if [[ -n $etcd_bin ]]; then
		k8s_stop "$(cat "$DIR/etcd.pid")" "$etcd_bin" etcd
	else
		# up.sh failed before writing env: it stopped etcd itself; only stop a process that is really etcd.
		pid=$(cat "$DIR/etcd.pid")
		if [[ $(readlink "/proc/$pid/exe" 2>/dev/null || true) == */etcd ]]; then
			k8s_stop "$pid" "$(readlink "/proc/$pid/exe")" etcd
		fi
	fi
fi
rm -f "$DIR/env"
