package seccomp

import (
	"runtime"
	"slices"
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// dockerCaps is Docker's default capability set.
var dockerCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

func names(s *specs.LinuxSeccomp, act specs.LinuxSeccompAction) []string {
	var out []string
	for _, sc := range s.Syscalls {
		if sc.Action == act && len(sc.Args) == 0 {
			out = append(out, sc.Names...)
		}
	}
	return out
}

func TestDefault(t *testing.T) {
	s, err := Default(dockerCaps)
	if err != nil {
		t.Fatal(err)
	}
	if s.DefaultAction != specs.ActErrno || s.DefaultErrnoRet == nil || *s.DefaultErrnoRet != uint(unix.EPERM) {
		t.Errorf("default action %s %v, want SCMP_ACT_ERRNO EPERM", s.DefaultAction, s.DefaultErrnoRet)
	}
	if runtime.GOARCH == "amd64" && !slices.Equal(s.Architectures, []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}) {
		t.Errorf("architectures %v", s.Architectures)
	}
	allowed := names(s, specs.ActAllow)
	for _, name := range []string{"read", "write", "execve", "getpid", "ptrace", "chroot"} {
		if !slices.Contains(allowed, name) {
			t.Errorf("%s not allowed", name)
		}
	}
	for _, name := range []string{"mount", "umount2", "unshare", "setns", "reboot", "kexec_load", "init_module", "swapon", "pivot_root", "clock_settime", "keyctl", "add_key", "bpf"} {
		if slices.Contains(allowed, name) {
			t.Errorf("%s allowed without its capability", name)
		}
	}

	admin, err := Default(append(slices.Clone(dockerCaps), "sys_admin")) // lower case, no prefix
	if err != nil {
		t.Fatal(err)
	}
	allowed = names(admin, specs.ActAllow)
	for _, name := range []string{"mount", "umount2", "unshare", "setns", "clone", "clone3"} {
		if !slices.Contains(allowed, name) {
			t.Errorf("with CAP_SYS_ADMIN: %s not allowed", name)
		}
	}
}

// TestDefaultProgram runs the compiled default profile through the
// interpreter.
func TestDefaultProgram(t *testing.T) {
	p, ok := nativePlatform()
	if !ok {
		t.Skipf("no platform for %s", runtime.GOARCH)
	}
	s, err := Default(dockerCaps)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	sAdmin, err := Default(append(slices.Clone(dockerCaps), "CAP_SYS_ADMIN"))
	if err != nil {
		t.Fatal(err)
	}
	progAdmin, err := Compile(sAdmin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d instructions, %d with CAP_SYS_ADMIN", runtime.GOARCH, len(prog), len(progAdmin))

	native := p.native
	call := func(name string, args ...uint64) *data {
		d := &data{arch: native.audit, nr: nr(t, native, name)}
		copy(d.args[:], args)
		return d
	}
	allow, eperm, enosys := uint32(unix.SECCOMP_RET_ALLOW), retErrno(unix.EPERM), retErrno(unix.ENOSYS)
	for _, tc := range []struct {
		name       string
		d          *data
		want, with uint32 // without and with CAP_SYS_ADMIN
	}{
		{"getpid", call("getpid"), allow, allow},
		{"execve", call("execve"), allow, allow},
		{"ptrace", call("ptrace"), allow, allow},
		{"mount", call("mount"), eperm, allow},
		{"unshare", call("unshare", unix.CLONE_NEWUSER), eperm, allow},
		{"setns", call("setns"), eperm, allow},
		{"keyctl", call("keyctl"), eperm, eperm},
		{"add_key", call("add_key"), eperm, eperm},
		{"reboot", call("reboot"), eperm, eperm},
		{"kexec_load", call("kexec_load"), eperm, eperm},
		{"init_module", call("init_module"), eperm, eperm},
		{"swapon", call("swapon"), eperm, eperm},
		{"pivot_root", call("pivot_root"), eperm, eperm}, // never, even with CAP_SYS_ADMIN
		{"clock_settime", call("clock_settime"), eperm, eperm},
		{"bpf", call("bpf"), eperm, allow},
		{"clone(SIGCHLD)", call("clone", uint64(unix.SIGCHLD)), allow, allow},
		{"clone(NEWUSER)", call("clone", unix.CLONE_NEWUSER|uint64(unix.SIGCHLD)), eperm, allow},
		{"clone(NEWNET)", call("clone", unix.CLONE_NEWNET), eperm, allow},
		{"clone3", call("clone3"), enosys, allow},
		{"socket(AF_INET)", call("socket", unix.AF_INET, unix.SOCK_STREAM), allow, allow},
		{"socket(AF_UNIX)", call("socket", unix.AF_UNIX, unix.SOCK_STREAM), allow, allow},
		{"socket(AF_NETLINK)", call("socket", unix.AF_NETLINK, unix.SOCK_RAW), allow, allow},
		{"socket(AF_VSOCK)", call("socket", unix.AF_VSOCK, unix.SOCK_STREAM), eperm, eperm},
		{"socket(AF_ALG)", call("socket", unix.AF_ALG, unix.SOCK_SEQPACKET), eperm, eperm},
		{"personality(0)", call("personality", 0), allow, allow},
		{"personality(query)", call("personality", 0xffffffff), allow, allow},
		{"personality(ADDR_NO_RANDOMIZE)", call("personality", 0x0040000), eperm, eperm},
		{"unknown syscall 1000", &data{arch: native.audit, nr: 1000}, enosys, enosys},
		{"foreign arch", &data{arch: unix.AUDIT_ARCH_S390X, nr: 1}, unix.SECCOMP_RET_KILL_PROCESS, unix.SECCOMP_RET_KILL_PROCESS},
	} {
		if got, _ := run(t, prog, tc.d); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, retString(got), retString(tc.want))
		}
		if got, _ := run(t, progAdmin, tc.d); got != tc.with {
			t.Errorf("%s with CAP_SYS_ADMIN: got %s, want %s", tc.name, retString(got), retString(tc.with))
		}
	}

	// What the runtime's init stage and the Go runtime do after the filter
	// is loaded and before execve (the filter goes on before credentials
	// change when no_new_privs is not set).
	for _, name := range []string{
		"setgroups", "setgid", "setuid", "setresgid", "setresuid", "capget", "capset",
		"prctl", "poll", "ppoll", "write", "read", "close", "close_range", "fcntl", "dup3",
		"newfstatat", "faccessat", "faccessat2", "getppid", "getpid", "gettid", "tgkill",
		"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "futex", "mmap",
		"munmap", "madvise", "nanosleep", "sched_yield", "clone", "wait4", "execve", "execveat", "exit_group",
	} {
		if _, ok := lookupSyscall(native.table, name); !ok {
			continue // not on this architecture (poll on arm64)
		}
		if got, _ := run(t, prog, call(name)); got != allow {
			t.Errorf("%s: got %s, want ALLOW", name, retString(got))
		}
	}

	// Every syscall number and every architecture, against the reference.
	maxSteps := 0
	for _, audit := range []uint32{native.audit, unix.AUDIT_ARCH_I386, unix.AUDIT_ARCH_ARM} {
		for n := uint32(0); n < 1100; n++ {
			d := &data{arch: audit, nr: n}
			got, steps := run(t, prog, d)
			if want := reference(s, p, d); got != want {
				t.Fatalf("arch %#x nr %d: got %s, want %s", audit, n, retString(got), retString(want))
			}
			maxSteps = max(maxSteps, steps)
		}
	}
	if runtime.GOARCH == "amd64" {
		if got, _ := run(t, prog, &data{arch: unix.AUDIT_ARCH_X86_64, nr: 0x40000000 | 39}); got != enosys {
			t.Errorf("x32 getpid: got %s", retString(got))
		}
		if got, _ := run(t, prog, &data{arch: unix.AUDIT_ARCH_I386, nr: 20}); got != allow {
			t.Errorf("i386 getpid: got %s", retString(got))
		}
	}
	// A syscall should cost a short walk down the tree, not a scan.
	t.Logf("at most %d instructions run for a syscall without arguments checked", maxSteps)
	if maxSteps > 20 {
		t.Errorf("a syscall runs %d instructions", maxSteps)
	}
}

