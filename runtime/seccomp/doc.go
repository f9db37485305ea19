// Package seccomp builds and installs the seccomp filter of a devbox
// container, in pure Go (no cgo, no libseccomp).
//
// Default gives Docker's default profile (from github.com/moby/profiles/seccomp)
// as an OCI seccomp section for a capability set; Compile turns any OCI seccomp
// section into a classic BPF program for this machine's architecture; Load
// installs a program on the calling thread; Apply does both. DefaultProgram
// is Compile(Default(caps)) cached per capability set, for a long-lived
// process that hands programs to containers' init stages.
//
// The compiled program follows what runc does with libseccomp, with these
// choices of its own:
//
//   - The audit architecture is checked first. The native architecture is
//     always filtered; its compat architecture (x86 on amd64, arm on arm64) is
//     filtered with its own syscall numbers when the section lists it; any
//     other architecture kills the process (SECCOMP_RET_KILL_PROCESS).
//   - x32 ABI syscalls on amd64 (syscall numbers with bit 30 set) fail with
//     ENOSYS, as on a kernel built or booted without x32 support, whatever the
//     section says.
//   - Syscall names this package does not know for an architecture (too new,
//     or not on that architecture) are skipped, as runc does.
//   - Syscalls numbered above the highest one the section names fail with
//     ENOSYS rather than the default errno, unless the default action already
//     lets syscalls through or is ENOSYS itself (runc's "-ENOSYS stub"), so
//     that programs fall back from syscalls newer than the profile.
//   - Rules whose action equals the default action are dropped (libseccomp
//     refuses them). For each syscall the remaining rules are tried in the
//     section's order and the first that matches decides; a rule without
//     arguments always matches. Conditions of one rule must all hold, except
//     that a rule naming the same argument twice matches when any of its
//     conditions holds (runc splits such a rule into one rule per condition).
//     Comparisons are unsigned 64-bit on 64-bit architectures and on the
//     low 32 bits on 32-bit ones.
//
// The program looks the syscall number up with a binary search over ranges
// of numbers that share an outcome, so that a syscall costs at most about
// twenty BPF instructions instead of a scan of the whole allow-list, and it
// is short (about 300 instructions for Docker's profile on amd64, both ABIs),
// because the kernel's cost of loading a filter grows with its length.
//
// Syscall names are resolved with the tables of
// github.com/elastic/go-seccomp-bpf/arch, copied by gen_tables.go into
// ztables.go as static arrays with a hash index: that package builds its maps
// at init, which would cost every devbox process a few tenths of a
// millisecond at start. TestTablesMatchElastic says when to regenerate.
//
// The package is Linux-only; on other systems it holds only this comment.
package seccomp

//go:generate go run gen_tables.go
