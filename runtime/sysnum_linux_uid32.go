//go:build linux && (386 || arm)

package runtime

import "golang.org/x/sys/unix"

// On 386 and arm the plain set*id syscalls take 16-bit ids.
const (
	sysSetgroups = unix.SYS_SETGROUPS32
	sysSetresuid = unix.SYS_SETRESUID32
	sysSetresgid = unix.SYS_SETRESGID32
)
