package seccomp

import (
	"errors"
	"fmt"
	"runtime"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Layout of struct seccomp_data, the input of a seccomp filter:
//
//	struct seccomp_data {
//		int   nr;                  // offset 0
//		__u32 arch;                // offset 4
//		__u64 instruction_pointer; // offset 8
//		__u64 args[6];             // offset 16
//	};
//
// Every supported architecture is little-endian, so the low half of args[i]
// comes first.
const (
	offNr           = 0
	offArch         = 4
	offArgs         = 16
	seccompDataSize = 64
	maxArgs         = 6
)

func argLo(i uint) uint32 { return offArgs + 8*uint32(i) }
func argHi(i uint) uint32 { return offArgs + 8*uint32(i) + 4 }

// retErrno is the filter's return value for "fail with errno e".
func retErrno(e unix.Errno) uint32 { return unix.SECCOMP_RET_ERRNO | uint32(e) }

// Compile turns an OCI seccomp section into a classic BPF program for the
// architecture this binary runs on (amd64, arm64, 386 or arm), ready for Load.
// See the package documentation for how the section is read. Syscall names
// unknown on an architecture are skipped; an unknown action, operator,
// architecture or flag, SCMP_ACT_NOTIFY, or a listener path is an error.
func Compile(s *specs.LinuxSeccomp) ([]unix.SockFilter, error) {
	p, ok := nativePlatform()
	if !ok {
		return nil, fmt.Errorf("seccomp: architecture %s is not supported", runtime.GOARCH)
	}
	return compile(s, p)
}

// rule is one OCI syscall rule for one syscall, ready to compile: it matches
// when all of its conditions hold.
type rule struct {
	ret   uint32
	conds []specs.LinuxSeccompArg
}

// outcome is what the filter does with one range of syscall numbers: return
// ret, or, when rules is not empty, try the rules in order and return ret if
// none matches.
type outcome struct {
	ret   uint32
	rules []rule
}

// segment is a range of syscall numbers, from start up to the start of the
// next segment, that share an outcome.
type segment struct {
	start uint32
	outcome
}

// section is an OCI seccomp section checked and translated into return
// values, shared by the architectures of one program.
type section struct {
	defRet uint32
	// enosys is set when syscalls numbered above the highest one the
	// section names should fail with ENOSYS instead of defRet.
	enosys   bool
	syscalls []syscallRules
}

type syscallRules struct {
	names []string
	rules []rule // rules for one syscall, empty when the action is the default
}

func compile(s *specs.LinuxSeccomp, p platform) ([]unix.SockFilter, error) {
	sec, err := parseSection(s)
	if err != nil {
		return nil, err
	}
	arches := []*archInfo{p.native}
	for _, a := range p.compat {
		if slices.Contains(s.Architectures, a.name) {
			arches = append(arches, a)
		}
	}

	a := newAsm(1024)
	// Dispatch on the audit architecture; any other one kills the process
	// (libseccomp's "bad arch" action, made process-wide).
	a.ldAbs(offArch)
	starts := make([]label, len(arches))
	for i, arch := range arches {
		starts[i] = a.newLabel()
		a.jumpNext(opJeqK, arch.audit, starts[i])
	}
	a.ret(unix.SECCOMP_RET_KILL_PROCESS)
	for i, arch := range arches {
		a.bind(starts[i])
		a.emitArch(arch, sec.segments(arch))
	}
	return a.assemble()
}

// parseSection validates s and translates its actions.
func parseSection(s *specs.LinuxSeccomp) (*section, error) {
	if s == nil {
		return nil, errors.New("seccomp: no seccomp section")
	}
	if s.ListenerPath != "" {
		return nil, errors.New("seccomp: listenerPath (seccomp notify) is not supported")
	}
	for _, a := range s.Architectures {
		if !knownArches[a] {
			return nil, fmt.Errorf("seccomp: unknown architecture %q", a)
		}
	}
	if _, err := Flags(s); err != nil {
		return nil, err
	}
	if s.DefaultAction == "" {
		return nil, errors.New("seccomp: no default action")
	}
	defRet, err := retValue(s.DefaultAction, s.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("seccomp: default action: %w", err)
	}
	sec := &section{
		defRet: defRet,
		// runc's "-ENOSYS stub": only when syscalls are otherwise refused,
		// and not when they already fail with ENOSYS.
		enosys: !isAllowAction(s.DefaultAction) && defRet != retErrno(unix.ENOSYS),
	}
	for i, sc := range s.Syscalls {
		if len(sc.Names) == 0 {
			return nil, fmt.Errorf("seccomp: syscall rule %d names no syscall", i)
		}
		for _, name := range sc.Names {
			if name == "" {
				return nil, fmt.Errorf("seccomp: syscall rule %d has an empty name", i)
			}
		}
		ret, err := retValue(sc.Action, sc.ErrnoRet)
		if err != nil {
			return nil, fmt.Errorf("seccomp: syscall rule %d (%s): %w", i, sc.Names[0], err)
		}
		repeated := false
		seen := [maxArgs]bool{}
		for _, arg := range sc.Args {
			if arg.Index >= maxArgs {
				return nil, fmt.Errorf("seccomp: syscall rule %d (%s): argument index %d out of range", i, sc.Names[0], arg.Index)
			}
			if !knownOps[arg.Op] {
				return nil, fmt.Errorf("seccomp: syscall rule %d (%s): unknown operator %q", i, sc.Names[0], arg.Op)
			}
			repeated = repeated || seen[arg.Index]
			seen[arg.Index] = true
		}
		entry := syscallRules{names: sc.Names}
		switch {
		case ret == defRet:
			// Redundant with the default action: libseccomp refuses such
			// rules and runc drops them. The names still count for the
			// ENOSYS stub.
		case repeated:
			// Two conditions on one argument: runc adds each condition as a
			// rule of its own, so any of them matching is enough.
			for _, arg := range sc.Args {
				entry.rules = append(entry.rules, rule{ret: ret, conds: []specs.LinuxSeccompArg{arg}})
			}
		default:
			entry.rules = []rule{{ret: ret, conds: sc.Args}}
		}
		sec.syscalls = append(sec.syscalls, entry)
	}
	return sec, nil
}

// segments returns the outcome of every syscall number on arch, as ranges
// sorted by start, the first starting at 0.
func (sec *section) segments(arch *archInfo) []segment {
	// Every (syscall number, rule entry) pair as nr<<32 | entry, so that
	// sorting orders by number, then by the section's order.
	hits := make([]uint64, 0, 512)
	maxNr, haveMax := uint32(0), false
	for i, sc := range sec.syscalls {
		for _, name := range sc.names {
			nr, ok := lookupSyscall(arch.table, name)
			if !ok {
				continue // unknown here: too new, or not on this architecture
			}
			if !haveMax || nr > maxNr {
				maxNr, haveMax = nr, true
			}
			if len(sc.rules) > 0 {
				hits = append(hits, uint64(nr)<<32|uint64(i))
			}
		}
	}
	slices.Sort(hits)
	hitNr := func(h uint64) uint32 { return uint32(h >> 32) }
	hitRules := func(h uint64) []rule { return sec.syscalls[uint32(h)].rules }

	def := outcome{ret: sec.defRet}
	segs := make([]segment, 0, 128)
	add := func(start uint32, o outcome) {
		if n := len(segs); n > 0 && len(o.rules) == 0 && len(segs[n-1].rules) == 0 && segs[n-1].ret == o.ret {
			return // same plain outcome as the range before: extend it
		}
		segs = append(segs, segment{start: start, outcome: o})
	}
	cur := uint32(0) // first number not yet covered
	for i := 0; i < len(hits); {
		nr := hitNr(hits[i])
		j := i + 1
		for j < len(hits) && hitNr(hits[j]) == nr {
			j++
		}
		if nr > cur {
			add(cur, def)
		}
		if first := hitRules(hits[i])[0]; len(first.conds) == 0 {
			add(nr, outcome{ret: first.ret})
		} else {
			// Conditional rules, in order, up to the first one without
			// conditions: rules after it can never match.
			var rules []rule
		collect:
			for _, h := range hits[i:j] {
				for _, r := range hitRules(h) {
					rules = append(rules, r)
					if len(r.conds) == 0 {
						break collect
					}
				}
			}
			add(nr, outcome{ret: sec.defRet, rules: rules})
		}
		cur = nr + 1
		i = j
	}
	if sec.enosys && haveMax {
		if maxNr >= cur {
			add(cur, def)
		}
		add(maxNr+1, outcome{ret: retErrno(unix.ENOSYS)})
	} else {
		add(cur, def)
	}
	return segs
}

// emitArch emits the filter for one architecture; it starts with the
// architecture already checked. The layout is: the binary search over the
// syscall number, made of jumps only; then one return instruction for each
// plain outcome the search leads to; then the argument checks of the
// syscalls that have some. Sharing the returns keeps the program short,
// which matters because the kernel's cost of loading a filter grows with its
// length.
func (a *asm) emitArch(arch *archInfo, segs []segment) {
	a.ldAbs(offNr)
	if arch.refuseX32 {
		x32, native := a.newLabel(), a.newLabel()
		a.jump(opJsetK, x32SyscallBit, x32, native)
		a.bind(x32)
		a.ret(retErrno(unix.ENOSYS))
		a.bind(native)
	}
	if len(segs) == 1 {
		a.emitOutcome(arch, segs[0].outcome)
		return
	}

	type plainRet struct {
		ret uint32
		at  label
	}
	type block struct {
		o  outcome
		at label
	}
	var rets []plainRet
	var blocks []block
	target := func(o outcome) label {
		if len(o.rules) > 0 {
			l := a.newLabel()
			blocks = append(blocks, block{o, l})
			return l
		}
		for _, r := range rets {
			if r.ret == o.ret {
				return r.at
			}
		}
		l := a.newLabel()
		rets = append(rets, plainRet{o.ret, l})
		return l
	}
	root := a.newLabel()
	a.emitTree(segs, root, target)
	for _, r := range rets {
		a.bind(r.at)
		a.ret(r.ret)
	}
	for _, b := range blocks {
		a.bind(b.at)
		a.emitOutcome(arch, b.o)
	}
}

// emitTree emits, at label self, a binary search over segs (two or more) on
// the syscall number in A. Each node is one "jge" whose branches go to the
// node of a half, or, for a half of one segment, to target(its outcome).
func (a *asm) emitTree(segs []segment, self label, target func(outcome) label) {
	mid := len(segs) / 2
	low, high := segs[:mid], segs[mid:]
	branch := func(half []segment) label {
		if len(half) == 1 {
			return target(half[0].outcome)
		}
		return a.newLabel()
	}
	lowAt, highAt := branch(low), branch(high)
	a.bind(self)
	a.jump(opJgeK, segs[mid].start, highAt, lowAt)
	if len(low) > 1 {
		a.emitTree(low, lowAt, target)
	}
	if len(high) > 1 {
		a.emitTree(high, highAt, target)
	}
}

// emitOutcome emits the rules of o, each falling through to the next when it
// does not match, then o's own return.
func (a *asm) emitOutcome(arch *archInfo, o outcome) {
	rules := o.rules
	for len(rules) > 0 {
		if len(rules[0].conds) == 0 {
			a.ret(rules[0].ret)
			return
		}
		next := a.newLabel()
		if n := groupLen(arch, rules); n > 0 {
			a.emitGroup(arch, rules[:n], next)
			rules = rules[n:]
		} else {
			for _, c := range rules[0].conds {
				pass := a.newLabel()
				a.emitCond(arch, c, pass, next)
				a.bind(pass)
			}
			a.ret(rules[0].ret)
			rules = rules[1:]
		}
		a.bind(next)
	}
	a.ret(o.ret)
}

// A group is a run of rules with the same return value, each with a single
// condition on the same argument, that can share one load of the argument:
// Docker's rules for socket (a list of allowed address families) and
// personality (a list of allowed personas) are groups.
//
// On 32-bit architectures any comparison but MASKED_EQ tests only the low
// half. On 64-bit ones, "arg == v" for values v with the same high half H,
// and "arg < v", "arg <= v" for v below 2^32 (then H is 0), all hold only when
// the argument's high half is H, and then depend on its low half only.

// groupKey tells whether c can be in a group, and the high half H it needs.
func groupKey(arch *archInfo, c specs.LinuxSeccompArg) (uint32, bool) {
	hi := uint32(c.Value >> 32)
	switch {
	case c.Op == specs.OpMaskedEqual:
		return 0, false
	case !arch.bits64:
		return 0, true
	case c.Op == specs.OpEqualTo:
		return hi, true
	case (c.Op == specs.OpLessThan || c.Op == specs.OpLessEqual) && hi == 0:
		return 0, true
	}
	return 0, false
}

// groupLen returns the length of the group at the start of rules, or 0 if
// the first rule cannot start one.
func groupLen(arch *archInfo, rules []rule) int {
	if len(rules[0].conds) != 1 {
		return 0
	}
	first := rules[0].conds[0]
	key, ok := groupKey(arch, first)
	if !ok {
		return 0
	}
	n := 1
	for _, r := range rules[1:] {
		if len(r.conds) != 1 || r.ret != rules[0].ret || r.conds[0].Index != first.Index {
			break
		}
		if k, ok := groupKey(arch, r.conds[0]); !ok || k != key {
			break
		}
		n++
	}
	return n
}

// emitGroup emits a group: load the argument once, then test each rule's
// condition on its low half, returning the rules' value on the first that
// holds and jumping to next when none does.
func (a *asm) emitGroup(arch *archInfo, rules []rule, next label) {
	idx := rules[0].conds[0].Index
	if arch.bits64 {
		key, _ := groupKey(arch, rules[0].conds[0])
		low := a.newLabel()
		a.ldAbs(argHi(idx))
		a.jump(opJeqK, key, low, next)
		a.bind(low)
	}
	a.ldAbs(argLo(idx))
	match := a.newLabel()
	for i, r := range rules {
		c := r.conds[0]
		v := uint32(c.Value)
		fail := next
		if i < len(rules)-1 {
			fail = a.newLabel()
		}
		switch c.Op {
		case specs.OpEqualTo:
			a.jump(opJeqK, v, match, fail)
		case specs.OpNotEqual:
			a.jump(opJeqK, v, fail, match)
		case specs.OpGreaterThan:
			a.jump(opJgtK, v, match, fail)
		case specs.OpGreaterEqual:
			a.jump(opJgeK, v, match, fail)
		case specs.OpLessThan: // !(A >= v)
			a.jump(opJgeK, v, fail, match)
		case specs.OpLessEqual: // !(A > v)
			a.jump(opJgtK, v, fail, match)
		}
		if fail != next {
			a.bind(fail)
		}
	}
	a.bind(match)
	a.ret(rules[0].ret)
}

// emitCond emits a test of one argument condition that jumps to pass or fail.
// On 64-bit architectures the comparison is unsigned over 64 bits, made of
// 32-bit halves: the high halves decide unless they are equal. On 32-bit
// architectures only the low halves count, as in libseccomp.
func (a *asm) emitCond(arch *archInfo, c specs.LinuxSeccompArg, pass, fail label) {
	lo, hi := uint32(c.Value), uint32(c.Value>>32)
	if c.Op == specs.OpMaskedEqual {
		dLo, dHi := uint32(c.ValueTwo), uint32(c.ValueTwo>>32)
		if arch.bits64 {
			low := a.newLabel()
			a.ldAbs(argHi(c.Index))
			a.and(hi)
			a.jump(opJeqK, dHi, low, fail)
			a.bind(low)
		}
		a.ldAbs(argLo(c.Index))
		a.and(lo)
		a.jump(opJeqK, dLo, pass, fail)
		return
	}

	// cmp is the final test, on the low halves: jump to t when
	// "A op k" holds, else to f.
	type cmp struct {
		op   uint16
		t, f label
	}
	var last cmp
	switch c.Op {
	case specs.OpEqualTo:
		last = cmp{opJeqK, pass, fail}
	case specs.OpNotEqual:
		last = cmp{opJeqK, fail, pass}
	case specs.OpGreaterThan:
		last = cmp{opJgtK, pass, fail}
	case specs.OpGreaterEqual:
		last = cmp{opJgeK, pass, fail}
	case specs.OpLessThan: // !(A >= k)
		last = cmp{opJgeK, fail, pass}
	case specs.OpLessEqual: // !(A > k)
		last = cmp{opJgtK, fail, pass}
	}
	if arch.bits64 {
		a.ldAbs(argHi(c.Index))
		low := a.newLabel()
		switch c.Op {
		case specs.OpEqualTo:
			a.jump(opJeqK, hi, low, fail)
		case specs.OpNotEqual:
			a.jump(opJeqK, hi, low, pass)
		case specs.OpGreaterThan, specs.OpGreaterEqual:
			// hi > k.hi: pass; hi < k.hi: fail; equal: compare low halves.
			eq := a.newLabel()
			a.jump(opJgtK, hi, pass, eq)
			a.bind(eq)
			a.jump(opJeqK, hi, low, fail)
		case specs.OpLessThan, specs.OpLessEqual:
			// hi < k.hi: pass; hi > k.hi: fail; equal: compare low halves.
			ge := a.newLabel()
			a.jump(opJgeK, hi, ge, pass)
			a.bind(ge)
			a.jump(opJgtK, hi, fail, low)
		}
		a.bind(low)
	}
	a.ldAbs(argLo(c.Index))
	a.jump(last.op, lo, last.t, last.f)
}

// retValue translates an OCI action into the filter's return value.
func retValue(act specs.LinuxSeccompAction, errnoRet *uint) (uint32, error) {
	data := uint32(unix.EPERM)
	if errnoRet != nil {
		if *errnoRet > unix.SECCOMP_RET_DATA {
			return 0, fmt.Errorf("errnoRet %d out of range", *errnoRet)
		}
		data = uint32(*errnoRet)
	}
	switch act {
	case specs.ActKill, specs.ActKillThread:
		return unix.SECCOMP_RET_KILL_THREAD, nil
	case specs.ActKillProcess:
		return unix.SECCOMP_RET_KILL_PROCESS, nil
	case specs.ActTrap:
		return unix.SECCOMP_RET_TRAP, nil
	case specs.ActErrno:
		return unix.SECCOMP_RET_ERRNO | data, nil
	case specs.ActTrace:
		return unix.SECCOMP_RET_TRACE | data, nil
	case specs.ActAllow:
		return unix.SECCOMP_RET_ALLOW, nil
	case specs.ActLog:
		return unix.SECCOMP_RET_LOG, nil
	case specs.ActNotify:
		return 0, errors.New("SCMP_ACT_NOTIFY is not supported")
	}
	return 0, fmt.Errorf("unknown action %q", act)
}

// isAllowAction tells whether act lets the syscall run (as runc counts it for
// the ENOSYS stub: a tracer is expected to handle unknown syscalls itself).
func isAllowAction(act specs.LinuxSeccompAction) bool {
	return act == specs.ActAllow || act == specs.ActLog || act == specs.ActTrace
}

var knownOps = map[specs.LinuxSeccompOperator]bool{
	specs.OpNotEqual:     true,
	specs.OpLessThan:     true,
	specs.OpLessEqual:    true,
	specs.OpEqualTo:      true,
	specs.OpGreaterEqual: true,
	specs.OpGreaterThan:  true,
	specs.OpMaskedEqual:  true,
}

var knownArches = map[specs.Arch]bool{
	specs.ArchX86: true, specs.ArchX86_64: true, specs.ArchX32: true,
	specs.ArchARM: true, specs.ArchAARCH64: true,
	specs.ArchMIPS: true, specs.ArchMIPS64: true, specs.ArchMIPS64N32: true,
	specs.ArchMIPSEL: true, specs.ArchMIPSEL64: true, specs.ArchMIPSEL64N32: true,
	specs.ArchPPC: true, specs.ArchPPC64: true, specs.ArchPPC64LE: true,
	specs.ArchS390: true, specs.ArchS390X: true,
	specs.ArchPARISC: true, specs.ArchPARISC64: true,
	specs.ArchRISCV64: true, specs.ArchLOONGARCH64: true,
	specs.ArchM68K: true, specs.ArchSH: true, specs.ArchSHEB: true,
}
