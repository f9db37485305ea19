#!/usr/bin/env bash
# usage: guest-debs.sh ARCH OUTDIR
#
# Fetches the Debian 12 packages the guest image takes programs from, for
# ARCH (amd64 or arm64), and unpacks them into OUTDIR (replaced): e2fsprogs'
# mke2fs with its libraries (the agent formats the data disk ext4, which
# busybox's mke2fs cannot) and busybox-static (the guest's shell and tools).
# The .debs are cached in ${XDG_CACHE_HOME:-~/.cache}/devbox/debs/ARCH and
# downloaded with `apt-get download` only when missing, so later builds
# use the same bytes; delete that directory to pick up Debian updates.
set -euo pipefail

arch=${1:-}
out=${2:-}
if [ -z "$arch" ] || [ -z "$out" ]; then
	echo "usage: $0 ARCH OUTDIR" >&2
	exit 2
fi
case "$arch" in
amd64 | arm64) ;;
*)
	echo "$0: ARCH must be amd64 or arm64, not '$arch'" >&2
	exit 2
	;;
esac

pkgs=(e2fsprogs libext2fs2 libcom-err2 libblkid1 libuuid1 libc6 busybox-static)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/devbox/debs/$arch

sudo=""
download=(apt-get download -q)
if [ "$(id -u)" = 0 ]; then
	# apt's _apt sandbox user cannot write into root's cache.
	download+=(-o APT::Sandbox::User=root)
else
	sudo=sudo
fi

for tool in apt-get dpkg dpkg-deb; do
	if ! command -v "$tool" >/dev/null; then
		echo "$0: $tool not found: building the guest image needs Debian's package tools" >&2
		exit 1
	fi
done

mkdir -p "$cache"
missing=()
for p in "${pkgs[@]}"; do
	compgen -G "$cache/${p}_*.deb" >/dev/null || missing+=("$p:$arch")
done

if [ ${#missing[@]} -gt 0 ]; then
	# apt only knows a foreign architecture's packages once it is added
	# and its package lists fetched.
	updated=""
	if [ "$arch" != "$(dpkg --print-architecture)" ] &&
		! dpkg --print-foreign-architectures | grep -qx "$arch"; then
		echo "guest-debs: adding the $arch architecture to apt (dpkg --add-architecture $arch)"
		$sudo dpkg --add-architecture "$arch"
		$sudo apt-get update -qq
		updated=1
	fi
	tmp=$(mktemp -d "$cache/.download.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	echo "guest-debs: downloading ${missing[*]}"
	if ! (cd "$tmp" && "${download[@]}" "${missing[@]}"); then
		# Stale or missing package lists: refresh them once and retry.
		[ -z "$updated" ] || exit 1
		$sudo apt-get update -qq
		(cd "$tmp" && "${download[@]}" "${missing[@]}")
	fi
	mv "$tmp"/*.deb "$cache"/
fi

rm -rf "$out"
mkdir -p "$out"
for p in "${pkgs[@]}"; do
	debs=("$cache/${p}"_*.deb)
	if [ ${#debs[@]} -ne 1 ]; then
		echo "$0: expected one ${p} package in $cache, found ${#debs[@]}: remove the extra ones" >&2
		exit 1
	fi
	dpkg-deb -x "${debs[0]}" "$out"
	basename "${debs[0]}"
done >"$out/.debs"
echo "guest-debs: unpacked $(tr '\n' ' ' <"$out/.debs")into $out"
