//go:build linux

package main

import (
	"archive/tar"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/devbox-dev/devbox/internal/mountinfo"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/devbox-dev/devbox/internal/testutil/imagegen"
	"github.com/devbox-dev/devbox/runtime/seccomp"
)

// crunSpec is the part of `crun spec` (crun 1.8.1) that editConfig reads
// or must keep.
const crunSpec = `{
	"ociVersion": "1.0.0",
	"process": {
		"terminal": true,
		"user": {"uid": 0, "gid": 0},
		"args": ["sh"],
		"env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
		"cwd": "/",
		"capabilities": {"bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]},
		"rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
		"noNewPrivileges": true
	},
	"root": {"path": "rootfs", "readonly": true},
	"hostname": "crun",
	"mounts": [
		{"destination": "/proc", "type": "proc", "source": "proc"},
		{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}
	],
	"linux": {
		"resources": {"devices": [{"allow": false, "access": "rwm"}]},
		"namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
		"maskedPaths": ["/proc/kcore"],
		"readonlyPaths": ["/proc/sys"]
	}
}`

// fakeDevbox is a devbox-like spec: host networking, a terminal asked for.
func fakeDevbox() *specs.Spec {
	return &specs.Spec{
		Process: &specs.Process{
			Terminal: true,
			Args:     []string{"/bin/true"},
			Env:      []string{"PATH=/bin", "HOSTNAME=abc"},
			Cwd:      "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  []string{"CAP_CHOWN", "CAP_KILL"},
				Effective: []string{"CAP_CHOWN", "CAP_KILL"},
				Permitted: []string{"CAP_CHOWN", "CAP_KILL"},
			},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: "/somewhere/else"},
		Hostname: "abc",
		Linux: &specs.Linux{
			CgroupsPath: "devbox/x",
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.MountNamespace}, {Type: specs.UTSNamespace}, {Type: specs.PIDNamespace},
				{Type: specs.IPCNamespace}, {Type: specs.CgroupNamespace},
			},
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/sys"},
			Sysctl:        map[string]string{"net.ipv4.ping_group_range": "0 2147483647"},
		},
	}
}

func parse(t *testing.T, raw []byte) specs.Spec {
	t.Helper()
	var s specs.Spec
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("edited config is not JSON: %v\n%s", err, raw)
	}
	return s
}

func nsTypes(nss []specs.LinuxNamespace) []specs.LinuxNamespaceType {
	var out []specs.LinuxNamespaceType
	for _, ns := range nss {
		out = append(out, ns.Type)
	}
	return out
}

func TestEditConfig(t *testing.T) {
	dev := fakeDevbox()
	sc := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno}
	raw, err := editConfig([]byte(crunSpec), dev, sc)
	if err != nil {
		t.Fatal(err)
	}
	s := parse(t, raw)

	if s.Process.Terminal {
		t.Error("terminal still on")
	}
	if !slices.Equal(s.Process.Args, []string{"/bin/true"}) || !slices.Equal(s.Process.Env, dev.Process.Env) {
		t.Errorf("process args %q env %q, want devbox's", s.Process.Args, s.Process.Env)
	}
	if got := s.Process.Capabilities.Bounding; !slices.Equal(got, dev.Process.Capabilities.Bounding) {
		t.Errorf("bounding caps %q, want devbox's", got)
	}
	if !s.Process.NoNewPrivileges {
		t.Error("no_new_privs dropped")
	}
	// Host networking: devbox's namespaces, so crun's network one goes.
	if got, want := nsTypes(s.Linux.Namespaces), nsTypes(dev.Linux.Namespaces); !slices.Equal(got, want) {
		t.Errorf("namespaces %v, want %v", got, want)
	}
	if s.Hostname != "abc" {
		t.Errorf("hostname %q, want devbox's", s.Hostname)
	}
	if s.Root.Path != "rootfs" || s.Root.Readonly {
		t.Errorf("root %+v, want the bundle's rootfs, writable", s.Root)
	}
	if !slices.Equal(s.Linux.MaskedPaths, dev.Linux.MaskedPaths) || !slices.Equal(s.Linux.ReadonlyPaths, dev.Linux.ReadonlyPaths) {
		t.Errorf("masked %q read-only %q, want devbox's", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	if s.Linux.Sysctl["net.ipv4.ping_group_range"] == "" {
		t.Error("sysctls not copied")
	}
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
		t.Errorf("seccomp %+v, want the given filter", s.Linux.Seccomp)
	}
	// What the runtime wrote and devbox's spec must not override.
	if len(s.Mounts) != 2 || s.Mounts[0].Destination != "/proc" {
		t.Errorf("mounts %+v, want crun's", s.Mounts)
	}
	if s.Linux.CgroupsPath != "" {
		t.Errorf("cgroups path %q: the runtime's default was replaced", s.Linux.CgroupsPath)
	}
	if r := s.Linux.Resources; r == nil || len(r.Devices) != 1 {
		t.Errorf("device rules %+v, want crun's", r)
	}
	// The edit must not write through to devbox's spec.
	if !dev.Process.Terminal {
		t.Error("editConfig changed devbox's spec")
	}
}

