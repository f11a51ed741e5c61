#!/usr/bin/env bash
# Tests for hack/talos-secrets-to-k8s.sh against secrets bundles generated here
# with openssl in the layout of `talosctl gen secrets` (4-space indentation,
# base64 PEM on one line, Ed25519 CA key under the Talos label
# "ED25519 PRIVATE KEY"). Prints "N passed, M failed"; exits non-zero on failure.
#
# Optional: KUBECTL and KUBECONFIG set (run.sh does it) add a server-side
# dry-run of the generated Secret.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
tool="$root/hack/talos-secrets-to-k8s.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "PASS: $*"; }
ko() { fail=$((fail + 1)); echo "FAIL: $*"; }
check() { # check DESCRIPTION COMMAND...
	local d=$1
	shift
	if "$@"; then ok "$d"; else ko "$d"; fi
}

# make_ca DIR ALG: CA key + self-signed CA cert like Talos's machine CA (O=talos).
make_ca() {
	local d=$1 alg=$2
	mkdir -p "$d"
	case "$alg" in
	ed25519) openssl genpkey -algorithm ed25519 -out "$d/ca.key" 2>/dev/null ;;
	ecdsa) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/ca.key" 2>/dev/null ;;
	esac
	openssl req -x509 -new -key "$d/ca.key" -subj "/O=talos" -days 3650 \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
		-out "$d/ca.crt" 2>/dev/null
	if [ "$alg" = ed25519 ]; then
		# Talos writes its Ed25519 PKCS#8 keys under a non-standard label.
		sed -e 's/BEGIN PRIVATE KEY/BEGIN ED25519 PRIVATE KEY/' \
			-e 's/END PRIVATE KEY/END ED25519 PRIVATE KEY/' "$d/ca.key" >"$d/ca.key.talos"
	else
		cp "$d/ca.key" "$d/ca.key.talos"
	fi
}

# write_bundle DIR TOKEN: a secrets.yaml in talosctl's layout.
write_bundle() {
	local d=$1 token=$2 other
	other=$(openssl rand -base64 32)
	cat >"$d/secrets.yaml" <<YAML
cluster:
    id: $(openssl rand -base64 32)
    secret: $(openssl rand -base64 32)
secrets:
    bootstraptoken: abcdef.0123456789abcdef
    secretboxencryptionsecret: $other
trustdinfo:
    token: $token
certs:
    etcd:
        crt: $(base64 -w0 <"$d/ca.crt")
        key: $(base64 -w0 <"$d/ca.key")
    k8s:
        crt: $(base64 -w0 <"$d/ca.crt")
        key: $(base64 -w0 <"$d/ca.key")
    k8saggregator:
        crt: $(base64 -w0 <"$d/ca.crt")
        key: $(base64 -w0 <"$d/ca.key")
    k8sserviceaccount:
        key: $(base64 -w0 <"$d/ca.key")
    os:
        crt: $(base64 -w0 <"$d/ca.crt")
        key: $(base64 -w0 <"$d/ca.key.talos")
YAML
}

# secret_field FILE KEY: decoded value of data.KEY in a generated Secret.
secret_field() {
	awk -v k="  $2:" 'index($0, k) == 1 { sub(/^[^:]+:[ ]*/, ""); print; exit }' "$1" | base64 -d
}

token=k3x9qa.0a1b2c3d4e5f6g7h
for alg in ed25519 ecdsa; do
	d="$work/$alg"
	make_ca "$d" "$alg"
	write_bundle "$d" "$token"
	if "$tool" -n talos-system -s my-talos-ca -e 192.0.2.10 "$d/secrets.yaml" \
		>"$d/secret.yaml" 2>"$d/patch.yaml"; then
		ok "$alg: tool exits 0"
	else
		ko "$alg: tool exits 0 ($(cat "$d/patch.yaml"))"
		continue
	fi
	check "$alg: Secret name and namespace" \
		grep -q '^  name: my-talos-ca$' "$d/secret.yaml"
	check "$alg: Secret namespace" grep -q '^  namespace: talos-system$' "$d/secret.yaml"
	secret_field "$d/secret.yaml" tls.crt >"$d/out.crt"
	secret_field "$d/secret.yaml" tls.key >"$d/out.key"
	check "$alg: tls.crt is the CA certificate" cmp -s "$d/out.crt" "$d/ca.crt"
	check "$alg: tls.key has the standard PRIVATE KEY label" \
		grep -qx -- '-----BEGIN PRIVATE KEY-----' "$d/out.key"
	check "$alg: no ED25519 label left" bash -c "! grep -q 'ED25519' '$d/out.key'"
	check "$alg: tls.key is the same key (PKCS#8 bytes unchanged)" \
		bash -c "cmp -s <(openssl pkey -in '$d/out.key' -outform DER) <(openssl pkey -in '$d/ca.key' -outform DER)"
	check "$alg: token" test "$(secret_field "$d/secret.yaml" token)" = "$token"
	check "$alg: patch has machine.token" grep -q "^  token: $token\$" "$d/patch.yaml"
	check "$alg: patch has machine.ca.crt as the bundle's base64" \
		grep -q "^    crt: $(base64 -w0 <"$d/ca.crt")\$" "$d/patch.yaml"
	check "$alg: patch has the endpoint" \
		grep -q '^    endpoint: https://192.0.2.10:6443$' "$d/patch.yaml"
	if [ -n "${KUBECTL:-}" ] && [ -n "${KUBECONFIG:-}" ]; then
		check "$alg: Secret passes a server-side dry-run" \
			bash -c "sed 's/namespace: talos-system/namespace: default/' '$d/secret.yaml' |
				'$KUBECTL' apply --dry-run=server -f - >/dev/null"
	fi
