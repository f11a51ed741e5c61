#!/usr/bin/env bash
# Compact etcd's history up to its current revision (physical compaction), through etcd's gRPC-JSON
# gateway (POST /v3/kv/range to learn the revision, POST /v3/kv/compaction). Prints the revision.
# After this, any watch that reaches etcd with an older resourceVersion fails with 410 Gone. Note that
# kube-apiserver's watch cache keeps serving resourceVersions it still holds in memory; combine with
# hack/k8s/restart-apiserver.sh (empty cache) or APISERVER_EXTRA_ARGS=--watch-cache=false to reach etcd.
# Usage: hack/k8s/etcd-compact.sh DIR
set -euo pipefail
K8S_LOG_PREFIX=etcd-compact.sh
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"

[[ $# -eq 1 ]] || k8s_die "usage: $0 DIR"
[[ -f $1/env ]] || k8s_die "$1/env missing: is the control plane up?"
ETCD_ENDPOINT=$(. "$1/env" && printf '%s' "$ETCD_ENDPOINT")

# key "\0" with range_end "\0" = every key; count_only keeps the answer small. Keys are base64 in the gateway.
resp=$(curl -fsS --max-time 10 -X POST "$ETCD_ENDPOINT/v3/kv/range" \
	-d '{"key":"AA==","range_end":"AA==","count_only":true}')
rev=$(printf '%s' "$resp" | sed -n 's/.*"revision":"\{0,1\}\([0-9][0-9]*\)"\{0,1\}.*/\1/p' | head -n 1)
[[ -n $rev ]] || k8s_die "could not read the etcd revision from: $resp"
curl -fsS --max-time 60 -X POST "$ETCD_ENDPOINT/v3/kv/compaction" \
	-d "{\"revision\":\"$rev\",\"physical\":true}" >/dev/null ||
	k8s_die "compaction at revision $rev failed"
k8s_log "etcd compacted at revision $rev"
printf '%s\n' "$rev"
