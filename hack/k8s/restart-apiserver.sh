#!/usr/bin/env bash
# Kill kube-apiserver (SIGKILL by default, like a crash; --graceful for SIGTERM) and start it again on the
# same port with the same flags (DIR/apiserver.args), then wait for /readyz. Updates APISERVER_PID in DIR/env.
# A restarted apiserver has an empty watch cache: watches from resourceVersions older than its initial
# list get 410 Gone, and every open watch connection is dropped.
# Usage: hack/k8s/restart-apiserver.sh [--graceful] DIR
set -euo pipefail
K8S_LOG_PREFIX=restart-apiserver.sh
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"

graceful=0
if [[ ${1:-} == --graceful ]]; then
	graceful=1
	shift
fi
[[ $# -eq 1 ]] || k8s_die "usage: $0 [--graceful] DIR"
DIR=$(cd "$1" && pwd)
[[ -f $DIR/env ]] || k8s_die "$DIR/env missing: is the control plane up?"

bin=$(cat "$DIR/apiserver.bin")
old=$(cat "$DIR/apiserver.pid")
if ((graceful)); then
	k8s_stop "$old" "$bin" kube-apiserver
elif k8s_pid_is "$old" "$bin"; then
	kill -KILL "$old"
	k8s_wait_until 15 "" bash -c "! kill -0 $old 2>/dev/null" || k8s_die "old kube-apiserver $old did not exit"
fi
k8s_start_apiserver "$DIR" || k8s_die "kube-apiserver failed to restart (log: $DIR/apiserver.log)"
new=$(cat "$DIR/apiserver.pid")
sed -i "s/^export APISERVER_PID=.*/export APISERVER_PID=$new/" "$DIR/env"
k8s_log "kube-apiserver restarted: pid $old -> $new"
