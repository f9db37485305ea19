package guest_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/devbox-dev/devbox/images/guest"
	testregistry "github.com/devbox-dev/devbox/internal/testutil/registry"
)

// newRegistry serves an in-memory registry on loopback for the test.
func newRegistry(t *testing.T, wrap func(http.Handler) http.Handler) string {
	return testregistry.InMemory(t, wrap)
}

func TestPushPull(t *testing.T) {
	reg := newRegistry(t, nil)
	src := t.TempDir()
	kernel, initrd := bytes.Repeat([]byte("K"), 100000), bytes.Repeat([]byte("I"), 50000)
	fakeImage(t, src, "amd64", kernel, initrd)
	ref := reg + "/devbox/guest:amd64"
	dgst, err := guest.Push(t.Context(), src, ref, guest.RemoteOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// What the registry holds is the artifact the package documents.
	r, _ := name.ParseReference(ref)
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != dgst {
		t.Errorf("Push returned %s, the registry has %s", dgst, desc.Digest)
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	src1, _ := guest.Load(src)
	if m.ArtifactType != guest.ArtifactType || m.Config.MediaType != guest.ConfigMediaType || len(m.Layers) != 2 ||
		m.Layers[0].MediaType != guest.KernelMediaType || m.Layers[1].MediaType != guest.InitramfsMediaType ||
		m.Layers[0].Digest.String() != src1.Kernel.Digest || m.Layers[1].Digest.String() != src1.Initramfs.Digest {
		t.Errorf("manifest:\n%s", desc.Manifest)
	}

	dest := filepath.Join(t.TempDir(), "guest", "amd64")
	img, err := guest.Pull(t.Context(), ref, dest, guest.RemoteOptions{Arch: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := guest.Load(dest); err != nil {
		t.Errorf("Load of a pulled image: %v", err)
	}
	if got, _ := os.ReadFile(img.KernelPath()); !bytes.Equal(got, kernel) {
		t.Error("pulled kernel differs")
	}
	a, _ := os.ReadFile(filepath.Join(src, "guest.json"))
	b, _ := os.ReadFile(filepath.Join(dest, "guest.json"))
	if !bytes.Equal(a, b) {
		t.Errorf("guest.json differs:\n%s\n%s", a, b)
	}

	// Pushing the same image again gives the same manifest.
	if d2, err := guest.Push(t.Context(), src, reg+"/devbox/guest:again", guest.RemoteOptions{}); err != nil || d2 != dgst {
		t.Errorf("second push: %s, %v; want %s", d2, err, dgst)
	}
	// The wrong architecture is refused.
	if _, err := guest.Pull(t.Context(), ref, t.TempDir(), guest.RemoteOptions{Arch: "arm64"}); err == nil || !strings.Contains(err.Error(), "arm64") {
		t.Errorf("pulled an amd64 image as arm64: %v", err)
	}
}

func TestPullFromIndexPicksArch(t *testing.T) {
	reg := newRegistry(t, nil)
	var adds []mutate.IndexAddendum
	for _, arch := range []string{"amd64", "arm64"} {
		dir := t.TempDir()
		fakeImage(t, dir, arch, []byte(arch+" kernel"), []byte(arch+" initramfs"))
		ref := reg + "/devbox/guest:" + arch
		if _, err := guest.Push(t.Context(), dir, ref, guest.RemoteOptions{}); err != nil {
			t.Fatal(err)
		}
		r, _ := name.ParseReference(ref)
		img, err := remote.Image(r)
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	idx := mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), types.OCIImageIndex)
	r, _ := name.ParseReference(reg + "/devbox/guest:latest")
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	img, err := guest.Pull(t.Context(), r.String(), t.TempDir(), guest.RemoteOptions{Arch: "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(img.KernelPath()); string(got) != "arm64 kernel" || img.Arch != "arm64" {
		t.Errorf("pulled %s kernel %q", img.Arch, got)
	}
}

func TestPullRefusesWrongContent(t *testing.T) {
	reg := newRegistry(t, nil)
	// An ordinary container image is not a guest image.
	r, _ := name.ParseReference(reg + "/library/busybox:latest")
	rnd, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, rnd); err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	if _, err := guest.Pull(t.Context(), r.String(), dest, guest.RemoteOptions{Arch: "amd64"}); err == nil || !strings.Contains(err.Error(), "not a devbox guest image") {
		t.Errorf("Pull of a container image: %v", err)
	}
	if ents, _ := os.ReadDir(dest); len(ents) > 0 {
		t.Errorf("a refused pull left %d files", len(ents))
	}
	if _, err := guest.Pull(t.Context(), reg+"/devbox/none:latest", dest, guest.RemoteOptions{Arch: "amd64"}); err == nil {
		t.Error("pulled a missing image")
	}
}

// TestPullRefusesCorruptBlobs serves the layers with a byte flipped: no
// file may land in the image directory.
func TestPullRefusesCorruptBlobs(t *testing.T) {
	var corrupt atomic.Bool
	reg := newRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !corrupt.Load() || r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/sha256:") {
				h.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			b := rec.Body.Bytes()
			// The kernel is the only blob of this size.
			if len(b) == 4096 {
				b[100] ^= 0xff
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(b)
		})
	})
	src := t.TempDir()
	fakeImage(t, src, "amd64", bytes.Repeat([]byte("k"), 4096), []byte("initramfs"))
	ref := reg + "/devbox/guest:amd64"
	if _, err := guest.Push(t.Context(), src, ref, guest.RemoteOptions{}); err != nil {
		t.Fatal(err)
	}
	corrupt.Store(true)
	dest := t.TempDir()
	_, err := guest.Pull(t.Context(), ref, dest, guest.RemoteOptions{Arch: "amd64"})
	if err == nil || !strings.Contains(err.Error(), "kernel") {
		t.Fatalf("pulled a corrupt kernel: %v", err)
	}
	t.Log(err)
	if ents, _ := os.ReadDir(dest); len(ents) > 0 {
		t.Errorf("a failed pull left %d files", len(ents))
	}
}

func TestPushRefusesDamagedImage(t *testing.T) {
	reg := newRegistry(t, nil)
	src := t.TempDir()
	fakeImage(t, src, "amd64", []byte("kernel"), []byte("initramfs"))
	os.WriteFile(filepath.Join(src, "kernel"), []byte("KERNEL"), 0o644)
	if _, err := guest.Push(t.Context(), src, reg+"/devbox/guest:x", guest.RemoteOptions{}); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Errorf("pushed a damaged image: %v", err)
	}
}
