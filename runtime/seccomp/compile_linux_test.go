package seccomp

import (
	"math/rand/v2"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func uptr(v uint) *uint { return &v }

var amd64 = platforms["amd64"]

func TestCompileDefaultAllowOneErrno(t *testing.T) {
	s := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"getpid"}, Action: specs.ActErrno, ErrnoRet: uptr(42)},
		},
	}
	prog, err := compile(s, amd64)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		d    data
		want uint32
	}{
		{data{arch: unix.AUDIT_ARCH_X86_64, nr: nr(t, archX86_64, "getpid")}, unix.SECCOMP_RET_ERRNO | 42},
		{data{arch: unix.AUDIT_ARCH_X86_64, nr: nr(t, archX86_64, "getppid")}, unix.SECCOMP_RET_ALLOW},
		{data{arch: unix.AUDIT_ARCH_X86_64, nr: 0}, unix.SECCOMP_RET_ALLOW},
		// No ENOSYS stub when the default lets syscalls through.
		{data{arch: unix.AUDIT_ARCH_X86_64, nr: 5000}, unix.SECCOMP_RET_ALLOW},
		// x32 is refused, other architectures are killed.
		{data{arch: unix.AUDIT_ARCH_X86_64, nr: 0x40000000 | nr(t, archX86_64, "getppid")}, retErrno(unix.ENOSYS)},
		{data{arch: unix.AUDIT_ARCH_I386, nr: 20}, unix.SECCOMP_RET_KILL_PROCESS},
		{data{arch: unix.AUDIT_ARCH_AARCH64, nr: 172}, unix.SECCOMP_RET_KILL_PROCESS},
	} {
		got, _ := run(t, prog, &tc.d)
		if got != tc.want {
			t.Errorf("nr %d arch %#x: got %s, want %s", tc.d.nr, tc.d.arch, retString(got), retString(tc.want))
		}
	}
	if len(prog) > 12 {
		t.Errorf("program of %d instructions for one rule:\n%v", len(prog), prog)
	}
}

