package images

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/devbox-dev/devbox/images/unpack"
	"github.com/devbox-dev/devbox/progress"
)

// archive gives random access to the members of an uncompressed tar file.
type archive struct {
	f       *os.File
	members map[string]member
}

type member struct {
	off, size int64
}

// openArchive indexes the regular files of the tar at f by clean name,
// following symlink members (docker save links duplicate layers).
func openArchive(f *os.File) (*archive, error) {
	a := &archive{f: f, members: map[string]member{}}
	links := map[string]string{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read tar: %w", err)
		}
		n := path.Clean(strings.TrimPrefix(h.Name, "./"))
		switch h.Typeflag {
		case tar.TypeReg:
			// archive/tar reads headers block by block without buffering
			// ahead, so the file offset now is where the content starts.
			off, err := f.Seek(0, io.SeekCurrent)
			if err != nil {
				return nil, err
			}
			a.members[n] = member{off: off, size: h.Size}
		case tar.TypeSymlink:
			links[n] = path.Clean(path.Join(path.Dir(n), h.Linkname))
		}
	}
	for n, target := range links {
		if m, ok := a.members[target]; ok {
			a.members[n] = m
		}
	}
	return a, nil
}

func (a *archive) has(n string) bool { _, ok := a.members[n]; return ok }

func (a *archive) open(n string) (*io.SectionReader, error) {
	m, ok := a.members[n]
	if !ok {
		return nil, fmt.Errorf("archive has no file %q", n)
	}
	return io.NewSectionReader(a.f, m.off, m.size), nil
}

func (a *archive) bytes(n string) ([]byte, error) {
	r, err := a.open(n)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// Import stores the images in the archive at file: a `docker save` tarball,
// an OCI image layout in a tar, or (anything else) a plain root filesystem
// tar that becomes a one-layer image. Any of them may be gzip or zstd
// compressed. ref, if not empty, tags the imported image.
func (s *Store) Import(ctx context.Context, file, ref string, report progress.Func) ([]*Image, error) {
	imgs, err := s.importFile(ctx, file, ref, report)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", file, err)
	}
	return imgs, nil
}

func (s *Store) importFile(ctx context.Context, file, ref string, report progress.Func) ([]*Image, error) {
	var tag *name.Tag
	if ref != "" {
		t, err := name.NewTag(ref)
		if err != nil {
			return nil, fmt.Errorf("invalid tag %q: use NAME[:TAG], like myapp:dev", ref)
		}
		tag = &t
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tarFile, err := s.uncompressed(f)
	if err != nil {
		return nil, err
	}
	if tarFile != f {
		defer os.Remove(tarFile.Name())
		defer tarFile.Close()
	}
	a, err := openArchive(tarFile)
	if err != nil {
		return nil, err
	}
	switch {
	case a.has("manifest.json"):
		return s.importDocker(ctx, a, tag, report)
	case a.has("index.json") && a.has("oci-layout"):
		return s.importLayout(ctx, a, tag, report)
	default:
		img, err := s.importRootfs(ctx, f, file, tag, report)
		if err != nil {
			return nil, err
		}
		return []*Image{img}, nil
	}
}

// uncompressed returns f itself if it is a plain tar, or else a temp file
// holding its decompressed content: archives need random access.
func (s *Store) uncompressed(f *os.File) (*os.File, error) {
	var magic [4]byte
	n, _ := io.ReadFull(f, magic[:])
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	if !isCompressed(magic[:n]) {
		return f, nil
	}
	dec, err := unpack.Decompress(f)
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	tmp, err := os.CreateTemp(s.tmp(), "import-")
	if err != nil {
		return nil, diskErr(s.dir, err)
	}
	if _, err := io.Copy(tmp, dec); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, diskErr(s.dir, err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return tmp, nil
}

func isCompressed(magic []byte) bool {
	return bytes.HasPrefix(magic, []byte{0x1f, 0x8b}) || bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd})
}

