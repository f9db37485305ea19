package main_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/devbox-dev/devbox/internal/testutil/imagegen"
	"github.com/devbox-dev/devbox/internal/testutil/registry"
)

var mtime = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)

// edgeCaseImage has three layers (gzip, zstd, uncompressed) that together
// use every unpacking case a layer can hold.
func edgeCaseImage(t *testing.T) v1.Image {
	t.Helper()
	l1, err := imagegen.CompressedLayer(imagegen.Gzip,
		imagegen.Dir("etc/", 0o755),
		imagegen.File("etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644),
		imagegen.Dir("a/", 0o755),
		imagegen.File("a/x", "x", 0o644),
		imagegen.File("a/y", "y", 0o644),
		imagegen.Dir("opq/", 0o755),
		imagegen.File("opq/old", "old", 0o644),
		imagegen.File("gone", "gone", 0o644),
		imagegen.Dir("dir2file/", 0o755),
		imagegen.File("dir2file/child", "c", 0o644),
		imagegen.File("file2dir", "f", 0o644),
		imagegen.Symlink("abs", "/etc/passwd"),
		imagegen.Symlink("rel", "etc/passwd"),
		imagegen.Symlink("dangling", "/no/such/file"),
		imagegen.File("suid", "s", 0o4755),
		imagegen.File("sgid", "s", 0o2755),
		imagegen.Dir("sticky/", 0o1777),
		imagegen.Entry{Name: "owned", Mode: 0o640, UID: 1000, GID: 2000, Content: []byte("o")},
		imagegen.Entry{Name: "old", Mode: 0o644, ModTime: mtime, Content: []byte("m")},
		imagegen.Entry{Name: "xattr", Mode: 0o644, Content: []byte("x"), Xattrs: map[string]string{"user.devbox": "yes"}},
		imagegen.Fifo("fifo", 0o600),
		imagegen.CharDev("null", 1, 3),
		imagegen.BlockDev("loop", 7, 0),
		imagegen.Hardlink("hard", "etc/passwd"),
	)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := imagegen.CompressedLayer(imagegen.Zstd,
		imagegen.Whiteout("gone"),
		imagegen.Whiteout("a/x"),
		imagegen.Dir("opq/", 0o755),
		imagegen.OpaqueWhiteout("opq"),
		imagegen.File("opq/new", "new", 0o644),
		imagegen.File("dir2file", "now a file", 0o644),
		imagegen.Dir("file2dir/", 0o755),
		imagegen.File("file2dir/child", "now a dir", 0o644),
	)
	if err != nil {
		t.Fatal(err)
	}
	l3, err := imagegen.CompressedLayer(imagegen.None,
		imagegen.File("etc/hostname", "edge\n", 0o644),
		imagegen.File("gone", "back again", 0o644),
	)
	if err != nil {
		t.Fatal(err)
	}
	img, err := imagegen.Image(l1, l2, l3)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// The edge-case image, pulled by the binary from a real registry, stacks
// under a real overlayfs mount into exactly the tree its layers describe.
func TestEdgeCaseImageThroughOverlay(t *testing.T) {
	needRoot(t)
	reg := registry.Start(t)
	ref := reg.Ref("edge/cases:1")
	imagegen.Push(t, ref, edgeCaseImage(t))
	root := t.TempDir()
	mustRun(t, root, "pull", ref)
	var imgs []struct{ Layers []struct{ ChainID string } }
	if err := json.Unmarshal([]byte(mustRun(t, root, "images", "--format", "json")), &imgs); err != nil || len(imgs) != 1 {
		t.Fatalf("images: %v %v", imgs, err)
	}
	var lowers []string
	for _, l := range imgs[0].Layers {
		lowers = append([]string{filepath.Join(root, "images/layers", strings.TrimPrefix(l.ChainID, "sha256:"), "diff")}, lowers...)
	}
	m := t.TempDir()
	if err := unix.Mount("overlay", m, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(lowers, ":")); err != nil {
		t.Skipf("mount overlay: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(m, unix.MNT_DETACH) })

	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(m, p))
		if err != nil {
			return "ERR " + err.Error()
		}
		return string(b)
	}
	lstat := func(p string) *syscall.Stat_t {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(m, p), &st); err != nil {
			t.Errorf("lstat %s: %v", p, err)
			return &syscall.Stat_t{}
		}
		return &st
	}
	absent := func(p string) {
		if _, err := os.Lstat(filepath.Join(m, p)); !os.IsNotExist(err) && !errors.Is(err, syscall.ENOTDIR) {
			t.Errorf("%s should be gone: %v", p, err)
		}
	}
	for p, want := range map[string]string{
		"etc/passwd": "root:x:0:0::/root:/bin/sh\n", "etc/hostname": "edge\n",
		"a/y": "y", "opq/new": "new", "gone": "back again", "dir2file": "now a file",
		"file2dir/child": "now a dir", "hard": "root:x:0:0::/root:/bin/sh\n",
	} {
		if got := read(p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	absent("a/x")
	absent("opq/old")
	absent("dir2file/child")
	for p, want := range map[string]string{"abs": "/etc/passwd", "rel": "etc/passwd", "dangling": "/no/such/file"} {
		if got, err := os.Readlink(filepath.Join(m, p)); err != nil || got != want {
			t.Errorf("%s -> %q (%v), want %q", p, got, err, want)
		}
	}
	for p, want := range map[string]uint32{
		"suid": syscall.S_IFREG | 0o4755, "sgid": syscall.S_IFREG | 0o2755, "sticky": syscall.S_IFDIR | 0o1777,
		"owned": syscall.S_IFREG | 0o640, "fifo": syscall.S_IFIFO | 0o600,
		"null": syscall.S_IFCHR | 0o666, "loop": syscall.S_IFBLK | 0o660,
	} {
		if got := lstat(p).Mode; got != want {
			t.Errorf("%s mode %o, want %o", p, got, want)
		}
	}
	if st := lstat("owned"); st.Uid != 1000 || st.Gid != 2000 {
		t.Errorf("owned by %d:%d, want 1000:2000", st.Uid, st.Gid)
	}
	if st := lstat("null"); unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		t.Errorf("null is %d,%d, want 1,3", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	if st := lstat("old"); st.Mtim.Sec != mtime.Unix() {
		t.Errorf("old mtime %d, want %d", st.Mtim.Sec, mtime.Unix())
	}
	if st, pw := lstat("hard"), lstat("etc/passwd"); st.Ino != pw.Ino || st.Nlink != 2 {
		t.Errorf("hard is not a hard link of etc/passwd: ino %d vs %d, nlink %d", st.Ino, pw.Ino, st.Nlink)
	}
	buf := make([]byte, 16)
	if n, err := unix.Lgetxattr(filepath.Join(m, "xattr"), "user.devbox", buf); err != nil || string(buf[:n]) != "yes" {
		t.Errorf("xattr user.devbox = %q, %v", buf[:n], err)
	}
	ents, err := os.ReadDir(filepath.Join(m, "opq"))
	if err != nil || len(ents) != 1 {
		t.Errorf("opq holds %v, want only new", ents)
	}
}