func TestCompileArgConditions(t *testing.T) {
	s := &specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: uptr(uint(unix.EPERM)),
		Architectures:   []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read", "write"}, Action: specs.ActAllow},
			// personality: two allowed values.
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0, Op: specs.OpEqualTo}}},
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0xffffffff, Op: specs.OpEqualTo}}},
			// clone without namespace flags.
			{Names: []string{"clone"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: unix.CLONE_NEWUSER | unix.CLONE_NEWNS, ValueTwo: 0, Op: specs.OpMaskedEqual}}},
			// socket: all conditions must hold.
			{Names: []string{"socket"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: unix.AF_INET, Op: specs.OpEqualTo},
				{Index: 1, Value: unix.SOCK_RAW, Op: specs.OpNotEqual},
			}},
			// setsockopt: two conditions on one argument, any of them.
			{Names: []string{"setsockopt"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
				{Index: 1, Value: 1, Op: specs.OpEqualTo},
				{Index: 1, Value: 6, Op: specs.OpEqualTo},
			}},
			// 64-bit comparison: lseek offsets below 1<<32.
			{Names: []string{"lseek"}, Action: specs.ActErrno, ErrnoRet: uptr(uint(unix.EFBIG)), Args: []specs.LinuxSeccompArg{{Index: 1, Value: 1 << 32, Op: specs.OpGreaterEqual}}},
			{Names: []string{"lseek"}, Action: specs.ActAllow},
			{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: uptr(uint(unix.ENOSYS))},
		},
	}
	prog, err := compile(s, amd64)
	if err != nil {
		t.Fatal(err)
	}
	x86 := func(name string, args ...uint64) data {
		d := data{arch: unix.AUDIT_ARCH_X86_64, nr: nr(t, archX86_64, name)}
		copy(d.args[:], args)
		return d
	}
	i386 := func(name string, args ...uint64) data {
		d := data{arch: unix.AUDIT_ARCH_I386, nr: nr(t, archI386, name)}
		copy(d.args[:], args)
		return d
	}
	allow, eperm := uint32(unix.SECCOMP_RET_ALLOW), retErrno(unix.EPERM)
	for _, tc := range []struct {
		name string
		d    data
		want uint32
	}{
		{"read", x86("read"), allow},
		{"mount", x86("mount"), eperm},
		{"personality(0)", x86("personality", 0), allow},
		{"personality(0xffffffff)", x86("personality", 0xffffffff), allow},
		{"personality(0x1ffffffff)", x86("personality", 0x1ffffffff), eperm},
		{"personality(ADDR_NO_RANDOMIZE)", x86("personality", 0x0040000), eperm},
		{"clone(SIGCHLD)", x86("clone", uint64(unix.SIGCHLD)), allow},
		{"clone(thread)", x86("clone", unix.CLONE_VM|unix.CLONE_FS|unix.CLONE_FILES|unix.CLONE_SIGHAND|unix.CLONE_THREAD|unix.CLONE_SYSVSEM), allow},
		{"clone(NEWUSER)", x86("clone", unix.CLONE_NEWUSER|uint64(unix.SIGCHLD)), eperm},
		{"clone(NEWNS high bits)", x86("clone", 1<<40|unix.CLONE_NEWNS), eperm},
		{"clone(high bits only)", x86("clone", 1<<40), allow},
		{"socket(INET, STREAM)", x86("socket", unix.AF_INET, unix.SOCK_STREAM), allow},
		{"socket(INET, RAW)", x86("socket", unix.AF_INET, unix.SOCK_RAW), eperm},
		{"socket(INET6, STREAM)", x86("socket", unix.AF_INET6, unix.SOCK_STREAM), eperm},
		{"setsockopt(level 1)", x86("setsockopt", 3, 1), allow},
		{"setsockopt(level 6)", x86("setsockopt", 3, 6), allow},
		{"setsockopt(level 41)", x86("setsockopt", 3, 41), eperm},
		{"lseek(small)", x86("lseek", 3, 1<<32-1), allow},
		{"lseek(big)", x86("lseek", 3, 1<<32), retErrno(unix.EFBIG)},
		{"lseek(huge)", x86("lseek", 3, 1<<63), retErrno(unix.EFBIG)},
		{"clone3", x86("clone3"), retErrno(unix.ENOSYS)},
		// Above the highest syscall the section names: ENOSYS.
		{"above clone3", data{arch: unix.AUDIT_ARCH_X86_64, nr: nr(t, archX86_64, "clone3") + 1}, retErrno(unix.ENOSYS)},
		{"nr -1", data{arch: unix.AUDIT_ARCH_X86_64, nr: 0xffffffff}, retErrno(unix.ENOSYS)},
		// The i386 ABI has its own numbers and 32-bit arguments.
		{"i386 read", i386("read"), allow},
		{"i386 personality(0xffffffff)", i386("personality", 0xffffffff), allow},
		{"i386 personality(0x1ffffffff)", i386("personality", 0x1ffffffff), allow},
		{"i386 clone(NEWUSER)", i386("clone", unix.CLONE_NEWUSER), eperm},
		// Only the low 32 bits count: the rule's 1<<32 is 0 there.
		{"i386 lseek(0)", i386("lseek", 3, 0), retErrno(unix.EFBIG)},
		{"i386 mount", i386("mount"), eperm},
		{"x32 read", data{arch: unix.AUDIT_ARCH_X86_64, nr: 0x40000000}, retErrno(unix.ENOSYS)},
		{"arm", data{arch: unix.AUDIT_ARCH_ARM, nr: 3}, unix.SECCOMP_RET_KILL_PROCESS},
	} {
		got, _ := run(t, prog, &tc.d)
		if got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, retString(got), retString(tc.want))
		}
		if ref := reference(s, amd64, &tc.d); ref != tc.want {
			t.Errorf("%s: reference model says %s, want %s", tc.name, retString(ref), retString(tc.want))
		}
	}
}

