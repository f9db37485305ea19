//go:build linux

package main

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/devbox-dev/devbox/engine/spec"
	"github.com/devbox-dev/devbox/internal/testutil/imagegen"
	"github.com/devbox-dev/devbox/runtime/seccomp"
)

// writeRootfs creates the files of entries under dir, which must exist:
// directories, regular files and symlinks, with their modes, and with
// their owners when running as root. It is the bundle's copy of the same
// tree devbox imports as a tar.
func writeRootfs(dir string, entries []imagegen.Entry) error {
	chown := func(path string, e imagegen.Entry) error {
		if os.Geteuid() != 0 {
			return nil
		}
		return os.Lchown(path, e.UID, e.GID)
	}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name)
		switch e.Type {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				return err
			}
		case tar.TypeReg, 0:
			if err := os.WriteFile(path, e.Content, 0o600); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(e.Linkname, path); err != nil {
				return err
			}
			if err := chown(path, e); err != nil {
				return err
			}
			continue
		default:
			return fmt.Errorf("rootfs entry %s: tar type %q not supported", e.Name, e.Type)
		}
		if err := chown(path, e); err != nil {
			return err
		}
		// syscall.Chmod takes the raw mode, so setuid, setgid and the
		// sticky bit (as on /tmp) survive; os.Chmod would drop them.
		if err := syscall.Chmod(path, uint32(e.Mode)); err != nil {
			return &os.PathError{Op: "chmod", Path: path, Err: err}
		}
	}
	return nil
}

// devboxSpec returns the OCI spec devbox's engine generates for
// `devbox run --network NETWORK IMAGE /bin/true` on the image whose root
// filesystem is rootfs. The bundle copies its process and security
// settings, so that crun and runc do the same work devbox's runtime does.
func devboxSpec(rootfs, network string) (*specs.Spec, error) {
	img := &v1.ConfigFile{Config: v1.Config{Env: []string{"PATH=" + imagegen.DefaultPath}}}
	o := spec.Options{Cmd: []string{"/bin/true"}, Network: network}
	s, err := spec.Generate("devbox-bench", img, o, os.DirFS(rootfs), spec.Files{}, rootfs)
	if err != nil {
		return nil, fmt.Errorf("devbox's spec: %w", err)
	}
	return s, nil
}

// editConfig returns the config.json that `crun spec` (or `runc spec`)
// wrote, raw, changed to run what devbox runs: dev's process (argv
// /bin/true, environment, user, capabilities, no_new_privs, rlimits) with
// no terminal, a writable root, dev's namespaces, hostname, masked and
// read-only paths and sysctls, and the seccomp filter sc (nil for none).
// Mounts, the device cgroup and the root path stay as the runtime wrote
// them.
func editConfig(raw []byte, dev *specs.Spec, sc *specs.LinuxSeccomp) ([]byte, error) {
	var s specs.Spec
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("parse config.json: %w", err)
	}
	if s.Process == nil || s.Root == nil || s.Linux == nil {
		return nil, fmt.Errorf("config.json has no process, root or linux section")
	}
	if dev.Process == nil || dev.Linux == nil {
		return nil, fmt.Errorf("devbox's spec has no process or linux section")
	}
	p := *dev.Process
	p.Terminal = false
	p.ConsoleSize = nil
	p.OOMScoreAdj = nil // the runtimes leave the score alone by default
	s.Process = &p
	s.Root.Readonly = dev.Root != nil && dev.Root.Readonly

	s.Linux.Namespaces = nil
	for _, ns := range dev.Linux.Namespaces {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: ns.Type})
	}
	// Without a UTS namespace of its own a container cannot have a host
	// name; runc refuses the config.
	s.Hostname = ""
	if hasNamespace(s.Linux.Namespaces, specs.UTSNamespace) {
		s.Hostname = dev.Hostname
	}
	s.Linux.MaskedPaths = slices.Clone(dev.Linux.MaskedPaths)
	s.Linux.ReadonlyPaths = slices.Clone(dev.Linux.ReadonlyPaths)
	s.Linux.Sysctl = dev.Linux.Sysctl
	s.Linux.Seccomp = sc
	return json.MarshalIndent(&s, "", "\t")
}

func hasNamespace(nss []specs.LinuxNamespace, t specs.LinuxNamespaceType) bool {
	return slices.ContainsFunc(nss, func(ns specs.LinuxNamespace) bool { return ns.Type == t })
}

// bundle is an OCI bundle for crun and runc.
type bundle struct {
	dir string
	// specTool wrote the config.json the bench edited.
	specTool string
	// namespaces and seccomp describe the config, for the report.
	namespaces []specs.LinuxNamespaceType
	seccomp    bool
}

// writeBundle makes an OCI bundle in dir: rootfs/ from entries and a
// config.json that specTool (crun or runc) writes with `spec` and
// editConfig changes. With useSeccomp the config carries devbox's seccomp
// profile (Docker's default for devbox's capabilities).
func writeBundle(dir, specTool string, entries []imagegen.Entry, network string, useSeccomp bool) (*bundle, error) {
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return nil, err
	}
	if err := writeRootfs(rootfs, entries); err != nil {
		return nil, fmt.Errorf("bundle rootfs: %w", err)
	}
	cmd := exec.Command(specTool, "spec")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s spec: %w\n%s", specTool, err, out)
	}
	path := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dev, err := devboxSpec(rootfs, network)
	if err != nil {
		return nil, err
	}
	var sc *specs.LinuxSeccomp
	if useSeccomp {
		var caps []string
		if dev.Process.Capabilities != nil {
			caps = dev.Process.Capabilities.Bounding
		}
		if sc, err = seccomp.Default(caps); err != nil {
			return nil, err
		}
	}
	edited, err := editConfig(raw, dev, sc)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, edited, 0o644); err != nil {
		return nil, err
	}
	b := &bundle{dir: dir, specTool: filepath.Base(specTool), seccomp: sc != nil}
	for _, ns := range dev.Linux.Namespaces {
		b.namespaces = append(b.namespaces, ns.Type)
	}
	return b, nil
}
