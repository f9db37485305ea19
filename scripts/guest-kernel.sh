#!/usr/bin/env bash
# guest-kernel.sh ARCH KERNEL OUTDIR
#
# Produces the Linux kernel that devbox boots in its guest VM.
#   ARCH    amd64 | arm64
#   KERNEL  devbox  built from Debian's linux-source-6.1 with the config kept in
#                   images/guest/kernel/ (tinyconfig + fragments, no modules)
#           debian  Debian's own linux-image package for ARCH, plus the modules
#                   the guest needs
#   OUTDIR  receives kernel (amd64: uncompressed ELF vmlinux booted through
#           PVH; arm64: uncompressed Image), kernel.release, config, and for
#           KERNEL=debian modules/lib/modules/<release>/... and modules/modules.load
#           (module names in load order, dependencies first).
#
# Results are cached in ${XDG_CACHE_HOME:-$HOME/.cache}/devbox/kernel/<key>/,
# keyed by a hash of everything that decides the result (fragments, source or
# package version, arch, and the recipe functions below), so a rebuild happens
# only when one of those changes. A build runs in a temp dir next to the cache
# entry and is renamed into place, so a killed build leaves no half entry.
# shellcheck disable=SC2317 # the build functions are called through $build
set -eEuo pipefail

say() { echo "guest-kernel: $*"; }
die() {
	echo "guest-kernel: $*" >&2
	exit 1
}

trap 'die "failed at line $LINENO: $BASH_COMMAND (see ${log:-the output above})"' ERR

[[ $# -eq 3 ]] || die "usage: guest-kernel.sh ARCH(amd64|arm64) KERNEL(devbox|debian) OUTDIR"
arch=$1 kind=$2 outdir=$3
case $arch in amd64 | arm64) ;; *) die "ARCH must be amd64 or arm64, not '$arch'" ;; esac
case $kind in devbox | debian) ;; *) die "KERNEL must be devbox or debian, not '$kind'" ;; esac

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fragdir=$repo/images/guest/kernel
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/devbox/kernel
command -v dpkg >/dev/null || die "this script needs a Debian-based host (dpkg, apt-get)"
host_arch=$(dpkg --print-architecture)
mkdir -p "$cache_root"
log=$cache_root/last-$arch-$kind.log

# Modules the guest needs from Debian's kernel, in the order the guest should
# load them (each one's dependencies are put before it). crc32c comes first:
# ext4 and libcrc32c (conntrack, nf_tables) ask the crypto API for it at
# init, and there is no modprobe in the guest to load it on demand. Names that
# Debian builds in, or does not build for an arch, are skipped.
debian_modules=(
	crc32c_generic crc32c_intel
	virtio_mmio virtio_pci virtio_blk virtio_net virtio_console virtio_rng virtio_balloon
	vmw_vsock_virtio_transport 9pnet_virtio 9p fuse virtiofs overlay ext4 loop
	tun veth bridge br_netfilter
	nf_conntrack nf_nat nf_tables nft_ct nft_nat nft_chain_nat nft_masq nft_redir
	nft_reject_inet nft_fib_inet nft_fib_ipv4 nft_fib_ipv6 nft_limit nft_log
	nft_compat xt_MASQUERADE xt_nat xt_addrtype xt_conntrack xt_comment xt_multiport xt_mark
)

# apt_install installs the packages that are missing (as root, via apt-get).
apt_install() {
	local p missing=()
	for p; do
		dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	[[ $(id -u) -eq 0 ]] || die "missing packages ${missing[*]}: run as root or 'sudo apt-get install ${missing[*]}'"
	say "installing ${missing[*]}"
	local apt=(apt-get -y -qq -o DPkg::Lock::Timeout=600)
	if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "${missing[@]}" >>"$log" 2>&1; then
		"${apt[@]}" update >>"$log" 2>&1 || true
		DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "${missing[@]}" >>"$log" 2>&1 ||
			die "apt-get install ${missing[*]} failed (see $log)"
	fi
}

