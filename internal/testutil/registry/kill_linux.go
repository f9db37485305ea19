package registry

import (
	"os/exec"
	"syscall"
)

// killWithParent has the kernel kill cmd when this process dies.
func killWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
