package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestApplyEntryTypes(t *testing.T) {
	requireRoot(t)
	long := strings.Repeat("long-directory-name/", 8) + "file-with-a-name-past-the-ustar-limit"
	tests := []struct {
		name    string
		entries []entry
		check   func(t *testing.T, layer string, res Result)
	}{{
		name: "regular file",
		entries: []entry{file("etc/motd", "hello\n").with(func(h *tar.Header) {
			h.Mode, h.Uid, h.Gid = 0o640, 1000, 2000
		})},
		check: func(t *testing.T, layer string, res Result) {
			p := filepath.Join(layer, "etc/motd")
			assertType(t, p, unix.S_IFREG)
			assertContent(t, p, "hello\n")
			assertPerm(t, p, 0o640)
			assertOwner(t, p, 1000, 2000)
			if res.Size != 6 {
				t.Errorf("Size = %d, want 6", res.Size)
			}
		},
	}, {
		name:    "empty file",
		entries: []entry{file("empty", "")},
		check: func(t *testing.T, layer string, res Result) {
			assertContent(t, filepath.Join(layer, "empty"), "")
		},
	}, {
		name: "directory",
		entries: []entry{dir("srv/").with(func(h *tar.Header) {
			h.Mode, h.Uid, h.Gid = 0o750, 33, 34
		})},
		check: func(t *testing.T, layer string, res Result) {
			p := filepath.Join(layer, "srv")
			assertType(t, p, unix.S_IFDIR)
			assertPerm(t, p, 0o750)
			assertOwner(t, p, 33, 34)
		},
	}, {
		name: "setuid setgid and sticky survive chown",
		entries: []entry{
			file("bin/su", "su").with(func(h *tar.Header) { h.Mode, h.Uid, h.Gid = 0o4755, 0, 0 }),
			file("bin/suid-user", "x").with(func(h *tar.Header) { h.Mode, h.Uid, h.Gid = 0o4711, 1000, 1000 }),
			file("bin/wall", "wall").with(func(h *tar.Header) { h.Mode, h.Uid, h.Gid = 0o2755, 0, 5 }),
			dir("tmp/").with(func(h *tar.Header) { h.Mode = 0o1777 }),
			dir("shared/").with(func(h *tar.Header) { h.Mode, h.Gid = 0o2775, 100 }),
		},
		check: func(t *testing.T, layer string, res Result) {
			assertPerm(t, filepath.Join(layer, "bin/su"), 0o4755)
			assertPerm(t, filepath.Join(layer, "bin/suid-user"), 0o4711)
			assertOwner(t, filepath.Join(layer, "bin/suid-user"), 1000, 1000)
			assertPerm(t, filepath.Join(layer, "bin/wall"), 0o2755)
			assertOwner(t, filepath.Join(layer, "bin/wall"), 0, 5)
			assertPerm(t, filepath.Join(layer, "tmp"), 0o1777)
			assertPerm(t, filepath.Join(layer, "shared"), 0o2775)
		},
	}, {
		name: "symlinks stored verbatim",
		entries: []entry{
			symlink("abs", "/etc/passwd"),
			symlink("rel", "../usr/bin/env"),
			symlink("dangling", "does/not/exist"),
			symlink("owned", "x").with(func(h *tar.Header) { h.Uid, h.Gid = 1000, 1001 }),
		},
		check: func(t *testing.T, layer string, res Result) {
			assertLink(t, filepath.Join(layer, "abs"), "/etc/passwd")
			assertLink(t, filepath.Join(layer, "rel"), "../usr/bin/env")
			assertLink(t, filepath.Join(layer, "dangling"), "does/not/exist")
			assertOwner(t, filepath.Join(layer, "owned"), 1000, 1001)
		},
	}, {
		name: "hardlinks",
		entries: []entry{
			file("bin/busybox", "bb"),
			hardlink("bin/sh", "bin/busybox"),
			hardlink("sbin/init", "/bin/busybox"),
			symlink("lnk", "bin/busybox"),
			hardlink("lnk2", "lnk"),
		},
		check: func(t *testing.T, layer string, res Result) {
			orig := lstat(t, filepath.Join(layer, "bin/busybox"))
			for _, p := range []string{"bin/sh", "sbin/init"} {
				if st := lstat(t, filepath.Join(layer, p)); st.Ino != orig.Ino {
					t.Errorf("%s: inode %d, want %d (bin/busybox)", p, st.Ino, orig.Ino)
				}
			}
			if orig.Nlink != 3 {
				t.Errorf("nlink %d, want 3", orig.Nlink)
			}
			// A hardlink to a symlink links the symlink itself.
			if a, b := lstat(t, filepath.Join(layer, "lnk")), lstat(t, filepath.Join(layer, "lnk2")); a.Ino != b.Ino {
				t.Errorf("lnk2: inode %d, want %d", b.Ino, a.Ino)
			}
			assertLink(t, filepath.Join(layer, "lnk2"), "bin/busybox")
			if res.Size != 2 {
				t.Errorf("Size = %d, want 2 (links add nothing)", res.Size)
			}
		},
	}, {
		name: "fifo and device nodes",
		entries: []entry{
			{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o620, Uid: 5, Gid: 6, ModTime: epoch}},
			{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: epoch}},
			{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda1", Mode: 0o660, Gid: 6, Devmajor: 8, Devminor: 1, ModTime: epoch}},
			{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/big", Mode: 0o600, Devmajor: 300, Devminor: 70000, ModTime: epoch}},
		},
		check: func(t *testing.T, layer string, res Result) {
			assertType(t, filepath.Join(layer, "run/fifo"), unix.S_IFIFO)
			assertPerm(t, filepath.Join(layer, "run/fifo"), 0o620)
			assertOwner(t, filepath.Join(layer, "run/fifo"), 5, 6)
			for _, d := range []struct {
				path         string
				ifmt         uint32
				perm         uint32
				major, minor uint32
			}{
				{"dev/null", unix.S_IFCHR, 0o666, 1, 3},
				{"dev/sda1", unix.S_IFBLK, 0o660, 8, 1},
				{"dev/big", unix.S_IFCHR, 0o600, 300, 70000},
			} {
				p := filepath.Join(layer, d.path)
				st := assertType(t, p, d.ifmt)
				assertPerm(t, p, d.perm)
				if st.Rdev != unix.Mkdev(d.major, d.minor) {
					t.Errorf("%s: rdev %d:%d, want %d:%d", d.path, unix.Major(st.Rdev), unix.Minor(st.Rdev), d.major, d.minor)
				}
			}
			assertOwner(t, filepath.Join(layer, "dev/sda1"), 0, 6)
		},
	}, {
		name: "long names PAX",
		entries: []entry{
			file(long, "pax").with(func(h *tar.Header) { h.Format = tar.FormatPAX }),
			symlink("pax-link", long).with(func(h *tar.Header) { h.Format = tar.FormatPAX }),
		},
		check: func(t *testing.T, layer string, res Result) {
			assertContent(t, filepath.Join(layer, long), "pax")
			assertLink(t, filepath.Join(layer, "pax-link"), long)
		},
	}, {
		name: "long names GNU",
		entries: []entry{
			file(long, "gnu").with(func(h *tar.Header) { h.Format = tar.FormatGNU }),
			hardlink(long+"-hardlink", long).with(func(h *tar.Header) { h.Format = tar.FormatGNU }),
		},
		check: func(t *testing.T, layer string, res Result) {
			assertContent(t, filepath.Join(layer, long), "gnu")
			assertContent(t, filepath.Join(layer, long+"-hardlink"), "gnu")
		},
	}, {
		name: "absolute and dotted names are relative to the layer",
		entries: []entry{
			file("/etc/hostname", "abs"),
			file("./etc/hosts", "dot"),
			file("//etc//./resolv.conf", "messy"),
			file("usr/../etc/issue", "inner dotdot"),
		},
		check: func(t *testing.T, layer string, res Result) {
			assertContent(t, filepath.Join(layer, "etc/hostname"), "abs")
			assertContent(t, filepath.Join(layer, "etc/hosts"), "dot")
			assertContent(t, filepath.Join(layer, "etc/resolv.conf"), "messy")
			assertContent(t, filepath.Join(layer, "etc/issue"), "inner dotdot")
			if got := listTree(t, layer); !slices.Equal(got, []string{"etc", "etc/hostname", "etc/hosts", "etc/issue", "etc/resolv.conf"}) {
				t.Errorf("tree %q", got)
			}
		},
	}, {
		name: "root entry sets the layer directory's metadata",
		entries: []entry{
			dir("./").with(func(h *tar.Header) { h.Mode, h.Uid, h.Gid = 0o711, 7, 8 }),
			file("./x", ""),
		},
		check: func(t *testing.T, layer string, res Result) {
			assertPerm(t, layer, 0o711)
			assertOwner(t, layer, 7, 8)
			if mt := lstat(t, layer).Mtim; mt.Sec != epoch.Unix() {
				t.Errorf("root mtime %d, want %d", mt.Sec, epoch.Unix())
			}
		},
	}, {
		name: "global PAX header is skipped",
		entries: []entry{
			{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": "git"}}},
			file("a", "a"),
		},
		check: func(t *testing.T, layer string, res Result) {
			if got := listTree(t, layer); !slices.Equal(got, []string{"a"}) {
				t.Errorf("tree %q, want [a]", got)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			layer, res := mustApply(t, tt.entries...)
			tt.check(t, layer, res)
		})
	}
}

func TestApplyTimes(t *testing.T) {
	requireRoot(t)
	mtime := time.Date(2001, 2, 3, 4, 5, 6, 789000000, time.UTC)
	atime := time.Date(1999, 12, 31, 23, 59, 58, 123000000, time.UTC)
	pax := func(h *tar.Header) {
		h.Format, h.ModTime, h.AccessTime = tar.FormatPAX, mtime, atime
	}
	tests := []struct {
		name         string
		entries      []entry
		path         string
		atime, mtime time.Time
	}{
		{"file", []entry{file("f", "x").with(pax)}, "f", atime, mtime},
		{"symlink", []entry{symlink("l", "/nowhere").with(pax)}, "l", atime, mtime},
		{"fifo", []entry{entry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "p", Mode: 0o644}}.with(pax)}, "p", atime, mtime},
		// Children written after the directory entry must not leave it
		// with the time they were written.
		{"directory with later children", []entry{dir("d/").with(pax), file("d/a", ""), dir("d/sub/"), symlink("d/l", "a")}, "d", atime, mtime},
		{"directory re-listed", []entry{dir("d/"), file("d/a", ""), dir("d/").with(pax)}, "d", atime, mtime},
		{"ustar has no atime: atime is mtime", []entry{file("f", "").with(func(h *tar.Header) {
			h.Format, h.ModTime = tar.FormatUSTAR, epoch
		})}, "f", epoch, epoch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			layer, _ := mustApply(t, tt.entries...)
			st := lstat(t, filepath.Join(layer, tt.path))
			if got := time.Unix(st.Mtim.Unix()); !got.Equal(tt.mtime) {
				t.Errorf("mtime %v, want %v", got.UTC(), tt.mtime)
			}
			if got := time.Unix(st.Atim.Unix()); !got.Equal(tt.atime) {
				t.Errorf("atime %v, want %v", got.UTC(), tt.atime)
			}
		})
	}
}