func TestCompileActions(t *testing.T) {
	for _, tc := range []struct {
		act   specs.LinuxSeccompAction
		errno *uint
		want  uint32
	}{
		{specs.ActAllow, nil, unix.SECCOMP_RET_ALLOW},
		{specs.ActErrno, nil, retErrno(unix.EPERM)},
		{specs.ActErrno, uptr(uint(unix.ENOSYS)), retErrno(unix.ENOSYS)},
		{specs.ActKill, nil, unix.SECCOMP_RET_KILL_THREAD},
		{specs.ActKillThread, nil, unix.SECCOMP_RET_KILL_THREAD},
		{specs.ActKillProcess, nil, unix.SECCOMP_RET_KILL_PROCESS},
		{specs.ActTrap, nil, unix.SECCOMP_RET_TRAP},
		{specs.ActTrace, nil, unix.SECCOMP_RET_TRACE | uint32(unix.EPERM)},
		{specs.ActLog, nil, unix.SECCOMP_RET_LOG},
	} {
		s := &specs.LinuxSeccomp{
			DefaultAction:   specs.ActErrno,
			DefaultErrnoRet: uptr(99),
			Syscalls:        []specs.LinuxSyscall{{Names: []string{"getpid"}, Action: tc.act, ErrnoRet: tc.errno}},
		}
		prog, err := compile(s, amd64)
		if err != nil {
			t.Fatalf("%s: %v", tc.act, err)
		}
		got, _ := run(t, prog, &data{arch: unix.AUDIT_ARCH_X86_64, nr: nr(t, archX86_64, "getpid")})
		if got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.act, retString(got), retString(tc.want))
		}
		got, _ = run(t, prog, &data{arch: unix.AUDIT_ARCH_X86_64, nr: nr(t, archX86_64, "read")})
		if got != retErrno(99) {
			t.Errorf("%s: default: got %s", tc.act, retString(got))
		}
	}
}

func TestCompileUnknownNamesSkipped(t *testing.T) {
	s := &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"no_such_syscall_in_2099", "getpid", "arm_fadvise64_64"}, Action: specs.ActAllow},
		},
	}
	prog, err := compile(s, amd64)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := run(t, prog, &data{arch: unix.AUDIT_ARCH_X86_64, nr: nr(t, archX86_64, "getpid")}); got != unix.SECCOMP_RET_ALLOW {
		t.Errorf("getpid: got %s", retString(got))
	}
}

func TestCompileErrors(t *testing.T) {
	ok := func() *specs.LinuxSeccomp {
		return &specs.LinuxSeccomp{
			DefaultAction: specs.ActErrno,
			Syscalls:      []specs.LinuxSyscall{{Names: []string{"getpid"}, Action: specs.ActAllow}},
		}
	}
	if _, err := compile(ok(), amd64); err != nil {
		t.Fatalf("valid section: %v", err)
	}
	for name, change := range map[string]func(s *specs.LinuxSeccomp){
		"nil":             nil,
		"no default":      func(s *specs.LinuxSeccomp) { s.DefaultAction = "" },
		"unknown default": func(s *specs.LinuxSeccomp) { s.DefaultAction = "SCMP_ACT_MAYBE" },
		"notify default":  func(s *specs.LinuxSeccomp) { s.DefaultAction = specs.ActNotify },
		"unknown action":  func(s *specs.LinuxSeccomp) { s.Syscalls[0].Action = "SCMP_ACT_MAYBE" },
		"notify":          func(s *specs.LinuxSeccomp) { s.Syscalls[0].Action = specs.ActNotify },
		"listener":        func(s *specs.LinuxSeccomp) { s.ListenerPath = "/run/agent.sock" },
		"errno too big": func(s *specs.LinuxSeccomp) {
			s.Syscalls[0].Action, s.Syscalls[0].ErrnoRet = specs.ActErrno, uptr(1<<16)
		},
		"no names":   func(s *specs.LinuxSeccomp) { s.Syscalls[0].Names = nil },
		"empty name": func(s *specs.LinuxSeccomp) { s.Syscalls[0].Names = []string{""} },
		"argument index 6": func(s *specs.LinuxSeccomp) {
			s.Syscalls[0].Args = []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}}
		},
		"unknown operator": func(s *specs.LinuxSeccomp) { s.Syscalls[0].Args = []specs.LinuxSeccompArg{{Op: "SCMP_CMP_ABOUT"}} },
		"unknown arch":     func(s *specs.LinuxSeccomp) { s.Architectures = []specs.Arch{"SCMP_ARCH_Z80"} },
		"unknown flag":     func(s *specs.LinuxSeccomp) { s.Flags = []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_NEW"} },
	} {
		var s *specs.LinuxSeccomp
		if change != nil {
			s = ok()
			change(s)
		}
		if _, err := compile(s, amd64); err == nil {
			t.Errorf("%s: no error", name)
		} else if !strings.HasPrefix(err.Error(), "seccomp: ") {
			t.Errorf("%s: error %q does not say where it comes from", name, err)
		}
	}
}

