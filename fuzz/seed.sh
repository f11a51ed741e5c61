#!/usr/bin/env bash
# Regenerates the seed corpora in fuzz/corpus/<target>/ from a throwaway PKI.
# Every key written here is test-only material made for the seeds.
# Usage: fuzz/seed.sh   (then commit fuzz/corpus/)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/fuzz/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
command -v openssl >/dev/null || { echo "seed.sh: openssl is missing" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out"/{csr,csrparse,pem,pemparse,request,watch,secret,h2guard,certpipe,kp_keeper,kp_network,kp_stream}
"$root/hack/dev-pki.sh" "$tmp/pki" --ip 127.0.0.1 >/dev/null

key() { # family file
	case $1 in
	ed25519) openssl genpkey -algorithm ed25519 -out "$2" ;;
	p256) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$2" ;;
	p384) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$2" ;;
	rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$2" ;;
	esac 2>/dev/null
}
csr() { # family subject extfile-lines name
	key "$1" "$tmp/$4.key"
	printf '%b' "$3" >"$tmp/$4.ext"
	openssl req -new -key "$tmp/$4.key" -subj "$2" -config /dev/null \
		${3:+-addext "$(head -1 "$tmp/$4.ext")"} -outform DER -out "$tmp/$4.der" 2>/dev/null
}
b64() { base64 -w0 <"$1"; }

# CSR seeds: one knob byte, then DER (see fuzz_csr.c); one PEM as is.
csr ed25519 "/O=os:admin/CN=worker-1" "subjectAltName=DNS:worker-1,IP:10.0.0.5" ed
csr p256 "/CN=worker-2" "subjectAltName=IP:127.0.0.1,IP:::1,DNS:w2.example" ec
csr p384 "/CN=worker-3/O=a/O=b" "subjectAltName=DNS:w3,email:x@example.com,URI:https://x" ec384
csr rsa "/CN=worker-4" "" rsa
csr ed25519 "/" "subjectAltName=IP:10.1.2.3" nosubj
for n in ed ec ec384 rsa nosubj; do
	{ printf '\x00'; cat "$tmp/$n.der"; } >"$out/csr/$n"
done
{ printf '\x01'; cat "$tmp/ec.der"; } >"$out/csr/ec-peer-rule"
{ printf '\x06'; cat "$tmp/ec.der"; } >"$out/csr/ec-limits"
openssl req -inform DER -in "$tmp/ed.der" -out "$out/csr/ed.pem" 2>/dev/null
# The parser target reads the same inputs as the whole path.
cp "$out"/csr/* "$out/csrparse/"

# PEM seeds: one byte choosing the credential part, then its bytes.
p() { { printf "\\x0$1"; cat "$2"; } >"$out/pem/$3"; }
p 0 "$tmp/pki/ca.crt" ca-cert
p 1 "$tmp/pki/ca.key" ca-key-talos-label
key ed25519 "$tmp/k8.pem"; p 1 "$tmp/k8.pem" ca-key-pkcs8
key p256 "$tmp/kec.pem"; openssl ec -in "$tmp/kec.pem" -out "$tmp/sec1.pem" 2>/dev/null
p 1 "$tmp/sec1.pem" ca-key-sec1
openssl genrsa -traditional -out "$tmp/pkcs1.pem" 1024 2>/dev/null; p 1 "$tmp/pkcs1.pem" ca-key-pkcs1
p 2 "$tmp/pki/token" token
cat "$tmp/pki/ca.crt" "$tmp/pki/server.crt" >"$tmp/bundle"; p 3 "$tmp/bundle" accepted
cat "$tmp/pki/server.crt" "$tmp/pki/ca.crt" >"$tmp/chain"; p 4 "$tmp/chain" tls-chain
p 5 "$tmp/pki/server.key" tls-key
# The loaders alone: the same files without the knob byte.
for f in "$out"/pem/*; do tail -c +2 "$f" >"$out/pemparse/${f##*/}"; done

# Request seeds: CertificateRequest { bytes csr = 1; } in protobuf wire form.
python3 - "$out/request" "$out/csr/ed.pem" <<'PY'
import sys
d, pem = sys.argv[1], open(sys.argv[2], 'rb').read()
def varint(n):
    b = bytearray()
    while True:
        c = n & 0x7f; n >>= 7
        b.append(c | (0x80 if n else 0))
        if not n: return bytes(b)
