package seccomp

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"unsafe"

	moby "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Default returns the OCI seccomp section equivalent in effect to Docker's
// default profile for a container with the given capability set, on this
// machine's architecture and kernel.
//
// caps is the container's bounding set, as in the OCI spec ("CAP_SYS_ADMIN";
// "SYS_ADMIN" and lower case are accepted too). Docker's profile allows some
// syscalls only with a capability: mount, unshare, setns and clone with
// namespace flags with CAP_SYS_ADMIN, reboot with CAP_SYS_BOOT, ptrace on
// kernels before 4.8 with CAP_SYS_PTRACE, and so on. The result is new on
// every call; the caller may change it.
func Default(caps []string) (*specs.LinuxSeccomp, error) {
	spec := &specs.Spec{Process: &specs.Process{
		Capabilities: &specs.LinuxCapabilities{Bounding: normalizeCaps(caps)},
	}}
	s, err := moby.GetDefaultProfile(spec)
	if err != nil {
		return nil, fmt.Errorf("seccomp: Docker's default profile: %w", err)
	}
	if s == nil {
		return nil, errors.New("seccomp: Docker's default profile is empty")
	}
	return s, nil
}

// normalizeCaps spells capability names as the OCI spec does.
func normalizeCaps(caps []string) []string {
	out := make([]string, 0, len(caps))
	for _, c := range caps {
		c = strings.ToUpper(strings.TrimSpace(c))
		if !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		out = append(out, c)
	}
	return out
}

var defaultPrograms struct {
	sync.Mutex
	byCaps map[string][]unix.SockFilter
}

// DefaultProgram returns Compile(Default(caps)), built once per capability
// set in this process. It lets a long-lived process (the engine, the guest
// agent) build the program once and hand it to each container's init stage,
// which then only has to Load it. The returned slice is shared: do not
// modify it.
func DefaultProgram(caps []string) ([]unix.SockFilter, error) {
	set := normalizeCaps(caps)
	slices.Sort(set)
	key := strings.Join(slices.Compact(set), ",")

	defaultPrograms.Lock()
	defer defaultPrograms.Unlock()
	if prog, ok := defaultPrograms.byCaps[key]; ok {
		return prog, nil
	}
	s, err := Default(caps)
	if err != nil {
		return nil, err
	}
	prog, err := Compile(s)
	if err != nil {
		return nil, err
	}
	if defaultPrograms.byCaps == nil {
		defaultPrograms.byCaps = make(map[string][]unix.SockFilter)
	}
	defaultPrograms.byCaps[key] = prog
	return prog, nil
}

// Flags returns the seccomp(2) flags (SECCOMP_FILTER_FLAG_*) that the section
// asks for. SECCOMP_FILTER_FLAG_TSYNC is ignored, as runc does (the filter
// goes on the thread that execs the container's program), and so is
// SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, which only concerns seccomp notify.
func Flags(s *specs.LinuxSeccomp) (uint, error) {
	if s == nil {
		return 0, nil
	}
	var flags uint
	for _, f := range s.Flags {
		switch f {
		case specs.LinuxSeccompFlagLog:
			flags |= unix.SECCOMP_FILTER_FLAG_LOG
		case specs.LinuxSeccompFlagSpecAllow:
			flags |= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
		case "SECCOMP_FILTER_FLAG_TSYNC", specs.LinuxSeccompFlagWaitKillableRecv:
		default:
			return 0, fmt.Errorf("seccomp: unknown flag %q", f)
		}
	}
	return flags, nil
}

// Load installs prog as a seccomp filter on the calling OS thread, with no
// flags. See LoadFlags.
func Load(prog []unix.SockFilter) error {
	return LoadFlags(prog, 0)
}

// LoadFlags installs prog as a seccomp filter on the calling OS thread with
// seccomp(SECCOMP_SET_MODE_FILTER, flags). The filter stays on the thread
// across execve and passes to the threads and processes it creates; other
// threads of this process are not filtered, so the caller must hold
// runtime.LockOSThread from here to the execve of the container's program.
//
// The kernel requires no_new_privs to be set on the thread
// (prctl(PR_SET_NO_NEW_PRIVS)) or CAP_SYS_ADMIN in its effective set; without
// either it refuses the filter with EACCES.
func LoadFlags(prog []unix.SockFilter, flags uint) error {
	if len(prog) == 0 || len(prog) > maxInsns {
		return fmt.Errorf("seccomp: program of %d instructions", len(prog))
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(flags), uintptr(unsafe.Pointer(&fprog)))
	if errno == unix.ENOSYS && flags == 0 {
		// Kernels before 3.17 only have the prctl.
		_, _, errno = unix.RawSyscall(unix.SYS_PRCTL, unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)))
	}
	runtime.KeepAlive(prog)
	switch {
	case errno == 0:
		return nil
	case errno == unix.EACCES:
		return fmt.Errorf("seccomp: loading filter: %w (set no_new_privs first, or keep CAP_SYS_ADMIN until the filter is loaded)", errno)
	default:
		return fmt.Errorf("seccomp: loading filter: %w", errno)
	}
}

// Apply compiles s and loads it on the calling OS thread with the flags it
// asks for: Compile, Flags and LoadFlags in one. A nil section means no
// seccomp filter, and Apply does nothing.
func Apply(s *specs.LinuxSeccomp) error {
	if s == nil {
		return nil
	}
	prog, err := Compile(s)
	if err != nil {
		return err
	}
	flags, err := Flags(s)
	if err != nil {
		return err
	}
	return LoadFlags(prog, flags)
}
