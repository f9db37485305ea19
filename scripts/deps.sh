#!/usr/bin/env bash
# Installs what devbox's tests, benchmarks and demo need on Debian 12:
# Debian's docker-registry (a real registry to pull from), busybox-static
# (the test images' userland) and the Go modules.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
need=()
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v make >/dev/null || need+=(make)
command -v gcc >/dev/null || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# The packaged registry starts itself as a service; devbox's tests start
# their own on free ports and need none running.
$sudo systemctl disable --now docker-registry >/dev/null 2>&1 || true
go mod download
