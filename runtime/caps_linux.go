package runtime

import (
	"fmt"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// capabilityBits maps capability names to their numbers.
var capabilityBits = map[string]uint{
	"CAP_CHOWN":              unix.CAP_CHOWN,
	"CAP_DAC_OVERRIDE":       unix.CAP_DAC_OVERRIDE,
	"CAP_DAC_READ_SEARCH":    unix.CAP_DAC_READ_SEARCH,
	"CAP_FOWNER":             unix.CAP_FOWNER,
	"CAP_FSETID":             unix.CAP_FSETID,
	"CAP_KILL":               unix.CAP_KILL,
	"CAP_SETGID":             unix.CAP_SETGID,
	"CAP_SETUID":             unix.CAP_SETUID,
	"CAP_SETPCAP":            unix.CAP_SETPCAP,
	"CAP_LINUX_IMMUTABLE":    unix.CAP_LINUX_IMMUTABLE,
	"CAP_NET_BIND_SERVICE":   unix.CAP_NET_BIND_SERVICE,
	"CAP_NET_BROADCAST":      unix.CAP_NET_BROADCAST,
	"CAP_NET_ADMIN":          unix.CAP_NET_ADMIN,
	"CAP_NET_RAW":            unix.CAP_NET_RAW,
	"CAP_IPC_LOCK":           unix.CAP_IPC_LOCK,
	"CAP_IPC_OWNER":          unix.CAP_IPC_OWNER,
	"CAP_SYS_MODULE":         unix.CAP_SYS_MODULE,
	"CAP_SYS_RAWIO":          unix.CAP_SYS_RAWIO,
	"CAP_SYS_CHROOT":         unix.CAP_SYS_CHROOT,
	"CAP_SYS_PTRACE":         unix.CAP_SYS_PTRACE,
	"CAP_SYS_PACCT":          unix.CAP_SYS_PACCT,
	"CAP_SYS_ADMIN":          unix.CAP_SYS_ADMIN,
	"CAP_SYS_BOOT":           unix.CAP_SYS_BOOT,
	"CAP_SYS_NICE":           unix.CAP_SYS_NICE,
	"CAP_SYS_RESOURCE":       unix.CAP_SYS_RESOURCE,
	"CAP_SYS_TIME":           unix.CAP_SYS_TIME,
	"CAP_SYS_TTY_CONFIG":     unix.CAP_SYS_TTY_CONFIG,
	"CAP_MKNOD":              unix.CAP_MKNOD,
	"CAP_LEASE":              unix.CAP_LEASE,
	"CAP_AUDIT_WRITE":        unix.CAP_AUDIT_WRITE,
	"CAP_AUDIT_CONTROL":      unix.CAP_AUDIT_CONTROL,
	"CAP_SETFCAP":            unix.CAP_SETFCAP,
	"CAP_MAC_OVERRIDE":       unix.CAP_MAC_OVERRIDE,
	"CAP_MAC_ADMIN":          unix.CAP_MAC_ADMIN,
	"CAP_SYSLOG":             unix.CAP_SYSLOG,
	"CAP_WAKE_ALARM":         unix.CAP_WAKE_ALARM,
	"CAP_BLOCK_SUSPEND":      unix.CAP_BLOCK_SUSPEND,
	"CAP_AUDIT_READ":         unix.CAP_AUDIT_READ,
	"CAP_PERFMON":            unix.CAP_PERFMON,
	"CAP_BPF":                unix.CAP_BPF,
	"CAP_CHECKPOINT_RESTORE": unix.CAP_CHECKPOINT_RESTORE,
}

// capabilityMask returns the bit mask of the named capabilities, as
// /proc/PID/status shows it (CapEff and friends).
func capabilityMask(names []string) (uint64, error) {
	var mask uint64
	for _, n := range names {
		bit, ok := capabilityBits[n]
		if !ok {
			return 0, fmt.Errorf("unknown capability %q", n)
		}
		mask |= 1 << bit
	}
	return mask, nil
}

// parseCaps turns the spec's capability names into masks; nil means none.
func parseCaps(c *specs.LinuxCapabilities) (capSets, error) {
	var s capSets
	if c == nil {
		return s, nil
	}
	var err error
	for _, set := range []struct {
		mask  *uint64
		names []string
		what  string
	}{
		{&s.Bounding, c.Bounding, "bounding"},
		{&s.Effective, c.Effective, "effective"},
		{&s.Permitted, c.Permitted, "permitted"},
		{&s.Inheritable, c.Inheritable, "inheritable"},
		{&s.Ambient, c.Ambient, "ambient"},
	} {
		if *set.mask, err = capabilityMask(set.names); err != nil {
			return s, fmt.Errorf("%s set: %w", set.what, err)
		}
	}
	return s, nil
}

// setCredentials switches the calling thread to the container's user,
// groups and capabilities. It runs on the locked thread that then execs,
// and everything it changes is per thread: the bounding set, capset, the
// ambient set and the keep-caps flag are in Linux, and setgroups, setresgid
// and setresuid are too when called directly rather than through libc or
// package syscall, which repeat them on every thread of the process
// (stopping the world to do so, a large share of a container's start).
// Only this thread's credentials matter: execve keeps the calling thread
// and ends the others.
func setCredentials(c *initConfig) error {
	caps := c.Caps
	// Keep the permitted set through setuid to a non-root user.
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return step("set keepcaps", err)
	}
	for cp := uint(0); cp <= c.LastCap; cp++ {
		if caps.Bounding&(1<<cp) == 0 {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(cp), 0, 0, 0); err != nil {
				return step(fmt.Sprintf("drop capability %d from the bounding set", cp), err)
			}
		}
	}
	if err := setgroups(c.AdditionalGids); err != nil {
		return step("setgroups", err)
	}
	if _, _, e := unix.RawSyscall(sysSetresgid, uintptr(c.GID), uintptr(c.GID), uintptr(c.GID)); e != 0 {
		return step(fmt.Sprintf("setgid %d", c.GID), e)
	}
	if _, _, e := unix.RawSyscall(sysSetresuid, uintptr(c.UID), uintptr(c.UID), uintptr(c.UID)); e != 0 {
		return step(fmt.Sprintf("setuid %d", c.UID), e)
	}

	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{
			Effective:   uint32(caps.Effective),
			Permitted:   uint32(caps.Permitted),
			Inheritable: uint32(caps.Inheritable),
		},
		{
			Effective:   uint32(caps.Effective >> 32),
			Permitted:   uint32(caps.Permitted >> 32),
			Inheritable: uint32(caps.Inheritable >> 32),
		},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return step("capset", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && caps.Ambient != 0 {
		return step("clear ambient capabilities", err)
	}
	for cp := uint(0); cp <= c.LastCap; cp++ {
		if caps.Ambient&(1<<cp) != 0 {
			if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(cp), 0, 0); err != nil {
				return step(fmt.Sprintf("raise ambient capability %d", cp), err)
			}
		}
	}
	return nil
}

// setgroups sets the calling thread's supplementary groups.
func setgroups(gids []uint32) error {
	var p uintptr
	if len(gids) > 0 {
		p = uintptr(unsafe.Pointer(&gids[0]))
	}
	_, _, e := unix.RawSyscall(sysSetgroups, uintptr(len(gids)), p, 0)
	if e != 0 {
		return e
	}
	return nil
}
