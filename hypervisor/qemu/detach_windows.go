package qemu

import "syscall"

// detached starts QEMU without a console and in a process group of its
// own, so the console's Ctrl-C does not reach the VM.
func detached() *syscall.SysProcAttr {
	const detachedProcess = 0x00000008
	return &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP | detachedProcess}
}
