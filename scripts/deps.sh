#!/usr/bin/env bash
# Installs what devbox's tests, benchmarks and demo need on Debian 12:
# Debian's docker-registry (a real registry to pull from), busybox-static
# (the test images' userland), QEMU and the OpenSSH client (the VM tests)
# and the Go modules. `make image` installs what the guest image build
# needs itself (scripts/guest-kernel.sh, scripts/guest-debs.sh). With
# BENCH=1 (as `make bench` runs it) also the peers bench/run measures
# devbox against: crun, runc and podman; the tests need none of them.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
need=()
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v make >/dev/null || need+=(make)
command -v gcc >/dev/null || need+=(gcc)
# The VM tests boot the guest under QEMU and reach it with OpenSSH too.
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v ssh >/dev/null || need+=(openssh-client)
command -v cpio >/dev/null || need+=(cpio)
if [ "${BENCH:-}" = 1 ]; then
	for tool in crun runc podman; do
		command -v "$tool" >/dev/null || need+=("$tool")
	done
fi
if [ ${#need[@]} -gt 0 ]; then
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# The packaged registry starts itself as a service; devbox's tests start
# their own on free ports and need none running.
$sudo systemctl disable --now docker-registry >/dev/null 2>&1 || true
go mod download
