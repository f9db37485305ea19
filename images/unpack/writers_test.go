package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// describeTree describes every path under root, root included: type, mode,
// owner, size, mtime, device, xattrs, symlink target, a content digest, and
// which earlier path a hardlink shares its inode with. Access times are left
// out: reading the tree changes them.
func describeTree(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	inodes := make(map[uint64]string)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		st := lstat(t, p)
		mtime := fmt.Sprintf("%d.%d", st.Mtim.Sec, st.Mtim.Nsec)
		if time.Since(time.Unix(st.Mtim.Sec, 0)) < time.Hour {
			// Apply did not set it: an implicit directory, a whiteout,
			// or the layer dir when the tar has no "./".
			mtime = "recent"
		}
		line := fmt.Sprintf("%s: mode %#o owner %d:%d size %d mtime %s rdev %d xattrs %s",
			rel, st.Mode, st.Uid, st.Gid, st.Size, mtime, st.Rdev,
			strings.Join(xattrList(t, p), ","))
		if first, ok := inodes[st.Ino]; ok {
			line += " hardlink of " + first
		} else {
			inodes[st.Ino] = rel
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				t.Fatal(err)
			}
			line += " -> " + target
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			line += fmt.Sprintf(" sha256 %x", sha256.Sum256(b))
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// xattrList returns path's xattrs as sorted name=value pairs.
func xattrList(t testing.TB, path string) []string {
	t.Helper()
	names := make([]byte, 64<<10)
	n, err := unix.Llistxattr(path, names)
	if err != nil {
		t.Fatalf("llistxattr %s: %v", path, err)
	}
	var out []string
	for _, name := range strings.Split(string(names[:n]), "\x00") {
		if name == "" {
			continue
		}
		val := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(path, name, val)
		if err != nil {
			t.Fatalf("lgetxattr %s %s: %v", path, name, err)
		}
		out = append(out, fmt.Sprintf("%s=%q", name, val[:m]))
	}
	slices.Sort(out)
	return out
}

// applied is what one Apply of a layer did.
type applied struct {
	res  Result
	err  string
	tree []string // only when err is empty: a failed layer's dir is garbage
}

// applyWith applies stream with t into a fresh directory.
func applyWith(tb testing.TB, stream []byte, t tuning) applied {
	tb.Helper()
	layer := filepath.Join(tb.TempDir(), "layer")
	if err := os.Mkdir(layer, 0o755); err != nil {
		tb.Fatal(err)
	}
	res, err := apply(context.Background(), layer, bytes.NewReader(stream), Options{Name: testImage}, t)
	if err != nil {
		return applied{res: Result{ImplicitDirs: res.ImplicitDirs}, err: err.Error()}
	}
	return applied{res: res, tree: describeTree(tb, layer)}
}

// compareApplied fails the test if got and want differ.
func compareApplied(t testing.TB, what string, got, want applied) {
	t.Helper()
	if got.err != want.err {
		t.Fatalf("%s: error %q, want %q as without writers", what, got.err, want.err)
	}
	if want.err != "" {
		return
	}
	if got.res.Size != want.res.Size || !slices.Equal(got.res.ImplicitDirs, want.res.ImplicitDirs) {
		t.Errorf("%s: Result %+v, want %+v as without writers", what, got.res, want.res)
	}
	if !slices.Equal(got.tree, want.tree) {
		for i := range max(len(got.tree), len(want.tree)) {
			g, w := "(none)", "(none)"
			if i < len(got.tree) {
				g = got.tree[i]
			}
			if i < len(want.tree) {
				w = want.tree[i]
			}
			if g != w {
				t.Errorf("%s: first difference from the tree without writers:\ngot  %s\nwant %s", what, g, w)
				break
			}
		}
	}
}

func tuned(writers int) tuning {
	return tuning{writers: writers, spawn: defaultTuning.spawn}
}

func sized(name string, n int) entry {
	return file(name, strings.Repeat(string(rune('a'+len(name)%26)), n))
}

// TestWritersMatchInline applies layers whose entries depend on files the
// writers may still be writing, and layers big enough to fill the arena and
// the queue, with and without writers: the results must be the same, down to
// the error text.
func TestWritersMatchInline(t *testing.T) {
	requireRoot(t)
	withXattr := func(e entry, name, value string) entry {
		return e.with(func(h *tar.Header) {
			h.Format = tar.FormatPAX
			h.PAXRecords = map[string]string{paxXattrPrefix + name: value}
		})
	}
	var manyEmpty, manyBig, deep []entry
	for i := range 3 * maxQueued {
		manyEmpty = append(manyEmpty, file(fmt.Sprintf("e/%d", i), ""))
	}
	for i := range 24 { // several arena's worth, sizes that do not divide it
		manyBig = append(manyBig, sized(fmt.Sprintf("b/%d", i), maxQueuedFile-i*37<<10))
	}
	for i := range 40 {
		deep = append(deep, sized(fmt.Sprintf("d%d/s%d/f%d", i%3, i%5, i), i*1000))
	}
	layers := map[string][]entry{
		"same file twice":           {file("a", "1"), file("a", "22"), file("a", "333")},
		"hardlink to a queued file": {file("a", "x"), hardlink("b", "a"), hardlink("c", "/a"), file("a", "new")},
		"file as a parent":          {file("f", "x"), file("f/g", "y")},
		"file as a deeper parent":   {dir("d/"), file("d/f", "x"), file("d/f/g/h", "y")},
		"hardlink under a file":     {file("f", "x"), hardlink("g", "f/x")},
		"file replaces a tree":      {dir("d/"), file("d/a", "a"), file("d/s/b", "b"), file("d", "now a file"), file("d2", "z")},
		"dir replaces a file":       {file("x", "f"), dir("x/"), file("x/y", "y")},
		"symlink replaces a tree":   {dir("d/"), file("d/a", "a"), symlink("d", "/etc")},
		"whiteout over queued":      {file("a", "x"), dir("d/"), file("d/b", "y"), file(".wh.a", ""), file(".wh.d", "")},
		"opaque after files":        {dir("d/"), file("d/a", "a"), file("d/.wh..wh..opq", ""), file("d/b", "b")},
		"dir over dir after files": {dir("d/"), file("d/a", "a"), dir("d/").with(func(h *tar.Header) {
			h.Mode, h.Uid, h.Gid = 0o2700, 7, 8
		}), file("d/b", "b")},
		"root entry after files": {file("a", "a"), dir("d/"), file("d/b", "b"), dir("./").with(func(h *tar.Header) { h.Mode = 0o700 })},
		"implicit then explicit": {file("i/j/k", "k"), dir("i/").with(func(h *tar.Header) { h.Mode = 0o711 }), file("i/l", "l")},
		"xattrs and modes": {
			withXattr(file("x", "x"), "user.a", "b"),
			withXattr(file("y", "y"), "trusted.overlay.opaque", "y"),
			file("s", "s").with(func(h *tar.Header) { h.Mode, h.Uid, h.Gid = 0o4755, 5, 6 }),
		},
		"mixed sizes":     append(append([]entry{sized("big", 3*maxQueuedFile)}, deep...), sized("big2", maxQueuedFile+1), file("z", "z")),
		"many empty":      manyEmpty,
		"arena wraps":     manyBig,
		"writer fails":    {file("a", "a"), withXattr(file("bad", "x"), "user."+strings.Repeat("n", 300), "v"), file("c", "c"), file("../x", "y")},
		"writer and walk": {withXattr(file("bad", "x"), "user."+strings.Repeat("n", 300), "v"), symlink("l", "/"), file("l/x", "y")},
		"inline fails":    {file("a", "a"), file("b", "b"), symlink("l", "/"), file("l/x", "y"), file("c", "c")},
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for name := range layers {
			if !yield(name) {
				return
			}
		}
	})
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			stream := makeTar(t, layers[name]...)
			want := applyWith(t, stream, tuned(0))
			for _, n := range []int{1, 2, 3} {
				compareApplied(t, fmt.Sprintf("%d writers", n), applyWith(t, stream, tuned(n)), want)
			}
		})
	}
	t.Run("synthetic layer", func(t *testing.T) {
		stream := synthLayer(16 << 20)
		want := applyWith(t, stream, tuned(0))
		compareApplied(t, "2 writers", applyWith(t, stream, tuned(2)), want)
	})
	t.Run("truncated in a small file", func(t *testing.T) {
		stream := makeTar(t, file("a", "a"), sized("b", 5000), file("c", "c"))
		for _, cut := range []int{1024 + 512, 1024 + 512 + 100, 1024 + 512 + 4096} {
			want := applyWith(t, stream[:cut], tuned(0))
			compareApplied(t, fmt.Sprintf("cut at %d", cut), applyWith(t, stream[:cut], tuned(2)), want)
		}
	})
}

// TestWriterErrorComesFirst makes sure an error of a file a writer wrote
// wins over a later entry's, as it would without writers.
func TestWriterErrorComesFirst(t *testing.T) {
	requireRoot(t)
	bad := file("bad", "x").with(func(h *tar.Header) {
		h.Format = tar.FormatPAX
		h.PAXRecords = map[string]string{paxXattrPrefix + "user." + strings.Repeat("n", 300): "v"}
	})
	_, _, err := applyEntries(t, file("a", "a"), bad, file("../escape", "x"))
	if err == nil || !strings.Contains(err.Error(), `entry "bad": set xattr user.nnn`) {
		t.Fatalf("Apply: %v, want the xattr error of entry \"bad\"", err)
	}
}
