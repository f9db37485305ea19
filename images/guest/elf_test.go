package guest

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestResolveInStaysInRoot(t *testing.T) {
	root := t.TempDir()
	mk := func(p, content string) {
		t.Helper()
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(p, target string) {
		t.Helper()
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	mk("usr/lib/x/ld.so", "loader")
	link("lib", "usr/lib")
	link("lib64/ld.so", "/lib/x/ld.so")    // absolute: means root's /lib
	link("up/escape", "../../../../lib/x") // ".." stops at root
	link("etc/passwd", "/etc/shadow-nope") // dangling inside root
	link("loop/a", "b")
	link("loop/b", "a")

	for p, want := range map[string]string{
		"/lib64/ld.so":       "usr/lib/x/ld.so",
		"/up/escape/ld.so":   "usr/lib/x/ld.so",
		"lib/x/../x/ld.so":   "usr/lib/x/ld.so",
		"/../../lib/x/ld.so": "usr/lib/x/ld.so",
	} {
		got, err := resolveIn(root, p)
		if err != nil {
			t.Errorf("resolveIn(%s): %v", p, err)
			continue
		}
		if got != filepath.Join(root, want) {
			t.Errorf("resolveIn(%s) = %s, want %s", p, got, want)
		}
	}
	if _, err := resolveIn(root, "/etc/passwd"); err == nil {
		t.Error("resolved a dangling link (to the host's file?)")
	}
	if _, err := resolveIn(root, "/loop/a"); err == nil || !strings.Contains(err.Error(), "too many") {
		t.Errorf("symlink loop: %v", err)
	}
}

// TestSharedLibrariesOfHostMke2fs reads this machine's mke2fs, as the
// build reads the target's from unpacked debs.
func TestSharedLibrariesOfHostMke2fs(t *testing.T) {
	if _, ok := arches[runtime.GOARCH]; !ok {
		t.Skip("not a guest architecture")
	}
	if _, err := resolveIn("/", "/sbin/mke2fs"); err != nil {
		t.Skip("no /sbin/mke2fs here (apt-get install e2fsprogs)")
	}
	libs, err := sharedLibraries("/", "/sbin/mke2fs", runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for p := range libs {
		names = append(names, filepath.Base(p))
	}
	got := strings.Join(names, " ")
	for _, want := range []string{"libext2fs.so.2", "libe2p.so.2", "libcom_err.so.2", "libblkid.so.1", "libuuid.so.1", "libc.so.6", "ld-linux"} {
		if !strings.Contains(got, want) {
			t.Errorf("mke2fs's libraries %q lack %s", got, want)
		}
	}
}
