package seccomp

import (
	"encoding/binary"
	"fmt"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// This file holds the test tools: a classic BPF interpreter for the
// instructions the compiler emits, and a reference model of what a compiled
// section must return, written straight from the rules in the package
// documentation without the compiler's ranges and trees.

// data is a struct seccomp_data.
type data struct {
	nr   uint32
	arch uint32
	ip   uint64
	args [maxArgs]uint64
}

func (d *data) bytes() []byte {
	b := make([]byte, seccompDataSize)
	binary.LittleEndian.PutUint32(b[0:], d.nr)
	binary.LittleEndian.PutUint32(b[4:], d.arch)
	binary.LittleEndian.PutUint64(b[8:], d.ip)
	for i, a := range d.args {
		binary.LittleEndian.PutUint64(b[16+8*i:], a)
	}
	return b
}

// run interprets prog on d like the kernel does and returns the filter's
// return value and the number of instructions executed.
func run(t testing.TB, prog []unix.SockFilter, d *data) (uint32, int) {
	t.Helper()
	if err := verify(prog); err != nil {
		t.Fatalf("invalid program: %v", err)
	}
	mem := d.bytes()
	var acc uint32
	steps := 0
	for pc := 0; ; pc++ {
		if pc >= len(prog) {
			t.Fatalf("ran off the end of the program")
		}
		steps++
		in := prog[pc]
		cond := func(ok bool) {
			if ok {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		}
		switch in.Code {
		case opLdAbsW:
			acc = binary.LittleEndian.Uint32(mem[in.K:])
		case opAndK:
			acc &= in.K
		case opJa:
			pc += int(in.K)
		case opJeqK:
			cond(acc == in.K)
		case opJgtK:
			cond(acc > in.K)
		case opJgeK:
			cond(acc >= in.K)
		case opJsetK:
			cond(acc&in.K != 0)
		case opRetK:
			return in.K, steps
		default:
			t.Fatalf("unexpected opcode %#x at %d", in.Code, pc)
		}
	}
}

// refAction is the reference translation of OCI actions.
func refAction(act specs.LinuxSeccompAction, errnoRet *uint) uint32 {
	e := uint32(1) // EPERM
	if errnoRet != nil {
		e = uint32(*errnoRet)
	}
	switch act {
	case specs.ActKill, specs.ActKillThread:
		return 0
	case specs.ActKillProcess:
		return 0x80000000
	case specs.ActTrap:
		return 0x00030000
	case specs.ActErrno:
		return 0x00050000 | e
	case specs.ActTrace:
		return 0x7ff00000 | e
	case specs.ActLog:
		return 0x7ffc0000
	case specs.ActAllow:
		return 0x7fff0000
	}
	panic("unknown action " + string(act))
}

const (
	refKillProcess = 0x80000000
	refENOSYS      = 0x00050000 | 38
)

// reference returns what the filter compiled from s for platform p must
// return for d.
func reference(s *specs.LinuxSeccomp, p platform, d *data) uint32 {
	var arch *archInfo
	if d.arch == p.native.audit {
		arch = p.native
	}
	for _, c := range p.compat {
		for _, a := range s.Architectures {
			if a == c.name && d.arch == c.audit {
				arch = c
			}
		}
	}
	if arch == nil {
		return refKillProcess
	}
	if arch == archX86_64 && d.nr&0x40000000 != 0 {
		return refENOSYS
	}
	def := refAction(s.DefaultAction, s.DefaultErrnoRet)
	maxNr, haveMax := uint32(0), false
	for _, sc := range s.Syscalls {
		for _, name := range sc.Names {
			if nr, ok := lookupSyscall(arch.table, name); ok && (!haveMax || nr > maxNr) {
				maxNr, haveMax = nr, true
			}
		}
	}
	for _, sc := range s.Syscalls {
		ret := refAction(sc.Action, sc.ErrnoRet)
		if ret == def {
			continue
		}
		named := false
		for _, name := range sc.Names {
			if nr, ok := lookupSyscall(arch.table, name); ok && nr == d.nr {
				named = true
			}
		}
		if named && refArgsMatch(sc.Args, d, arch.bits64) {
			return ret
		}
	}
	allowish := s.DefaultAction == specs.ActAllow || s.DefaultAction == specs.ActLog || s.DefaultAction == specs.ActTrace
	if !allowish && def != refENOSYS && haveMax && d.nr > maxNr {
		return refENOSYS
	}
	return def
}

func refArgsMatch(args []specs.LinuxSeccompArg, d *data, bits64 bool) bool {
	if len(args) == 0 {
		return true
	}
	seen := map[uint]bool{}
	repeated := false
	for _, a := range args {
		repeated = repeated || seen[a.Index]
		seen[a.Index] = true
	}
	for _, a := range args {
		ok := refCompare(a, d.args[a.Index], bits64)
		if repeated && ok {
			return true // any condition
		}
		if !repeated && !ok {
			return false // all conditions
		}
	}
	return !repeated
}

func refCompare(a specs.LinuxSeccompArg, arg uint64, bits64 bool) bool {
	v, v2 := a.Value, a.ValueTwo
	if !bits64 {
		arg, v, v2 = arg&0xffffffff, v&0xffffffff, v2&0xffffffff
	}
	switch a.Op {
	case specs.OpEqualTo:
		return arg == v
	case specs.OpNotEqual:
		return arg != v
	case specs.OpGreaterThan:
		return arg > v
	case specs.OpGreaterEqual:
		return arg >= v
	case specs.OpLessThan:
		return arg < v
	case specs.OpLessEqual:
		return arg <= v
	case specs.OpMaskedEqual:
		return arg&v == v2
	}
	panic("unknown op " + string(a.Op))
}

// retString names a filter return value in test failures.
func retString(r uint32) string {
	switch r & 0xffff0000 {
	case 0x80000000:
		return "KILL_PROCESS"
	case 0:
		return "KILL_THREAD"
	case 0x00030000:
		return "TRAP"
	case 0x00050000:
		return fmt.Sprintf("ERRNO(%d)", r&0xffff)
	case 0x7ff00000:
		return fmt.Sprintf("TRACE(%d)", r&0xffff)
	case 0x7ffc0000:
		return "LOG"
	case 0x7fff0000:
		return "ALLOW"
	}
	return fmt.Sprintf("%#x", r)
}

func nr(t testing.TB, arch *archInfo, name string) uint32 {
	t.Helper()
	n, ok := lookupSyscall(arch.table, name)
	if !ok {
		t.Fatalf("no syscall %s on %s", name, arch.name)
	}
	return n
}
