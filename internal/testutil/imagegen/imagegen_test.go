package imagegen

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"runtime"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/devbox-dev/devbox/internal/testutil/registry"
)

// hostile is a layer a safe unpacker must refuse or contain.
var hostile = []Entry{
	Dir("a/", 0o755),
	File("a/file", "hello\n", 0o640),
	{Name: "a/owned", Content: []byte("x"), Mode: 0o4755, UID: 1000, GID: 1000,
		Xattrs: map[string]string{"user.test": "value"}},
	Symlink("a/link", "/etc"),
	File("a/link/passwd", "write-through\n", 0o644),
	Hardlink("a/hard", "a/file"),
	Fifo("a/fifo", 0o600),
	CharDev("a/null", 1, 3),
	BlockDev("a/loop", 7, 0),
	File("../escape", "x", 0o644),
	File("/abs", "x", 0o644),
	Whiteout("a/gone"),
	OpaqueWhiteout("a"),
}

// readTar returns the headers and regular-file contents of l.
func readTar(t *testing.T, l v1.Layer) ([]*tar.Header, map[string]string) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var hdrs []*tar.Header
	content := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hdrs, content
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			t.Fatalf("read tar: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, h)
		content[h.Name] = string(b)
	}
}

func TestLayerReproducible(t *testing.T) {
	for _, c := range []Compression{Gzip, Zstd, None} {
		t.Run(c.String(), func(t *testing.T) {
			l1, err := CompressedLayer(c, hostile...)
			if err != nil {
				t.Fatal(err)
			}
			l2, err := CompressedLayer(c, hostile...)
			if err != nil {
				t.Fatal(err)
			}
			d1, _ := l1.Digest()
			d2, _ := l2.Digest()
			if d1 != d2 {
				t.Errorf("digests differ: %s vs %s", d1, d2)
			}
			diff1, _ := l1.DiffID()
			if c == None && diff1 != d1 {
				t.Errorf("uncompressed layer: diffID %s != digest %s", diff1, d1)
			}
			if c != None && diff1 == d1 {
				t.Errorf("compressed layer: diffID equals digest %s", d1)
			}
			if mt, _ := l1.MediaType(); mt != c.MediaType() {
				t.Errorf("media type %s, want %s", mt, c.MediaType())
			}
			if hdrs, _ := readTar(t, l1); len(hdrs) != len(hostile) {
				t.Errorf("%d members, want %d", len(hdrs), len(hostile))
			}
		})
	}
}

func TestLayerContents(t *testing.T) {
	l, err := Layer(hostile...)
	if err != nil {
		t.Fatal(err)
	}
	hdrs, content := readTar(t, l)
	byName := map[string]*tar.Header{}
	var names []string
	for _, h := range hdrs {
		byName[h.Name] = h
		names = append(names, h.Name)
		if !h.ModTime.Equal(Epoch) {
			t.Errorf("%s: mtime %v, want %v", h.Name, h.ModTime, Epoch)
		}
	}
	for _, want := range []string{"../escape", "/abs", "a/.wh.gone", "a/.wh..wh..opq", "a/link/passwd"} {
		if !slices.Contains(names, want) {
			t.Errorf("member %q missing; have %q", want, names)
		}
	}
	checks := []struct {
		name     string
		typ      byte
		mode     int64
		linkname string
	}{
		{"a/", tar.TypeDir, 0o755, ""},
		{"a/file", tar.TypeReg, 0o640, ""},
		{"a/owned", tar.TypeReg, 0o4755, ""},
		{"a/link", tar.TypeSymlink, 0o777, "/etc"},
		{"a/hard", tar.TypeLink, 0o644, "a/file"},
		{"a/fifo", tar.TypeFifo, 0o600, ""},
		{"a/null", tar.TypeChar, 0o666, ""},
		{"a/loop", tar.TypeBlock, 0o660, ""},
	}
	for _, c := range checks {
		h := byName[c.name]
		if h == nil {
			t.Errorf("%s missing", c.name)
			continue
		}
		if h.Typeflag != c.typ || h.Mode != c.mode || h.Linkname != c.linkname {
			t.Errorf("%s: type %q mode %o link %q, want %q %o %q",
				c.name, h.Typeflag, h.Mode, h.Linkname, c.typ, c.mode, c.linkname)
		}
	}
	if h := byName["a/owned"]; h.Uid != 1000 || h.Gid != 1000 || h.PAXRecords["SCHILY.xattr.user.test"] != "value" {
		t.Errorf("a/owned: uid %d gid %d pax %v", h.Uid, h.Gid, h.PAXRecords)
	}
	if h := byName["a/null"]; h.Devmajor != 1 || h.Devminor != 3 {
		t.Errorf("a/null: dev %d,%d, want 1,3", h.Devmajor, h.Devminor)
	}
	if content["a/file"] != "hello\n" || content["a/link/passwd"] != "write-through\n" {
		t.Errorf("contents: %q", content)
	}
}

