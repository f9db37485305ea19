// Package agent is the devbox guest agent: PID 1 of devbox's Linux VM. It
// sets the VM up (mounts, entropy, clock, modules, network, data disk),
// reaps orphans, and serves SSH to the host on virtio-serial ports or
// vsock, speaking the contract in package bootconfig. The devbox binary
// runs it when the kernel starts it as /init; see [Main].
package agent
