package main_test

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/devbox-dev/devbox/internal/testutil/imagegen"
)

// oneLine says whether s is a single line of text.
func oneLine(s string) bool {
	s = strings.TrimSpace(s)
	return s != "" && !strings.Contains(s, "\n")
}

// tcgNote drops the line devbox prints about software emulation, which
// is not part of what a command says.
func tcgNote(stderr string) string {
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if !strings.HasPrefix(l, "devbox: using tcg") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// diskBytes is the data disk's size as `devbox status` shows it.
func (u *userVM) diskBytes() int64 {
	u.t.Helper()
	var s struct{ DiskBytes int64 }
	if err := json.Unmarshal([]byte(u.must("status", "--format", "json")), &s); err != nil {
		u.t.Fatalf("status json: %v", err)
	}
	return s.DiskBytes
}

// guestDataDisk is the size in bytes of the guest's file system on its
// data disk, as df in the guest sees it.
func (u *userVM) guestDataDisk() int64 {
	u.t.Helper()
	f := strings.Fields(u.must("ssh", "--", "df -k /var/lib/devbox | tail -1"))
	if len(f) < 2 {
		u.t.Fatalf("df in the guest: %q", f)
	}
	kb, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		u.t.Fatalf("df in the guest: %q", f)
	}
	return kb << 10
}

// The data disk grows when asked, at the next boot, with what it holds;
// it never shrinks; a pull that fills it fails with one line and leaves
// the store usable once space is freed.
func TestVMDisk(t *testing.T) {
	v := newEngineVM(t)
	v.up("--disk", "2GiB")
	if n := v.diskBytes(); n != 2<<30 {
		t.Errorf("status shows a disk of %d bytes, want 2 GiB", n)
	}
	v.must("ssh", "--", "echo kept > /var/lib/devbox/probe && sync")

	t.Run("a larger --disk grows it at the next boot", func(t *testing.T) {
		// Running: the new size needs a restart, which up says.
		if r := v.run("up", "--disk", "3GiB"); r.code == 0 || !strings.Contains(r.stderr, "devbox down") {
			t.Errorf("up --disk 3GiB while running: %+v", r)
		}
		v.must("down")
		v.up("--disk", "3GiB")
		if n := v.diskBytes(); n != 3<<30 {
			t.Errorf("status shows a disk of %d bytes, want 3 GiB", n)
		}
		// statfs leaves the file system's own metadata out.
		if n := v.guestDataDisk(); n < 2900<<20 || n > 3<<30 {
			t.Errorf("df in the guest: %d MiB, want about 3 GiB", n>>20)
		}
		if out := v.must("ssh", "--", "cat", "/var/lib/devbox/probe"); out != "kept\n" {
			t.Errorf("data after growing: %q", out)
		}
		log := v.must("logs", "--machine")
		if i := strings.Index(log, "grew the data disk"); i < 0 {
			t.Errorf("the agent did not say it grew the disk:\n%s", log)
		} else {
			t.Logf("%s", strings.SplitN(log[i:], "\n", 2)[0])
		}
	})

	t.Run("a smaller --disk is refused in one line", func(t *testing.T) {
		for _, running := range []bool{true, false} {
			if !running {
				v.must("down")
			}
			r := v.run("up", "--disk", "2GiB")
			msg := tcgNote(r.stderr)
			if r.code == 0 || !oneLine(msg) || !strings.Contains(msg, "shrinking it is not supported") ||
				!strings.Contains(msg, "--disk 3GiB") || !strings.Contains(msg, "devbox destroy") {
				t.Errorf("up --disk 2GiB (running %v): exit %d, %q", running, r.code, msg)
			}
		}
		if r := v.run("up", "--disk", "100MiB"); r.code == 0 || !oneLine(tcgNote(r.stderr)) || !strings.Contains(r.stderr, "at least 1GiB") {
			t.Errorf("up --disk 100MiB: %+v", r)
		}
		// Refused without changing anything: it boots at its size.
		v.must("up")
		if n := v.diskBytes(); n != 3<<30 {
			t.Errorf("status after the refusals: %d bytes, want 3 GiB", n)
		}
	})

	t.Run("a pull that fills the disk", func(t *testing.T) {
		// An image of 16 MiB that does not compress, and a small one.
		noise := make([]byte, 16<<20)
		rand.Read(noise)
		layer, err := imagegen.Layer(imagegen.File("noise", string(noise), 0o644))
		if err != nil {
			t.Fatal(err)
		}
		img, err := imagegen.Image(layer)
		if err != nil {
			t.Fatal(err)
		}
		big, small := v.reg.Ref("big/noise:1"), v.reg.Ref("small/busybox:1")
		imagegen.Push(t, big, img)
		imagegen.Push(t, small, busyboxWith(t))

		// Leave 24 MiB free, counting the blocks ext4 keeps for root
		// (the agent is root); ext4 holds back 16 MiB of them for its
		// own metadata. The pull needs 32 (blob and unpacked layer).
		v.must("ssh", "--", `set -e; set -- $(stat -f -c '%f %S' /var/lib/devbox)
			fallocate -l $(( $1 * $2 - (24 << 20) )) /var/lib/devbox/filler`)
		r := v.run("pull", big)
		msg := tcgNote(r.stderr)
		if r.code == 0 || !oneLine(msg) || !strings.Contains(msg, "disk full") {
			t.Errorf("pull onto a full disk: exit %d, stderr %q", r.code, r.stderr)
		}
		t.Logf("pull onto a full disk: %s", msg)
		if r := v.run("images"); r.code != 0 || strings.Contains(r.stdout, "big/noise") {
			t.Errorf("images after a pull failed for a full disk: %+v", r)
		}
		v.must("ssh", "--", "rm /var/lib/devbox/filler")
		for _, ref := range []string{small, big} {
			if r := v.run("pull", "-q", ref); r.code != 0 {
				t.Errorf("pull %s after freeing space: %+v", ref, r)
			}
		}
		out := v.must("images")
		if !strings.Contains(out, "small/busybox") || !strings.Contains(out, "big/noise") {
			t.Errorf("images after freeing space:\n%s", out)
		}
		if out := v.must("run", "--rm", small, "echo", "runs"); out != "runs\n" {
			t.Errorf("run after the full disk: %q", out)
		}
	})
	v.must("down")
}

