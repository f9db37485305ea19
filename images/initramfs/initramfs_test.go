package initramfs_test

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/devbox-dev/devbox/images/guest/guesttest"
	"github.com/devbox-dev/devbox/images/initramfs"
)

// sample writes an archive exercising every kind of entry.
func sample(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := initramfs.NewWriter(&buf)
	must(t, w.Dir("/tmp", 0o777|fs.ModeSticky))
	must(t, w.File("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n")))
	must(t, w.FileFrom("usr/lib/deep/blob", 0o600, 5, strings.NewReader("hello, and more not read")))
	must(t, w.File("/bin/tool", 0o755|fs.ModeSetuid, []byte("#!/bin/sh\n")))
	must(t, w.Symlink("/sbin/tool", "/bin/tool"))
	must(t, w.Dir("/root", 0o700))
	must(t, w.File("/empty", 0o644, nil))
	must(t, w.CharDevice("/dev/console", 0o600, 5, 1))
	must(t, w.Close())
	return buf.Bytes()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func needCpio(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("GNU cpio not installed (apt-get install cpio)")
	}
}

func TestCpioListsEntriesInWriteOrder(t *testing.T) {
	needCpio(t)
	cmd := exec.Command("cpio", "-t", "--quiet")
	cmd.Stdin = bytes.NewReader(sample(t))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v\n%s", err, out)
	}
	// Missing parents come just before their first child.
	want := "tmp etc etc/passwd usr usr/lib usr/lib/deep usr/lib/deep/blob bin bin/tool sbin sbin/tool root empty dev dev/console"
	if got := strings.Join(strings.Fields(string(out)), " "); got != want {
		t.Errorf("cpio -t lists\n%s\nwant\n%s", got, want)
	}
}