func TestEditConfigNoUTSNoSeccomp(t *testing.T) {
	dev := fakeDevbox()
	dev.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace}}
	raw, err := editConfig([]byte(crunSpec), dev, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := parse(t, raw)
	if s.Hostname != "" {
		t.Errorf("hostname %q without a UTS namespace: runc refuses that", s.Hostname)
	}
	if s.Linux.Seccomp != nil {
		t.Error("seccomp set though none was given")
	}
	if got := nsTypes(s.Linux.Namespaces); !slices.Equal(got, []specs.LinuxNamespaceType{specs.MountNamespace, specs.NetworkNamespace}) {
		t.Errorf("namespaces %v", got)
	}
}

func TestEditConfigErrors(t *testing.T) {
	if _, err := editConfig([]byte("{"), fakeDevbox(), nil); err == nil {
		t.Error("broken JSON accepted")
	}
	if _, err := editConfig([]byte(`{"ociVersion": "1.0.0"}`), fakeDevbox(), nil); err == nil {
		t.Error("config without process, root and linux accepted")
	}
}

// testEntries is a small root filesystem with what writeRootfs must keep:
// modes with setuid and sticky bits, and symlinks.
func testEntries() []imagegen.Entry {
	return []imagegen.Entry{
		imagegen.Dir("bin/", 0o755),
		{Name: "bin/busybox", Type: tar.TypeReg, Mode: 0o4755, Content: []byte("#!/bin/sh\n")},
		imagegen.Symlink("bin/true", "busybox"),
		imagegen.Dir("etc/", 0o755),
		imagegen.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644),
		imagegen.File("etc/group", "root:x:0:\n", 0o644),
		imagegen.Dir("tmp/", 0o1777),
	}
}

func TestWriteRootfs(t *testing.T) {
	dir := t.TempDir()
	if err := writeRootfs(dir, testEntries()); err != nil {
		t.Fatal(err)
	}
	mode := func(name string) uint32 {
		t.Helper()
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(dir, name), &st); err != nil {
			t.Fatal(err)
		}
		return st.Mode
	}
	if m := mode("bin/busybox"); m&0o7777 != 0o4755 || m&syscall.S_IFMT != syscall.S_IFREG {
		t.Errorf("bin/busybox mode %o, want setuid 4755 regular file", m)
	}
	if m := mode("tmp"); m&0o7777 != 0o1777 {
		t.Errorf("tmp mode %o, want 1777", m&0o7777)
	}
	if target, err := os.Readlink(filepath.Join(dir, "bin/true")); err != nil || target != "busybox" {
		t.Errorf("bin/true -> %q, %v", target, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "etc/group")); err != nil || string(b) != "root:x:0:\n" {
		t.Errorf("etc/group = %q, %v", b, err)
	}

	err := writeRootfs(t.TempDir(), []imagegen.Entry{imagegen.Fifo("fifo", 0o644)})
	if err == nil {
		t.Error("a fifo entry was accepted")
	}
}

