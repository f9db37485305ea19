package images

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/devbox-dev/devbox/progress"
)

// PullOptions tune Pull.
type PullOptions struct {
	// Platform selects from a multi-platform image; nil means this
	// machine's (linux and the CPU architecture devbox was built for).
	Platform *v1.Platform
	// Insecure lists registries ("host:port") spoken to over plain HTTP.
	// Registries on localhost and 127.0.0.0/8 always are.
	Insecure []string
	// Progress receives per-layer progress; nil discards it.
	Progress progress.Func
	// Keychain supplies credentials; nil means the user's docker config
	// (~/.docker/config.json and its credential helpers).
	Keychain authn.Keychain
	// Transport overrides the HTTP transport (tests).
	Transport http.RoundTripper
	// UserAgent is sent to registries.
	UserAgent string
}

// DefaultPlatform is the platform images are pulled for by default.
func DefaultPlatform() v1.Platform {
	p := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if runtime.GOARCH == "arm" {
		p.Variant = "v7"
	}
	return p
}

// ParseReference parses a user's image reference the way docker does
// ("busybox" is docker.io/library/busybox:latest), over plain HTTP for the
// registries in insecure.
func ParseReference(ref string, insecure []string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("invalid image reference %q: use NAME[:TAG] or NAME@sha256:DIGEST, lowercase, like docker.io/library/busybox:1.36", ref)
	}
	if slices.Contains(insecure, r.Context().RegistryStr()) {
		r, err = name.ParseReference(ref, name.Insecure)
		if err != nil {
			return nil, fmt.Errorf("invalid image reference %q: %w", ref, err)
		}
	}
	return r, nil
}

// Pull fetches ref from its registry into the store, layers in parallel and
// unpacked as they stream in, and tags it. Pulling an image that is already
// stored fetches only its manifest.
func (s *Store) Pull(ctx context.Context, ref string, opts PullOptions) (*Image, error) {
	r, err := ParseReference(ref, opts.Insecure)
	if err != nil {
		return nil, err
	}
	img, err := s.pull(ctx, r, opts)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", familiar(r.Name()), explain(r, err))
	}
	return img, nil
}

func (s *Store) pull(ctx context.Context, r name.Reference, opts PullOptions) (*Image, error) {
	want := DefaultPlatform()
	if opts.Platform != nil {
		want = *opts.Platform
	}
	kc := opts.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	ropts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(kc),
		remote.WithJobs(maxParallelLayers),
	}
	if opts.Transport != nil {
		ropts = append(ropts, remote.WithTransport(opts.Transport))
	}
	if opts.UserAgent != "" {
		ropts = append(ropts, remote.WithUserAgent(opts.UserAgent))
	}
	desc, err := remote.Get(r, ropts...)
	if err != nil {
		return nil, err
	}
	top := desc.Digest
	img, err := resolveImage(r, desc, want, opts.Platform != nil, ropts)
	if err != nil {
		return nil, err
	}
	rec, err := s.writeImage(ctx, familiar(r.Name()), img, opts.Progress)
	if err != nil {
		return nil, err
	}
	var tags []string
	if t, ok := r.(name.Tag); ok {
		tags = append(tags, canonicalTag(t))
	}
	digests := []string{canonicalRepo(r.Context()) + "@" + top.String()}
	return s.record(rec, tags, digests)
}

// resolveImage picks the image for platform want out of what desc names,
// descending through (nested) indexes.
func resolveImage(r name.Reference, desc *remote.Descriptor, want v1.Platform, explicit bool, ropts []remote.Option) (v1.Image, error) {
	switch {
	case isIndex(desc.MediaType):
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, err
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, err
		}
		d, err := SelectPlatform(im, want)
		if err != nil {
			return nil, err
		}
		sub, err := remote.Get(r.Context().Digest(d.Digest.String()), ropts...)
		if err != nil {
			return nil, err
		}
		return resolveImage(r, sub, want, explicit, ropts)
	case isImage(desc.MediaType):
		img, err := desc.Image()
		if err != nil {
			return nil, err
		}
		if explicit {
			cfg, err := img.ConfigFile()
			if err != nil {
				return nil, err
			}
			if p := cfg.Platform(); p != nil && p.OS != "" && !platformMatches(*p, want) {
				return nil, fmt.Errorf("%w: the image is %s, not %s", ErrNoPlatform, platformString(p), platformString(&want))
			}
		}
		return img, nil
	default:
		return nil, fmt.Errorf("%s is not an image: its manifest media type is %q", r, desc.MediaType)
	}
}

