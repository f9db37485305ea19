package seccomp

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// This file is a small classic-BPF assembler: instructions refer to symbolic
// labels, and assemble resolves them. Classic BPF only jumps forwards, and a
// conditional jump reaches at most 255 instructions ahead; a conditional jump
// whose target is further away gets an unconditional "ja" trampoline (which
// reaches 2^32 ahead) right after it. Adding trampolines moves later code, so
// the layout is repeated until no jump needs a new one.

// BPF opcodes used by the compiler (linux/bpf_common.h).
const (
	opLdAbsW = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	opAndK   = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K
	opJa     = unix.BPF_JMP | unix.BPF_JA
	opJeqK   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	opJgtK   = unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K
	opJgeK   = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
	opJsetK  = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
	opRetK   = unix.BPF_RET | unix.BPF_K
)

// maxInsns is the kernel's limit on the length of a classic BPF program
// (BPF_MAXINSNS).
const maxInsns = 4096

// label names a position in the program; labels are bound by asm.bind.
type label int32

// insn is one instruction before assembly. For a conditional jump, jt and jf
// are its targets. (The assembler emits "ja" only as trampolines.)
type insn struct {
	code   uint16
	k      uint32
	jt, jf label

	// Set during layout.
	pos        int32 // index of the instruction in the output
	farT, farF bool  // target needs a trampoline
}

func (in *insn) isCond() bool {
	return in.code&0x07 == unix.BPF_JMP && in.code != opJa
}

// size is the number of output instructions for in, with its trampolines.
func (in *insn) size() int32 {
	n := int32(1)
	if in.farT {
		n++
	}
	if in.farF {
		n++
	}
	return n
}

// asm collects a program.
type asm struct {
	insns  []insn
	labels []int32 // label → index into insns where it is bound; -1 while unbound
}

// newAsm returns an assembler with room for about n instructions.
func newAsm(n int) *asm {
	return &asm{insns: make([]insn, 0, n), labels: make([]int32, 0, n)}
}

func (a *asm) newLabel() label {
	a.labels = append(a.labels, -1)
	return label(len(a.labels) - 1)
}

// bind places l at the next instruction emitted.
func (a *asm) bind(l label) {
	if a.labels[l] != -1 {
		panic("seccomp: label bound twice")
	}
	a.labels[l] = int32(len(a.insns))
}

func (a *asm) ldAbs(off uint32) { a.insns = append(a.insns, insn{code: opLdAbsW, k: off}) }
func (a *asm) and(k uint32)     { a.insns = append(a.insns, insn{code: opAndK, k: k}) }
func (a *asm) ret(k uint32)     { a.insns = append(a.insns, insn{code: opRetK, k: k}) }

// jump emits "if A <op> k goto t else goto f" for op one of opJeqK, opJgtK,
// opJgeK and opJsetK.
func (a *asm) jump(op uint16, k uint32, t, f label) {
	a.insns = append(a.insns, insn{code: op, k: k, jt: t, jf: f})
}

// jumpNext is jump with the false branch falling through to the next
// instruction emitted.
func (a *asm) jumpNext(op uint16, k uint32, t label) {
	next := a.newLabel()
	a.jump(op, k, t, next)
	a.bind(next)
}

// assemble resolves labels and returns the program.
func (a *asm) assemble() ([]unix.SockFilter, error) {
	for l, at := range a.labels {
		if at == -1 {
			return nil, fmt.Errorf("seccomp: internal error: label %d never bound", l)
		}
	}
	total := int32(0)
	// where returns the output position of label l.
	where := func(l label) int32 {
		if i := a.labels[l]; int(i) < len(a.insns) {
			return a.insns[i].pos
		}
		return total // bound after the last instruction: caught by verify
	}
	for {
		pos := int32(0)
		for i := range a.insns {
			a.insns[i].pos = pos
			pos += a.insns[i].size()
		}
		total = pos
		if pos > maxInsns {
			return nil, fmt.Errorf("seccomp: filter has %d instructions, more than the kernel's limit of %d", pos, maxInsns)
		}
		grew := false
		for i := range a.insns {
			in := &a.insns[i]
			if !in.isCond() {
				continue
			}
			// Offsets count from the instruction after the jump.
			base := in.pos + 1
			if !in.farT && where(in.jt)-base > 255 {
				in.farT, grew = true, true
			}
			if !in.farF && where(in.jf)-base > 255 {
				in.farF, grew = true, true
			}
		}
		if !grew {
			break
		}
	}

	out := make([]unix.SockFilter, 0, total)
	for i := range a.insns {
		in := &a.insns[i]
		switch {
		case in.isCond():
			base := in.pos + 1
			jt, jf := where(in.jt)-base, where(in.jf)-base
			var tramp [2]unix.SockFilter
			n := int32(0)
			if in.farT {
				tramp[n] = unix.SockFilter{Code: opJa, K: uint32(jt - n - 1)}
				jt = n
				n++
			}
			if in.farF {
				tramp[n] = unix.SockFilter{Code: opJa, K: uint32(jf - n - 1)}
				jf = n
				n++
			}
			if jt < 0 || jt > 255 || jf < 0 || jf > 255 {
				return nil, errors.New("seccomp: internal error: conditional jump out of range")
			}
			out = append(out, unix.SockFilter{Code: in.code, Jt: uint8(jt), Jf: uint8(jf), K: in.k})
			out = append(out, tramp[:n]...)
		default:
			out = append(out, unix.SockFilter{Code: in.code, K: in.k})
		}
	}
	if err := verify(out); err != nil {
		return nil, fmt.Errorf("seccomp: internal error: %w", err)
	}
	return out, nil
}

// verify checks prog the way the kernel's classic BPF checker does for the
// instructions this package emits: every jump lands inside the program, no
// instruction is unknown, argument loads are aligned and inside
// seccomp_data, and the program ends with a return.
func verify(prog []unix.SockFilter) error {
	if len(prog) == 0 || len(prog) > maxInsns {
		return fmt.Errorf("program length %d out of range", len(prog))
	}
	for i, in := range prog {
		switch in.Code {
		case opLdAbsW:
			if in.K%4 != 0 || in.K >= seccompDataSize {
				return fmt.Errorf("instruction %d: load at offset %d", i, in.K)
			}
		case opAndK, opRetK:
		case opJa:
			if uint64(i)+1+uint64(in.K) >= uint64(len(prog)) {
				return fmt.Errorf("instruction %d: jump past the end", i)
			}
		case opJeqK, opJgtK, opJgeK, opJsetK:
			if i+1+int(in.Jt) >= len(prog) || i+1+int(in.Jf) >= len(prog) {
				return fmt.Errorf("instruction %d: jump past the end", i)
			}
		default:
			return fmt.Errorf("instruction %d: unexpected opcode %#x", i, in.Code)
		}
	}
	if prog[len(prog)-1].Code != opRetK {
		return errors.New("program does not end with a return")
	}
	return nil
}
