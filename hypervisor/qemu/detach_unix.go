//go:build unix

package qemu

import "syscall"

// detached starts QEMU in a session of its own: the terminal's Ctrl-C and
// hang-up of the devbox command that started it do not reach the VM.
func detached() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }
