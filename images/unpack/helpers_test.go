package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const testImage = "example.com/test:latest"

// epoch is a fixed mtime for entries that do not care about theirs.
var epoch = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

// entry is one tar entry of a test layer.
type entry struct {
	hdr  tar.Header
	body string
}

func file(name, body string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, ModTime: epoch}, body: body}
}

func dir(name string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: epoch}}
}

func symlink(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: epoch}}
}

func hardlink(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: epoch}}
}

// with returns e changed by f, for the odd field a case cares about.
func (e entry) with(f func(h *tar.Header)) entry {
	f(&e.hdr)
	return e
}

// makeTar encodes entries as a tar stream.
func makeTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("write header %q: %v", h.Name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatalf("write %q: %v", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// applyEntries applies a layer of entries to a new directory, which sits
// alone inside a parent directory so callers can check nothing leaked next
// to it.
func applyEntries(t testing.TB, entries ...entry) (string, Result, error) {
	t.Helper()
	layer := filepath.Join(t.TempDir(), "layer")
	if err := os.Mkdir(layer, 0o755); err != nil {
		t.Fatal(err)
	}
	res, err := Apply(context.Background(), layer, bytes.NewReader(makeTar(t, entries...)), Options{Name: testImage})
	return layer, res, err
}

// mustApply is applyEntries for layers that must apply cleanly.
func mustApply(t testing.TB, entries ...entry) (string, Result) {
	t.Helper()
	layer, res, err := applyEntries(t, entries...)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return layer, res
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: ownership, device nodes and trusted xattrs")
	}
}

func lstat(t testing.TB, path string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatalf("lstat: %v", err)
	}
	return st
}

func assertMissing(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s exists (err %v), want it absent", path, err)
	}
}

func assertType(t testing.TB, path string, ifmt uint32) unix.Stat_t {
	t.Helper()
	st := lstat(t, path)
	if st.Mode&unix.S_IFMT != ifmt {
		t.Errorf("%s: file type %#o, want %#o", path, st.Mode&unix.S_IFMT, ifmt)
	}
	return st
}

func assertPerm(t testing.TB, path string, perm uint32) {
	t.Helper()
	if got := lstat(t, path).Mode & 0o7777; got != perm {
		t.Errorf("%s: mode %#o, want %#o", path, got, perm)
	}
}

func assertOwner(t testing.TB, path string, uid, gid uint32) {
	t.Helper()
	st := lstat(t, path)
	if st.Uid != uid || st.Gid != gid {
		t.Errorf("%s: owner %d:%d, want %d:%d", path, st.Uid, st.Gid, uid, gid)
	}
}

func assertContent(t testing.TB, path, want string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s: content %q, want %q", path, got, want)
	}
}

func assertLink(t testing.TB, path, want string) {
	t.Helper()
	assertType(t, path, unix.S_IFLNK)
	got, err := os.Readlink(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("%s -> %q, want -> %q", path, got, want)
	}
}

func assertXattr(t testing.TB, path, name, want string) {
	t.Helper()
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(path, name, buf)
	if err != nil {
		t.Errorf("%s: xattr %s: %v", path, name, err)
		return
	}
	if got := string(buf[:n]); got != want {
		t.Errorf("%s: xattr %s = %q, want %q", path, name, got, want)
	}
}

func assertNoXattr(t testing.TB, path, name string) {
	t.Helper()
	buf := make([]byte, 256)
	if n, err := unix.Lgetxattr(path, name, buf); !errors.Is(err, unix.ENODATA) {
		t.Errorf("%s: xattr %s = %q (err %v), want none", path, name, buf[:max(n, 0)], err)
	}
}

// assertWhiteout checks that path is an overlayfs whiteout: a 0/0 char device.
func assertWhiteout(t testing.TB, path string) {
	t.Helper()
	st := assertType(t, path, unix.S_IFCHR)
	if st.Rdev != 0 {
		t.Errorf("%s: rdev %d, want 0", path, st.Rdev)
	}
}

// listTree returns every path under root, relative and sorted.
func listTree(t testing.TB, root string) []string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root {
			rel, _ := filepath.Rel(root, p)
			paths = append(paths, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(paths)
	return paths
}
