package qemu

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A disk grows with qemu-img, keeps what it holds, never shrinks, and its
// size is read back from the header as qemu-img reports it.
func TestResizeDisk(t *testing.T) {
	if _, err := qemuImg(); err != nil {
		t.Skip(err)
	}
	d := New(t.TempDir(), "amd64", "tcg")
	p := filepath.Join(t.TempDir(), "data.qcow2")
	if err := d.CreateDisk(t.Context(), p, 2<<30); err != nil {
		t.Fatal(err)
	}
	if n, err := d.DiskSize(p); err != nil || n != 2<<30 {
		t.Fatalf("DiskSize = %d, %v; want 2 GiB", n, err)
	}
	// Something written at the disk's start survives the resize.
	_, qemuIO := exec.LookPath("qemu-io")
	if qemuIO == nil {
		if out, err := exec.Command("qemu-io", "-c", "write -P 0x5a 0 64k", p).CombinedOutput(); err != nil {
			t.Fatalf("qemu-io write: %v\n%s", err, out)
		}
	}
	if err := d.ResizeDisk(t.Context(), p, 3<<30+1); err != nil {
		t.Fatal(err)
	}
	want := int64(3<<30 + 512)
	if n, err := d.DiskSize(p); err != nil || n != want {
		t.Errorf("after growing: DiskSize = %d, %v; want %d (rounded up to a sector)", n, err, want)
	}
	out, err := exec.Command("qemu-img", "info", p).CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("(%d bytes)", want)) {
		t.Errorf("qemu-img info after growing: %v\n%s", err, out)
	}
	if qemuIO == nil {
		if out, err := exec.Command("qemu-io", "-c", "read -P 0x5a 0 64k", p).CombinedOutput(); err != nil || strings.Contains(string(out), "Pattern verification failed") {
			t.Errorf("contents after the resize: %v\n%s", err, out)
		}
	}
	if err := d.ResizeDisk(t.Context(), p, want); err != nil {
		t.Errorf("resize to the same size: %v", err)
	}
	if err := d.ResizeDisk(t.Context(), p, 1<<30); err == nil || !strings.Contains(err.Error(), "shrinking is not supported") {
		t.Errorf("shrink: %v", err)
	}
	if n, _ := d.DiskSize(p); n != want {
		t.Errorf("a refused shrink changed the size to %d", n)
	}
}

func TestDiskSizeNotQcow2(t *testing.T) {
	p := filepath.Join(t.TempDir(), "raw")
	if err := os.WriteFile(p, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	d := New(t.TempDir(), "amd64", "tcg")
	if _, err := d.DiskSize(p); err == nil || !strings.Contains(err.Error(), "not a qcow2") {
		t.Errorf("raw file: %v", err)
	}
	if _, err := d.DiskSize(p + ".missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// qemu-img's "No space left on device" is ENOSPC to callers, naming the
// file.
func TestDiskErrorNoSpace(t *testing.T) {
	err := diskError("create disk", "/m/data.qcow2", errors.New("exit status 1"),
		[]byte("qemu-img: /m/data.qcow2.tmp: Could not write qcow2 header: No space left on device\n"))
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "/m/data.qcow2") {
		t.Errorf("no space: %v", err)
	}
	err = diskError("create disk", "/m/data.qcow2", errors.New("exit status 1"), []byte("qemu-img: other\n"))
	if errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "other") {
		t.Errorf("other failure: %v", err)
	}
}
