//go:build linux && !(386 || arm)

package runtime

import "golang.org/x/sys/unix"

// The set*id syscalls, taking 32-bit ids.
const (
	sysSetgroups = unix.SYS_SETGROUPS
	sysSetresuid = unix.SYS_SETRESUID
	sysSetresgid = unix.SYS_SETRESGID
)