# cross_prefix is the CROSS_COMPILE prefix for building ARCH on this host.
cross_prefix() {
	[[ $arch == "$host_arch" ]] && return 0
	case $arch in
	amd64) echo x86_64-linux-gnu- ;;
	arm64) echo aarch64-linux-gnu- ;;
	esac
}

# kmake runs the kernel's make for ARCH in source tree $1.
kmake() {
	local src=$1
	shift
	local karch=x86_64
	[[ $arch == arm64 ]] && karch=arm64
	make -C "$src" ARCH="$karch" CROSS_COMPILE="$(cross_prefix)" \
		KBUILD_BUILD_USER=devbox KBUILD_BUILD_HOST=devbox "$@"
}

# check_config fails when the final .config in $1 lost an option that a
# fragment asks for (a dependency missing, a symbol renamed): the fragments
# must say what the kernel really is.
check_config() {
	local cfg=$1 frag line sym bad=()
	shift
	for frag; do
		while IFS= read -r line; do
			if [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
				sym=${BASH_REMATCH[1]}
				grep -q "^$sym=" "$cfg" && bad+=("$sym=n")
			elif [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)= ]]; then
				grep -qxF -- "$line" "$cfg" || bad+=("${line}")
			fi
		done <"$frag"
	done
	((${#bad[@]} == 0)) || die "config options not in the final .config (missing dependency?): ${bad[*]}"
}

# build_devbox builds the devbox kernel in temp dir $1 and leaves kernel,
# kernel.release and config in $1/out.
build_devbox() {
	local t=$1 src=$1/linux-source-6.1 out=$1/out
	mkdir -p "$out"
	say "extracting linux-source-6.1 $srcver"
	tar -xf /usr/src/linux-source-6.1.tar.xz -C "$t"
	say "configuring (tinyconfig + $(basename "${frags[0]}") $(basename "${frags[1]}"))"
	kmake "$src" tinyconfig >>"$log" 2>&1
	(cd "$src" && scripts/kconfig/merge_config.sh -m .config "${frags[@]}") >>"$log" 2>&1
	kmake "$src" olddefconfig >>"$log" 2>&1
	check_config "$src/.config" "${frags[@]}"
	local target=vmlinux
	[[ $arch == arm64 ]] && target=Image
	say "building $target with $(nproc) jobs (log: $log)"
	kmake "$src" -j"$(nproc)" "$target" >>"$log" 2>&1 || die "kernel build failed (see $log)"
	if [[ $arch == amd64 ]]; then
		# No debug info is configured; dropping the symbol table too leaves
		# the loadable segments and the PVH entry note untouched.
		"$(cross_prefix)objcopy" --strip-all "$src/vmlinux" "$out/kernel"
	else
		cp "$src/arch/arm64/boot/Image" "$out/kernel"
	fi
	kmake "$src" -s kernelrelease >"$out/kernel.release" 2>>"$log"
	cp "$src/.config" "$out/config"
}

# has_pvh_note tells whether ELF file $1 carries the Xen PHYS32_ENTRY note
# (type 0x12) that QEMU needs to boot it with -kernel.
has_pvh_note() {
	readelf -n "$1" 2>/dev/null | awk '$1 == "Xen" && ($0 ~ /\(0x0*12\)/ || $0 ~ /PHYS32_ENTRY/) { found = 1 } END { exit !found }'
}

# vmlinux_from_bzimage writes the ELF kernel inside x86 bzImage $1 to $2: the
# payload is an xz stream somewhere after the setup code.
vmlinux_from_bzimage() {
	local off
	for off in $(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$1" | cut -d: -f1); do
		# xz stops at the end of the stream, so tail may die of SIGPIPE:
		# only xz's status counts.
		if (set +o pipefail && tail -c +"$((off + 1))" "$1" | xz -dc --single-stream >"$2" 2>/dev/null) &&
			[[ $(head -c4 "$2" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]]; then
			return 0
		fi
	done
	return 1
}

# build_debian unpacks Debian's kernel package in temp dir $1 and leaves
# kernel, kernel.release, config and modules/ in $1/out.
build_debian() {
	local t=$1 out=$1/out root=$1/root
	mkdir -p "$out" "$root"
	say "downloading $debpkg $debver"
	(cd "$t" && apt-get -qq -o APT::Sandbox::User=root download "$debpkg:$arch=$debver") </dev/null >>"$log" 2>&1 ||
		die "apt-get download $debpkg:$arch=$debver failed (see $log)"
	dpkg-deb -x "$t"/*.deb "$root"
	local rel
	rel=$(ls "$root/lib/modules")
	[[ -n $rel && -f $root/boot/vmlinuz-$rel ]] || die "$debpkg has no boot/vmlinuz for '$rel'"
	echo "$rel" >"$out/kernel.release"
	cp "$root/boot/config-$rel" "$out/config"
	if [[ $arch == amd64 ]]; then
		vmlinux_from_bzimage "$root/boot/vmlinuz-$rel" "$out/kernel" || die "no ELF kernel found in $debpkg's bzImage"
		if ! has_pvh_note "$out/kernel"; then
			say "warning: Debian's vmlinux has no PVH note; shipping the bzImage instead"
			cp "$root/boot/vmlinuz-$rel" "$out/kernel"
		fi
	else
		if [[ $(head -c2 "$root/boot/vmlinuz-$rel" | od -An -tx1 | tr -d ' \n') == 1f8b ]]; then
			gzip -dc "$root/boot/vmlinuz-$rel" >"$out/kernel"
		else
			cp "$root/boot/vmlinuz-$rel" "$out/kernel"
		fi
	fi

	# The package ships no modules.dep (its postinst runs depmod).
	depmod -b "$root" "$rel"
	local mdir=$root/lib/modules/$rel
	declare -A path=() deps=() seen=()
	local line file name
	while IFS= read -r line; do
		file=${line%%:*}
		name=$(basename "$file")
		name=${name%%.ko*}
		name=${name//-/_}
		path[$name]=$file
		deps[$name]=${line#*:}
	done <"$mdir/modules.dep"
	local order=()
	visit() {
		local n=$1 f dn
		[[ -n ${seen[$n]:-} ]] && return 0
		seen[$n]=1
		for f in ${deps[$n]}; do
			dn=$(basename "$f")
			dn=${dn%%.ko*}
			visit "${dn//-/_}"
		done
		order+=("$n")
	}
	for name in "${debian_modules[@]}"; do
		if [[ -n ${path[$name]:-} ]]; then
			visit "$name"
		elif ! grep -q "/${name//_/[-_]}\.ko" "$mdir/modules.builtin" 2>/dev/null; then
			echo "$name: neither a module nor built in" >>"$log"
		fi
	done
	local dst=$out/modules/lib/modules/$rel
	mkdir -p "$dst"
	for name in "${order[@]}"; do
		mkdir -p "$dst/$(dirname "${path[$name]}")"
		cp "$mdir/${path[$name]}" "$dst/${path[$name]}"
	done
	cp "$mdir"/modules.builtin* "$mdir/modules.order" "$dst/" 2>/dev/null || true
	depmod -b "$out/modules" "$rel"
	printf '%s\n' "${order[@]}" >"$out/modules/modules.load"
}

# main is everything after the definitions; bash parses it whole before
# running it, so editing this file during a long build cannot derail that build.
main() {
	# Decide what to build and its cache key.
	case $kind in
	devbox)
		frags=("$fragdir/common.config" "$fragdir/$arch.config")
		for f in "${frags[@]}"; do [[ -f $f ]] || die "missing config fragment $f"; done
		pkgs=(linux-source-6.1 bc bison flex libelf-dev libssl-dev cpio xz-utils build-essential)
		[[ $arch != "$host_arch" && $arch == arm64 ]] && pkgs+=(gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu)
		[[ $arch != "$host_arch" && $arch == amd64 ]] && pkgs+=(gcc-x86-64-linux-gnu binutils-x86-64-linux-gnu)
		apt_install "${pkgs[@]}"
		[[ -f /usr/src/linux-source-6.1.tar.xz ]] || die "/usr/src/linux-source-6.1.tar.xz missing (reinstall linux-source-6.1)"
		srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1)
		key=$( {
			echo "$arch devbox $srcver"
			declare -f kmake cross_prefix check_config build_devbox
			cat "${frags[@]}"
		} | sha256sum | cut -c1-16)
		entry=$cache_root/$arch-$key
		build=build_devbox
		;;
	debian)
		apt_install xz-utils kmod binutils
		if [[ $arch != "$host_arch" ]] && ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
			[[ $(id -u) -eq 0 ]] || die "need 'dpkg --add-architecture $arch' (run as root)"
			say "adding dpkg architecture $arch"
			dpkg --add-architecture "$arch"
			apt-get -qq -o DPkg::Lock::Timeout=600 update >>"$log" 2>&1 || die "apt-get update failed (see $log)"
		fi
		meta_deps() { { apt-cache depends "linux-image-$arch:$arch" 2>/dev/null || true; } | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { sub(/:.*/, "", $2); print $2; exit }'; }
		debpkg=$(meta_deps)
		if [[ -z $debpkg ]]; then
			apt-get -qq -o DPkg::Lock::Timeout=600 update >>"$log" 2>&1 || die "apt-get update failed (see $log)"
			debpkg=$(meta_deps)
		fi
		[[ -n $debpkg ]] || die "cannot resolve linux-image-$arch:$arch to a kernel package (apt-cache depends)"
		debver=$({ apt-cache show "$debpkg:$arch" 2>/dev/null || true; } | awk '$1 == "Version:" { print $2; exit }')
		[[ -n $debver ]] || die "no version of $debpkg:$arch in apt's lists"
		key=$( {
			echo "$arch debian $debpkg $debver"
			declare -f has_pvh_note vmlinux_from_bzimage build_debian
			printf '%s\n' "${debian_modules[@]}"
		} | sha256sum | cut -c1-16)
		entry=$cache_root/$arch-debian-$key
		build=build_debian
		;;
	esac

	# One build per entry at a time; a second caller waits and then reuses it.
	exec 9>"$entry.lock"
	flock 9
	if [[ ! -f $entry/kernel ]]; then
		: >"$log"
		rm -rf "$entry".tmp.* # left by a killed build: we hold the lock
		tmp=$(mktemp -d "$entry.tmp.XXXXXX")
		trap 'rm -rf "$tmp"' EXIT
		start=$SECONDS
		"$build" "$tmp"
		mv "$tmp/out" "$entry"
		say "built $(basename "$entry") in $((SECONDS - start))s"
		rm -rf "$tmp"
		trap - EXIT
	else
		say "cached $(basename "$entry")"
	fi

	# Publish into OUTDIR (each file renamed into place).
	mkdir -p "$outdir"
	for f in kernel kernel.release config; do
		cp "$entry/$f" "$outdir/.$f.tmp"
		mv "$outdir/.$f.tmp" "$outdir/$f"
	done
	rm -rf "$outdir/modules"
	if [[ -d $entry/modules ]]; then
		cp -a "$entry/modules" "$outdir/.modules.tmp"
		mv "$outdir/.modules.tmp" "$outdir/modules"
	fi
	say "$outdir/kernel: $(cat "$outdir/kernel.release"), $(($(stat -c %s "$outdir/kernel") / 1024)) KiB"
}

main; exit # on one line: bash has parsed both before main runs