def field(num, data): return varint(num << 3 | 2) + varint(len(data)) + data
open(d + '/csr', 'wb').write(field(1, pem))
open(d + '/empty', 'wb').write(b'')
open(d + '/unknown-fields', 'wb').write(field(7, b'xx') + varint(2 << 3) + varint(300) + field(1, pem[:40]))
open(d + '/twice', 'wb').write(field(1, b'first') + field(1, pem))
PY

# Secret and watch seeds.
ca=$(printf '"tls.crt":"%s","tls.key":"%s","token":"%s"' "$(b64 "$tmp/pki/ca.crt")" \
	"$(b64 "$tmp/pki/ca.key")" "$(b64 "$tmp/pki/token")")
tls=$(printf '"tls.crt":"%s","tls.key":"%s","ca.crt":"%s"' "$(b64 "$tmp/pki/server.crt")" \
	"$(b64 "$tmp/pki/server.key")" "$(b64 "$tmp/pki/ca.crt")")
meta() { printf '"metadata":{"name":"%s","namespace":"talos","resourceVersion":"%s","uid":"u-%s"}' "$1" "$2" "$1"; }
casec="{\"kind\":\"Secret\",\"apiVersion\":\"v1\",$(meta talos-ca 41),\"type\":\"Opaque\",\"data\":{$ca}}"
tlssec="{\"kind\":\"Secret\",\"apiVersion\":\"v1\",$(meta talos-tls 42),\"type\":\"kubernetes.io/tls\",\"data\":{$tls}}"
printf '%s' "$casec" >"$out/secret/ca"
printf '%s' "$tlssec" >"$out/secret/tls"
printf '{"kind":"Secret",%s,"data":{"tls.crt":"!!","token":""}}' "$(meta bad 1)" >"$out/secret/bad-base64"
printf '{"metadata":{"name":"x"},"data":{"accepted-cas.crt":"%s","tls.crt":"%s","tls.key":"%s","token":"YWJj"}}' \
	"$(b64 "$tmp/pki/ca.crt")" "$(b64 "$tmp/pki/ca.crt")" "$(b64 "$tmp/pki/ca.key")" >"$out/secret/list-item"
{
	printf '\x07'
	printf '{"type":"ADDED","object":%s}\n' "$casec"
	printf '{"type":"BOOKMARK","object":{"kind":"Secret",%s}}\r\n' "$(meta "" 99)"
	printf '{"type":"MODIFIED","object":%s}\n' "$tlssec"
	printf '{"type":"DELETED","object":%s}\n\n' "$casec"
} >"$out/watch/stream"
{
	printf '\x00'
	printf '{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version","reason":"Expired","code":410}}\n'
} >"$out/watch/gone"
printf '\x33{"type":"ADDED","object":{"kind":"Secret","data":{"tls.crt":"\\u00e9"}}}\n{"type":"NOPE","object":{}}\n' >"$out/watch/unknown-type"
# HTTP/2 guard seeds: one knob byte (chunking and limits), then the client's
# decrypted stream: a gRPC call, two calls, and the attack shapes.
python3 - "$out/h2guard" <<'PY'
import os, struct, sys
out = sys.argv[1]
P = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
def fr(t, f, i, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([t, f]) + struct.pack(">I", i) + payload
settings = fr(4, 0, 0, bytes.fromhex("000300000064000400010000"))
wu = fr(8, 0, 0, struct.pack(">I", 65535))
hdr = fr(1, 4, 1, bytes(range(32)) * 4)
data = fr(0, 1, 1, b"\x00\x00\x00\x00\x10" + b"\x0a\x0e" + b"x" * 14)
seeds = {
    "talos_call": b"\x00" + P + settings + wu + hdr + data,
    "two_calls": b"\x05" + P + settings + hdr + data + fr(1, 4, 3, b"h" * 40) + fr(0, 1, 3, b"d" * 20),
    "continuation_flood": b"\x00" + P + settings + fr(1, 0, 1, b"\x1f" * 60)
        + b"".join(fr(9, 0, 1, b"\xff" * 60) for _ in range(8)),
    "rapid_reset": b"\x20" + P + settings
        + b"".join(fr(1, 4, i, b"h" * 10) + fr(3, 0, i, b"\x00\x00\x00\x08") for i in range(1, 60, 2)),
    "open_streams": b"\x04" + P + settings + b"".join(fr(1, 4, i, b"h" * 10) for i in range(1, 40, 2)),
    "bad_preface": b"\x00GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "ping_settings": b"\x00" + P + settings + fr(6, 0, 0, b"\x00" * 8) + fr(4, 1, 0, b"") + fr(7, 0, 0, b"\x00" * 8),
}
for name, blob in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(blob)
PY
# Certificate pipeline seeds: one knob byte (see fuzz_certpipe.c), then a request.
for f in "$out"/request/*; do
	{ printf '\x0d'; cat "$f"; } >"$out/certpipe/$(basename "$f")"
done
{ printf '\x1d'; cat "$out/request/csr"; } >"$out/certpipe/csr-ratelimited"
{ printf '\x05'; cat "$out/request/csr"; } >"$out/certpipe/csr-wrong-token"
printf '\x00' >"$out/certpipe/reset"
# Keeper protocol seeds (fuzz_kp_keeper, fuzz_kp_network): one whole message
# each, in the wire form of src/keeperproto.h.
python3 - "$out" "$out/csr/ed.pem" <<'PY'
import os, struct, sys
root = sys.argv[1]
pem = open(sys.argv[2], 'rb').read()
def f(tag, v): return bytes([tag]) + struct.pack(">I", len(v)) + v
def msg(t, i, payload): return b"KP" + bytes([1, t]) + struct.pack(">II", i, len(payload)) + payload
u64 = lambda n: struct.pack(">Q", n & (2**64 - 1))
seeds = {
    "keeper": {
        "sign": msg(1, 1, f(1, pem) + f(2, b"10.0.0.5")),
        "sign-trace": msg(1, 2, f(1, pem) + f(2, b"::1") + f(3, b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")),
        "audit": msg(5, 0, f(16, bytes([4])) + f(5, b"too many requests") + f(2, b"10.0.0.9")),
        "audit-related": msg(5, 0, f(16, bytes([1])) + f(5, b"invalid token") + f(17, b"Secret talos/talos-ca")),
        "reload": msg(6, 0, b""),
    },
    "network": {
        "signed-ok": msg(2, 1, f(4, b"\x00") + f(5, b"") + f(6, b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
            + f(10, b"-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n")),
        "signed-denied": msg(2, 2, f(4, b"\x03") + f(5, b"peer address 10.0.0.9 is not an IP SAN of the CSR")),
        "creds": msg(3, 0, f(7, u64(3)) + f(8, b"-----BEGIN CERTIFICATE-----\n") + f(9, b"-----BEGIN PRIVATE KEY-----\n")
            + f(10, b"-----BEGIN CERTIFICATE-----\n") + f(11, b"\xab" * 64) + f(12, b"\x5a" * 32) + f(13, b"0" * 64)
            + f(14, u64(1900000000)) + f(15, u64(2000000000))),
        "waiting": msg(4, 0, f(5, b"waiting for Secret talos/talos-ca: HTTP 403")),
    },
}
for side, d in seeds.items():
    out = os.path.join(root, "kp_" + side)
    os.makedirs(out, exist_ok=True)
    for name, blob in d.items():
        open(os.path.join(out, name), "wb").write(blob)
PY
# Stream seeds (fuzz_kp_stream): what the keeper reads from a request
# channel, several messages back to back, then the same cut short.
k=$out/kp_keeper
cat "$k/sign" "$k/audit" "$k/sign-trace" "$k/reload" >"$out/kp_stream/pipelined"
cat "$k/sign" "$k/sign" >"$out/kp_stream/two-signs"
{ cat "$k/audit"; head -c 20 "$k/sign"; } >"$out/kp_stream/cut-payload"
{ cat "$k/reload"; head -c 5 "$k/audit"; } >"$out/kp_stream/cut-header"
echo "seed corpora written to fuzz/corpus/ ($(find "$out" -type f | wc -l) files)"
