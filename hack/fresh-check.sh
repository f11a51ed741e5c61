#!/usr/bin/env bash
# Checks the README's first command where a newcomer runs it: a fresh Debian 12
# root (debootstrap --variant=minbase bookworm, plus make, git, ca-certificates and
# nothing else). It clones this checkout's HEAD into the root, runs `make run` in
# a chroot in the background, waits for the daemon to serve, runs the `request`
# command `make run` printed, and checks the certificate that comes back.
#
# Needs root and access to deb.debian.org. Too slow for CI (about 5 min with the
# base root cached, plus the debootstrap the first time): run it by hand.
# The base root is cached as a tarball in
#   ${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer/fresh/bookworm-minbase.tar
# (delete it to start from a new debootstrap). KEEP=1 keeps the root for a look.
set -euo pipefail

die() { echo "fresh-check: $*" >&2; exit 1; }
say() { echo "fresh-check: $*"; }

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, mount)"
src=$(git rev-parse --show-toplevel 2>/dev/null) || die "run it from a checkout"
cache=${TCS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer}/fresh
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
base=$cache/bookworm-minbase.tar
mkdir -p "$cache"

if [ ! -s "$base" ]; then
	command -v debootstrap >/dev/null 2>&1 ||
		apt-get -o DPkg::Lock::Timeout=600 install -y -q debootstrap >/dev/null ||
		die "cannot install debootstrap"
	stage=$(mktemp -d "$cache/stage.XXXXXX")
	say "debootstrap --variant=minbase bookworm (log: $cache/debootstrap.log)"
	debootstrap --variant=minbase --include=make,git,ca-certificates bookworm "$stage/root" \
		"$mirror" >"$cache/debootstrap.log" 2>&1 || { rm -rf "$stage"; die "debootstrap failed, see $cache/debootstrap.log"; }
	tar -C "$stage/root" -cf "$base.tmp" . && mv "$base.tmp" "$base"
	rm -rf "$stage"
fi

work=$(mktemp -d /tmp/tcs-fresh.XXXXXX)
root=$work/root
mounted=()
daemon_pgid=""
cleanup() {
	local rc=$? p
	set +e
	# The whole `make run` process group, then anything else still running in the root.
	[ -n "$daemon_pgid" ] && kill -TERM -- "-$daemon_pgid" 2>/dev/null
	sleep 1
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && kill -KILL "${p#/proc/}" 2>/dev/null
	done
	for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
		umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}"
	done
	if [ "${KEEP:-0}" = 1 ]; then
		say "kept $root"
	elif ! grep -q " $work/" /proc/mounts; then
		rm -rf "$work"
	fi
	exit $rc
}
trap cleanup EXIT INT TERM

mkdir -p "$root"
tar -C "$root" -xf "$base"
cp /etc/resolv.conf "$root/etc/resolv.conf"
for m in proc dev dev/pts; do
	case $m in
	proc) mount -t proc proc "$root/proc" ;;
	dev) mount --bind /dev "$root/dev" ;;
	dev/pts) mount --bind /dev/pts "$root/dev/pts" ;;
	esac
	mounted+=("$root/$m")
done

# What the newcomer has: a clone of the repository (HEAD, committed work only).
git clone -q "$src" "$root/src"
say "cloned $(git -C "$src" rev-parse --short HEAD) into the fresh root"
for cmd in go cmake gcc; do
	if chroot "$root" /bin/sh -c "command -v $cmd" >/dev/null 2>&1; then
		die "the base root already has $cmd: it is not fresh"
	fi
done

# A free port pair for the gRPC and HTTP listeners (the chroot shares our network).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
http=$(free_port)
log=$work/run.log
setsid chroot "$root" /bin/bash -c "cd /src && exec make run RUN_PORT=$port RUN_HTTP=127.0.0.1:$http" \
	>"$log" 2>&1 </dev/null &
daemon_pgid=$!
say "make run RUN_PORT=$port in the chroot (log: $log)"

start=$SECONDS
until grep -q 'msg="serving"\|"msg":"serving"' "$log"; do
	if ! kill -0 "$daemon_pgid" 2>/dev/null; then
		tail -25 "$log" >&2
		die "make run exited before serving"
	fi
	[ $((SECONDS - start)) -lt 900 ] || { tail -25 "$log" >&2; die "make run did not serve within 15 min"; }
	sleep 2
done
say "make run served after $((SECONDS - start)) s"

# The command make run printed, run as printed (inside the root, from the checkout).
request=$(sed -n 's/^ *\(build\/talos-csr-signer request .*\)$/\1/p' "$log" | head -1)
[ -n "$request" ] || die "make run printed no request command"
say "running the printed command: $request"
out=$work/request.out
chroot "$root" /bin/bash -c "cd /src && $request" >"$out" 2>"$work/request.err" ||
	{ cat "$work/request.err" >&2; die "the printed request command failed"; }

# `request` checked the chain, the key and the usages the way apid would; check
# that its summary says so and carries what was asked for.
sed 's/^/fresh-check:   /' "$out"
grep -q '^result .*ok: apid on a worker would accept' "$out" || die "request did not report an acceptable certificate"
grep -q '^subject .*worker-1' "$out" || die "the certificate's subject is not worker-1"
grep -q '^sans .*10\.0\.0\.5' "$out" || die "the certificate lacks the IP SAN 10.0.0.5"
grep -q '^issuer ' "$out" || die "request printed no issuer"
say "ok: make run on a fresh Debian 12 minbase root installed, built and served; the printed request got a certificate"