func TestApplyXattrs(t *testing.T) {
	requireRoot(t)
	// VFS_CAP_REVISION_2 granting cap_net_bind_service (bit 10).
	const capNetBindService = "\x01\x00\x00\x02" + "\x00\x04\x00\x00" + "\x00\x00\x00\x00" + "\x00\x00\x00\x00" + "\x00\x00\x00\x00"
	xattrs := func(kv ...string) func(h *tar.Header) {
		return func(h *tar.Header) {
			h.Format = tar.FormatPAX
			h.PAXRecords = map[string]string{}
			for i := 0; i < len(kv); i += 2 {
				h.PAXRecords["SCHILY.xattr."+kv[i]] = kv[i+1]
			}
		}
	}
	tests := []struct {
		name    string
		entry   entry
		path    string
		want    map[string]string
		skipped []string
	}{
		{"file", file("f", "").with(xattrs("user.mime", "text/plain", "security.capability", capNetBindService)),
			"f", map[string]string{"user.mime": "text/plain", "security.capability": capNetBindService}, nil},
		{"directory", dir("d/").with(xattrs("user.a", "1", "trusted.b", "2")), "d", map[string]string{"user.a": "1", "trusted.b": "2"}, nil},
		// user.* is not allowed on symlinks and device nodes; trusted.* is.
		{"symlink", symlink("l", "f").with(xattrs("trusted.t", "v")), "l", map[string]string{"trusted.t": "v"}, nil},
		{"fifo", entry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "p", Mode: 0o644}}.with(xattrs("trusted.t", "v")), "p", map[string]string{"trusted.t": "v"}, nil},
		{"overlay xattrs are never taken from the tar",
			dir("d/").with(xattrs("trusted.overlay.opaque", "y", "trusted.overlay.redirect", "/etc", "user.overlay.opaque", "y", "user.ok", "1")),
			"d", map[string]string{"user.ok": "1"}, []string{"trusted.overlay.opaque", "trusted.overlay.redirect", "user.overlay.opaque"}},
		{"overlay xattrs on a file", file("f", "").with(xattrs("trusted.overlay.metacopy", "")), "f", nil, []string{"trusted.overlay.metacopy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			layer, _ := mustApply(t, tt.entry)
			p := filepath.Join(layer, tt.path)
			for name, want := range tt.want {
				assertXattr(t, p, name, want)
			}
			for _, name := range tt.skipped {
				assertNoXattr(t, p, name)
			}
		})
	}
}