func TestFlags(t *testing.T) {
	got, err := Flags(&specs.LinuxSeccomp{Flags: []specs.LinuxSeccompFlag{
		specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagSpecAllow, "SECCOMP_FILTER_FLAG_TSYNC",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if want := uint(unix.SECCOMP_FILTER_FLAG_LOG | unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW); got != want {
		t.Errorf("got %#x, want %#x", got, want)
	}
}

// TestCompileLongJumps builds a section whose rules need far jumps, so that
// trampolines are exercised, and checks every syscall against the reference.
func TestCompileLongJumps(t *testing.T) {
	s := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno}
	for _, e := range archX86_64.table.entries[:120] {
		var args []specs.LinuxSeccompArg
		for i := range uint(4) {
			args = append(args, specs.LinuxSeccompArg{Index: i, Value: uint64(e.nr) << (8 * i), Op: specs.OpLessEqual})
		}
		s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{Names: []string{e.name}, Action: specs.ActAllow, Args: args})
	}
	prog, err := compile(s, amd64)
	if err != nil {
		t.Fatal(err)
	}
	long := 0
	for _, in := range prog {
		if in.Code == opJa {
			long++
		}
	}
	if long == 0 {
		t.Fatalf("expected trampolines in a program of %d instructions", len(prog))
	}
	t.Logf("%d instructions, %d trampolines", len(prog), long)
	for n := uint32(0); n < 500; n++ {
		for _, args := range [][maxArgs]uint64{{}, {uint64(n), uint64(n) << 8, uint64(n) << 16, uint64(n) << 24}, {uint64(n) + 1}, {0, 0, 0, 1 << 40}} {
			d := data{arch: unix.AUDIT_ARCH_X86_64, nr: n, args: args}
			got, _ := run(t, prog, &d)
			if want := reference(s, amd64, &d); got != want {
				t.Fatalf("nr %d args %v: got %s, want %s", n, args, retString(got), retString(want))
			}
		}
	}
}

func TestAssemblerFarJumps(t *testing.T) {
	// if A == 1 goto far else goto near, with 300 instructions in between.
	var a asm
	far, near := a.newLabel(), a.newLabel()
	a.ldAbs(offNr)
	a.jump(opJeqK, 1, far, near)
	a.bind(near)
	for range 300 {
		a.and(0xffffffff)
	}
	a.ret(7)
	a.bind(far)
	a.ret(9)
	prog, err := a.assemble()
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := run(t, prog, &data{nr: 1}); got != 9 {
		t.Errorf("far branch: got %d", got)
	}
	if got, _ := run(t, prog, &data{nr: 2}); got != 7 {
		t.Errorf("near branch: got %d", got)
	}

	// Too long for the kernel.
	var b asm
	for range maxInsns {
		b.and(1)
	}
	b.ret(0)
	if _, err := b.assemble(); err == nil {
		t.Error("program longer than BPF_MAXINSNS assembled")
	}
}

// TestCompileRandom compares compiled programs with the reference model on
// random sections and inputs, for every supported platform.
func TestCompileRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	actions := []specs.LinuxSeccompAction{specs.ActAllow, specs.ActErrno, specs.ActKill, specs.ActKillProcess, specs.ActTrap, specs.ActLog, specs.ActTrace}
	ops := []specs.LinuxSeccompOperator{specs.OpEqualTo, specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpGreaterThan, specs.OpGreaterEqual, specs.OpMaskedEqual}
	values := []uint64{0, 1, 2, 0x7fffffff, 0x80000000, 0xffffffff, 1 << 32, 1<<32 + 1, 0xffffffff00000000, ^uint64(0)}
	value := func() uint64 {
		if rng.IntN(3) == 0 {
			return rng.Uint64() >> rng.IntN(64)
		}
		return values[rng.IntN(len(values))]
	}
	names := []string{"read", "write", "open", "clone", "socket", "personality", "mmap", "mmap2", "socketcall", "arch_prctl", "set_tls", "no_such_syscall", "getpid", "close", "ioctl", "futex"}
	iters := 300
	if testing.Short() {
		iters = 50
	}
	for _, goarch := range []string{"amd64", "arm64", "386", "arm"} {
		p := platforms[goarch]
		arches := []uint32{p.native.audit, unix.AUDIT_ARCH_I386, unix.AUDIT_ARCH_ARM, unix.AUDIT_ARCH_AARCH64, unix.AUDIT_ARCH_X86_64}
		for range iters {
			s := &specs.LinuxSeccomp{DefaultAction: actions[rng.IntN(len(actions))]}
			if rng.IntN(2) == 0 {
				s.DefaultErrnoRet = uptr(uint(rng.IntN(3) + 37)) // sometimes ENOSYS (38)
			}
			if rng.IntN(3) > 0 {
				s.Architectures = []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32, specs.ArchAARCH64, specs.ArchARM}[:rng.IntN(6)]
			}
			for range rng.IntN(12) {
				sc := specs.LinuxSyscall{Action: actions[rng.IntN(len(actions))]}
				if rng.IntN(2) == 0 {
					sc.ErrnoRet = uptr(uint(rng.IntN(3) + 1))
				}
				for range rng.IntN(3) + 1 {
					sc.Names = append(sc.Names, names[rng.IntN(len(names))])
				}
				for range rng.IntN(4) {
					sc.Args = append(sc.Args, specs.LinuxSeccompArg{Index: uint(rng.IntN(3)), Value: value(), ValueTwo: value(), Op: ops[rng.IntN(len(ops))]})
				}
				s.Syscalls = append(s.Syscalls, sc)
				if rng.IntN(3) == 0 {
					// A run of one-condition rules like Docker's socket and
					// personality rules, which the compiler groups.
					idx := uint(rng.IntN(3))
					for range rng.IntN(6) + 1 {
						run := specs.LinuxSyscall{Names: sc.Names, Action: sc.Action, ErrnoRet: sc.ErrnoRet}
						run.Args = []specs.LinuxSeccompArg{{Index: idx, Value: value(), ValueTwo: value(), Op: ops[rng.IntN(len(ops))]}}
						if rng.IntN(2) == 0 {
							run.Args[0].Value &= 0xffffffff
						}
						s.Syscalls = append(s.Syscalls, run)
					}
				}
			}
			prog, err := compile(s, p)
			if err != nil {
				t.Fatalf("%s: %v", goarch, err)
			}
			for range 50 {
				d := data{arch: arches[rng.IntN(len(arches))]}
				switch rng.IntN(4) {
				case 0:
					d.nr = rng.Uint32N(600)
				case 1:
					d.nr = rng.Uint32()
				default:
					if e, ok := lookupSyscall(p.native.table, names[rng.IntN(len(names))]); ok {
						d.nr = e
					}
				}
				if rng.IntN(8) == 0 {
					d.nr |= x32SyscallBit
				}
				for i := range d.args {
					d.args[i] = value()
					// Values near the ones in the rules hit the edges.
					if len(s.Syscalls) > 0 && rng.IntN(2) == 0 {
						sc := s.Syscalls[rng.IntN(len(s.Syscalls))]
						if len(sc.Args) > 0 {
							a := sc.Args[rng.IntN(len(sc.Args))]
							d.args[i] = a.Value + uint64(rng.IntN(3)) - 1
							if a.Op == specs.OpMaskedEqual {
								d.args[i] = a.ValueTwo | rng.Uint64()&^a.Value
							}
						}
					}
				}
				got, _ := run(t, prog, &d)
				if want := reference(s, p, &d); got != want {
					t.Fatalf("%s: section %+v\ninput %+v: got %s, want %s", goarch, s, d, retString(got), retString(want))
				}
			}
		}
	}
}
