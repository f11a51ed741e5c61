#!/usr/bin/env bash
# talos-secrets-to-k8s.sh: turn the secrets.yaml written by `talosctl gen secrets`
# into the Kubernetes Secret that talos-csr-signer (and cert-manager's CA Issuer)
# reads, and print the worker machine-config fields that go with it.
#
# Needs only bash, coreutils, awk, sed and openssl (all in Debian's base set).
#
#   hack/talos-secrets-to-k8s.sh [options] secrets.yaml > talos-ca-secret.yaml
#
# The Secret carries:
#   tls.crt  the Talos machine CA certificate (certs.os.crt)
#   tls.key  the machine CA key (certs.os.key), its Talos-only PEM label
#            "ED25519 PRIVATE KEY" rewritten to the standard "PRIVATE KEY"
#            (the PKCS#8 bytes inside are unchanged) so that cert-manager's CA
#            Issuer accepts it; talos-csr-signer reads either label
#   token    the machine token (trustdinfo.token, or the one in --token-file)
#   accepted-cas.crt  only with --accepted-cas FILE
#   accepted-tokens   only with --accepted-tokens FILE (one token per line)
#
# A new bundle always carries a new token. For a CA rotation without touching the
# workers' machine.token, keep the current one (--token-file); or move to the new
# one without an outage: the bundle's token serves and the current one stays
# accepted (--accepted-tokens) until every worker has the new one.
#
# The worker fields (machine.ca.crt, machine.token, cluster.controlPlane.endpoint)
# are written as a machine-config patch to --worker-patch FILE, or to stderr.
set -euo pipefail

prog=$(basename "$0")

usage() {
	cat <<USAGE
usage: $prog [options] SECRETS_YAML

Reads the secrets bundle of 'talosctl gen secrets' and writes the CA Secret
manifest for talos-csr-signer to stdout (or --output).

options:
  -n, --namespace NS        namespace of the Secret (default: default)
  -s, --name NAME           name of the Secret (default: talos-ca)
  -e, --endpoint URL|HOST   control-plane endpoint the workers use, e.g.
                            https://192.0.2.10:6443 or 192.0.2.10 (a bare host
                            gets https:// and :6443); printed as
                            cluster.controlPlane.endpoint
  -a, --accepted-cas FILE   PEM bundle of extra accepted CAs (CA rotation),
                            stored as accepted-cas.crt
  -t, --token-file FILE     use the token in FILE (e.g. the one the workers
                            have now) instead of the bundle's trustdinfo.token
  -A, --accepted-tokens FILE
                            tokens also accepted, one per line (a token
                            migration), stored as accepted-tokens
  -N, --accept-new-token    with --token-file: the current token keeps serving
                            and the bundle's new one is accepted too (roll it
                            out to the workers, then make it the token)
  -o, --output FILE         write the Secret there (mode 0600) instead of stdout
  -w, --worker-patch FILE   write the worker machine-config patch there (mode
                            0600) instead of printing it on stderr
  -h, --help                this text
USAGE
}

die() {
	echo "$prog: $*" >&2
	exit 1
}

namespace=default
name=talos-ca
endpoint=
accepted=
token_file=
accepted_tokens=
accept_new=0
output=
patch=
while [ $# -gt 0 ]; do
	case "$1" in
	-n | --namespace) namespace=${2:?$1 needs a value}; shift 2 ;;
	-s | --name) name=${2:?$1 needs a value}; shift 2 ;;
	-e | --endpoint) endpoint=${2:?$1 needs a value}; shift 2 ;;
	-a | --accepted-cas) accepted=${2:?$1 needs a value}; shift 2 ;;
	-t | --token-file) token_file=${2:?$1 needs a value}; shift 2 ;;
	-A | --accepted-tokens) accepted_tokens=${2:?$1 needs a value}; shift 2 ;;
	-N | --accept-new-token) accept_new=1; shift ;;
	-o | --output) output=${2:?$1 needs a value}; shift 2 ;;
	-w | --worker-patch) patch=${2:?$1 needs a value}; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	--) shift; break ;;
	-*) usage >&2; die "unknown option: $1" ;;
	*) break ;;
	esac
