#!/usr/bin/env bash
# Creates a throwaway development PKI shaped like `talosctl gen secrets` output:
#   ca.crt / ca.key   Talos machine CA (Ed25519 by default; the key under Talos's
#                     non-standard "ED25519 PRIVATE KEY" label, as Talos writes it)
#   token             machine token, [a-z0-9]{6}.[a-z0-9]{16}
#   server.crt/.key   serving certificate signed by the CA, IP SANs as given
# Usage: hack/dev-pki.sh DIR [--family ed25519|ecdsa|rsa] [--serving-family F] [--ip IP]...
# Only for development and tests: the keys are written unencrypted.
set -euo pipefail

dir=${1:?usage: dev-pki.sh DIR [--family F] [--serving-family F] [--ip IP]...}
shift
family=ed25519
serving=ecdsa
ips=()
while [ $# -gt 0 ]; do
	case $1 in
	--family) family=$2; shift 2 ;;
	--serving-family) serving=$2; shift 2 ;;
	--ip) ips+=("$2"); shift 2 ;;
	*) echo "dev-pki.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ ${#ips[@]} -gt 0 ] || ips=(127.0.0.1 ::1)

genkey() { # family file
	case $1 in
	ed25519) openssl genpkey -algorithm ed25519 -out "$2" ;;
	ecdsa) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$2" ;;
	ecdsa384) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$2" ;;
	rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out "$2" ;;
	rsa2048) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$2" ;;
	*) echo "dev-pki.sh: unknown key family $1" >&2; exit 2 ;;
	esac 2>/dev/null
}

mkdir -p "$dir"
umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The CA: self-signed, O=talos, CA:TRUE, keyCertSign+digitalSignature,
# EKU serverAuth+clientAuth, like Talos's NewTalosCA.
genkey "$family" "$tmp/ca.key"
openssl req -x509 -new -key "$tmp/ca.key" -subj "/O=talos" -days 3650 \
	-addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign,digitalSignature" \
	-addext "extendedKeyUsage=serverAuth,clientAuth" \
	-addext "subjectKeyIdentifier=hash" \
	-out "$dir/ca.crt" 2>/dev/null
if [ "$family" = ed25519 ]; then
	sed 's/PRIVATE KEY-----/ED25519 PRIVATE KEY-----/' "$tmp/ca.key" >"$dir/ca.key"
else
	cp "$tmp/ca.key" "$dir/ca.key"
fi

# The token, as talosctl generates it.
rand() { LC_ALL=C tr -dc 'a-z0-9' </dev/urandom | head -c "$1"; }
printf '%s.%s\n' "$(rand 6)" "$(rand 16)" >"$dir/token"

# The serving certificate (what cert-manager would issue from the CA).
genkey "$serving" "$dir/server.key"
san=""
for ip in "${ips[@]}"; do san="${san:+$san,}IP:$ip"; done
openssl req -new -key "$dir/server.key" -subj "/CN=talos-csr-signer" -out "$tmp/server.csr" 2>/dev/null
printf 'subjectAltName=%s\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\nauthorityKeyIdentifier=keyid\n' "$san" >"$tmp/ext"
openssl x509 -req -in "$tmp/server.csr" -CA "$dir/ca.crt" -CAkey "$tmp/ca.key" \
	-set_serial "0x$(openssl rand -hex 16 | sed 's/^./1/')" -days 365 \
	-extfile "$tmp/ext" -out "$dir/server.crt" 2>/dev/null
chmod 0644 "$dir/ca.crt" "$dir/server.crt"
echo "dev PKI in $dir: CA $family, serving key $serving, IP SANs ${ips[*]}"