func TestApplyWhiteouts(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name    string
		entries []entry
		check   func(t *testing.T, layer string, res Result)
	}{{
		name:    "whiteout becomes a 0/0 char device",
		entries: []entry{dir("etc/"), file("etc/.wh.passwd", "").with(func(h *tar.Header) { h.Uid, h.Gid = 3, 4 })},
		check: func(t *testing.T, layer string, res Result) {
			assertWhiteout(t, filepath.Join(layer, "etc/passwd"))
			assertOwner(t, filepath.Join(layer, "etc/passwd"), 3, 4)
			assertMissing(t, filepath.Join(layer, "etc/.wh.passwd"))
		},
	}, {
		name:    "whiteout at the top and of a directory",
		entries: []entry{file(".wh.opt", ""), dir(".wh.srv/")},
		check: func(t *testing.T, layer string, res Result) {
			assertWhiteout(t, filepath.Join(layer, "opt"))
			assertWhiteout(t, filepath.Join(layer, "srv"))
		},
	}, {
		name:    "whiteout needing a parent creates it implicitly",
		entries: []entry{file("usr/share/.wh.doc", "")},
		check: func(t *testing.T, layer string, res Result) {
			assertWhiteout(t, filepath.Join(layer, "usr/share/doc"))
			if !slices.Equal(res.ImplicitDirs, []string{"usr", "usr/share"}) {
				t.Errorf("ImplicitDirs %q", res.ImplicitDirs)
			}
		},
	}, {
		name:    "whiteout replaces a file of the same layer",
		entries: []entry{file("a", "x"), file(".wh.a", "")},
		check: func(t *testing.T, layer string, res Result) {
			assertWhiteout(t, filepath.Join(layer, "a"))
		},
	}, {
		name:    "opaque directory",
		entries: []entry{dir("var/"), dir("var/cache/"), file("var/cache/.wh..wh..opq", ""), file("var/cache/new", "n")},
		check: func(t *testing.T, layer string, res Result) {
			assertXattr(t, filepath.Join(layer, "var/cache"), "trusted.overlay.opaque", "y")
			assertNoXattr(t, filepath.Join(layer, "var"), "trusted.overlay.opaque")
			assertMissing(t, filepath.Join(layer, "var/cache/.wh..wh..opq"))
			assertContent(t, filepath.Join(layer, "var/cache/new"), "n")
		},
	}, {
		name:    "opaque marker before its directory entry",
		entries: []entry{file("d/.wh..wh..opq", ""), dir("d/").with(func(h *tar.Header) { h.Mode = 0o700 })},
		check: func(t *testing.T, layer string, res Result) {
			assertXattr(t, filepath.Join(layer, "d"), "trusted.overlay.opaque", "y")
			assertPerm(t, filepath.Join(layer, "d"), 0o700)
			if len(res.ImplicitDirs) != 0 {
				t.Errorf("ImplicitDirs %q, want none", res.ImplicitDirs)
			}
		},
	}, {
		name:    "opaque layer root",
		entries: []entry{file(".wh..wh..opq", "")},
		check: func(t *testing.T, layer string, res Result) {
			assertXattr(t, layer, "trusted.overlay.opaque", "y")
		},
	}, {
		name:    "other AUFS metadata is ignored",
		entries: []entry{file(".wh..wh.plnk", ""), dir(".wh..wh.orph/"), file("a/.wh..wh.aufs", "")},
		check: func(t *testing.T, layer string, res Result) {
			if got := listTree(t, layer); len(got) != 0 {
				t.Errorf("tree %q, want it empty", got)
			}
			assertNoXattr(t, layer, "trusted.overlay.opaque")
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			layer, res := mustApply(t, tt.entries...)
			tt.check(t, layer, res)
		})
	}
}

