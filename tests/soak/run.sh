#!/usr/bin/env bash
# Soak: moderate load while the machine CA, its key and the serving
# certificate rotate on disk every SOAK_ROTATE seconds (and the token too at
# the first, third, ... rotation), each file replaced by an atomic rename, as
# a config-management tool or a hand-run script would do it (files mode). The
# CA family alternates Ed25519 / ECDSA P-256 from one rotation to the next.
#
# Asserted:
#   - no failed call other than UNAUTHENTICATED "invalid token" (a caller
#     still holding the retired token for the second after a token rotation),
#     and no more of those than about three seconds of calls per rotation;
#   - calls kept succeeding (at least half the offered rate);
#   - the daemon published every rotation (one "credentials published" per
#     rotation, plus the first);
#   - after the last rotation, a new worker call trusting only the newest CA
#     succeeds (new serving certificate, new issuer), and the newest CA's SPKI
#     is the one the daemon last published;
#   - the daemon is still running and exits 0 on SIGTERM.
# Reported: RSS samples every 5 s and their least-squares slope (KiB/min)
# after the first 10% of the run (goal: no growth; not asserted, since a
# short CI run cannot tell a slope from allocator noise).
#
# Usage: tests/soak/run.sh            (SOAK_SECONDS=600 by default; CI uses 60)
# Environment: TCS_BIN (build/talos-csr-signer), SOAK_SECONDS, SOAK_ROTATE
# (30), SOAK_RATE (calls/s, 40), TCS_CACHE, KEEP_WORK=1 keeps the scratch
# directory. Ends with "soak: N passed, M failed, K skipped" (tests/lib.sh).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${TCS_BIN:-build/talos-csr-signer}
case $bin in /*) ;; *) bin=$root/$bin ;; esac
secs=${SOAK_SECONDS:-600}
every=${SOAK_ROTATE:-30}
rate=${SOAK_RATE:-40}
cache=${TCS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer}

ROOT=$root
# shellcheck source=tests/lib.sh
. "$root/tests/lib.sh"
harness_init soak
work=$WORK
[ -x "$bin" ] || unavailable "daemon binary $bin not found (make build)"
command -v go >/dev/null || unavailable "go is not installed"
command -v openssl >/dev/null || unavailable "openssl is not installed"
command -v python3 >/dev/null || unavailable "python3 is not installed"

# The load generator of the benchmarks, built once into the cache.
lg=$root/bench/loadgen
tcsbench=$(TCS_CACHE=$cache "$root/hack/gotool.sh" tcsbench "$lg")

# Every PKI the run will rotate through, made up front; the client trusts
# all their CAs, as a worker trusts accepted CAs during a CA rotation.
rotations=$((secs / every))
[ $((rotations * every)) -lt "$secs" ] || rotations=$((rotations > 0 ? rotations - 1 : 0))
for i in $(seq 0 "$rotations"); do
	fam=ed25519
	[ $((i % 2)) = 1 ] && fam=ecdsa	# alternate CA families too
	"$root/hack/dev-pki.sh" "$work/pki$i" --family "$fam" --ip 127.0.0.1 >/dev/null
done
cat "$work"/pki*/ca.crt >"$work/trust.pem"
live=$work/live
mkdir -p "$live"
cp "$work/pki0"/{ca.crt,ca.key,server.crt,server.key,token} "$live/"

spki() { openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum | cut -c1-64; }
rss_kb() { awk '$1 == "VmRSS:" {print $2}' "/proc/$1/status" 2>/dev/null; }

BIN=$bin
start_daemon daemon --wait listening --timeout 10 -- CA_CERT_PATH="$live/ca.crt" CA_KEY_PATH="$live/ca.key" \
	TLS_CERT_PATH="$live/server.crt" TLS_KEY_PATH="$live/server.key" TOKEN_PATH="$live/token" \
	LISTEN_ADDRESS=127.0.0.1 PORT="$(free_port)" HTTP_ADDR='' MAX_CONNECTION_AGE=10s LOG_FORMAT=json ||
	{ not_ok "daemon starts"; exit 1; }
dpid=$D_PID port=$D_PORT

echo "soak: ${secs}s at $rate calls/s, $rotations rotation(s) every ${every}s, daemon pid $dpid"
"$tcsbench" steady --endpoint "127.0.0.1:$port" --ca "$work/trust.pem" \
	--token-file "$live/token" --csr-family ed25519 --conns 4 --concurrency 8 \
	--rate "$rate" --duration "${secs}s" --timeout 10s >"$work/load.json" 2>"$work/load.err" &