// dockerManifest is one entry of a docker save manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func (s *Store) importDocker(ctx context.Context, a *archive, tag *name.Tag, report progress.Func) ([]*Image, error) {
	b, err := a.bytes("manifest.json")
	if err != nil {
		return nil, err
	}
	var ms []dockerManifest
	if err := json.Unmarshal(b, &ms); err != nil {
		return nil, fmt.Errorf("parse manifest.json: %w", err)
	}
	if tag != nil && len(ms) != 1 {
		return nil, fmt.Errorf("the archive holds %d images: import it without a tag", len(ms))
	}
	var out []*Image
	for _, m := range ms {
		img, err := dockerImage(a, m)
		if err != nil {
			return nil, err
		}
		tags := m.RepoTags
		if tag != nil {
			tags = []string{tag.String()}
		}
		rec, err := s.storeImported(ctx, img, tags, report)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

// dockerImage builds an OCI image from a docker save entry, keeping each
// layer as it is in the archive (compressed or not) so nothing is
// recompressed.
func dockerImage(a *archive, m dockerManifest) (v1.Image, error) {
	rawConfig, err := a.bytes(m.Config)
	if err != nil {
		return nil, err
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawConfig))
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", m.Config, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("%s lists %d diff IDs for %d layers", m.Config, len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	img := &memImage{config: rawConfig, layers: map[v1.Hash]*archiveLayer{}}
	man := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(rawConfig)), Digest: mustHash(sha256Digest(rawConfig))},
	}
	for i, ln := range m.Layers {
		l, err := newArchiveLayer(a, ln, cfg.RootFS.DiffIDs[i])
		if err != nil {
			return nil, err
		}
		img.layers[l.digest] = l
		man.Layers = append(man.Layers, v1.Descriptor{MediaType: l.mediaType, Size: l.size, Digest: l.digest})
	}
	if img.manifest, err = json.Marshal(man); err != nil {
		return nil, err
	}
	return partial.CompressedToImage(img)
}

func mustHash(s string) v1.Hash {
	h, err := v1.NewHash(s)
	if err != nil {
		panic(err)
	}
	return h
}

func (s *Store) importLayout(ctx context.Context, a *archive, tag *name.Tag, report progress.Func) ([]*Image, error) {
	b, err := a.bytes("index.json")
	if err != nil {
		return nil, err
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("parse index.json: %w", err)
	}
	descs := idx.Manifests
	if tag != nil && len(descs) != 1 {
		return nil, fmt.Errorf("the archive holds %d images: import it without a tag", len(descs))
	}
	var out []*Image
	for _, d := range descs {
		img, err := layoutImage(a, d, DefaultPlatform())
		if err != nil {
			return nil, err
		}
		var tags []string
		if tag != nil {
			tags = []string{tag.String()}
		} else if t := layoutTag(d); t != "" {
			tags = []string{t}
		}
		rec, err := s.storeImported(ctx, img, tags, report)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

// layoutTag reads the name an OCI layout gives an image: containerd and
// docker write the full reference in io.containerd.image.name.
func layoutTag(d v1.Descriptor) string {
	for _, k := range []string{"io.containerd.image.name", "org.opencontainers.image.ref.name"} {
		if v := d.Annotations[k]; v != "" {
			if t, err := name.NewTag(v); err == nil && strings.Contains(v, ":") {
				return t.String()
			}
		}
	}
	return ""
}

func layoutImage(a *archive, d v1.Descriptor, want v1.Platform) (v1.Image, error) {
	blob := func(h v1.Hash) ([]byte, error) { return a.bytes("blobs/" + h.Algorithm + "/" + h.Hex) }
	raw, err := blob(d.Digest)
	if err != nil {
		return nil, err
	}
	if isIndex(d.MediaType) {
		idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return nil, err
		}
		sub, err := SelectPlatform(idx, want)
		if err != nil {
			return nil, err
		}
		return layoutImage(a, sub, want)
	}
	man, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parse manifest %s: %w", d.Digest, err)
	}
	rawConfig, err := blob(man.Config.Digest)
	if err != nil {
		return nil, err
	}
	img := &memImage{manifest: raw, config: rawConfig, mediaType: d.MediaType, layers: map[v1.Hash]*archiveLayer{}}
	for _, l := range man.Layers {
		n := "blobs/" + l.Digest.Algorithm + "/" + l.Digest.Hex
		m, ok := a.members[n]
		if !ok {
			return nil, fmt.Errorf("archive has no blob for layer %s", l.Digest)
		}
		img.layers[l.Digest] = &archiveLayer{a: a, name: n, digest: l.Digest, size: m.size, mediaType: l.MediaType}
	}
	return partial.CompressedToImage(img)
}