func TestApplyReplace(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name    string
		entries func(outside string) []entry
		check   func(t *testing.T, layer, outside string, res Result)
	}{{
		name: "file replaces a directory tree",
		entries: func(string) []entry {
			return []entry{dir("d/"), file("d/a", "a"), file("d/sub/deep/b", "b"), symlink("d/l", "/"), file("d", "now a file")}
		},
		check: func(t *testing.T, layer, _ string, res Result) {
			assertContent(t, filepath.Join(layer, "d"), "now a file")
			if got := listTree(t, layer); !slices.Equal(got, []string{"d"}) {
				t.Errorf("tree %q, want [d]", got)
			}
			if len(res.ImplicitDirs) != 0 {
				t.Errorf("ImplicitDirs %q: removed directories must be forgotten", res.ImplicitDirs)
			}
			if mt := lstat(t, filepath.Join(layer, "d")).Mtim; mt.Sec != epoch.Unix() {
				t.Errorf("mtime %d: the old directory's times must not be applied to the file", mt.Sec)
			}
		},
	}, {
		name:    "directory replaces a file",
		entries: func(string) []entry { return []entry{file("x", "f"), dir("x/"), file("x/y", "y")} },
		check: func(t *testing.T, layer, _ string, res Result) {
			assertType(t, filepath.Join(layer, "x"), unix.S_IFDIR)
			assertContent(t, filepath.Join(layer, "x/y"), "y")
		},
	}, {
		name: "directory replaces a symlink, which is not followed",
		entries: func(outside string) []entry {
			return []entry{symlink("x", outside), dir("x/").with(func(h *tar.Header) { h.Mode = 0o700 }), file("x/y", "y")}
		},
		check: func(t *testing.T, layer, outside string, res Result) {
			assertType(t, filepath.Join(layer, "x"), unix.S_IFDIR)
			assertContent(t, filepath.Join(layer, "x/y"), "y")
			assertPerm(t, outside, 0o755)
		},
	}, {
		name: "directory over a directory updates metadata and keeps children",
		entries: func(string) []entry {
			return []entry{dir("d/"), file("d/keep", "k"), dir("d/").with(func(h *tar.Header) {
				h.Mode, h.Uid, h.Gid = 0o700, 9, 9
			})}
		},
		check: func(t *testing.T, layer, _ string, res Result) {
			assertContent(t, filepath.Join(layer, "d/keep"), "k")
			assertPerm(t, filepath.Join(layer, "d"), 0o700)
			assertOwner(t, filepath.Join(layer, "d"), 9, 9)
		},
	}, {
		name:    "file replaces a file without touching its hardlinks",
		entries: func(string) []entry { return []entry{file("a", "old"), hardlink("b", "a"), file("a", "new")} },
		check: func(t *testing.T, layer, _ string, res Result) {
			assertContent(t, filepath.Join(layer, "a"), "new")
			assertContent(t, filepath.Join(layer, "b"), "old")
		},
	}, {
		name:    "symlink replaces a file",
		entries: func(string) []entry { return []entry{file("a", "x"), symlink("a", "b")} },
		check: func(t *testing.T, layer, _ string, res Result) {
			assertLink(t, filepath.Join(layer, "a"), "b")
		},
	}, {
		name: "file replaces a symlink, whose target is untouched",
		entries: func(outside string) []entry {
			return []entry{symlink("a", filepath.Join(outside, "victim")), file("a", "mine").with(func(h *tar.Header) { h.Mode = 0o777 })}
		},
		check: func(t *testing.T, layer, outside string, res Result) {
			assertContent(t, filepath.Join(layer, "a"), "mine")
			assertContent(t, filepath.Join(outside, "victim"), "victim")
			assertPerm(t, filepath.Join(outside, "victim"), 0o600)
		},
	}, {
		name: "every type replaces a symlink to outside",
		entries: func(outside string) []entry {
			v := filepath.Join(outside, "victim")
			return []entry{
				symlink("n", v), {hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "n", Mode: 0o666}},
				symlink("s", v), symlink("s", "elsewhere"),
				symlink("h", v), file("target", "t"), hardlink("h", "target"),
				symlink("w", v), file(".wh.w", ""),
			}
		},
		check: func(t *testing.T, layer, outside string, res Result) {
			assertType(t, filepath.Join(layer, "n"), unix.S_IFIFO)
			assertLink(t, filepath.Join(layer, "s"), "elsewhere")
			assertContent(t, filepath.Join(layer, "h"), "t")
			assertWhiteout(t, filepath.Join(layer, "w"))
			assertContent(t, filepath.Join(outside, "victim"), "victim")
			assertPerm(t, filepath.Join(outside, "victim"), 0o600)
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outside := t.TempDir()
			if err := os.Chmod(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(outside, "victim"), []byte("victim"), 0o600); err != nil {
				t.Fatal(err)
			}
			layer, res := mustApply(t, tt.entries(outside)...)
			tt.check(t, layer, outside, res)
			if got := listTree(t, outside); !slices.Equal(got, []string{"victim"}) {
				t.Errorf("outside dir now holds %q", got)
			}
		})
	}
}

