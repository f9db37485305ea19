package guest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeImage(t *testing.T, dir string, kernel, initrd []byte) {
	t.Helper()
	desc := func(name string, b []byte) File {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		return File{Path: name, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(b))}
	}
	m := Manifest{Arch: "amd64", KernelRelease: "6.1.0-test", KernelSource: KernelDevbox,
		Kernel: desc(KernelName, kernel), Initramfs: desc(InitramfsName, initrd)}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestName), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A checked image is remembered, and a file changed in place at the same
// size afterwards is still caught.
func TestVerifyCache(t *testing.T) {
	home := t.TempDir()
	t.Setenv("DEVBOX_HOME", home)
	old := racyWindow
	racyWindow = 50 * time.Millisecond
	t.Cleanup(func() { racyWindow = old })

	dir := t.TempDir()
	writeImage(t, dir, []byte("kernel bytes"), []byte("initramfs bytes"))
	cacheFile := filepath.Join(home, "cache", "guest-verified.json")
	// Just written: checked, not remembered.
	if _, err := Load(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cacheFile); err == nil {
		t.Fatal("a file changed within the racy window was remembered")
	}
	time.Sleep(2 * racyWindow)
	if _, err := Load(dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(cacheFile)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "sha256:"); n != 2 {
		t.Fatalf("cache holds %d digests, want 2: %s", n, b)
	}
	if _, err := Load(dir); err != nil {
		t.Fatalf("load through the cache: %v", err)
	}
	// Same size, same inode: only the ctime tells.
	if err := os.WriteFile(filepath.Join(dir, InitramfsName), []byte("initramfs BYTES"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "initramfs has digest") {
		t.Fatalf("changed initramfs: got %v", err)
	}
}

// Without a devbox home, Load leaves nothing behind.
func TestVerifyCacheNoHome(t *testing.T) {
	home := filepath.Join(t.TempDir(), "none")
	t.Setenv("DEVBOX_HOME", home)
	old := racyWindow
	racyWindow = 0
	t.Cleanup(func() { racyWindow = old })
	dir := t.TempDir()
	writeImage(t, dir, []byte("kernel bytes"), []byte("initramfs bytes"))
	if _, err := Load(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(home); err == nil {
		t.Fatal("Load made devbox's home")
	}
}