func (s *Store) importRootfs(ctx context.Context, f *os.File, file string, tag *name.Tag, report progress.Func) (*Image, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	// Both digests are needed for the config and manifest before the layer
	// is stored; one pass computes them.
	blobHash, diffHash := sha256.New(), sha256.New()
	dec, err := unpack.Decompress(io.TeeReader(f, blobHash))
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(diffHash, dec)
	dec.Close()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	if _, err := io.Copy(blobHash, f); err != nil {
		return nil, err
	}
	diffID := mustHash("sha256:" + hex.EncodeToString(diffHash.Sum(nil)))
	digest := mustHash("sha256:" + hex.EncodeToString(blobHash.Sum(nil)))
	var magic [4]byte
	n, _ := f.ReadAt(magic[:], 0)
	mt := layerMediaType(magic[:n])

	p := DefaultPlatform()
	cfg := v1.ConfigFile{
		Architecture: p.Architecture,
		OS:           p.OS,
		Variant:      p.Variant,
		Created:      v1.Time{Time: time.Now().UTC().Truncate(time.Second)},
		RootFS:       v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{diffID}},
		Config:       v1.Config{Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
		History:      []v1.History{{Created: v1.Time{Time: time.Now().UTC().Truncate(time.Second)}, CreatedBy: "devbox image import", Comment: "imported from " + path.Base(file)}},
	}
	rawConfig, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	l := &archiveLayer{file: f, digest: digest, size: st.Size(), mediaType: mt}
	man := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(rawConfig)), Digest: mustHash(sha256Digest(rawConfig))},
		Layers:        []v1.Descriptor{{MediaType: mt, Size: st.Size(), Digest: digest}},
	}
	rawManifest, err := json.Marshal(man)
	if err != nil {
		return nil, err
	}
	img, err := partial.CompressedToImage(&memImage{manifest: rawManifest, config: rawConfig, layers: map[v1.Hash]*archiveLayer{digest: l}})
	if err != nil {
		return nil, err
	}
	var tags []string
	if tag != nil {
		tags = []string{tag.String()}
	}
	return s.storeImported(ctx, img, tags, report)
}

func layerMediaType(magic []byte) types.MediaType {
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return types.OCILayer
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return types.OCILayerZStd
	default:
		return types.OCIUncompressedLayer
	}
}

func (s *Store) storeImported(ctx context.Context, img v1.Image, tags []string, report progress.Func) (*Image, error) {
	what := "imported image"
	if len(tags) > 0 {
		what = familiar(tags[0])
	}
	rec, err := s.writeImage(ctx, what, img, report)
	if err != nil {
		return nil, err
	}
	var canon []string
	for _, t := range tags {
		nt, err := name.NewTag(t)
		if err != nil {
			return nil, fmt.Errorf("invalid tag %q in archive: %w", t, err)
		}
		canon = append(canon, canonicalTag(nt))
	}
	return s.record(rec, canon, nil)
}

// memImage is a partial.CompressedImageCore over bytes in memory and
// layers in an archive.
type memImage struct {
	manifest, config []byte
	mediaType        types.MediaType
	layers           map[v1.Hash]*archiveLayer
}

func (m *memImage) RawConfigFile() ([]byte, error) { return m.config, nil }
func (m *memImage) RawManifest() ([]byte, error)   { return m.manifest, nil }
func (m *memImage) MediaType() (types.MediaType, error) {
	if m.mediaType != "" {
		return m.mediaType, nil
	}
	return types.OCIManifestSchema1, nil
}

