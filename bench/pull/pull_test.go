package main

import (
	"archive/tar"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// readLayer returns the tar headers of the gzip layer at path.
func readLayer(t *testing.T, path string) map[string]*tar.Header {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	hdrs := map[string]*tar.Header{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hdrs
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs[h.Name] = h
	}
}

func TestCachedLayer(t *testing.T) {
	src := t.TempDir()
	write := func(name string, size int) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(src, name), []byte(strings.Repeat("x", size)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(src, "a/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	write("a/1", 100)
	write("a/2-big", 10_000) // over budget: skipped, smaller later files still fit
	write("a/3", 100)
	write("a/sub/4", 100)
	if err := os.Link(filepath.Join(src, "a/1"), filepath.Join(src, "a/1-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("1", filepath.Join(src, "a/sym")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(src, "a/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}

	work := t.TempDir()
	root := filepath.Join(src, "a")
	path, st, err := cachedLayer(work, []string{root}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	hdrs := readLayer(t, path)
	prefix := strings.TrimPrefix(root, "/") + "/"
	if _, ok := hdrs[prefix+"2-big"]; ok {
		t.Error("file over budget was archived")
	}
	if _, ok := hdrs[prefix+"fifo"]; ok {
		t.Error("fifo was archived")
	}
	if h := hdrs[prefix+"1-link"]; h == nil || h.Typeflag != tar.TypeLink || h.Linkname != prefix+"1" {
		t.Errorf("1-link: %+v, want hard link to %s1", h, prefix)
	}
	if h := hdrs[prefix+"sym"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "1" {
		t.Errorf("sym: %+v", h)
	}
	for _, name := range []string{prefix + "3", prefix + "sub/4", strings.TrimPrefix(filepath.Dir(root), "/") + "/"} {
		if hdrs[name] == nil {
			t.Errorf("%s missing", name)
		}
	}
	if st.Files != 3 || st.Hardlinks != 1 || st.Symlinks != 1 || st.Bytes != 300 {
		t.Errorf("stats %+v", st)
	}

	// A second call must reuse the cached blob, not rebuild it.
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	path2, st2, err := cachedLayer(work, []string{root}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(path2)
	if err != nil {
		t.Fatal(err)
	}
	if path2 != path || !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) || st2 != st {
		t.Error("second cachedLayer call rebuilt the layer")
	}
}
