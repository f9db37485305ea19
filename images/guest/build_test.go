package guest_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/devbox-dev/devbox/images/guest"
	"github.com/devbox-dev/devbox/images/guest/guesttest"
	"github.com/devbox-dev/devbox/images/initramfs"
)

// fakeKernel writes the smallest ELF an amd64 build accepts as a kernel:
// an x86-64 executable with a PVH entry note.
func fakeKernel(t *testing.T, p string, pvh bool) {
	t.Helper()
	le := binary.LittleEndian
	var b bytes.Buffer
	note := make([]byte, 20)
	le.PutUint32(note[0:], 4) // namesz
	le.PutUint32(note[4:], 4) // descsz
	typ := uint32(18)         // XEN_ELFNOTE_PHYS32_ENTRY
	if !pvh {
		typ = 1
	}
	le.PutUint32(note[8:], typ)
	copy(note[12:], "Xen\x00")
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	for _, v := range []any{
		uint16(2), uint16(62), uint32(1), uint64(0), uint64(64), uint64(0), uint32(0),
		uint16(64), uint16(56), uint16(1), uint16(64), uint16(0), uint16(0),
		// PT_NOTE program header
		uint32(4), uint32(4), uint64(120), uint64(0), uint64(0), uint64(len(note)), uint64(len(note)), uint64(4),
	} {
		binary.Write(&b, le, v)
	}
	b.Write(note)
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// kernelDir lays out a kernel output directory as scripts/guest-kernel.sh
// does, with the real test kernel when there is one.
func kernelDir(t *testing.T, real string) string {
	t.Helper()
	dir := t.TempDir()
	k := filepath.Join(dir, "kernel")
	if real != "" {
		if err := os.Symlink(real, k); err != nil {
			t.Fatal(err)
		}
	} else {
		fakeKernel(t, k, true)
	}
	if err := os.WriteFile(filepath.Join(dir, "kernel.release"), []byte("6.12.0-test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

var agents sync.Map // arch -> path of testinit built for it

// agent builds testdata/testinit, the agent's stand-in, for linux/arch.
func agent(t *testing.T, arch string) string {
	t.Helper()
	if p, ok := agents.Load(arch); ok {
		return p.(string)
	}
	dir, err := os.MkdirTemp("", "guest-testinit-")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "init")
	cmd := exec.Command("go", "build", "-o", out, "./testdata/testinit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build testinit: %v\n%s", err, b)
	}
	agents.Store(arch, out)
	return out
}

// debRoot returns a tree holding mke2fs, resize2fs, their libraries and
// busybox for
// this machine: $DEVBOX_TEST_DEBROOT (from scripts/guest-debs.sh) or, on
// a Debian host with e2fsprogs and busybox-static, the host itself.
func debRoot(t *testing.T) string {
	t.Helper()
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skip("not a guest architecture")
	}
	root := os.Getenv("DEVBOX_TEST_DEBROOT")
	if root == "" {
		root = "/"
	}
	for _, p := range []string{"sbin/mke2fs", "sbin/resize2fs", "etc/mke2fs.conf", "bin/busybox"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Skipf("no %s in %s: set DEVBOX_TEST_DEBROOT to a tree from `bash scripts/guest-debs.sh %s DIR`", p, root, runtime.GOARCH)
		}
	}
	return root
}

func buildOpts(t *testing.T, kdir string) guest.BuildOptions {
	root := debRoot(t)
	return guest.BuildOptions{
		Arch:         runtime.GOARCH,
		KernelDir:    kdir,
		KernelSource: guest.KernelDevbox,
		Agent:        agent(t, runtime.GOARCH),
		Busybox:      filepath.Join(root, "bin", "busybox"),
		DebRoot:      root,
		Out:          t.TempDir(),
	}
}