// `devbox up` with the machine directory on a full file system fails
// with one line naming the file and saying the host disk is full, and
// leaves nothing that stops the next up once there is room.
func TestVMHostDiskFull(t *testing.T) {
	v := newVM(t)
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs as DEVBOX_HOME needs root")
	}
	if err := os.MkdirAll(v.home(), 0o700); err != nil {
		t.Fatal(err)
	}
	// Room for the keys and the disk image's header, not for the boot
	// archive (the guest's initramfs and more).
	if err := syscall.Mount("tmpfs", v.home(), "tmpfs", 0, "size=4m,mode=0700"); err != nil {
		t.Skipf("mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if pid := v.pid(); pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
			for alive(pid) {
				exec.Command("sleep", "0.05").Run()
			}
		}
		if err := syscall.Unmount(v.home(), 0); err != nil {
			syscall.Unmount(v.home(), syscall.MNT_DETACH)
		}
	})
	r := v.run("up", "--driver", "qemu", "--memory", "512MiB", "--disk", "2GiB", "--guest-image", v.image)
	msg := tcgNote(r.stderr)
	initrd := filepath.Join(v.dir(), "initrd")
	if r.code == 0 || !oneLine(msg) || !strings.Contains(msg, "cannot write "+initrd+":") || !strings.Contains(msg, "host disk is full") {
		t.Errorf("up on a full host disk: exit %d, stderr %q", r.code, r.stderr)
	}
	if m, _ := filepath.Glob(filepath.Join(v.dir(), "*.tmp")); len(m) > 0 {
		t.Errorf("a full disk left %q", m)
	}
	// Room again: the same machine boots.
	if err := syscall.Mount("tmpfs", v.home(), "tmpfs", syscall.MS_REMOUNT, "size=64m,mode=0700"); err != nil {
		t.Fatal(err)
	}
	if out := v.must("up"); !strings.Contains(out, "is up in") {
		t.Errorf("up with room again said:\n%s", out)
	}
	v.must("down")
}
