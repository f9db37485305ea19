package guest

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// archInfo is what the build needs to know about a guest architecture.
type archInfo struct {
	machine elf.Machine
	// triplet is Debian's multiarch directory name.
	triplet string
}

var arches = map[string]archInfo{
	"amd64": {elf.EM_X86_64, "x86_64-linux-gnu"},
	"arm64": {elf.EM_AARCH64, "aarch64-linux-gnu"},
}

// checkExecutable checks that the ELF file at p runs on arch and, if
// static is set, needs no dynamic loader (it will be the guest's /init, or
// run before any library is there).
func checkExecutable(what, p, arch string, static bool) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, p, err)
	}
	defer f.Close()
	if want := arches[arch].machine; f.Machine != want {
		return fmt.Errorf("%s %s is built for %v, the guest is %s (%v)", what, p, f.Machine, arch, want)
	}
	if static && interpreter(f) != "" {
		return fmt.Errorf("%s %s is dynamically linked; the guest needs a static binary (build it with CGO_ENABLED=0)", what, p)
	}
	return nil
}

func interpreter(f *elf.File) string {
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(p.Open())
			if err != nil {
				return "?"
			}
			return string(bytes.TrimRight(b, "\x00"))
		}
	}
	return ""
}

// sharedLibraries returns what the dynamic executable bin (a path inside
// root, the tree the target's packages were unpacked into) needs to run:
// its ELF interpreter and, transitively, the libraries its DT_NEEDED
// entries name. The result maps each path as the guest's loader will look
// for it to the file holding it under root. It reads the ELF files instead
// of running ldd, which cannot run a foreign architecture's binaries.
func sharedLibraries(root, bin, arch string) (map[string]string, error) {
	info := arches[arch]
	dirs := []string{"/lib/" + info.triplet, "/usr/lib/" + info.triplet, "/lib", "/usr/lib"}
	libs := map[string]string{}
	queue := []string{bin}
	seen := map[string]bool{}
	for len(queue) > 0 {
		guestPath := queue[0]
		queue = queue[1:]
		if seen[guestPath] {
			continue
		}
		seen[guestPath] = true
		host, err := resolveIn(root, guestPath)
		if err != nil {
			return nil, err
		}
		if guestPath != bin {
			libs[guestPath] = host
		}
		f, err := elf.Open(host)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", host, err)
		}
		needed, err := f.DynString(elf.DT_NEEDED)
		var runpath []string
		for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
			rp, _ := f.DynString(tag)
			for _, s := range rp {
				runpath = append(runpath, strings.Split(s, ":")...)
			}
		}
		interp := interpreter(f)
		machine := f.Machine
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", host, err)
		}
		if machine != info.machine {
			return nil, fmt.Errorf("%s is built for %v, the guest is %s", host, machine, arch)
		}
		if interp != "" {
			queue = append(queue, interp)
		}
		for _, lib := range needed {
			found := ""
			for _, d := range slices.Concat(runpath, dirs) {
				if strings.Contains(d, "$") || !path.IsAbs(d) {
					continue // $ORIGIN and relative run paths: not in Debian's e2fsprogs
				}
				if _, err := resolveIn(root, path.Join(d, lib)); err == nil {
					found = path.Join(d, lib)
					break
				}
			}
			if found == "" {
				return nil, fmt.Errorf("%s needs %s, which is in none of %s under %s: is its package among the downloaded debs?",
					guestPath, lib, strings.Join(dirs, ", "), root)
			}
			queue = append(queue, found)
		}
	}
	return libs, nil
}

// resolveIn returns the host path of the file that guest path p names in
// the tree at root, following symlinks as the guest would: an absolute
// target restarts at root and ".." stops there, so nothing outside root is
// ever reached.
func resolveIn(root, p string) (string, error) {
	parts := strings.Split(p, "/")
	cur := "/"
	for hops := 0; len(parts) > 0; {
		part := parts[0]
		parts = parts[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, part)
		host := filepath.Join(root, filepath.FromSlash(next))
		fi, err := os.Lstat(host)
		if err != nil {
			return "", fmt.Errorf("%s in %s: %w", p, root, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("%s in %s: too many levels of symbolic links", p, root)
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", fmt.Errorf("%s in %s: %w", p, root, err)
		}
		if path.IsAbs(target) {
			cur = "/"
		}
		parts = append(strings.Split(target, "/"), parts...)
	}
	return filepath.Join(root, filepath.FromSlash(cur)), nil
}

// checkKernel checks that the kernel file at p boots the way the drivers
// boot arch: amd64 through PVH (an ELF vmlinux with Xen's PHYS32_ENTRY
// note), arm64 as an uncompressed Image.
func checkKernel(p, arch string) error {
	switch arch {
	case "amd64":
		f, err := elf.Open(p)
		if err != nil {
			return fmt.Errorf("kernel %s: %w (want an uncompressed ELF vmlinux)", p, err)
		}
		defer f.Close()
		if f.Machine != elf.EM_X86_64 {
			return fmt.Errorf("kernel %s is for %v, not amd64", p, f.Machine)
		}
		ok, err := hasPVHNote(f)
		if err != nil {
			return fmt.Errorf("kernel %s: %w", p, err)
		}
		if !ok {
			return fmt.Errorf("kernel %s has no PVH entry point (build it with CONFIG_PVH=y)", p)
		}
	case "arm64":
		// The arm64 boot protocol's header: "ARM\x64" at offset 56.
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("kernel %s: %w", p, err)
		}
		defer f.Close()
		var hdr [64]byte
		if _, err := io.ReadFull(f, hdr[:]); err != nil || string(hdr[56:60]) != "ARM\x64" {
			return fmt.Errorf("kernel %s is not an uncompressed arm64 Image", p)
		}
	}
	return nil
}

// xenElfnotePhys32Entry is the note type a PVH-bootable kernel carries its
// 32-bit entry point in (XEN_ELFNOTE_PHYS32_ENTRY).
const xenElfnotePhys32Entry = 18

func hasPVHNote(f *elf.File) (bool, error) {
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		b, err := io.ReadAll(p.Open())
		if err != nil {
			return false, err
		}
		for len(b) >= 12 {
			namesz := binary.LittleEndian.Uint32(b[0:])
			descsz := binary.LittleEndian.Uint32(b[4:])
			typ := binary.LittleEndian.Uint32(b[8:])
			b = b[12:]
			nameEnd := int(align4(namesz))
			descEnd := nameEnd + int(align4(descsz))
			if nameEnd > len(b) || descEnd > len(b) {
				return false, errors.New("truncated ELF note")
			}
			name := string(bytes.TrimRight(b[:namesz], "\x00"))
			if name == "Xen" && typ == xenElfnotePhys32Entry {
				return true, nil
			}
			b = b[descEnd:]
		}
	}
	return false, nil
}

func align4(n uint32) uint32 { return (n + 3) &^ 3 }
