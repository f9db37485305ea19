package images_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/devbox-dev/devbox/images"
	"github.com/devbox-dev/devbox/internal/testutil/imagegen"
)

// twoLayers is an image whose second layer deletes a file of the first.
func twoLayers(t *testing.T) v1.Image {
	return mustImage(t, host(),
		mustLayer(t, imagegen.Gzip, imagegen.File("keep", "k", 0o644), imagegen.File("gone", "g", 0o644)),
		mustLayer(t, imagegen.None, imagegen.Whiteout("gone"), imagegen.File("new", "n", 0o600)),
	)
}

func checkTwoLayers(t *testing.T, s *images.Store, img *images.Image) {
	t.Helper()
	if len(img.Layers) != 2 {
		t.Fatalf("%d layers, want 2", len(img.Layers))
	}
	if got := readLayerFile(t, s, img, 0, "keep"); got != "k" {
		t.Errorf("keep = %q", got)
	}
	if got := readLayerFile(t, s, img, 1, "new"); got != "n" {
		t.Errorf("new = %q", got)
	}
	fi, err := os.Lstat(filepath.Join(s.LayerDir(img.Layers[1].ChainID), "gone"))
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Errorf("gone is not a whiteout in layer 2: %v, %v", fi, err)
	}
}

func TestExportImportRoundTrip(t *testing.T) {
	s := openStore(t)
	reg := newRegistry(t, nil)
	src := twoLayers(t)
	imagegen.Push(t, reg+"/app:1", src)
	pulled, err := s.Pull(context.Background(), reg+"/app:1", images.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := s.Export(context.Background(), reg+"/app:1", &buf); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "app.tar")
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	// The export is a docker save tarball that go-containerregistry reads...
	tag, _ := name.NewTag(reg + "/app:1")
	timg, err := tarball.ImageFromPath(file, &tag)
	if err != nil {
		t.Fatalf("the export is not a docker save tarball: %v", err)
	}
	if cn, _ := timg.ConfigName(); cn.String() != pulled.ID {
		t.Errorf("exported config %s, want %s", cn, pulled.ID)
	}

	// ...and imports back to the same image in a fresh store.
	s2 := openStoreAt(t, t.TempDir())
	imported, err := s2.Import(context.Background(), file, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(imported) != 1 || imported[0].ID != pulled.ID || imported[0].Manifest != pulled.Manifest {
		t.Fatalf("imported %+v, want ID %s manifest %s", imported, pulled.ID, pulled.Manifest)
	}
	if want := reg + "/app:1"; len(imported[0].RepoTags) != 1 || imported[0].RepoTags[0] != want {
		t.Errorf("RepoTags = %v, want [%s]", imported[0].RepoTags, want)
	}
	checkTwoLayers(t, s2, imported[0])
}

// A tarball written by go-containerregistry has the legacy docker save
// layout (config and layers named by digest, no OCI index).
func TestImportDockerSave(t *testing.T) {
	s := openStore(t)
	tag, _ := name.NewTag("example.com/legacy:2")
	file := filepath.Join(t.TempDir(), "legacy.tar")
	if err := tarball.WriteToFile(file, tag, twoLayers(t)); err != nil {
		t.Fatal(err)
	}
	imgs, err := s.Import(context.Background(), file, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].RepoTags[0] != "example.com/legacy:2" {
		t.Fatalf("imported %+v", imgs)
	}
	checkTwoLayers(t, s, imgs[0])
}

func TestImportOCILayoutWithTag(t *testing.T) {
	s := openStore(t)
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(twoLayers(t)); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "oci.tar.gz")
	tarDir(t, dir, file)
	imgs, err := s.Import(context.Background(), file, "mine/oci:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].RepoTags[0] != "docker.io/mine/oci:v1" {
		t.Fatalf("imported %+v", imgs)
	}
	checkTwoLayers(t, s, imgs[0])
}

func TestImportRootfs(t *testing.T) {
	for _, gz := range []bool{false, true} {
		s := openStore(t)
		tb, err := imagegen.Tar(imagegen.Dir("etc/", 0o755), imagegen.File("etc/os-release", "ID=devbox\n", 0o644))
		if err != nil {
			t.Fatal(err)
		}
		if gz {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			zw.Write(tb)
			zw.Close()
			tb = b.Bytes()
		}
		file := filepath.Join(t.TempDir(), "rootfs.tar")
		os.WriteFile(file, tb, 0o644)
		imgs, err := s.Import(context.Background(), file, "rootfs:1", nil)
		if err != nil {
			t.Fatalf("gzip=%v: %v", gz, err)
		}
		img := imgs[0]
		if img.RepoTags[0] != "docker.io/library/rootfs:1" || img.Platform != host() {
			t.Errorf("gzip=%v: imported %+v", gz, img)
		}
		if got := readLayerFile(t, s, img, 0, "etc/os-release"); got != "ID=devbox\n" {
			t.Errorf("gzip=%v: os-release = %q", gz, got)
		}
	}
}

func TestImportErrors(t *testing.T) {
	s := openStore(t)
	dir := t.TempDir()
	notTar := filepath.Join(dir, "junk.tar")
	os.WriteFile(notTar, []byte(strings.Repeat("junk", 300)), 0o644)
	for file, want := range map[string]string{
		filepath.Join(dir, "missing.tar"): "no such file",
		notTar:                            "import " + notTar,
	} {
		if _, err := s.Import(context.Background(), file, "", nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("import %s: err = %v, want %q", file, err, want)
		}
	}
	if _, err := s.Import(context.Background(), notTar, "Bad Tag", nil); err == nil || !strings.Contains(err.Error(), "invalid tag") {
		t.Errorf("bad tag: err = %v", err)
	}
}

// tarDir writes dir as a gzip tar to file.
func tarDir(t *testing.T, dir, file string) {
	t.Helper()
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	tw.Close()
	zw.Close()
}