// ErrNoPlatform means an image has no variant for the wanted platform.
var ErrNoPlatform = errors.New("no image for this platform")

func isIndex(mt types.MediaType) bool {
	return mt == types.OCIImageIndex || mt == types.DockerManifestList
}

func isImage(mt types.MediaType) bool {
	return mt == types.OCIManifestSchema1 || mt == types.DockerManifestSchema2 ||
		mt == types.DockerManifestSchema1 || mt == types.DockerManifestSchema1Signed
}

// SelectPlatform chooses the entry of an index for platform want. An entry
// is a candidate by its media type alone: OCI 1.1 entries may carry an
// artifactType and still be runnable images, while attestations and
// signatures are told apart by their platform (unknown/unknown) or their
// media type.
func SelectPlatform(im *v1.IndexManifest, want v1.Platform) (v1.Descriptor, error) {
	var candidates []v1.Descriptor
	for _, d := range im.Manifests {
		if isImage(d.MediaType) || isIndex(d.MediaType) {
			candidates = append(candidates, d)
		}
	}
	var best *v1.Descriptor
	for i, d := range candidates {
		if d.Platform == nil || !platformMatches(*d.Platform, want) {
			continue
		}
		// An exact variant beats a compatible one; otherwise the first wins,
		// as the index's author ordered them.
		if best == nil || (d.Platform.Variant == want.Variant && best.Platform.Variant != want.Variant) {
			best = &candidates[i]
		}
	}
	if best != nil {
		return *best, nil
	}
	// An index without platforms, holding a single image, means that image.
	if len(candidates) == 1 && candidates[0].Platform == nil {
		return candidates[0], nil
	}
	var avail []string
	for _, d := range candidates {
		if d.Platform != nil && d.Platform.OS != "unknown" {
			avail = append(avail, platformString(d.Platform))
		}
	}
	return v1.Descriptor{}, fmt.Errorf("%w %s (available: %s; choose one with --platform)", ErrNoPlatform, platformString(&want), strings.Join(avail, ", "))
}

// MatchesPlatform tells whether img is an image for platform want, as a
// pull for want would have chosen it: its config's OS and architecture
// are want's, and its variant too when want names one. An image whose
// config names no platform matches any.
func (img *Image) MatchesPlatform(want v1.Platform) bool {
	if img.Platform == "" {
		return true
	}
	have, err := v1.ParsePlatform(img.Platform)
	return err == nil && platformMatches(*have, want)
}

func platformMatches(have, want v1.Platform) bool {
	if have.OS != want.OS || have.Architecture != want.Architecture {
		return false
	}
	if want.Variant == "" || have.Variant == want.Variant {
		return true
	}
	// arm64 images rarely name their variant; v8 is what they mean.
	return want.Architecture == "arm64" && normVariant(have.Variant) == normVariant(want.Variant)
}

func normVariant(v string) string {
	if v == "" {
		return "v8"
	}
	return v
}

// explain turns registry and network failures into one line that says what
// went wrong and what to do.
func explain(r name.Reference, err error) error {
	host := r.Context().RegistryStr()
	var te *transport.Error
	if errors.As(err, &te) {
		for _, d := range te.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
				return fmt.Errorf("not found in registry %s (%s): check the name and tag", host, d.Code)
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return fmt.Errorf("access denied by registry %s: the repository does not exist or needs credentials (run `docker login %s`)", host, host)
			}
		}
		switch te.StatusCode {
		case http.StatusNotFound:
			return fmt.Errorf("not found in registry %s: check the name and tag", host)
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("access denied by registry %s: the repository does not exist or needs credentials (run `docker login %s`)", host, host)
		}
		return fmt.Errorf("registry %s: %w", host, err)
	}
	if errors.Is(err, syscall.ENOSPC) {
		return err
	}
	var ne net.Error
	var oe *net.OpError
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) || errors.As(err, &oe) || errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("cannot reach registry %s: %w", host, err)
	}
	if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return fmt.Errorf("registry %s speaks plain HTTP: allow it with --insecure-registry %s", host, host)
	}
	return err
}
