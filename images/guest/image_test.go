package guest_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devbox-dev/devbox/images/guest"
)

// fakeImage writes an image directory with the given file contents, as a
// build would describe them.
func fakeImage(t *testing.T, dir, arch string, kernel, initrd []byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	desc := func(name string, b []byte) guest.File {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		return guest.File{Path: name, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(b))}
	}
	m := guest.Manifest{
		Arch: arch, KernelRelease: "6.1.0-test", KernelSource: guest.KernelDevbox,
		Kernel:    desc(guest.KernelName, kernel),
		Initramfs: desc(guest.InitramfsName, initrd),
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, guest.ManifestName), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	fakeImage(t, dir, "amd64", []byte("kernel bytes"), []byte("initramfs bytes"))
	img, err := guest.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if img.Arch != "amd64" || img.KernelRelease != "6.1.0-test" {
		t.Errorf("loaded %+v", img.Manifest)
	}
	if img.KernelPath() != filepath.Join(dir, "kernel") || img.InitramfsPath() != filepath.Join(dir, "initramfs") {
		t.Errorf("paths %s %s", img.KernelPath(), img.InitramfsPath())
	}
}

func TestLoadRejectsDamage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(dir string) error
		want   string
	}{
		{"changed initramfs", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "initramfs"), []byte("initramfs BYTES"), 0o644)
		}, "initramfs has digest"},
		{"truncated kernel", func(dir string) error {
			return os.Truncate(filepath.Join(dir, "kernel"), 3)
		}, "kernel is 3 bytes"},
		{"missing kernel", func(dir string) error {
			return os.Remove(filepath.Join(dir, "kernel"))
		}, "kernel: no such file"},
		{"no manifest", func(dir string) error {
			return os.Remove(filepath.Join(dir, "guest.json"))
		}, "no guest.json"},
		{"escaping path", func(dir string) error {
			b, _ := os.ReadFile(filepath.Join(dir, "guest.json"))
			return os.WriteFile(filepath.Join(dir, "guest.json"), []byte(strings.Replace(string(b), `"path":"kernel"`, `"path":"../kernel"`, 1)), 0o644)
		}, "bad file path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fakeImage(t, dir, "amd64", []byte("kernel bytes"), []byte("initramfs bytes"))
			if err := tc.damage(dir); err != nil {
				t.Fatal(err)
			}
			_, err := guest.Load(dir)
			if err == nil {
				t.Fatal("loaded a damaged image")
			}
			for _, want := range []string{tc.want, "make image", "--guest-image"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

func TestFindOrder(t *testing.T) {
	home := t.TempDir()
	t.Setenv("DEVBOX_HOME", home)
	t.Setenv(guest.EnvImage, "")
	// Nothing anywhere: the error says what to do.
	_, err := guest.Find("amd64")
	if err == nil || !strings.Contains(err.Error(), "make image") || !strings.Contains(err.Error(), "--guest-image") {
		t.Fatalf("Find with no image: %v", err)
	}

	homeImg := filepath.Join(home, "guest", "amd64")
	fakeImage(t, homeImg, "amd64", []byte("home kernel"), []byte("home initramfs"))
	if img, err := guest.Find("amd64"); err != nil || img.Dir != homeImg {
		t.Fatalf("Find = %v, %v; want the image in DEVBOX_HOME", img, err)
	}

	// $DEVBOX_GUEST_IMAGE beats the search path, and may name a
	// directory of per-architecture images.
	envRoot := t.TempDir()
	fakeImage(t, filepath.Join(envRoot, "amd64"), "amd64", []byte("env kernel"), []byte("env initramfs"))
	t.Setenv(guest.EnvImage, envRoot)
	if img, err := guest.Find("amd64"); err != nil || img.Dir != filepath.Join(envRoot, "amd64") {
		t.Fatalf("Find = %v, %v; want the image in $%s", img, err, guest.EnvImage)
	}

	// An explicit directory beats both; empty ones are skipped.
	explicit := t.TempDir()
	fakeImage(t, explicit, "amd64", []byte("flag kernel"), []byte("flag initramfs"))
	if img, err := guest.Find("amd64", "", explicit); err != nil || img.Dir != explicit {
		t.Fatalf("Find = %v, %v; want the explicit image", img, err)
	}

	// An explicit image that is broken or for another arch is an error,
	// not a reason to fall back.
	if _, err := guest.Find("amd64", t.TempDir()); err == nil {
		t.Error("Find fell back from an explicit directory without an image")
	}
	arm := t.TempDir()
	fakeImage(t, arm, "arm64", []byte("k"), []byte("i"))
	if _, err := guest.Find("amd64", arm); err == nil || !strings.Contains(err.Error(), "arm64") {
		t.Errorf("Find took an arm64 image for amd64: %v", err)
	}
	os.WriteFile(filepath.Join(envRoot, "amd64", "kernel"), []byte("env KERNEL"), 0o644)
	if _, err := guest.Find("amd64"); err == nil || !strings.Contains(err.Error(), guest.EnvImage) {
		t.Errorf("Find with a damaged $%s image: %v", guest.EnvImage, err)
	}
}

func TestSearchPath(t *testing.T) {
	home := t.TempDir()
	t.Setenv("DEVBOX_HOME", home)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe, _ = filepath.EvalSymlinks(exe)
	d := filepath.Dir(exe)
	want := []string{
		filepath.Join(d, "guest", "arm64"),
		filepath.Join(d, "..", "share", "devbox", "guest", "arm64"),
		filepath.Join(home, "guest", "arm64"),
	}
	if got := guest.SearchPath("arm64"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("SearchPath = %q, want %q", got, want)
	}
}
