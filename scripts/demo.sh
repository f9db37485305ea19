#!/usr/bin/env bash
# devbox's main job end to end on a local image (no internet needed): build a
# busybox image from Debian's busybox-static, serve it from Debian's
# docker-registry on a free loopback port, then pull it with devbox, list,
# export, re-import and remove it, and run containers from it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo: the native image store needs root: run it with sudo" >&2; exit 1; }
work=$(mktemp -d /tmp/devbox-demo.XXXXXX)
reg_pid=""
cleanup() { [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# A free loopback port: one nothing answers on.
while :; do port=$((20000 + RANDOM % 20000)); (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break; done
cat > "$work/registry.yml" <<YML
version: 0.1
storage: {filesystem: {rootdirectory: $work/registry}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port}
log: {level: error, accesslog: {disabled: true}}
YML
/usr/bin/docker-registry serve "$work/registry.yml" 2>"$work/registry.log" &
reg_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
cp /bin/busybox "$work/rootfs/bin/busybox"
for c in sh echo cat ls uname id; do ln -s busybox "$work/rootfs/bin/$c"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -czf "$work/layer.tar.gz" .
ref=127.0.0.1:$port/demo/busybox:latest
bin/crane append -f "$work/layer.tar.gz" -t "$ref" >/dev/null 2>&1

export DEVBOX_ROOT=$work/store
set -x
bin/devbox pull "$ref"
bin/devbox images
bin/devbox image export "$ref" "$work/busybox.tar"
bin/devbox rmi "$ref"
bin/devbox image import "$work/busybox.tar" demo/busybox:imported
bin/devbox images
bin/devbox run --rm demo/busybox:imported sh -c 'echo "hello from PID $$ in a container, as $(id -un), seeing:"; ls /'
bin/devbox run --name kept --memory 64m demo/busybox:imported sh -c 'exit 3' || echo "exit code $?"
bin/devbox ps -a
bin/devbox rm kept
{ set +x; } 2>/dev/null
