package cgroups

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// cgroup2 has no devices controller: device access is decided by
// BPF_PROG_TYPE_CGROUP_DEVICE programs attached to the cgroup, run on
// every mknod and open of a device node by a process in it (or below it).
// The program gets a struct bpf_cgroup_dev_ctx and returns 1 to allow,
// 0 to refuse with EPERM.

// Offsets in struct bpf_cgroup_dev_ctx.
const (
	devCtxAccessType = 0 // device type | access << 16
	devCtxMajor      = 4
	devCtxMinor      = 8
)

// Device types in bpf_cgroup_dev_ctx (BPF_DEVCG_DEV_BLOCK, _CHAR).
const (
	devBlock = 1
	devChar  = 2
)

// Registers of the program.
const (
	regType   = asm.R2
	regAccess = asm.R3
	regMajor  = asm.R4
	regMinor  = asm.R5
	regTmp    = asm.R6
)

// deviceProgram compiles s to a cgroup device program: the exceptions
// checked in turn, the first match returning its verdict, and the
// default after them. On a default-deny state an allow exception matches
// only if it grants every access asked for (open for read and write needs
// both), and on a default-allow one a deny exception matches if it
// refuses any of them, as the v1 controller decides.
func deviceProgram(s deviceState) asm.Instructions {
	verdict := func(allow bool) int32 {
		if allow {
			return 1
		}
		return 0
	}
	insns := asm.Instructions{
		asm.LoadMem(regType, asm.R1, devCtxAccessType, asm.Word),
		asm.Mov.Reg32(regAccess, regType),
		asm.RSh.Imm32(regAccess, 16),
		asm.And.Imm32(regType, 0xffff),
		asm.LoadMem(regMajor, asm.R1, devCtxMajor, asm.Word),
		asm.LoadMem(regMinor, asm.R1, devCtxMinor, asm.Word),
	}
	// Each exception's checks jump to the next one's label when they fail;
	// the label goes on that one's first instruction.
	label := ""
	emit := func(ins asm.Instruction) {
		if label != "" {
			ins = ins.WithSymbol(label)
			label = ""
		}
		insns = append(insns, ins)
	}
	for i, e := range s.exceptions {
		next := "rule" + strconv.Itoa(i+1)
		typ := int32(devChar)
		if e.typ == 'b' {
			typ = devBlock
		}
		emit(asm.JNE.Imm(regType, typ, next))
		if e.access != accAll {
			emit(asm.Mov.Reg32(regTmp, regAccess))
			if e.allow {
				// Asked for something the rule does not grant: no match.
				emit(asm.And.Imm32(regTmp, int32(accAll&^e.access)))
				emit(asm.JNE.Imm(regTmp, 0, next))
			} else {
				// Asked for nothing the rule refuses: no match.
				emit(asm.And.Imm32(regTmp, int32(e.access)))
				emit(asm.JEq.Imm(regTmp, 0, next))
			}
		}
		if e.major != anyDevice {
			emit(asm.JNE.Imm(regMajor, int32(e.major), next))
		}
		if e.minor != anyDevice {
			emit(asm.JNE.Imm(regMinor, int32(e.minor), next))
		}
		emit(asm.Mov.Imm(asm.R0, verdict(e.allow)))
		emit(asm.Return())
		label = next
	}
	emit(asm.Mov.Imm(asm.R0, verdict(s.defaultAllow)))
	emit(asm.Return())
	return insns
}

// attachDeviceProgram loads s as a BPF program and attaches it to the
// cgroup2 directory dir, with BPF_F_ALLOW_MULTI so that programs of the
// cgroups above (systemd's, say) keep applying too: a device must pass
// them all. The attachment lasts as long as the cgroup, whatever becomes
// of this process.
//
// Loading and attaching are a bpf(2) call each: the cilium/ebpf loader
// would add feature probes to every container start, and its packages'
// start-up work to every process of this binary. A program once loaded is
// kept for the next containers with the same rules (see devicePrograms).
func attachDeviceProgram(dir string, s deviceState) error {
	var code bytes.Buffer
	if err := deviceProgram(s).Marshal(&code, nativeEndian()); err != nil {
		return fmt.Errorf("cgroups: device program: %w", err)
	}
	prog, kept, err := deviceProgramFD(code.Bytes())
	if err != nil {
		return fmt.Errorf("cgroups: load the device program: %w", err)
	}
	if !kept {
		defer unix.Close(prog)
	}
	// BPF_PROG_ATTACH wants a real descriptor of the directory, not O_PATH.
	fd, err := openat(unix.AT_FDCWD, dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return fmt.Errorf("cgroups: %w", &fs.PathError{Op: "open", Path: dir, Err: err})
	}
	defer unix.Close(fd)
	err = attachProgram(fd, prog)
	if err != nil && kept {
		// A cgroup made again at the same path may have the kept program
		// attached already, which the kernel refuses to do twice: a
		// program of its own, as before, attaches.
		if prog, err = loadProgram(code.Bytes()); err != nil {
			return fmt.Errorf("cgroups: load the device program: %w", err)
		}
		defer unix.Close(prog)
		err = attachProgram(fd, prog)
	}
	if err != nil {
		return fmt.Errorf("cgroups: attach the device program to %s: %w", dir, err)
	}
	return nil
}

