package guest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/devbox-dev/devbox/images"
)

// Media types of a guest image stored in an OCI registry: an OCI 1.1
// artifact whose config is guest.json and whose two layers are the kernel
// and the initramfs, uncompressed, so each layer's digest is the one
// guest.json records.
const (
	ArtifactType       = "application/vnd.devbox.guest.v1+json"
	ConfigMediaType    = "application/vnd.devbox.guest.config.v1+json"
	KernelMediaType    = "application/vnd.devbox.guest.kernel.v1"
	InitramfsMediaType = "application/vnd.devbox.guest.initramfs.v1"
)

// maxConfigSize bounds the guest.json a registry can make Pull read.
const maxConfigSize = 1 << 20

// RemoteOptions tune Push and Pull; the zero value suits a public or
// `docker login`ed registry.
type RemoteOptions struct {
	// Insecure lists registries ("host:port") spoken to over plain HTTP;
	// localhost and 127.0.0.0/8 always are.
	Insecure []string
	// Keychain supplies credentials; nil means the user's docker config.
	Keychain authn.Keychain
	// Transport overrides the HTTP transport (tests).
	Transport http.RoundTripper
	// UserAgent is sent to registries.
	UserAgent string
	// Arch picks Pull's image from a multi-architecture index and is
	// checked against the pulled guest.json; empty means this machine's.
	Arch string
}

func (o RemoteOptions) remote(ctx context.Context) []remote.Option {
	kc := o.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc)}
	if o.Transport != nil {
		opts = append(opts, remote.WithTransport(o.Transport))
	}
	if o.UserAgent != "" {
		opts = append(opts, remote.WithUserAgent(o.UserAgent))
	}
	return opts
}

// Push uploads the image in dir to ref, after checking it as Load does,
// and returns the digest of the manifest it pushed.
func Push(ctx context.Context, dir, ref string, opts RemoteOptions) (v1.Hash, error) {
	r, err := images.ParseReference(ref, opts.Insecure)
	if err != nil {
		return v1.Hash{}, err
	}
	img, err := Load(dir)
	if err != nil {
		return v1.Hash{}, err
	}
	art, err := newArtifact(img)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("push guest image %s: %w", dir, err)
	}
	vimg, err := partial.CompressedToImage(art)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("push guest image %s: %w", dir, err)
	}
	if err := remote.Write(r, vimg, opts.remote(ctx)...); err != nil {
		return v1.Hash{}, fmt.Errorf("push guest image to %s: %w", r, err)
	}
	return vimg.Digest()
}

// artifact is a guest image as a partial.CompressedImageCore.
type artifact struct {
	config, manifest []byte
	layers           map[v1.Hash]*fileBlob
}

func newArtifact(img *Image) (*artifact, error) {
	config, err := os.ReadFile(filepath.Join(img.Dir, ManifestName))
	if err != nil {
		return nil, err
	}
	a := &artifact{config: config, layers: map[v1.Hash]*fileBlob{}}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  ArtifactType,
		Config: v1.Descriptor{
			MediaType: ConfigMediaType,
			Size:      int64(len(config)),
			Digest:    mustSHA256(config),
		},
	}
	for _, l := range []struct {
		f  File
		mt types.MediaType
	}{{img.Kernel, KernelMediaType}, {img.Initramfs, InitramfsMediaType}} {
		h, err := v1.NewHash(l.f.Digest)
		if err != nil {
			return nil, err
		}
		a.layers[h] = &fileBlob{path: filepath.Join(img.Dir, l.f.Path), digest: h, size: l.f.Size, mediaType: l.mt}
		m.Layers = append(m.Layers, v1.Descriptor{
			MediaType:   l.mt,
			Size:        l.f.Size,
			Digest:      h,
			Annotations: map[string]string{"org.opencontainers.image.title": l.f.Path},
		})
	}
	if a.manifest, err = json.Marshal(m); err != nil {
		return nil, err
	}
	return a, nil
}

func mustSHA256(b []byte) v1.Hash {
	h, _, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		panic(err) // reading from memory cannot fail
	}
	return h
}

func (a *artifact) RawConfigFile() ([]byte, error) { return a.config, nil }
func (a *artifact) RawManifest() ([]byte, error)   { return a.manifest, nil }
func (a *artifact) MediaType() (types.MediaType, error) {
	return types.OCIManifestSchema1, nil
}

func (a *artifact) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := a.layers[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("guest image has no blob %s", h)
}

// fileBlob is an image file as a layer.
type fileBlob struct {
	path      string
	digest    v1.Hash
	size      int64
	mediaType types.MediaType
}

func (b *fileBlob) Digest() (v1.Hash, error)            { return b.digest, nil }
func (b *fileBlob) Size() (int64, error)                { return b.size, nil }
func (b *fileBlob) MediaType() (types.MediaType, error) { return b.mediaType, nil }
func (b *fileBlob) Compressed() (io.ReadCloser, error)  { return os.Open(b.path) }