func TestBusyboxLayer(t *testing.T) {
	l1, err := BusyboxLayer()
	if errors.Is(err, ErrNoBusybox) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	l2, err := BusyboxLayer()
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := l1.Digest()
	d2, _ := l2.Digest()
	if d1 != d2 {
		t.Errorf("digests differ: %s vs %s", d1, d2)
	}

	want, err := os.ReadFile(BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	hdrs, content := readTar(t, l1)
	byName := map[string]*tar.Header{}
	for _, h := range hdrs {
		byName[h.Name] = h
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s owned by %d:%d", h.Name, h.Uid, h.Gid)
		}
	}
	if content["bin/busybox"] != string(want) {
		t.Errorf("bin/busybox differs from %s", BusyboxPath)
	}
	for _, applet := range []string{"sh", "echo", "cat", "ls", "true", "id"} {
		h := byName["bin/"+applet]
		if h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
			t.Errorf("bin/%s: %+v, want symlink to busybox", applet, h)
		}
	}
	if h := byName["bin/"]; h == nil || h.Mode != 0o755 {
		t.Errorf("bin/: %+v, want dir 0755", h)
	}
	if content["etc/passwd"] == "" || content["etc/group"] == "" {
		t.Error("etc/passwd or etc/group empty")
	}
}

func TestImage(t *testing.T) {
	l, err := Layer(File("hello", "hi", 0o644))
	if err != nil {
		t.Fatal(err)
	}
	img, err := Image(l)
	if err != nil {
		t.Fatal(err)
	}
	img2, err := Image(l)
	if err != nil {
		t.Fatal(err)
	}
	if d1, d2 := mustDigest(t, img), mustDigest(t, img2); d1 != d2 {
		t.Errorf("image digests differ: %s vs %s", d1, d2)
	}

	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s", cfg.OS, cfg.Architecture)
	}
	if !slices.Equal(cfg.Config.Cmd, []string{"sh"}) || !slices.Equal(cfg.Config.Env, []string{"PATH=" + DefaultPath}) {
		t.Errorf("config %+v", cfg.Config)
	}
	diffID, _ := l.DiffID()
	if !slices.Equal(cfg.RootFS.DiffIDs, []v1.Hash{diffID}) {
		t.Errorf("diff IDs %v, want [%s]", cfg.RootFS.DiffIDs, diffID)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON || m.Layers[0].MediaType != types.OCILayer {
		t.Errorf("media types %s, %s, %s", m.MediaType, m.Config.MediaType, m.Layers[0].MediaType)
	}

	arm, err := ImageFor(v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, l)
	if err != nil {
		t.Fatal(err)
	}
	if cfg, _ := arm.ConfigFile(); cfg.Architecture != "arm64" || cfg.Variant != "v8" {
		t.Errorf("ImageFor arm64: %s/%s", cfg.Architecture, cfg.Variant)
	}
}

