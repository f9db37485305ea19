package agent

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestProbeDisk(t *testing.T) {
	dir := t.TempDir()
	img := func(name string, size int64, write func(f *os.File)) *os.File {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		if write != nil {
			write(f)
		}
		return f
	}
	blank := img("blank", 64<<20, nil)
	magic := img("magic", 64<<20, func(f *os.File) {
		var b [2]byte
		binary.LittleEndian.PutUint16(b[:], ext4Magic)
		f.WriteAt(b[:], ext4MagicOffset)
	})
	// btrfs keeps its superblock at 64 KiB: not ext4, not blank.
	foreign := img("foreign", 64<<20, func(f *os.File) { f.WriteAt([]byte("_BHRfS_M"), 64<<10+0x40) })
	small := img("small", 512, nil)
	for _, c := range []struct {
		f    *os.File
		want diskKind
	}{{blank, diskBlank}, {magic, diskExt4}, {foreign, diskUnknown}, {small, diskBlank}} {
		got, err := probeDisk(c.f)
		if err != nil || got != c.want {
			t.Errorf("%s: %v, %v; want %v", filepath.Base(c.f.Name()), got, err, c.want)
		}
	}

	// A real ext4 file system, made by e2fsprogs as the guest does.
	mke2fs, err := exec.LookPath("mke2fs")
	if err != nil {
		t.Skip("no mke2fs on this machine")
	}
	real := img("real", 64<<20, nil)
	if out, err := exec.Command(mke2fs, "-q", "-t", "ext4", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", "-L", "devbox-data", real.Name()).CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v\n%s", err, out)
	}
	if got, err := probeDisk(real); err != nil || got != diskExt4 {
		t.Errorf("mke2fs'd image: %v, %v; want ext4", got, err)
	}
}