lpid=$!
BG_PIDS+=("$lpid")

# replace FILE SRC: atomic rename of a copy made in the same directory.
replace() {
	cp "$2" "$1.tmp.$$"
	mv -f "$1.tmp.$$" "$1"
}

start=$(date +%s)
next_rot=$every
next_rss=0
rot=0
: >"$work/rss.dat"
while kill -0 "$lpid" 2>/dev/null; do
	t=$(($(date +%s) - start))
	if [ "$t" -ge "$next_rss" ]; then
		echo "$t $(rss_kb "$dpid")" >>"$work/rss.dat"
		next_rss=$((next_rss + 5))
	fi
	if [ "$t" -ge "$next_rot" ] && [ "$rot" -lt "$rotations" ]; then
		rot=$((rot + 1))
		src=$work/pki$rot
		# Key before certificate: the daemon sees a mismatched pair for a
		# moment and must keep serving the last good set meanwhile.
		replace "$live/ca.key" "$src/ca.key"
		replace "$live/ca.crt" "$src/ca.crt"
		replace "$live/server.key" "$src/server.key"
		replace "$live/server.crt" "$src/server.crt"
		if [ $((rot % 2)) = 1 ]; then
			replace "$live/token" "$src/token"
			echo "soak: t=${t}s rotation $rot (CA, serving certificate and token)"
		else
			echo "soak: t=${t}s rotation $rot (CA and serving certificate)"
		fi
		next_rot=$((next_rot + every))
	fi
	sleep 1
done
wait "$lpid" || true
echo "$(($(date +%s) - start)) $(rss_kb "$dpid")" >>"$work/rss.dat"
sleep 2 # let the last reload land before checking it

cat "$work/load.json"
read -r ok fails explained < <(python3 - "$work/load.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
f = d.get("failures") or {}
explained = sum(n for k, n in f.items() if k == "Unauthenticated: invalid token")
print(d["ok"], d["failed"], explained)
for k, n in f.items():
    print("  failure: %dx %s" % (n, k), file=sys.stderr)
PY
)
unexplained=$((fails - explained))
echo "soak: $ok calls succeeded, $fails failed ($explained with the retired token)"

check "no failed call unexplained by a retired token ($unexplained)" [ "$unexplained" -eq 0 ]
# The client re-reads the token file every second: each token rotation may
# cost it about one second of calls, not more.
token_rots=$(((rot + 1) / 2))
check "retired-token failures bounded ($explained <= $((token_rots * rate * 3)))" \
	[ "$explained" -le $((token_rots * rate * 3)) ]
check "calls kept succeeding ($ok >= $((rate * secs / 2)))" [ "$ok" -ge $((rate * secs / 2)) ]
published=$(grep -c '"msg":"credentials published"' "$work/daemon.log" || true)
check "every rotation published ($published >= $((rotations + 1)))" [ "$published" -ge $((rotations + 1)) ]
want=$(spki "$live/ca.crt")
last=$(grep '"msg":"credentials published"' "$work/daemon.log" | tail -1 |
	python3 -c 'import json, sys; print(json.loads(sys.stdin.read())["ca_spki_sha256"])')
check "the newest CA is the one in use" [ "$want" = "$last" ]
newest_call() {
	"$bin" request --endpoint "127.0.0.1:$port" --ca "$live/ca.crt" --token-file "$live/token" \
		--cn soak-check --ip 10.9.9.9 >"$work/request.out" 2>&1
}
check "a new worker call trusting only the newest CA succeeds" newest_call

python3 - "$work/rss.dat" <<'PY'
import sys
pts = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if len(l.split()) == 2]
if len(pts) < 3:
    print("soak: too few RSS samples for a slope")
    sys.exit(0)
end = pts[-1][0]
use = [p for p in pts if p[0] >= 0.1 * end] or pts
n = len(use)
mx = sum(p[0] for p in use) / n
my = sum(p[1] for p in use) / n
sxx = sum((p[0] - mx) ** 2 for p in use) or 1
slope = sum((p[0] - mx) * (p[1] - my) for p in use) / sxx * 60
print("soak: RSS %.1f MiB at start, %.1f MiB at the end, max %.1f MiB; slope after the first 10%%: %+.1f KiB/min over %d samples" % (
    pts[0][1] / 1024, pts[-1][1] / 1024, max(p[1] for p in pts) / 1024, slope, n))
PY

check "daemon exits 0 on SIGTERM after the soak" stop_daemon "$dpid"
harness_finish