// Pull downloads the guest image at ref into the image directory dest
// (created if missing; its files are replaced) and returns it. A ref naming
// an index gets the entry for opts.Arch. Every blob is checked against its
// digest while it streams in, and guest.json is renamed into place last,
// so dest never holds a mix of two images that Load would accept.
func Pull(ctx context.Context, ref, dest string, opts RemoteOptions) (*Image, error) {
	r, err := images.ParseReference(ref, opts.Insecure)
	if err != nil {
		return nil, err
	}
	arch := opts.Arch
	if arch == "" {
		arch = runtime.GOARCH
	}
	img, err := pull(r, dest, arch, opts.remote(ctx))
	if err != nil {
		return nil, fmt.Errorf("pull guest image %s: %w", r, err)
	}
	return img, nil
}

func pull(r name.Reference, dest, arch string, ropts []remote.Option) (*Image, error) {
	desc, err := remote.Get(r, ropts...)
	if err != nil {
		return nil, err
	}
	if desc.MediaType == types.OCIImageIndex || desc.MediaType == types.DockerManifestList {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, err
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, err
		}
		pick, err := images.SelectPlatform(im, v1.Platform{OS: "linux", Architecture: arch})
		if err != nil {
			return nil, fmt.Errorf("the index has no linux/%s guest image: %w", arch, err)
		}
		if desc, err = remote.Get(r.Context().Digest(pick.Digest.String()), ropts...); err != nil {
			return nil, err
		}
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if m.ArtifactType != ArtifactType && m.Config.MediaType != ConfigMediaType {
		return nil, fmt.Errorf("not a devbox guest image (artifact type %q, config type %q; want %s)", m.ArtifactType, m.Config.MediaType, ArtifactType)
	}
	if m.Config.Size > maxConfigSize {
		return nil, fmt.Errorf("guest.json of %d bytes is too large", m.Config.Size)
	}
	config, err := fetchBlob(r.Context(), m.Config.Digest, ropts)
	if err != nil {
		return nil, fmt.Errorf("guest.json: %w", err)
	}
	var gm Manifest
	if err := json.Unmarshal(config, &gm); err != nil {
		return nil, fmt.Errorf("guest.json: %w", err)
	}
	if err := gm.validate(); err != nil {
		return nil, fmt.Errorf("guest.json: %w", err)
	}
	if gm.Arch != arch {
		return nil, fmt.Errorf("the image is for %s, not %s", gm.Arch, arch)
	}
	byType := map[types.MediaType]v1.Descriptor{}
	for _, l := range m.Layers {
		byType[l.MediaType] = l
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return nil, err
	}
	var temps []string
	defer func() {
		for _, t := range temps {
			os.Remove(t)
		}
	}()
	var renames [][2]string
	for _, want := range []struct {
		f  File
		mt types.MediaType
	}{{gm.Kernel, KernelMediaType}, {gm.Initramfs, InitramfsMediaType}} {
		l, ok := byType[want.mt]
		if !ok {
			return nil, fmt.Errorf("no %s layer", want.mt)
		}
		// The layers are the files themselves: guest.json and the
		// manifest must agree before anything is downloaded.
		if l.Digest.String() != want.f.Digest || l.Size != want.f.Size {
			return nil, fmt.Errorf("%s layer %s (%d bytes) is not the %s guest.json names (%s, %d bytes)",
				want.mt, l.Digest, l.Size, want.f.Path, want.f.Digest, want.f.Size)
		}
		layer, err := remote.Layer(r.Context().Digest(l.Digest.String()), ropts...)
		if err != nil {
			return nil, err
		}
		tmp, got, err := writeTemp(dest, want.f.Path, func(w io.Writer) error {
			rc, err := layer.Compressed()
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(w, rc)
			return err
		})
		temps = append(temps, tmp)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", want.f.Path, err)
		}
		if got.Digest != want.f.Digest || got.Size != want.f.Size {
			return nil, fmt.Errorf("%s: downloaded %s (%d bytes), want %s (%d bytes)", want.f.Path, got.Digest, got.Size, want.f.Digest, want.f.Size)
		}
		renames = append(renames, [2]string{tmp, want.f.Path})
	}
	tmp, _, err := writeTemp(dest, ManifestName, func(w io.Writer) error {
		_, err := w.Write(config)
		return err
	})
	temps = append(temps, tmp)
	if err != nil {
		return nil, err
	}
	renames = append(renames, [2]string{tmp, ManifestName})
	for _, rn := range renames {
		if err := os.Rename(rn[0], filepath.Join(dest, rn[1])); err != nil {
			return nil, err
		}
	}
	temps = nil
	return &Image{Dir: dest, Manifest: gm}, nil
}

// fetchBlob reads a small blob, checked against its digest.
func fetchBlob(repo name.Repository, h v1.Hash, ropts []remote.Option) ([]byte, error) {
	l, err := remote.Layer(repo.Digest(h.String()), ropts...)
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxConfigSize+1))
	if err != nil {
		return nil, err
	}
	if got := mustSHA256(b); got != h {
		return nil, fmt.Errorf("blob %s has digest %s", h, got)
	}
	return b, nil
}