// TestBundleFromDevboxSpec edits a config with the spec devbox's engine
// really generates, both network pairings.
func TestBundleFromDevboxSpec(t *testing.T) {
	rootfs := t.TempDir()
	if err := writeRootfs(rootfs, testEntries()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		network string
		netns   bool
	}{{"none", true}, {"host", false}} {
		dev, err := devboxSpec(rootfs, c.network)
		if err != nil {
			t.Fatal(err)
		}
		sc, err := seccomp.Default(dev.Process.Capabilities.Bounding)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := editConfig([]byte(crunSpec), dev, sc)
		if err != nil {
			t.Fatal(err)
		}
		s := parse(t, raw)
		if got := hasNamespace(s.Linux.Namespaces, specs.NetworkNamespace); got != c.netns {
			t.Errorf("-network %s: network namespace %v, want %v", c.network, got, c.netns)
		}
		for _, want := range []specs.LinuxNamespaceType{specs.MountNamespace, specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.CgroupNamespace} {
			if !hasNamespace(s.Linux.Namespaces, want) {
				t.Errorf("-network %s: no %s namespace", c.network, want)
			}
		}
		if !slices.Equal(s.Process.Args, []string{"/bin/true"}) || s.Process.Terminal {
			t.Errorf("-network %s: args %q terminal %v", c.network, s.Process.Args, s.Process.Terminal)
		}
		if s.Linux.Seccomp == nil || len(s.Linux.Seccomp.Syscalls) == 0 {
			t.Errorf("-network %s: no seccomp rules", c.network)
		}
	}
}

// TestRuntimeAcceptsSpec checks the edit against the installed crun's own
// `crun spec` output, when crun is there.
func TestRuntimeAcceptsSpec(t *testing.T) {
	for _, tool := range []string{"crun", "runc"} {
		bin, err := exec.LookPath(tool)
		if err != nil {
			t.Logf("%s not installed; skipped", tool)
			continue
		}
		dir := t.TempDir()
		b, err := writeBundle(dir, bin, testEntries(), "none", true)
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		raw, err := os.ReadFile(filepath.Join(b.dir, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		s := parse(t, raw)
		if s.Root.Path != "rootfs" || !slices.Equal(s.Process.Args, []string{"/bin/true"}) || len(s.Mounts) == 0 {
			t.Errorf("%s spec, edited: root %+v args %q, %d mounts", tool, s.Root, s.Process.Args, len(s.Mounts))
		}
		if _, err := os.Lstat(filepath.Join(b.dir, "rootfs/bin/true")); err != nil {
			t.Errorf("%s bundle rootfs: %v", tool, err)
		}
	}
}

func TestRoundOrder(t *testing.T) {
	cs := []string{"a", "b", "c", "d"}
	if got := roundOrder(cs, 0); !slices.Equal(got, cs) {
		t.Errorf("round 0 = %v", got)
	}
	if got := roundOrder(cs, 1); !slices.Equal(got, []string{"b", "c", "d", "a"}) {
		t.Errorf("round 1 = %v", got)
	}
	if got := roundOrder(cs, 4); !slices.Equal(got, []string{"d", "c", "b", "a"}) {
		t.Errorf("round 4 = %v", got)
	}
	// Over 2*len(cs) rounds, each contender takes each position twice.
	count := map[string][]int{}
	for i := range 2 * len(cs) {
		for pos, c := range roundOrder(cs, i) {
			if count[c] == nil {
				count[c] = make([]int, len(cs))
			}
			count[c][pos]++
		}
	}
	for c, byPos := range count {
		for pos, n := range byPos {
			if n != 2 {
				t.Errorf("%s ran in position %d %d times, want 2", c, pos, n)
			}
		}
	}
	if !slices.Equal(cs, []string{"a", "b", "c", "d"}) {
		t.Error("roundOrder changed its input")
	}
	if roundOrder([]string(nil), 3) != nil {
		t.Error("no contenders, some order")
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		"/tmp/plain":         "/tmp/plain",
		`/tmp/with\040space`: "/tmp/with space",
		`/tmp/tab\011x`:      "/tmp/tab\tx",
		`/tmp/back\134slash`: `/tmp/back\slash`,
		`/tmp/short\04`:      `/tmp/short\04`,
	} {
		if got := mountinfo.Unescape(in); got != want {
			t.Errorf("mountinfo.Unescape(%q) = %q, want %q", in, got, want)
		}
	}
}