done
[ $# -eq 1 ] || { usage >&2; exit 2; }
in=$1
[ -r "$in" ] || die "cannot read $in"
command -v openssl >/dev/null || die "openssl is required (apt-get install openssl)"

# DNS-1123 subdomain names for the Secret and its namespace.
[[ "$name" =~ ^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$ ]] || die "invalid Secret name: $name"
[[ "$namespace" =~ ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$ ]] || die "invalid namespace: $namespace"

# yaml_get PATH: the scalar at a dotted PATH of a block-style YAML mapping (the
# only style talosctl writes). Handles any indentation, quoted scalars and
# comments; does not handle flow style or multi-line scalars (talosctl writes
# base64 on one line).
yaml_get() {
	awk -v want="$1" '
	function unquote(v) {
		if (v ~ /^".*"$/ || v ~ /^\047.*\047$/)
			return substr(v, 2, length(v) - 2)
		return v
	}
	/^[ \t]*(#|$)/ { next }
	/^---/ { next }
	{
		line = $0
		match(line, /^ */)
		ind = RLENGTH
		line = substr(line, ind + 1)
		if (line !~ /^[^:]+:/)
			next
		key = line
		sub(/:.*/, "", key)
		gsub(/^["\047]|["\047]$/, "", key)
		val = line
		sub(/^[^:]+:[ \t]*/, "", val)
		sub(/[ \t]+#.*$/, "", val)
		sub(/[ \t]+$/, "", val)
		# pop the levels that this line closes
		while (depth > 0 && indent[depth] >= ind)
			depth--
		depth++
		indent[depth] = ind
		name[depth] = key
		path = name[1]
		for (i = 2; i <= depth; i++)
			path = path "." name[i]
		if (path == want && val != "") {
			print unquote(val)
			found = 1
			exit
		}
	}
	END { exit found ? 0 : 1 }
	' "$in"
}

field() {
	local v
	v=$(yaml_get "$1") || die "$in: field $1 not found (is this the secrets.yaml of 'talosctl gen secrets'?)"
	[ -n "$v" ] || die "$in: field $1 is empty"
	printf '%s' "$v"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 700 "$tmp"

ca_b64=$(field certs.os.crt)
key_b64=$(field certs.os.key)
token=$(field trustdinfo.token)
bundle_token=$token
[ "$accept_new" = 0 ] || [ -n "$token_file" ] || die "--accept-new-token needs --token-file (the token the workers have now)"
if [ -n "$token_file" ]; then
	[ -r "$token_file" ] || die "cannot read $token_file"
	token=$(tr -d ' \t\r\n' <"$token_file")
	[ -n "$token" ] || die "$token_file holds no token"
fi

printf '%s' "$ca_b64" | base64 -d >"$tmp/ca.crt" 2>/dev/null ||
	die "certs.os.crt is not valid base64"
(umask 077; printf '%s' "$key_b64" | base64 -d >"$tmp/ca.key.orig" 2>/dev/null) ||
	die "certs.os.key is not valid base64"

openssl x509 -in "$tmp/ca.crt" -noout 2>/dev/null ||
	die "certs.os.crt does not hold a PEM certificate"
openssl x509 -in "$tmp/ca.crt" -noout -ext basicConstraints 2>/dev/null | grep -q 'CA:TRUE' ||
	die "certs.os.crt is not a CA certificate (basicConstraints CA:TRUE missing)"

# Relabel the Talos-only Ed25519 PEM type; leave every other label alone.
(umask 077; sed -e 's/^-----BEGIN ED25519 PRIVATE KEY-----$/-----BEGIN PRIVATE KEY-----/' \
	-e 's/^-----END ED25519 PRIVATE KEY-----$/-----END PRIVATE KEY-----/' \
	"$tmp/ca.key.orig" >"$tmp/ca.key")
openssl pkey -in "$tmp/ca.key" -noout 2>/dev/null ||
	die "certs.os.key does not hold a private key that OpenSSL can read"

# The key must belong to the certificate.
openssl pkey -in "$tmp/ca.key" -pubout >"$tmp/key.pub" 2>/dev/null
openssl x509 -in "$tmp/ca.crt" -noout -pubkey >"$tmp/crt.pub" 2>/dev/null
cmp -s "$tmp/key.pub" "$tmp/crt.pub" ||
	die "certs.os.key does not match certs.os.crt"

if ! [[ "$token" =~ ^[a-z0-9]{6}\.[a-z0-9]{16}$ ]]; then
	echo "$prog: warning: ${token_file:-trustdinfo.token} does not look like a Talos token ([a-z0-9]{6}.[a-z0-9]{16})" >&2
fi
if [ -n "$accepted_tokens" ]; then
	[ -r "$accepted_tokens" ] || die "cannot read $accepted_tokens"
	grep -q '[^[:space:]]' "$accepted_tokens" || die "$accepted_tokens holds no token"
	while read -r t; do
		[ -z "$t" ] || [[ "$t" =~ ^[a-z0-9]{6}\.[a-z0-9]{16}$ ]] ||
			echo "$prog: warning: a token in $accepted_tokens does not look like a Talos token" >&2
	done <"$accepted_tokens"
fi

if [ -n "$accepted" ]; then
	[ -r "$accepted" ] || die "cannot read $accepted"
	openssl crl2pkcs7 -nocrl -certfile "$accepted" 2>/dev/null | openssl pkcs7 -print_certs -noout >/dev/null 2>&1 ||
		die "$accepted does not hold PEM certificates"
fi

b64() { base64 -w0; }

emit_secret() {
	cat <<YAML
# Talos machine CA for talos-csr-signer and cert-manager's CA Issuer.
# Generated by $prog from a talosctl secrets bundle. Holds the CA private key
# and the machine token: treat this file as a secret and delete it once applied.
apiVersion: v1
kind: Secret
metadata:
  name: $name
  namespace: $namespace
  labels:
    app.kubernetes.io/part-of: talos-csr-signer
type: Opaque
data:
  tls.crt: $ca_b64
  tls.key: $(b64 <"$tmp/ca.key")
  token: $(printf '%s' "$token" | b64)
YAML
	if [ -n "$accepted" ]; then
		echo "  accepted-cas.crt: $(b64 <"$accepted")"
	fi
	if [ -n "$accepted_tokens" ] || [ "$accept_new" = 1 ]; then
		echo "  accepted-tokens: $({
			[ -z "$accepted_tokens" ] || cat "$accepted_tokens"
			[ "$accept_new" = 0 ] || printf '%s\n' "$bundle_token"
		} | b64)"
	fi
}

emit_patch() {
	local ep=$endpoint
	if [ -z "$ep" ]; then
		ep="https://<control-plane-endpoint>:6443"
	elif [[ "$ep" != *://* ]]; then
		if [[ "$ep" == *:* && "$ep" != \[* ]]; then
			ep="https://[$ep]:6443" # bare IPv6 literal
		else
			ep="https://$ep:6443"
		fi
	fi
	cat <<YAML
# Worker machine-config fields for talos-csr-signer (merge into the worker
# config, e.g. talosctl gen config ... --config-patch-worker @this-file).
# The worker asks for its apid certificate on port 50001 of the endpoint host
# (and of every control-plane node IP): the signer's serving certificate must
# carry each of those addresses as an IP SAN.
machine:
  token: $token
  ca:
    crt: $ca_b64
    key: ""
cluster:
  controlPlane:
    endpoint: $ep
YAML
}

if [ -n "$output" ]; then
	(umask 077; emit_secret >"$output")
else
	emit_secret
fi
if [ -n "$patch" ]; then
	(umask 077; emit_patch >"$patch")
	echo "$prog: worker machine-config patch written to $patch" >&2
else
	emit_patch >&2
fi
