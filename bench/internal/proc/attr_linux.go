package proc

import "syscall"

// spawnAttr makes killing the spawner (a cancelled context) kill its
// command too.
func spawnAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