done

d="$work/ed25519"
# A token migration: keep the workers' current token, or serve the bundle's and accept the current one.
printf 'cur123.0123456789abcdef\n' >"$work/current-token"
if "$tool" -t "$work/current-token" "$d/secrets.yaml" >"$work/keep.yaml" 2>"$work/keep-patch.yaml"; then
	check "--token-file: the Secret keeps the current token" \
		test "$(secret_field "$work/keep.yaml" token)" = cur123.0123456789abcdef
	check "--token-file: the worker patch carries the current token" \
		grep -q '^  token: cur123.0123456789abcdef$' "$work/keep-patch.yaml"
else
	ko "--token-file: tool exits 0 ($(cat "$work/keep-patch.yaml"))"
fi
if "$tool" -A "$work/current-token" "$d/secrets.yaml" >"$work/acc.yaml" 2>/dev/null; then
	check "--accepted-tokens: the bundle's token serves" test "$(secret_field "$work/acc.yaml" token)" = "$token"
	check "--accepted-tokens: the current token is accepted" \
		test "$(secret_field "$work/acc.yaml" accepted-tokens)" = cur123.0123456789abcdef
else
	ko "--accepted-tokens: tool exits 0"
fi

# Output files and the worker patch file, accepted CAs.
make_ca "$work/old" ecdsa
if "$tool" -o "$work/s.yaml" -w "$work/p.yaml" -a "$work/old/ca.crt" \
	-e 'https://cp.example.test:6443' "$d/secrets.yaml" 2>/dev/null; then
	check "--output file is mode 0600" test "$(stat -c %a "$work/s.yaml")" = 600
	check "--worker-patch written" grep -q 'endpoint: https://cp.example.test:6443$' "$work/p.yaml"
	check "accepted-cas.crt stored" \
		bash -c "cmp -s <(awk '/accepted-cas.crt:/ {print \$2}' '$work/s.yaml' | base64 -d) '$work/old/ca.crt'"
	check "default name and namespace" grep -q '^  name: talos-ca$' "$work/s.yaml"
else
	ko "tool with -o -w -a exits 0"
fi
check "bare IPv6 endpoint is bracketed" \
	bash -c "'$tool' -e 2001:db8::1 '$d/secrets.yaml' 2>&1 >/dev/null | grep -q 'endpoint: https://\[2001:db8::1\]:6443'"

# Failures: each must exit non-zero with a message naming the problem.
expect_fail() { # expect_fail DESCRIPTION REGEX FILE [ARGS...]
	local desc=$1 re=$2 file=$3 out
	shift 3
	if out=$("$tool" "$@" "$file" 2>&1 >/dev/null); then
		ko "$desc: exited 0"
	elif grep -qE -- "$re" <<<"$out"; then
		ok "$desc"
	else
		ko "$desc: message was: $out"
	fi
}
grep -v '^    token:' "$d/secrets.yaml" >"$work/notoken.yaml"
expect_fail "missing trustdinfo.token" 'field trustdinfo.token not found' "$work/notoken.yaml"
if "$tool" -t "$work/current-token" -N "$d/secrets.yaml" >"$work/accnew.yaml" 2>/dev/null; then
	check "--accept-new-token: the current token keeps serving" \
		test "$(secret_field "$work/accnew.yaml" token)" = cur123.0123456789abcdef
	check "--accept-new-token: the bundle's token is accepted" \
		test "$(secret_field "$work/accnew.yaml" accepted-tokens)" = "$token"
else
	ko "--accept-new-token: tool exits 0"
fi
expect_fail "--accept-new-token without --token-file" 'needs --token-file' "$d/secrets.yaml" -N
: >"$work/empty-tokens"
expect_fail "empty --accepted-tokens file" 'holds no token' "$d/secrets.yaml" -A "$work/empty-tokens"
make_ca "$work/other" ed25519
awk -v k="$(base64 -w0 <"$work/other/ca.key.talos")" \
	'/^    os:/ {os=1} os && /^        key:/ {print "        key: " k; next} {print}' \
	"$d/secrets.yaml" >"$work/mismatch.yaml"
expect_fail "key of another CA" 'does not match' "$work/mismatch.yaml"
sed 's/^\(        crt: \).*/\1!!!notbase64/' "$d/secrets.yaml" >"$work/badcrt.yaml"
expect_fail "cert not base64 PEM" 'certs.os.crt' "$work/badcrt.yaml"
expect_fail "bad Secret name" 'invalid Secret name' "$d/secrets.yaml" -s Bad_Name
expect_fail "missing file" 'cannot read' "$work/nope.yaml"
# A leaf (non-CA) certificate as certs.os.crt.
openssl req -x509 -new -key "$d/ca.key" -subj "/CN=leaf" -days 1 \
	-addext "basicConstraints=critical,CA:FALSE" -out "$work/leaf.crt" 2>/dev/null
awk -v c="$(base64 -w0 <"$work/leaf.crt")" \
	'/^    os:/ {os=1} os && /^        crt:/ {print "        crt: " c; next} {print}' \
	"$d/secrets.yaml" >"$work/leaf.yaml"
expect_fail "non-CA certificate" 'not a CA certificate' "$work/leaf.yaml"

echo "secrets-tool: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