// TestTablesMatchElastic checks that ztables.go is what gen_tables.go makes
// from the go-seccomp-bpf module in go.mod.
func TestTablesMatchElastic(t *testing.T) {
	for _, tc := range []struct {
		table sysTable
		info  *arch.Info
	}{
		{archX86_64.table, arch.X86_64},
		{archI386.table, arch.I386},
		{archAArch64.table, arch.AARCH64},
		{archARM.table, arch.ARM},
	} {
		if len(tc.table.entries) != len(tc.info.SyscallNames) {
			t.Errorf("%s: %d syscalls, go-seccomp-bpf has %d: run go generate", tc.info.Name, len(tc.table.entries), len(tc.info.SyscallNames))
		}
		for _, e := range tc.table.entries {
			if n, ok := tc.info.SyscallNames[e.name]; !ok || uint32(n) != e.nr {
				t.Errorf("%s: %s is %d here, not in go-seccomp-bpf: run go generate", tc.info.Name, e.name, e.nr)
			}
		}
		if _, ok := lookupSyscall(tc.table, "no_such_syscall"); ok {
			t.Errorf("%s: found no_such_syscall", tc.info.Name)
		}
		for name, n := range tc.info.SyscallNames {
			if got, ok := lookupSyscall(tc.table, name); !ok || got != uint32(n) {
				t.Errorf("%s: %s is %d (%v), go-seccomp-bpf says %d: run go generate", tc.info.Name, name, got, ok, n)
			}
		}
	}
}

func TestDefaultProgramCache(t *testing.T) {
	a, err := DefaultProgram(dockerCaps)
	if err != nil {
		t.Fatal(err)
	}
	// Same set, other order and spelling: the same program.
	shuffled := []string{"audit_write", "CAP_KILL"}
	shuffled = append(shuffled, dockerCaps[:len(dockerCaps)-2]...)
	b, err := DefaultProgram(append(shuffled, "CAP_CHOWN"))
	if err != nil {
		t.Fatal(err)
	}
	if &a[0] != &b[0] {
		t.Error("same capability set compiled twice")
	}
	s, _ := Default(dockerCaps)
	fresh, _ := Compile(s)
	if !slices.Equal(a, fresh) {
		t.Error("cached program differs from Compile(Default(caps))")
	}
	admin, err := DefaultProgram(append(slices.Clone(dockerCaps), "CAP_SYS_ADMIN"))
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(a, admin) {
		t.Error("CAP_SYS_ADMIN made no difference")
	}
}