func TestApplyImplicitDirs(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name    string
		entries []entry
		want    []string
	}{
		{"none", []entry{dir("a/"), file("a/f", "")}, nil},
		{"parents of a file", []entry{file("a/b/c", "")}, []string{"a", "a/b"}},
		{"listed later", []entry{file("a/b/c", ""), dir("a/")}, []string{"a/b"}},
		{"listed first", []entry{dir("a/"), file("a/b/c", "")}, []string{"a/b"}},
		{"absolute names", []entry{file("/x/y", "")}, []string{"x"}},
		{"replaced by a file", []entry{file("a/b/c", ""), file("a", "")}, nil},
		{"hardlink parent", []entry{file("f", ""), hardlink("l/f", "f")}, []string{"l"}},
		{"inside a setgid directory", []entry{dir("g/").with(func(h *tar.Header) { h.Mode, h.Gid = 0o2775, 50 }), file("g/sub/f", "")}, []string{"g/sub"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			layer, res := mustApply(t, tt.entries...)
			if !slices.Equal(res.ImplicitDirs, tt.want) {
				t.Errorf("ImplicitDirs %q, want %q", res.ImplicitDirs, tt.want)
			}
			for _, p := range tt.want {
				assertPerm(t, filepath.Join(layer, p), 0o755)
				assertOwner(t, filepath.Join(layer, p), 0, 0)
			}
		})
	}
}

