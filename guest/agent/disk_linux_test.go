package agent

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// mkfs makes an ext4 file system of fsSize on a sparse image of imgSize,
// with e2fsprogs' mke2fs as the guest runs it, plus extra options.
func mkfs(t *testing.T, imgSize int64, fsSize string, extra ...string) string {
	t.Helper()
	mke2fs, err := exec.LookPath("mke2fs")
	if err != nil {
		t.Skip("no mke2fs on this machine (apt-get install e2fsprogs)")
	}
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, imgSize); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-q", "-t", "ext4", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1"}, extra...)
	args = append(args, p, fsSize)
	if out, err := exec.Command(mke2fs, args...).CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v\n%s", err, out)
	}
	return p
}

// dumpe2fsSize is the file system's size as e2fsprogs reads it.
func dumpe2fsSize(t *testing.T, p string) int64 {
	t.Helper()
	out, err := exec.Command("dumpe2fs", "-h", p).CombinedOutput()
	if err != nil {
		t.Skipf("dumpe2fs: %v", err)
	}
	field := func(name string) int64 {
		m := regexp.MustCompile(`(?m)^` + name + `:\s+(\d+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("dumpe2fs lacks %s:\n%s", name, out)
		}
		n, _ := strconv.ParseInt(string(m[1]), 10, 64)
		return n
	}
	return field("Block count") * field("Block size")
}

func TestExt4Size(t *testing.T) {
	for _, c := range []struct {
		name  string
		size  string
		extra []string
	}{
		{"1k blocks", "100M", []string{"-b", "1024"}},
		{"4k blocks", "300M", []string{"-b", "4096"}},
		{"64bit", "300M", []string{"-O", "64bit"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := mkfs(t, 512<<20, c.size, c.extra...)
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := ext4Size(f)
			if want := dumpe2fsSize(t, p); err != nil || got != want {
				t.Errorf("ext4Size = %d, %v; want %d", got, err, want)
			}
		})
	}
	blank := filepath.Join(t.TempDir(), "blank")
	os.WriteFile(blank, make([]byte, 4096), 0o600)
	f, _ := os.Open(blank)
	defer f.Close()
	if _, err := ext4Size(f); err == nil {
		t.Error("ext4Size of a blank disk succeeded")
	}
}

// growFS grows a mounted file system online to fill its device, as the
// agent does after devbox up --disk made the disk larger, and leaves one
// that fills its device alone.
func TestGrowFSOnline(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loop devices and mount need root")
	}
	if !hasCapSysResource(t) {
		t.Skip("online resize needs CAP_SYS_RESOURCE, which this process lacks (a container's root); the VM tests grow the guest's disk")
	}
	resize2fs, err := exec.LookPath("resize2fs")
	if err != nil {
		t.Skip("no resize2fs on this machine (apt-get install e2fsprogs)")
	}
	img := mkfs(t, 1<<30, "256M")
	out, err := exec.Command("losetup", "-f", "--show", img).CombinedOutput()
	if err != nil {
		t.Skipf("no loop device: %v %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	mnt := t.TempDir()
	if err := unix.Mount(dev, mnt, "ext4", 0, ""); err != nil {
		t.Skipf("mount %s: %v", dev, err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(mnt, "kept"), []byte("kept\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	var logb bytes.Buffer
	from, err := growFS(t.Context(), &logger{w: &logb}, resize2fs, dev)
	if err != nil || from != 256<<20 {
		t.Fatalf("growFS = %d, %v; want it grown from 256 MiB", from, err)
	}
	t.Logf("agent log: %s", logb.String())
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	// statfs leaves the file system's own metadata out.
	if total := int64(st.Blocks) * st.Bsize; total < 900<<20 || total > 1<<30 {
		t.Errorf("after growFS the mounted file system has %d MiB, want about 1 GiB", total>>20)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "kept")); err != nil || string(b) != "kept\n" {
		t.Errorf("file after growing: %q, %v", b, err)
	}
	if !strings.Contains(logb.String(), "grew the data disk's file system from 256 MiB") {
		t.Errorf("agent log: %q", logb.String())
	}
	// Already full size: nothing to do, resize2fs not even run.
	if from, err := growFS(t.Context(), &logger{}, "/nonexistent/resize2fs", dev); err != nil || from != 0 {
		t.Errorf("second growFS = %d, %v; want nothing done", from, err)
	}
}

// hasCapSysResource says whether this process may resize a mounted file
// system (EXT4_IOC_RESIZE_FS).
func hasCapSysResource(t *testing.T) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^CapEff:\s+([0-9a-f]+)`).FindSubmatch(b)
	if m == nil {
		return false
	}
	caps, _ := strconv.ParseUint(string(m[1]), 16, 64)
	return caps&(1<<unix.CAP_SYS_RESOURCE) != 0
}