func (m *memImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := m.layers[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("image has no layer %s", h)
}

// archiveLayer is a layer blob in an archive member or a whole file.
type archiveLayer struct {
	a         *archive
	name      string
	file      *os.File
	digest    v1.Hash
	size      int64
	mediaType types.MediaType
}

// newArchiveLayer describes a docker save layer member. An uncompressed
// member's digest is its diff ID, so only compressed ones are hashed here.
func newArchiveLayer(a *archive, n string, diffID v1.Hash) (*archiveLayer, error) {
	r, err := a.open(n)
	if err != nil {
		return nil, err
	}
	var magic [4]byte
	k, _ := r.ReadAt(magic[:], 0)
	l := &archiveLayer{a: a, name: n, size: r.Size(), mediaType: layerMediaType(magic[:k]), digest: diffID}
	if l.mediaType == types.OCIUncompressedLayer {
		return l, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return nil, fmt.Errorf("read %s: %w", n, err)
	}
	l.digest = mustHash("sha256:" + hex.EncodeToString(h.Sum(nil)))
	return l, nil
}

func (l *archiveLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *archiveLayer) Size() (int64, error)                { return l.size, nil }
func (l *archiveLayer) MediaType() (types.MediaType, error) { return l.mediaType, nil }
func (l *archiveLayer) Compressed() (io.ReadCloser, error) {
	if l.file != nil {
		return io.NopCloser(io.NewSectionReader(l.file, 0, l.size)), nil
	}
	r, err := l.a.open(l.name)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(r), nil
}

// Export writes the image ref names to w as a tar that both `docker load`
// (manifest.json) and OCI tools (index.json, oci-layout) read, as docker
// save does since Docker 25.
func (s *Store) Export(ctx context.Context, ref string, w io.Writer) error {
	img, err := s.Get(ref)
	if err != nil {
		return fmt.Errorf("export %s: %w", ref, err)
	}
	if err := s.export(ctx, img, w); err != nil {
		return fmt.Errorf("export %s: %w", ref, err)
	}
	return nil
}

// ExportFile is Export to a file. It writes beside file and renames, so a
// failed export never leaves a truncated file under the name asked for.
func (s *Store) ExportFile(ctx context.Context, ref, file string) error {
	err := WriteFile(file, 0o644, func(w io.Writer) error { return s.Export(ctx, ref, w) })
	if err != nil {
		return fmt.Errorf("export %s: %w", ref, err)
	}
	return nil
}

// WriteFile writes file with write, beside it first and renamed into
// place once complete, so a failure leaves nothing under its name.
func WriteFile(file string, mode os.FileMode, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}

func (s *Store) export(ctx context.Context, img *Image, w io.Writer) error {
	tw := tar.NewWriter(w)
	written := map[string]bool{}
	addBlob := func(digest string) (string, error) {
		h, err := v1.NewHash(digest)
		if err != nil {
			return "", err
		}
		n := "blobs/" + h.Algorithm + "/" + h.Hex
		if written[n] {
			return n, nil
		}
		written[n] = true
		return n, s.copyBlob(ctx, tw, n, h)
	}
	for _, d := range []string{"blobs", "blobs/sha256"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: img.Created}); err != nil {
			return err
		}
	}
	dm := dockerManifest{RepoTags: []string{}}
	for _, t := range img.RepoTags {
		dm.RepoTags = append(dm.RepoTags, familiar(t))
	}
	var err error
	if _, err = addBlob(img.Manifest); err != nil {
		return err
	}
	if dm.Config, err = addBlob(img.ID); err != nil {
		return err
	}
	for _, l := range img.Layers {
		n, err := addBlob(l.Digest)
		if err != nil {
			return err
		}
		dm.Layers = append(dm.Layers, n)
	}
	mb, err := json.Marshal([]dockerManifest{dm})
	if err != nil {
		return err
	}
	mst, err := os.Stat(s.blobPath(mustHash(img.Manifest)))
	if err != nil {
		return err
	}
	desc := v1.Descriptor{MediaType: types.MediaType(img.MediaType), Size: mst.Size(), Digest: mustHash(img.Manifest)}
	if len(img.RepoTags) > 0 {
		desc.Annotations = map[string]string{"io.containerd.image.name": img.RepoTags[0]}
		if _, t := SplitTag(img.RepoTags[0]); t != "" {
			desc.Annotations["org.opencontainers.image.ref.name"] = t
		}
	}
	ib, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{desc}})
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		b    []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", ib},
		{"manifest.json", mb},
	} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Size: int64(len(f.b)), Mode: 0o644, ModTime: img.Created}); err != nil {
			return err
		}
		if _, err := tw.Write(f.b); err != nil {
			return err
		}
	}
	return tw.Close()
}

func (s *Store) copyBlob(ctx context.Context, tw *tar.Writer, n string, h v1.Hash) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := os.Open(s.blobPath(h))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("blob %s is missing from the store: pull the image again", h)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Size: st.Size(), Mode: 0o644}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}
