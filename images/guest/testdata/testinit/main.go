// Command testinit stands in for the devbox agent as /init in the guest
// image's boot tests: it runs /etc/devbox/test.sh (which the test appends
// in a second archive, as the host appends its per-machine files) with the
// image's busybox sh, then restarts the VM, which QEMU's -no-reboot turns
// into an exit.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

func main() {
	fmt.Printf("testinit: %s is pid %d\n", os.Args[0], os.Getpid())
	// As the agent does first: the kernel does not mount devtmpfs over an
	// initramfs root.
	if err := syscall.Mount("devtmpfs", "/dev", "devtmpfs", 0, ""); err != nil {
		fmt.Println("testinit: mount /dev:", err)
	}
	cmd := exec.Command("/bin/sh", "/etc/devbox/test.sh")
	cmd.Env = []string{"PATH=/bin:/sbin", "HOME=/root"}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Println("testinit: test.sh:", err)
	}
	syscall.Sync()
	if err := syscall.Reboot(syscall.LINUX_REBOOT_CMD_RESTART); err != nil {
		fmt.Println("testinit: reboot:", err)
	}
}