func TestApplySize(t *testing.T) {
	requireRoot(t)
	big := strings.Repeat("x", 3<<20+17) // several copy buffers
	layer, res := mustApply(t, file("big", big), file("small", "abc"), dir("d/"), symlink("l", "big"), hardlink("h", "small"))
	if want := int64(len(big) + 3); res.Size != want {
		t.Errorf("Size = %d, want %d", res.Size, want)
	}
	assertContent(t, filepath.Join(layer, "big"), big)
}

func TestApplyNeedsEmptyDir(t *testing.T) {
	layer := t.TempDir()
	if err := os.WriteFile(filepath.Join(layer, "leftover"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Apply(context.Background(), layer, bytes.NewReader(makeTar(t, file("a", ""))), Options{Name: testImage})
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Apply into a non-empty dir: %v, want a 'not empty' error", err)
	}
	if _, err := Apply(context.Background(), filepath.Join(layer, "missing"), bytes.NewReader(nil), Options{}); err == nil {
		t.Fatal("Apply into a missing dir succeeded")
	}
}

func TestApplyCancel(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	layer := t.TempDir()
	_, err := Apply(ctx, layer, bytes.NewReader(makeTar(t, file("a", "x"))), Options{Name: testImage})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply with a cancelled ctx: %v, want context.Canceled", err)
	}
	assertMissing(t, filepath.Join(layer, "a"))
}

