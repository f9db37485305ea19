package seccomp

import (
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// archInfo describes one syscall ABI as the kernel reports it to seccomp.
type archInfo struct {
	name   specs.Arch // the OCI / libseccomp name
	audit  uint32     // AUDIT_ARCH_* in seccomp_data.arch
	bits64 bool       // arguments are 64-bit (else only the low 32 bits count)
	table  sysTable   // syscall names → numbers
	// refuseX32 makes syscalls with __X32_SYSCALL_BIT fail with ENOSYS. It is
	// set on x86_64, which shares its audit arch with the x32 ABI.
	refuseX32 bool
}

// x32SyscallBit marks x32 ABI syscall numbers on x86_64 (__X32_SYSCALL_BIT).
const x32SyscallBit = 0x40000000

var (
	archX86_64  = &archInfo{name: specs.ArchX86_64, audit: unix.AUDIT_ARCH_X86_64, bits64: true, table: sysTable{sysX86_64[:], idxX86_64[:]}, refuseX32: true}
	archI386    = &archInfo{name: specs.ArchX86, audit: unix.AUDIT_ARCH_I386, table: sysTable{sysI386[:], idxI386[:]}}
	archAArch64 = &archInfo{name: specs.ArchAARCH64, audit: unix.AUDIT_ARCH_AARCH64, bits64: true, table: sysTable{sysAArch64[:], idxAArch64[:]}}
	archARM     = &archInfo{name: specs.ArchARM, audit: unix.AUDIT_ARCH_ARM, table: sysTable{sysARM[:], idxARM[:]}}
)

// platform is what a filter for one GOARCH covers: the native ABI, always
// filtered, and the compat ABIs the kernel may run beside it, filtered only
// when the OCI section lists them.
type platform struct {
	native *archInfo
	compat []*archInfo
}

var platforms = map[string]platform{
	"amd64": {native: archX86_64, compat: []*archInfo{archI386}},
	"386":   {native: archI386},
	"arm64": {native: archAArch64, compat: []*archInfo{archARM}},
	"arm":   {native: archARM},
}

// nativePlatform returns the platform of the running binary.
func nativePlatform() (platform, bool) {
	p, ok := platforms[runtime.GOARCH]
	return p, ok
}