// attachProgram attaches the device program prog to the cgroup2
// directory open as fd.
func attachProgram(fd, prog int) error {
	attach := progAttachAttr{
		targetFD:    uint32(fd),
		attachBPFFD: uint32(prog),
		attachType:  unix.BPF_CGROUP_DEVICE,
		attachFlags: unix.BPF_F_ALLOW_MULTI,
	}
	_, err := bpf(unix.BPF_PROG_ATTACH, unsafe.Pointer(&attach), unsafe.Sizeof(attach))
	return err
}

// devicePrograms holds the device programs this process has loaded, by
// their code, so that the containers of a long-lived process (the guest
// agent) with the same device rules, which is nearly all of them, share
// one: a load runs the kernel's verifier, which took 2 to 5 ms of a
// container's start under emulation (TCG). A program is attached by
// reference, so each cgroup keeps it as long as it needs it, whatever
// this process holds. The descriptors are close-on-exec, as the kernel
// makes them, and never closed: a few rule sets at most are kept, and
// programs for others are loaded for each container.
var devicePrograms struct {
	sync.Mutex
	fds map[string]int
}

// maxDevicePrograms bounds devicePrograms.
const maxDevicePrograms = 8

// deviceProgramFD returns a descriptor of the device program code, kept
// in devicePrograms (kept is true) or else loaded for the caller to close.
func deviceProgramFD(code []byte) (fd int, kept bool, err error) {
	devicePrograms.Lock()
	defer devicePrograms.Unlock()
	if fd, ok := devicePrograms.fds[string(code)]; ok {
		return fd, true, nil
	}
	if fd, err = loadProgram(code); err != nil {
		return -1, false, err
	}
	if len(devicePrograms.fds) >= maxDevicePrograms {
		return fd, false, nil
	}
	if devicePrograms.fds == nil {
		devicePrograms.fds = map[string]int{}
	}
	devicePrograms.fds[string(code)] = fd
	return fd, true, nil
}

// nativeEndian is binary.NativeEndian as a byte order asm knows.
func nativeEndian() binary.ByteOrder {
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		return binary.LittleEndian
	}
	return binary.BigEndian
}

// progLoadAttr is the start of union bpf_attr for BPF_PROG_LOAD.
type progLoadAttr struct {
	progType    uint32
	insnCnt     uint32
	insns       uint64
	license     uint64
	logLevel    uint32
	logSize     uint32
	logBuf      uint64
	kernVersion uint32
	progFlags   uint32
	progName    [16]byte
}

// progAttachAttr is the start of union bpf_attr for BPF_PROG_ATTACH.
type progAttachAttr struct {
	targetFD    uint32
	attachBPFFD uint32
	attachType  uint32
	attachFlags uint32
}

var license = []byte("Apache-2.0\x00")

// loadProgram loads code, marshalled instructions, as a cgroup device
// program and returns its descriptor. When the kernel refuses it, the
// load is tried again with the verifier's log, for the error.
func loadProgram(code []byte) (int, error) {
	defer runtime.KeepAlive(code)
	attr := progLoadAttr{
		progType: unix.BPF_PROG_TYPE_CGROUP_DEVICE,
		insnCnt:  uint32(len(code) / asm.InstructionSize),
		insns:    uint64(uintptr(unsafe.Pointer(&code[0]))),
		license:  uint64(uintptr(unsafe.Pointer(&license[0]))),
	}
	copy(attr.progName[:], "devbox_devices")
	fd, err := bpf(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err == nil {
		return fd, nil
	}
	log := make([]byte, 64<<10)
	attr.logLevel, attr.logSize = 1, uint32(len(log))
	attr.logBuf = uint64(uintptr(unsafe.Pointer(&log[0])))
	fd, err2 := bpf(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(log)
	if err2 == nil {
		return fd, nil // refused once, then taken: odd, but fine
	}
	if msg := strings.TrimSpace(unix.ByteSliceToString(log)); msg != "" {
		return -1, fmt.Errorf("%w: verifier: %s", err, msg)
	}
	return -1, err
}

// bpf calls bpf(2), retrying on EAGAIN as the kernel asks of program loads.
func bpf(cmd int, attr unsafe.Pointer, size uintptr) (int, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
		if errno == unix.EAGAIN || errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return -1, errno
		}
		return int(r), nil // a program's descriptor is close-on-exec
	}
}