func TestDockerImage(t *testing.T) {
	l, err := Layer(File("hello", "hi", 0o644))
	if err != nil {
		t.Fatal(err)
	}
	img, err := DockerImage(l)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.DockerManifestSchema2 || m.Config.MediaType != types.DockerConfigJSON || m.Layers[0].MediaType != types.DockerLayer {
		t.Errorf("media types %s, %s, %s", m.MediaType, m.Config.MediaType, m.Layers[0].MediaType)
	}
	z, err := CompressedLayer(Zstd, File("hello", "hi", 0o644))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DockerImage(z); err == nil {
		t.Error("DockerImage accepted a zstd layer")
	}
}

// testIndex is a two-platform index plus an artifact and an attestation.
func testIndex(t *testing.T) (v1.ImageIndex, v1.Image) {
	t.Helper()
	l, err := Layer(File("hello", "hi", 0o644))
	if err != nil {
		t.Fatal(err)
	}
	amd, err := ImageFor(v1.Platform{OS: "linux", Architecture: "amd64"}, l)
	if err != nil {
		t.Fatal(err)
	}
	arm, err := ImageFor(v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, l)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := Index(map[string]v1.Image{"linux/arm64/v8": arm, "linux/amd64": amd})
	if err != nil {
		t.Fatal(err)
	}
	if idx, err = WithAttestation(idx, amd); err != nil {
		t.Fatal(err)
	}
	if idx, err = WithArtifact(idx, "application/vnd.example.sbom", []byte("sbom")); err != nil {
		t.Fatal(err)
	}
	return idx, amd
}

func TestIndex(t *testing.T) {
	idx, amd := testIndex(t)
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIImageIndex || len(m.Manifests) != 4 {
		t.Fatalf("index %s with %d manifests", m.MediaType, len(m.Manifests))
	}
	if p := m.Manifests[0].Platform; p == nil || p.String() != "linux/amd64" {
		t.Errorf("manifest 0 platform %v, want linux/amd64 (key order)", p)
	}
	if p := m.Manifests[1].Platform; p == nil || p.String() != "linux/arm64/v8" {
		t.Errorf("manifest 1 platform %v, want linux/arm64/v8", p)
	}
	att := m.Manifests[2]
	if att.Platform == nil || att.Platform.String() != "unknown/unknown" ||
		att.Annotations[AnnotationRefDigest] != mustDigest(t, amd).String() ||
		att.Annotations[AnnotationRefType] != RefTypeAttestation {
		t.Errorf("attestation descriptor %+v", att)
	}
	art := m.Manifests[3]
	if art.ArtifactType != "application/vnd.example.sbom" || art.Platform != nil {
		t.Errorf("artifact descriptor %+v", art)
	}
}

func TestDockerIndex(t *testing.T) {
	l, err := Layer(File("hello", "hi", 0o644))
	if err != nil {
		t.Fatal(err)
	}
	img, err := DockerImage(l)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := Index(map[string]v1.Image{"linux/amd64": img})
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := idx.MediaType(); mt != types.DockerManifestList {
		t.Errorf("index of Docker images is %s, want %s", mt, types.DockerManifestList)
	}
}

// TestPush checks that a real registry accepts everything imagegen makes.
func TestPush(t *testing.T) {
	reg := registry.Start(t)
	idx, _ := testIndex(t)
	ref, err := name.ParseReference(reg.Ref("imagegen/index:v1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatalf("push index: %v\nregistry log:\n%s", err, reg.Log())
	}
	got, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	gotDigest, err := got.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := idx.Digest(); gotDigest != want {
		t.Errorf("pulled index %s, pushed %s", gotDigest, want)
	}

	if bb, err := BusyboxLayer(); err == nil {
		img, err := DockerImage(bb)
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := name.ParseReference(reg.Ref("busybox:latest"))
		if err := remote.Write(ref, img); err != nil {
			t.Fatalf("push busybox: %v", err)
		}
	}
	z, err := CompressedLayer(Zstd, hostile...)
	if err != nil {
		t.Fatal(err)
	}
	img, err := Image(z)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ = name.ParseReference(reg.Ref("hostile:zstd"))
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push zstd image: %v", err)
	}
}

func mustDigest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
