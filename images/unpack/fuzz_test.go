package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fuzzSeeds are layers worth mutating: ordinary ones and attacks.
func fuzzSeeds(t testing.TB) map[string][]byte {
	return map[string][]byte{
		"normal": makeTar(t,
			dir("./"), dir("etc/"), file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
			dir("bin/"), file("bin/busybox", "\x7fELF").with(func(h *tar.Header) { h.Mode = 0o4755 }),
			hardlink("bin/sh", "bin/busybox"), symlink("usr/bin/env", "/bin/busybox"),
			entry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
			entry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/initctl", Mode: 0o600}},
			file("etc/cap", "").with(func(h *tar.Header) {
				h.PAXRecords = map[string]string{"SCHILY.xattr.user.a": "b", "SCHILY.xattr.trusted.overlay.opaque": "y"}
			}),
		),
		"whiteouts": makeTar(t,
			dir("etc/"), file("etc/.wh.shadow", ""), dir("var/cache/"), file("var/cache/.wh..wh..opq", ""),
			file(".wh..wh.plnk", ""), file("opt/.wh.app", ""), file("a", "x"), file(".wh.a", ""),
		),
		"traversal": makeTar(t,
			file("../../etc/x", "pwned"), file("a/../../x", "pwned"), file("/../x", "pwned"),
			hardlink("p", "../../../etc/passwd"), hardlink("q", "/etc/passwd"),
		),
		"symlink then write": makeTar(t,
			symlink("evil", "/"), file("evil/pwned", "pwned"), dir("evil/"),
			symlink("up", ".."), file("up/pwned", "pwned"), symlink("up2", "../.."), hardlink("up2/x", "evil"),
		),
		"replace": makeTar(t,
			dir("d/"), file("d/a", "a"), symlink("d/l", "/"), file("d", "file"), dir("d/"),
			symlink("s", "/"), dir("s/"), file("s/x", ""), file("f", "1"), hardlink("g", "f"), file("f", "2"),
		),
		"long names": makeTar(t,
			file(strings.Repeat("n/", 70)+"file", "gnu").with(func(h *tar.Header) { h.Format = tar.FormatGNU }),
			symlink("l", strings.Repeat("t", 200)).with(func(h *tar.Header) { h.Format = tar.FormatPAX }),
		),
	}
}

// FuzzApply applies arbitrary bytes as a layer. Whatever they hold, Apply
// must not panic and must write nothing outside the layer directory.
//
// Every input is applied on an OS thread of its own that is chrooted into
// the sandbox (CLONE_FS unshared, so the rest of the process keeps its root):
// if a bug did follow a symlink to "/" or climb out with "..", it lands in
// the sandbox, where the checks below see it, not on the machine running the
// fuzzer as root. Apply's writer goroutines are jailed the same way, each
// on a thread of its own (see jailedTuning); Apply starts no others.
//
// Each input costs a dozen file system operations, which a virtual disk makes
// slow; fuzz on tmpfs: TMPDIR=/dev/shm go test -fuzz=FuzzApply ./images/unpack/
func FuzzApply(f *testing.F) {
	requireRoot(f)
	seeds := fuzzSeeds(f)
	for _, name := range slices.Sorted(maps.Keys(seeds)) {
		f.Add(seeds[name])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !fuzzable(data) {
			t.Skip("declares content too big to write on every run")
		}
		sandbox := newSandbox(t)
		before := sandbox.snapshot(t)
		_, err := applyJailed(sandbox.root, data)
		if err != nil && !strings.HasPrefix(err.Error(), "layer of fuzz") {
			t.Errorf("error %q does not say which layer failed", err)
		}
		if after := sandbox.snapshot(t); !slices.Equal(after, before) {
			t.Fatalf("Apply changed the sandbox outside the layer dir (err %v):\nbefore %q\nafter  %q", err, before, after)
		}
	})
}

// fuzzable reports whether data declares no huge file: a few header bytes
// can claim gigabytes (sparse files write them as zeros), which is not what
// the fuzzer is for.
func fuzzable(data []byte) bool {
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err != nil {
			return true
		}
		if hdr.Size > 1<<20 {
			return false
		}
	}
}

// sandbox is the fuzz jail: a root holding the layer dir and a sentinel
// file an escaped write or link could reach.
type sandbox struct{ root string }

func newSandbox(t *testing.T) sandbox {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "layer"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "sentinel"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "sentinel/victim"), []byte("victim"), 0o600); err != nil {
		t.Fatal(err)
	}
	return sandbox{root: root}
}