// cancelAfter cancels its context once the stream has been read past n bytes.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n -= n; c.n < 0 {
		c.cancel()
	}
	return n, err
}

func TestApplyCancelMidStream(t *testing.T) {
	requireRoot(t)
	var entries []entry
	for i := range 100 {
		entries = append(entries, file("f"+strings.Repeat("x", i), strings.Repeat("y", 10000)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &cancelAfter{r: bytes.NewReader(makeTar(t, entries...)), n: 200 << 10, cancel: cancel}
	layer := t.TempDir()
	_, err := Apply(ctx, layer, smallReads{r}, Options{Name: testImage})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply: %v, want context.Canceled", err)
	}
	if n := len(listTree(t, layer)); n == 0 || n == 100 {
		t.Errorf("%d files written, want Apply to stop part way", n)
	}
}

// smallReads hands out small reads so cancellation lands mid-stream.
type smallReads struct{ r io.Reader }

func (o smallReads) Read(p []byte) (int, error) {
	return o.r.Read(p[:min(len(p), 512)])
}

func TestApplyReadsToEOF(t *testing.T) {
	requireRoot(t)
	stream := append(makeTar(t, file("a", "x")), make([]byte, 10000)...)
	r := bytes.NewReader(stream)
	if _, err := Apply(context.Background(), t.TempDir(), r, Options{}); err != nil {
		t.Fatal(err)
	}
	if r.Len() != 0 {
		t.Errorf("%d bytes left unread: a digest check would miss them", r.Len())
	}
}

func TestApplyTruncated(t *testing.T) {
	requireRoot(t)
	stream := makeTar(t, file("a", strings.Repeat("x", 5000)))
	_, err := Apply(context.Background(), t.TempDir(), bytes.NewReader(stream[:2000]), Options{Name: testImage})
	if err == nil || !strings.Contains(err.Error(), testImage) {
		t.Fatalf("Apply of a truncated layer: %v, want an error naming the image", err)
	}
	var ee *EntryError
	if errors.As(err, &ee) {
		t.Errorf("a truncated stream is an I/O error, not a refused entry: %v", err)
	}
}

func TestEntryErrorMessage(t *testing.T) {
	err := &EntryError{Image: "docker.io/library/busybox:latest", Entry: "../x", Reason: "name escapes the layer directory"}
	want := `layer of docker.io/library/busybox:latest: entry "../x": name escapes the layer directory`
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}
