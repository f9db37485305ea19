package layerfs

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"

	"golang.org/x/sys/unix"
)

// entry is one thing in a hand-made layer directory.
type entry struct {
	kind byte // 'f' file, 'd' dir, 'o' opaque dir, 'w' whiteout, 'l' symlink
	path string
	data string // file content or link target
}

func file(p, data string) entry { return entry{'f', p, data} }
func dir(p string) entry        { return entry{'d', p, ""} }
func opaque(p string) entry     { return entry{'o', p, ""} }
func whiteout(p string) entry   { return entry{'w', p, ""} }
func link(p, target string) entry {
	return entry{'l', p, target}
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: whiteout device nodes and trusted xattrs")
	}
}

// stack writes each layer (lowest first) to its own directory and returns
// the directories, lowest first.
func stack(t testing.TB, layers ...[]entry) []string {
	t.Helper()
	requireRoot(t)
	base := t.TempDir()
	var dirs []string
	for i, l := range layers {
		root := filepath.Join(base, "layer"+strconv.Itoa(i))
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, e := range l {
			p := filepath.Join(root, e.path)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			var err error
			switch e.kind {
			case 'f':
				err = os.WriteFile(p, []byte(e.data), 0o644)
			case 'd':
				err = os.MkdirAll(p, 0o755)
			case 'o':
				if err = os.MkdirAll(p, 0o755); err == nil {
					err = unix.Lsetxattr(p, opaqueXattr, []byte("y"), 0)
				}
			case 'w':
				err = unix.Mknod(p, unix.S_IFCHR, 0)
			case 'l':
				err = os.Symlink(e.data, p)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		dirs = append(dirs, root)
	}
	return dirs
}

func readFile(t *testing.T, fsys fs.FS, name string) string {
	t.Helper()
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		t.Fatalf("ReadFile(%q): %v", name, err)
	}
	return string(b)
}

func names(t *testing.T, fsys fs.FS, name string) []string {
	t.Helper()
	entries, err := fs.ReadDir(fsys, name)
	if err != nil {
		t.Fatalf("ReadDir(%q): %v", name, err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("err = %v, want %v", err, target)
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %T %v, want *fs.PathError", err, err)
	}
}

func TestTopLayerWins(t *testing.T) {
	fsys := New(stack(t,
		[]entry{file("etc/passwd", "lower\n"), file("etc/group", "lower group\n")},
		[]entry{file("etc/passwd", "upper\n")},
	))
	if got := readFile(t, fsys, "etc/passwd"); got != "upper\n" {
		t.Errorf("etc/passwd = %q, want the upper layer's", got)
	}
	if got := readFile(t, fsys, "etc/group"); got != "lower group\n" {
		t.Errorf("etc/group = %q, want the lower layer's", got)
	}
	if got, want := names(t, fsys, "etc"), []string{"group", "passwd"}; !slices.Equal(got, want) {
		t.Errorf("ReadDir(etc) = %q, want %q", got, want)
	}
}

func TestWhiteoutHidesFile(t *testing.T) {
	fsys := New(stack(t,
		[]entry{file("etc/shadow", "secret"), file("etc/passwd", "p")},
		[]entry{whiteout("etc/shadow")},
	))
	_, err := fs.ReadFile(fsys, "etc/shadow")
	wantErr(t, err, fs.ErrNotExist)
	_, err = fs.Stat(fsys, "etc/shadow")
	wantErr(t, err, fs.ErrNotExist)
	if got, want := names(t, fsys, "etc"), []string{"passwd"}; !slices.Equal(got, want) {
		t.Errorf("ReadDir(etc) = %q, want %q (whiteouts are not listed)", got, want)
	}
}

func TestWhiteoutHidesDirectoryAndRecreation(t *testing.T) {
	fsys := New(stack(t,
		[]entry{file("d/old", "x"), file("d/sub/deep", "x")},
		[]entry{whiteout("d")},
		[]entry{file("d/new", "y")}, // a new d, not merged with the deleted one
	))
	if got, want := names(t, fsys, "d"), []string{"new"}; !slices.Equal(got, want) {
		t.Errorf("ReadDir(d) = %q, want %q", got, want)
	}
	_, err := fs.ReadFile(fsys, "d/sub/deep")
	wantErr(t, err, fs.ErrNotExist)
}

func TestOpaqueDirectory(t *testing.T) {
	fsys := New(stack(t,
		[]entry{file("d/a", "a"), file("d/b", "b"), file("e/kept", "k")},
		[]entry{opaque("d"), file("d/c", "c"), file("e/more", "m")},
	))
	if got, want := names(t, fsys, "d"), []string{"c"}; !slices.Equal(got, want) {
		t.Errorf("ReadDir(d) = %q, want %q", got, want)
	}
	_, err := fs.ReadFile(fsys, "d/a")
	wantErr(t, err, fs.ErrNotExist)
	if got, want := names(t, fsys, "e"), []string{"kept", "more"}; !slices.Equal(got, want) {
		t.Errorf("ReadDir(e) = %q, want %q (not opaque: merged)", got, want)
	}
}

func TestOpaqueMiddleLayerHidesOnlyBelow(t *testing.T) {
	fsys := New(stack(t,
		[]entry{file("d/bottom", "")},
		[]entry{opaque("d"), file("d/middle", "")},
		[]entry{file("d/top", "")},
	))
	if got, want := names(t, fsys, "d"), []string{"middle", "top"}; !slices.Equal(got, want) {
		t.Errorf("ReadDir(d) = %q, want %q", got, want)
	}
}

func TestOpaqueRootIsIgnored(t *testing.T) {
	// overlayfs never treats a layer's root as opaque.
	fsys := New(stack(t,
		[]entry{file("lower", "")},
		[]entry{opaque("."), file("upper", "")},
	))
	if got, want := names(t, fsys, "."), []string{"lower", "upper"}; !slices.Equal(got, want) {
		t.Errorf("ReadDir(.) = %q, want %q", got, want)
	}
}

func TestNonDirectoryHidesBelow(t *testing.T) {
	fsys := New(stack(t,
		[]entry{file("d/bottom", "")},
		[]entry{file("d", "now a file")},
		[]entry{file("d/top", "")}, // a directory again, over the file
	))
	if got, want := names(t, fsys, "d"), []string{"top"}; !slices.Equal(got, want) {
		t.Errorf("ReadDir(d) = %q, want %q", got, want)
	}

	fsys = New(stack(t,
		[]entry{file("d/bottom", "")},
		[]entry{file("d", "a file")},
	))
	if got := readFile(t, fsys, "d"); got != "a file" {
		t.Errorf("d = %q", got)
	}
	_, err := fs.ReadFile(fsys, "d/bottom")
	wantErr(t, err, syscall.ENOTDIR)
	_, err = fs.ReadDir(fsys, "d")
	wantErr(t, err, syscall.ENOTDIR)
}

func TestSymlinkHidesLowerDirectory(t *testing.T) {
	fsys := New(stack(t,
		[]entry{file("lib/libc.so", "old")},
		[]entry{link("lib", "usr/lib"), file("usr/lib/libc.so", "new")},
	))
	if got := readFile(t, fsys, "lib/libc.so"); got != "new" {
		t.Errorf("lib/libc.so = %q, want it through the link", got)
	}
}

func TestMissingMiddleLayerStillMerges(t *testing.T) {
	fsys := New(stack(t,
		[]entry{file("d/a", "")},
		[]entry{file("other", "")},
		[]entry{file("d/b", "")},
	))
	if got, want := names(t, fsys, "d"), []string{"a", "b"}; !slices.Equal(got, want) {
		t.Errorf("ReadDir(d) = %q, want %q", got, want)
	}
}

func TestSymlinksStayInsideImage(t *testing.T) {
	layers := stack(t,
		[]entry{
			file("etc/real-passwd", "image passwd\n"),
			link("etc/passwd", "/etc/real-passwd"),
			link("abs-host", "/etc/hostname-of-host"),
			link("escape", "../../../../../../../secret"),
			link("escape-dir", "../../../.."),
			link("etc/up", "../../etc/real-passwd"),
			link("lib", "usr/lib"),
			file("usr/lib/x", "x"),
			link("usr/lib/self", "../../usr/lib/x"),
			link("dangling", "nowhere"),
		},
	)
	// A file on the host where an escaping link would land.
	secret := filepath.Join(filepath.Dir(layers[0]), "secret")
	if err := os.WriteFile(secret, []byte("host secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	fsys := New(layers)

	if got := readFile(t, fsys, "etc/passwd"); got != "image passwd\n" {
		t.Errorf("etc/passwd = %q", got)
	}
	if got := readFile(t, fsys, "etc/up"); got != "image passwd\n" {
		t.Errorf("etc/up = %q (.. must stop at the image root)", got)
	}
	if got := readFile(t, fsys, "lib/self"); got != "x" {
		t.Errorf("lib/self = %q", got)
	}
	for _, name := range []string{"abs-host", "escape", "dangling"} {
		_, err := fs.ReadFile(fsys, name)
		wantErr(t, err, fs.ErrNotExist)
	}
	_, err := fs.ReadFile(fsys, "escape-dir/secret")
	wantErr(t, err, fs.ErrNotExist)
	if got, want := names(t, fsys, "escape-dir"), names(t, fsys, "."); !slices.Equal(got, want) {
		t.Errorf("ReadDir(escape-dir) = %q, want the image root %q", got, want)
	}

	fi, err := fs.Stat(fsys, "etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Name() != "passwd" || !fi.Mode().IsRegular() {
		t.Errorf("Stat(etc/passwd) = %s %v, want passwd, a regular file", fi.Name(), fi.Mode())
	}
	fi, err = fsys.(fs.ReadLinkFS).Lstat("etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("Lstat(etc/passwd) mode = %v, want a symlink", fi.Mode())
	}
	target, err := fs.ReadLink(fsys, "etc/passwd")
	if err != nil || target != "/etc/real-passwd" {
		t.Errorf("ReadLink(etc/passwd) = %q, %v", target, err)
	}
	_, err = fs.ReadLink(fsys, "usr")
	wantErr(t, err, fs.ErrInvalid)
}

func TestSymlinkLoopLimit(t *testing.T) {
	// chain/0 -> 1 -> ... -> n, n is a file: n links.
	chain := func(n int) []entry {
		var es []entry
		for i := range n {
			es = append(es, link("c/"+strconv.Itoa(i), strconv.Itoa(i+1)))
		}
		return append(es, file("c/"+strconv.Itoa(n), "end"))
	}
	fsys := New(stack(t, chain(maxSymlinks)))
	if got := readFile(t, fsys, "c/0"); got != "end" {
		t.Errorf("40 links: %q", got)
	}
	fsys = New(stack(t, chain(maxSymlinks+1)))
	_, err := fs.ReadFile(fsys, "c/0")
	wantErr(t, err, syscall.ELOOP)

	fsys = New(stack(t, []entry{link("a", "b"), link("b", "/a")}))
	_, err = fs.Stat(fsys, "a")
	wantErr(t, err, syscall.ELOOP)
	_, err = fs.ReadFile(fsys, "a/x")
	wantErr(t, err, syscall.ELOOP)
	if _, err := fsys.(fs.ReadLinkFS).Lstat("a"); err != nil {
		t.Errorf("Lstat(a) = %v, want the link itself", err)
	}
}

func TestLinkThroughLayers(t *testing.T) {
	// The link is in one layer, its target in another, and a whiteout in a
	// third hides a lower copy of the target.
	fsys := New(stack(t,
		[]entry{file("opt/app/bin", "old")},
		[]entry{link("usr/local/app", "/opt/app")},
		[]entry{whiteout("opt/app/bin"), file("opt/app/run", "new")},
	))
	if got, want := names(t, fsys, "usr/local/app"), []string{"run"}; !slices.Equal(got, want) {
		t.Errorf("ReadDir(usr/local/app) = %q, want %q", got, want)
	}
	_, err := fs.ReadFile(fsys, "usr/local/app/bin")
	wantErr(t, err, fs.ErrNotExist)
}

func TestErrors(t *testing.T) {
	fsys := New(stack(t, []entry{file("f", "data"), dir("d")}))
	for _, name := range []string{"/f", "../f", "d/../f", "d/", ""} {
		_, err := fsys.Open(name)
		wantErr(t, err, fs.ErrInvalid)
	}
	_, err := fs.ReadFile(fsys, "d")
	wantErr(t, err, syscall.EISDIR)
	_, err = fs.ReadDir(fsys, "f")
	wantErr(t, err, syscall.ENOTDIR)
	_, err = fs.Stat(fsys, "f/x")
	wantErr(t, err, syscall.ENOTDIR)

	f, err := fsys.Open("d")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Read(make([]byte, 1)); !errors.Is(err, syscall.EISDIR) {
		t.Errorf("Read(dir) = %v", err)
	}
	f.Close()

	_, err = New([]string{filepath.Join(t.TempDir(), "missing")}).Open(".")
	wantErr(t, err, fs.ErrNotExist)
	_, err = New(nil).Open(".")
	if err == nil {
		t.Error("New(nil).Open(.) succeeded")
	}
}

func TestSpecialFilesAreNotRead(t *testing.T) {
	layers := stack(t, []entry{file("keep", "")})
	if err := unix.Mkfifo(filepath.Join(layers[0], "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	fsys := New(layers)
	f, err := fsys.Open("fifo") // must not block
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Read(make([]byte, 1)); err == nil {
		t.Error("Read(fifo) succeeded")
	}
	f.Close()
	if _, err := fs.ReadFile(fsys, "fifo"); err == nil {
		t.Error("ReadFile(fifo) succeeded")
	}
}

func TestDirReadDirInChunks(t *testing.T) {
	fsys := New(stack(t,
		[]entry{file("d/a", ""), file("d/c", "")},
		[]entry{file("d/b", ""), whiteout("d/c"), file("d/d", "")},
	))
	f, err := fsys.Open("d")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := f.(fs.ReadDirFile)
	var got []string
	for {
		es, err := d.ReadDir(2)
		for _, e := range es {
			got = append(got, e.Name())
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"a", "b", "d"}; !slices.Equal(got, want) {
		t.Errorf("entries = %q, want %q", got, want)
	}
}

func TestFSTest(t *testing.T) {
	fsys := New(stack(t,
		[]entry{
			file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
			file("etc/group", "root:x:0:\n"),
			file("etc/shadow", "gone"),
			file("var/cache/a", "gone"),
			file("usr/lib/libc.so", "libc"),
			file("usr/bin/sh", "#!"),
		},
		[]entry{
			whiteout("etc/shadow"),
			opaque("var/cache"), file("var/cache/b", "b"),
			link("lib", "usr/lib"),
			link("bin", "/usr/bin"),
			link("etc/os-release", "../usr/lib/os-release"),
			file("usr/lib/os-release", "ID=test\n"),
		},
		[]entry{
			file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"),
			dir("home/user"),
		},
	))
	if err := fstest.TestFS(fsys,
		"etc/passwd", "etc/group", "etc/os-release", "var/cache/b", "usr/lib/libc.so",
		"usr/bin/sh", "lib", "bin", "home/user", "usr/lib/os-release",
	); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, fsys, "etc/passwd"); !strings.Contains(got, "user:x:1000") {
		t.Errorf("etc/passwd = %q", got)
	}
}

func TestConcurrentUse(t *testing.T) {
	fsys := New(stack(t,
		[]entry{file("etc/passwd", "p"), file("etc/group", "g"), file("d/a", "")},
		[]entry{opaque("d"), file("d/b", ""), file("etc/hosts", "h")},
		[]entry{file("etc/x", "")},
	))
	done := make(chan error)
	for range 8 {
		go func() {
			var err error
			for range 50 {
				if _, err = fs.ReadFile(fsys, "etc/passwd"); err != nil {
					break
				}
				var es []fs.DirEntry
				if es, err = fs.ReadDir(fsys, "d"); err == nil && len(es) != 1 {
					err = errors.New("d not opaque")
					break
				}
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func BenchmarkReadFile(b *testing.B) {
	var layers [][]entry
	layers = append(layers, []entry{file("etc/passwd", strings.Repeat("user:x:1:1::/:/bin/sh\n", 30))})
	for i := range 9 {
		layers = append(layers, []entry{file("app/"+strconv.Itoa(i), "")})
	}
	dirs := stack(b, layers...)
	b.ResetTimer()
	for b.Loop() {
		if _, err := fs.ReadFile(New(dirs), "etc/passwd"); err != nil {
			b.Fatal(err)
		}
	}
}