func TestCpioExtracts(t *testing.T) {
	needCpio(t)
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-i", "-d", "-m", "--quiet", "--no-absolute-filenames")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(sample(t))
	if out, err := cmd.CombinedOutput(); err != nil {
		if os.Geteuid() == 0 {
			t.Fatalf("cpio -i: %v\n%s", err, out)
		}
		t.Logf("cpio -i (not root: device nodes fail): %v\n%s", err, out)
	}
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := read("etc/passwd"); got != "root:x:0:0:root:/root:/bin/sh\n" {
		t.Errorf("etc/passwd = %q", got)
	}
	if got := read("usr/lib/deep/blob"); got != "hello" {
		t.Errorf("blob = %q, want the 5 bytes asked for", got)
	}
	if got := read("empty"); got != "" {
		t.Errorf("empty = %q", got)
	}
	if got, err := os.Readlink(filepath.Join(dir, "sbin/tool")); err != nil || got != "/bin/tool" {
		t.Errorf("sbin/tool -> %q, %v", got, err)
	}
	modes := map[string]fs.FileMode{
		"tmp":               fs.ModeDir | fs.ModeSticky | 0o777,
		"etc":               fs.ModeDir | 0o755,
		"etc/passwd":        0o644,
		"usr/lib/deep/blob": 0o600,
		"bin/tool":          fs.ModeSetuid | 0o755,
		"root":              fs.ModeDir | 0o700,
	}
	for p, want := range modes {
		fi, err := os.Lstat(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
		if p == "etc/passwd" && !fi.ModTime().Equal(time.Unix(0, 0)) {
			t.Errorf("%s: mtime %v, want the epoch", p, fi.ModTime())
		}
	}
	if os.Geteuid() == 0 {
		fi, err := os.Lstat(filepath.Join(dir, "dev/console"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != fs.ModeDevice|fs.ModeCharDevice {
			t.Errorf("dev/console: mode %v, want a character device", fi.Mode())
		}
	}
}

func TestReproducible(t *testing.T) {
	a, b := sample(t), sample(t)
	if !bytes.Equal(a, b) {
		t.Fatalf("two builds differ: %x vs %x", sha256.Sum256(a), sha256.Sum256(b))
	}
}

func TestHeaderFormat(t *testing.T) {
	var buf bytes.Buffer
	w := initramfs.NewWriter(&buf)
	must(t, w.SetModTime(time.Unix(1700000000, 0)))
	must(t, w.File("/hi", 0o644, []byte("hey")))
	must(t, w.Close())
	b := buf.Bytes()
	// magic, ino 1, mode 0100644, uid 0, gid 0, nlink 1, mtime, size 3,
	// dev 0:0, rdev 0:0, namesize 3, check 0; then "hi\0" padded to a multiple of 4 (113 -> 116 bytes), the data likewise.
	want := "070701" + "00000001" + "000081a4" + "00000000" + "00000000" + "00000001" + "6553f100" + "00000003" +
		"00000000" + "00000000" + "00000000" + "00000000" + "00000003" + "00000000" + "hi\x00" + "\x00\x00\x00" + "hey\x00"
	if got := string(b[:len(want)]); got != want {
		t.Errorf("archive starts\n%q\nwant\n%q", got, want)
	}
	if !strings.Contains(string(b), "TRAILER!!!\x00") {
		t.Error("no trailer")
	}
	if len(b)%512 != 0 {
		t.Errorf("archive is %d bytes, not a multiple of 512", len(b))
	}
	if int64(len(b)) != w.Written() {
		t.Errorf("Written() = %d, archive is %d bytes", w.Written(), len(b))
	}
}

func TestRefusesUnsafeNames(t *testing.T) {
	for _, name := range []string{
		"../etc/passwd", "/../etc/passwd", "a/../../b", "a/..", "./a", "a/./b",
		"a//b", "a/", "//a", "a\x00b", "TRAILER!!!",
	} {
		var buf bytes.Buffer
		w := initramfs.NewWriter(&buf)
		if err := w.File(name, 0o644, []byte("x")); err == nil {
			t.Errorf("File(%q) accepted", name)
		}
		if err := w.Symlink(name, "x"); err == nil {
			t.Errorf("Symlink(%q) accepted", name)
		}
		if buf.Len() != 0 {
			t.Errorf("refusing %q wrote %d bytes", name, buf.Len())
		}
		// A refused name leaves the writer usable.
		must(t, w.File("ok", 0o644, nil))
	}
}

func TestRefusesWritingThroughFilesAndSymlinks(t *testing.T) {
	var buf bytes.Buffer
	w := initramfs.NewWriter(&buf)
	must(t, w.Symlink("/lib", "usr/lib"))
	must(t, w.File("/etc", 0o644, nil))
	if err := w.File("/lib/evil", 0o644, nil); err == nil {
		t.Error("wrote a file through a symlink")
	}
	if err := w.Dir("/etc/sub", 0o755); err == nil {
		t.Error("wrote a directory under a file")
	}
	if err := w.File("/etc", 0o644, nil); err == nil {
		t.Error("wrote /etc twice")
	}
	must(t, w.Dir("/d", 0o755))
	must(t, w.Dir("/d", 0o700)) // directories may be written again
	if err := w.File("/d", 0o644, nil); err == nil {
		t.Error("replaced a directory with a file")
	}
	if err := w.File("/x", fs.ModeDir|0o755, nil); err == nil {
		t.Error("File took a directory mode")
	}
}

func TestShortReader(t *testing.T) {
	var buf bytes.Buffer
	w := initramfs.NewWriter(&buf)
	err := w.FileFrom("/f", 0o644, 10, strings.NewReader("short"))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("FileFrom with a short reader: %v, want unexpected EOF", err)
	}
	if err := w.Close(); err == nil {
		t.Error("Close after a failed write succeeded")
	}
	w = initramfs.NewWriter(&buf)
	if err := w.FileFrom("/f", 0o644, 10, iotest.ErrReader(errors.New("disk on fire"))); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("FileFrom with a failing reader: %v", err)
	}
}

// TestBootConcatenated boots a kernel on two archives, as the host does:
// the image's, then a per-machine one that adds files and replaces one.
func TestBootConcatenated(t *testing.T) {
	kernel := guesttest.Kernel(t)
	busybox := hostBusybox(t)
	dir := t.TempDir()

	base := filepath.Join(dir, "base.cpio")
	f, err := os.Create(base)
	must(t, err)
	w := initramfs.NewWriter(f)
	bb, err := os.Open(busybox)
	must(t, err)
	fi, err := bb.Stat()
	must(t, err)
	must(t, w.FileFrom("/bin/busybox", 0o755, fi.Size(), bb))
	bb.Close()
	must(t, w.Symlink("/bin/sh", "busybox"))
	must(t, w.CharDevice("/dev/console", 0o600, 5, 1))
	must(t, w.Dir("/proc", 0o555))
	must(t, w.File("/etc/motd", 0o644, []byte("from the image\n")))
	must(t, w.File("/etc/devbox/keep", 0o600, []byte("kept\n")))
	must(t, w.File("/init", 0o755, []byte(`#!/bin/sh
export PATH=/bin
busybox mount -t proc proc /proc
echo "motd: $(busybox cat /etc/motd)"
echo "keep: $(busybox cat /etc/devbox/keep)"
echo "boot: $(busybox cat /etc/devbox/boot.json)"
echo "modes: $(busybox stat -c '%n=%a' /etc/devbox/boot.json /etc/devbox /etc/motd | busybox tr '\n' ' ')"
echo "owner: $(busybox stat -c '%u:%g' /etc/devbox/boot.json)"
echo "done"
busybox reboot -f
`)))
	must(t, w.Close())
	must(t, f.Close())

	overlay := filepath.Join(dir, "overlay.cpio")
	f, err = os.Create(overlay)
	must(t, err)
	w = initramfs.NewWriter(f)
	must(t, w.File("/etc/devbox/boot.json", 0o600, []byte(`{"hostname":"test"}`)))
	must(t, w.File("/etc/motd", 0o640, []byte("from the machine\n")))
	must(t, w.Close())
	must(t, f.Close())

	out := guesttest.Boot(t, guesttest.VM{Kernel: kernel, Initrd: []string{base, overlay}})
	t.Logf("console:\n%s", out)
	for _, want := range []string{
		"motd: from the machine",
		"keep: kept",
		`boot: {"hostname":"test"}`,
		"modes: /etc/devbox/boot.json=600 /etc/devbox=755 /etc/motd=640",
		"owner: 0:0",
		"done",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q:\n%s", want, out)
		}
	}
}

// hostBusybox returns a static busybox this machine's kernel can run.
func hostBusybox(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if isStatic(p) {
			return p
		}
	}
	t.Skip("no static busybox (apt-get install busybox-static)")
	return ""
}

func isStatic(p string) bool {
	f, err := elf.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}