// listArchive lists the archive at p with GNU cpio: the names in order,
// and their `cpio -tv` lines.
func listArchive(t *testing.T, p string) (names, lines []string) {
	t.Helper()
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("GNU cpio not installed (apt-get install cpio)")
	}
	for _, flag := range []string{"-t", "-tv"} {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("cpio", flag, "--quiet")
		cmd.Stdin = f
		out, err := cmd.Output()
		f.Close()
		if err != nil {
			t.Fatalf("cpio %s %s: %v", flag, p, err)
		}
		l := strings.Split(strings.TrimSpace(string(out)), "\n")
		if flag == "-t" {
			names = l
		} else {
			lines = l
		}
	}
	return names, lines
}

func TestBuildIsReproducible(t *testing.T) {
	kdir := kernelDir(t, "")
	a := buildOpts(t, kdir)
	b := a
	b.Out = t.TempDir()
	imgA, err := guest.Build(t.Context(), a)
	if err != nil {
		t.Fatal(err)
	}
	imgB, err := guest.Build(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	if imgA.Initramfs != imgB.Initramfs {
		t.Errorf("two builds differ: %+v vs %+v", imgA.Initramfs, imgB.Initramfs)
	}
	ja, _ := os.ReadFile(filepath.Join(a.Out, guest.ManifestName))
	jb, _ := os.ReadFile(filepath.Join(b.Out, guest.ManifestName))
	if !bytes.Equal(ja, jb) {
		t.Errorf("guest.json differs:\n%s\n%s", ja, jb)
	}
	for _, dir := range []string{a.Out, b.Out} {
		if _, err := guest.Load(dir); err != nil {
			t.Errorf("Load of a fresh build: %v", err)
		}
		leftovers, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
		if len(leftovers) > 0 {
			t.Errorf("temporary files left: %q", leftovers)
		}
	}
}

func TestBuildContents(t *testing.T) {
	opts := buildOpts(t, kernelDir(t, ""))
	img, err := guest.Build(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	names, lines := listArchive(t, img.InitramfsPath())
	entries := map[string]string{} // name -> `cpio -tv` line
	for i, name := range names {
		entries[name] = lines[i]
	}
	if !slices.IsSorted(names) {
		t.Errorf("entries not in path order: %q", names)
	}
	for name, prefix := range map[string]string{
		"init":                                 "-rwxr-xr-x   1 root     root",
		"bin/busybox":                          "-rwxr-xr-x",
		"bin/sh":                               "lrwxrwxrwx",
		"sbin/reboot":                          "lrwxrwxrwx",
		"sbin/mke2fs":                          "-rwxr-xr-x",
		"sbin/resize2fs":                       "-rwxr-xr-x",
		"etc/mke2fs.conf":                      "-rw-r--r--",
		"etc/passwd":                           "-rw-r--r--",
		"etc/group":                            "-rw-r--r--",
		"dev/console":                          "crw-------",
		"tmp":                                  "drwxrwxrwt",
		"root":                                 "drwx------",
		"proc":                                 "dr-xr-xr-x",
		"sys":                                  "dr-xr-xr-x",
		"run":                                  "drwxr-xr-x",
		"var/lib/devbox":                       "drwxr-xr-x",
		"lib/" + triplet() + "/libext2fs.so.2": "-rw-r--r--",
	} {
		if !strings.HasPrefix(entries[name], prefix) {
			t.Errorf("%s: %q, want %q...", name, entries[name], prefix)
		}
	}
	for name, target := range map[string]string{"bin/sh": "/bin/busybox", "usr/bin": "../bin", "usr/sbin": "../sbin"} {
		if l := entries[name]; !strings.HasSuffix(l, name+" -> "+target) {
			t.Errorf("%s: %q, want a link to %s", name, l, target)
		}
	}
	if _, ok := entries["lib/modules"]; ok {
		t.Error("a devbox kernel's image has lib/modules")
	}
	// The loader is stored once, under its library name, and linked from
	// the ELF interpreter path.
	interp := map[string]string{"amd64": "lib64/ld-linux-x86-64.so.2", "arm64": "lib/ld-linux-aarch64.so.1"}[runtime.GOARCH]
	loader := "lib/" + triplet() + "/" + filepath.Base(interp)
	if !strings.HasPrefix(entries[loader], "-rwxr-xr-x") {
		t.Errorf("dynamic loader %s: %q", loader, entries[loader])
	}
	if !strings.HasSuffix(entries[interp], interp+" -> /"+loader) {
		t.Errorf("ELF interpreter %s: %q, want a link to /%s", interp, entries[interp], loader)
	}
}

func triplet() string {
	if runtime.GOARCH == "arm64" {
		return "aarch64-linux-gnu"
	}
	return "x86_64-linux-gnu"
}

func TestBuildDebianKernelCarriesModules(t *testing.T) {
	kdir := kernelDir(t, "")
	mod := filepath.Join(kdir, "modules", "lib", "modules", "6.12.0-test", "kernel", "fs", "ext4.ko")
	if err := os.MkdirAll(filepath.Dir(mod), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(mod, []byte("module"), 0o600)
	os.WriteFile(filepath.Join(kdir, "modules", "lib", "modules", "6.12.0-test", "modules.dep"), []byte("kernel/fs/ext4.ko:\n"), 0o644)
	os.Symlink("/usr/src/linux", filepath.Join(kdir, "modules", "lib", "modules", "6.12.0-test", "build"))
	os.WriteFile(filepath.Join(kdir, "modules", "modules.load"), []byte("ext4\n"), 0o644)
	opts := buildOpts(t, kdir)
	opts.KernelSource = guest.KernelDebian
	img, err := guest.Build(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if img.KernelSource != guest.KernelDebian || img.KernelRelease != "6.12.0-test" {
		t.Errorf("manifest %+v", img.Manifest)
	}
	_, lines := listArchive(t, img.InitramfsPath())
	listing := strings.Join(lines, "\n")
	for _, want := range []string{
		"-rw-r--r--   1 root     root            6 Jan  1  1970 lib/modules/6.12.0-test/kernel/fs/ext4.ko",
		"lib/modules/6.12.0-test/modules.dep",
		"etc/devbox/modules",
	} {
		if !strings.Contains(listing, want) {
			t.Errorf("initramfs lacks %q:\n%s", want, listing)
		}
	}
	if strings.Contains(listing, "6.12.0-test/build") {
		t.Error("initramfs has the build machine's build link")
	}

	// Without modules a Debian kernel cannot boot the guest.
	opts.KernelDir = kernelDir(t, "")
	if _, err := guest.Build(t.Context(), opts); err == nil || !strings.Contains(err.Error(), "modules") {
		t.Errorf("Build of a debian kernel without modules: %v", err)
	}
}

func TestBuildRejectsWrongInputs(t *testing.T) {
	opts := buildOpts(t, kernelDir(t, ""))
	for _, tc := range []struct {
		name   string
		change func(o *guest.BuildOptions)
		want   string
	}{
		{"dynamic agent", func(o *guest.BuildOptions) { o.Agent = filepath.Join(o.DebRoot, "sbin/mke2fs") }, "CGO_ENABLED=0"},
		{"foreign agent", func(o *guest.BuildOptions) { o.Agent = agent(t, otherArch()) }, "built for"},
		{"kernel without PVH", func(o *guest.BuildOptions) {
			o.KernelDir = kernelDir(t, "")
			fakeKernel(t, filepath.Join(o.KernelDir, "kernel"), false)
		}, "PVH"},
		{"no mke2fs", func(o *guest.BuildOptions) { o.DebRoot = t.TempDir() }, "mke2fs"},
		{"unknown arch", func(o *guest.BuildOptions) { o.Arch = "riscv64" }, "unknown arch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "kernel without PVH" && runtime.GOARCH != "amd64" {
				t.Skip("PVH is amd64's")
			}
			o := opts
			o.Out = t.TempDir()
			tc.change(&o)
			_, err := guest.Build(t.Context(), o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build: %v, want an error saying %q", err, tc.want)
			}
			if m, _ := filepath.Glob(filepath.Join(o.Out, "*")); len(m) > 0 {
				t.Errorf("a failed build left %q", m)
			}
		})
	}
}

func otherArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}

// TestBootFormatsDataDisk boots a built image with a second archive
// appended, as the host will, and has the image's mke2fs format a disk
// ext4, which the agent does on first boot, and its resize2fs grow it
// while mounted, which the agent does after the disk was made larger.
func TestBootFormatsDataDisk(t *testing.T) {
	kernel := guesttest.Kernel(t)
	opts := buildOpts(t, kernelDir(t, kernel))
	img, err := guest.Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	overlay := filepath.Join(dir, "overlay.cpio")
	f, err := os.Create(overlay)
	if err != nil {
		t.Fatal(err)
	}
	w := initramfs.NewWriter(f)
	// The full path, as the agent runs it: Debian's busybox sh prefers
	// its own applets, whose mke2fs only makes ext2, to programs on PATH.
	if err := w.File("/etc/devbox/test.sh", 0o755, []byte(`
mount -t proc proc /proc
mount -t sysfs sys /sys
echo "whoami: $(id -un):$(id -gn)"
/sbin/mke2fs -t ext4 -F -L devbox-data /dev/vda 128M >/tmp/mkfs.log 2>&1
echo "mke2fs exit: $?"
sed 's/^/mke2fs| /' /tmp/mkfs.log
mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && echo hello >/mnt/file && grep vda /proc/mounts
/sbin/resize2fs /dev/vda >/tmp/resize.log 2>&1
echo "resize2fs exit: $?"
sed 's/^/resize2fs| /' /tmp/resize.log
echo "read back: $(cat /mnt/file)"
umount /mnt
`)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	disk := filepath.Join(dir, "data.raw")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 256<<20); err != nil {
		t.Fatal(err)
	}
	out := guesttest.Boot(t, guesttest.VM{
		Kernel: img.KernelPath(),
		Initrd: []string{img.InitramfsPath(), overlay},
		Disk:   disk,
	})
	t.Logf("console:\n%s", out)
	for _, want := range []string{
		"testinit: /init is pid 1",
		"whoami: root:root",
		"mke2fs exit: 0",
		"mke2fs| mke2fs 1.47",
		"mke2fs| Creating journal",
		"/dev/vda /mnt ext4 rw",
		// Grown online, mounted, to the whole 256 MiB disk.
		"resize2fs exit: 0",
		"resize2fs| The filesystem on /dev/vda is now 262144 (1k) blocks long",
		"read back: hello",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q:\n%s", want, out)
		}
	}
	checkExt4(t, disk, "devbox-data")
}

// checkExt4 reads the superblock of the filesystem on disk: an ext4 one
// has a journal and extents, which busybox's ext2-only mke2fs cannot make.
func checkExt4(t *testing.T, disk, label string) {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, 1024); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if magic := le.Uint16(sb[0x38:]); magic != 0xef53 {
		t.Fatalf("no ext2/3/4 superblock on the disk (magic %#x)", magic)
	}
	compat, incompat := le.Uint32(sb[0x5c:]), le.Uint32(sb[0x60:])
	const hasJournal, extents, flexBG = 0x4, 0x40, 0x200
	if compat&hasJournal == 0 || incompat&extents == 0 || incompat&flexBG == 0 {
		t.Errorf("filesystem is not ext4: compat %#x, incompat %#x", compat, incompat)
	}
	if got := string(bytes.TrimRight(sb[0x78:0x88], "\x00")); got != label {
		t.Errorf("label %q, want %q", got, label)
	}
}