// snapshot describes everything in the sandbox but inside the layer dir:
// names, types, modes, owners, link counts, sizes, mtimes, xattrs and
// contents.
func (s sandbox) snapshot(t *testing.T) []string {
	var out []string
	for _, rel := range []string{".", "layer", "sentinel", "sentinel/victim"} {
		out = append(out, describe(t, filepath.Join(s.root, rel)))
	}
	names, err := os.ReadDir(s.root)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		out = append(out, "entry "+n.Name())
	}
	sentinel, err := os.ReadDir(filepath.Join(s.root, "sentinel"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range sentinel {
		out = append(out, "sentinel entry "+n.Name())
	}
	content, err := os.ReadFile(filepath.Join(s.root, "sentinel/victim"))
	if err != nil {
		t.Fatal(err)
	}
	return append(out, "victim content "+string(content))
}

// describe is one line of a snapshot. The layer dir's own mode, owner and
// times are Apply's to set (a "./" entry), so only its type is recorded.
func describe(t *testing.T, path string) string {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return fmt.Sprintf("%s: %v", path, err)
	}
	if filepath.Base(path) == "layer" {
		return fmt.Sprintf("%s: type %#o", path, st.Mode&unix.S_IFMT)
	}
	xattrs := make([]byte, 4096)
	n, _ := unix.Llistxattr(path, xattrs)
	return fmt.Sprintf("%s: mode %#o owner %d:%d nlink %d size %d mtime %d.%d xattrs %q",
		path, st.Mode, st.Uid, st.Gid, st.Nlink, st.Size, st.Mtim.Sec, st.Mtim.Nsec, xattrs[:max(n, 0)])
}

// applyJailed runs Apply on data with "/layer" as the layer dir, on a thread
// chrooted into root, its writers too.
func applyJailed(root string, data []byte) (Result, error) {
	return applyJailedWith(root, data, jailedTuning(root, numWriters))
}

func applyJailedWith(root string, data []byte, t tuning) (Result, error) {
	var res Result
	var err error
	jailed(root, func() {
		res, err = apply(context.Background(), "/layer", bytes.NewReader(data), Options{Name: "fuzz"}, t)
	})
	return res, err
}

// jailedTuning starts n writers, each on an OS thread of its own chrooted
// into root, like jailed's. A failure to jail one is the machine's fault,
// not the input's: it panics, which ends the fuzzer.
func jailedTuning(root string, n int) tuning {
	return tuning{writers: n, spawn: func(run func()) {
		go func() {
			runtime.LockOSThread() // never unlocked, as in jailed
			if err := enterJail(root); err != nil {
				panic(err)
			}
			run()
		}()
	}}
}

// jailed runs fn on an OS thread of its own whose root directory is root.
// A panic in fn is re-raised on the caller's goroutine, with fn's stack.
func jailed(root string, fn func()) {
	type outcome struct {
		setup    error
		panicked any
		stack    []byte
	}
	done := make(chan outcome, 1)
	go func() {
		// Never unlocked: the thread's root is changed for good, and a
		// goroutine that exits locked takes its thread with it. The runtime
		// starts new threads from a clean template thread, not this one.
		runtime.LockOSThread()
		var o outcome
		defer func() {
			if p := recover(); p != nil {
				o.panicked, o.stack = p, debug.Stack()
			}
			done <- o
		}()
		if o.setup = enterJail(root); o.setup == nil {
			fn()
		}
	}()
	o := <-done
	if o.panicked != nil {
		panic(fmt.Sprintf("%v\n%s", o.panicked, o.stack))
	}
	if o.setup != nil {
		panic(o.setup) // not the input's fault; stop the fuzzer
	}
}

// enterJail chroots the calling thread, and only it, into root.
func enterJail(root string) error {
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	if err := unix.Chroot(root); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir: %w", err)
	}
	return nil
}

// TestJailConfines checks the jail the fuzzer relies on: what fn writes to
// "/" lands in the sandbox, and the rest of the process keeps its root.
func TestJailConfines(t *testing.T) {
	requireRoot(t)
	s := newSandbox(t)
	name := fmt.Sprintf("unpack-jail-test-%d", os.Getpid())
	jailed(s.root, func() {
		if err := os.WriteFile("/"+name, nil, 0o644); err != nil {
			t.Error(err)
		}
	})
	if _, err := os.Stat(filepath.Join(s.root, name)); err != nil {
		t.Errorf("jailed write did not land in the sandbox: %v", err)
	}
	assertMissing(t, "/"+name)
	if _, err := os.Stat("/proc/self"); err != nil {
		t.Errorf("the test's own root changed: %v", err)
	}
}

// TestApplyJailedSeeds makes sure the jail itself works: the seeds that
// attack must be refused inside it too.
func TestApplyJailedSeeds(t *testing.T) {
	requireRoot(t)
	for name, seed := range fuzzSeeds(t) {
		t.Run(name, func(t *testing.T) {
			s := newSandbox(t)
			_, err := applyJailed(s.root, seed)
			var ee *EntryError
			attack := name == "traversal" || name == "symlink then write"
			if attack != errors.As(err, &ee) {
				t.Errorf("Apply: %v; want an *EntryError only for attacks", err)
			}
		})
	}
}

// TestWriteFuzzCorpus rewrites testdata/fuzz/FuzzApply from fuzzSeeds when
// UNPACK_WRITE_CORPUS=1; crashers the fuzzer finds are added there by hand.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("UNPACK_WRITE_CORPUS") != "1" {
		t.Skip("set UNPACK_WRITE_CORPUS=1 to rewrite the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzApply")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, seed := range fuzzSeeds(t) {
		file := "seed-" + strings.ReplaceAll(name, " ", "-")
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", seed)
		if err := os.WriteFile(filepath.Join(dir, file), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
