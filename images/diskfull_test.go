package images_test

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/devbox-dev/devbox/images"
	"github.com/devbox-dev/devbox/internal/testutil/imagegen"
)

// A pull that fills the disk fails with a clear error and leaves a store
// that still lists, removes and pulls once there is room.
func TestPullDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	root := t.TempDir()
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=6m"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(root, unix.MNT_DETACH) })

	reg := newRegistry(t, nil)
	small := mustImage(t, host(), mustLayer(t, imagegen.Gzip, imagegen.File("small", "s", 0o644)))
	imagegen.Push(t, reg+"/small:1", small)
	big := make([]byte, 8<<20) // incompressible: blob and unpacked file both take 8 MB
	rand.Read(big)
	imagegen.Push(t, reg+"/big:1", mustImage(t, host(), mustLayer(t, imagegen.Gzip, imagegen.Entry{Name: "big", Mode: 0o644, Content: big})))

	s := openStoreAt(t, root)
	if _, err := s.Pull(context.Background(), reg+"/small:1", images.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Pull(context.Background(), reg+"/big:1", images.PullOptions{})
	if err == nil || !strings.Contains(err.Error(), "disk full") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %v, want a one-line disk full error", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Dir(), "tmp")); len(ents) != 0 {
		t.Errorf("the failed pull left %d entries in tmp/", len(ents))
	}
	list, err := s.List()
	if err != nil || len(list) != 1 {
		t.Fatalf("after disk full: List = %v, %v; want the small image", list, err)
	}
	if _, err := s.Remove(reg+"/small:1", false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(context.Background(), reg+"/small:1", images.PullOptions{}); err != nil {
		t.Fatalf("pull after disk full: %v", err)
	}
}
