// Package imagegen builds small, reproducible OCI images in memory for
// tests: layers from hand-written tar entries (including hostile ones), a
// busybox layer from the host, images, indexes, OCI 1.1 artifacts and
// BuildKit-style attestation manifests. Push them with go-containerregistry's
// remote package, for example to a registry from internal/testutil/registry.
//
// The same inputs always give the same digests: entries default to Epoch,
// blobs are compressed once with fixed settings, and configs carry no
// wall-clock time.
package imagegen

import (
	"fmt"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// DefaultPath is the PATH set in generated image configs, Docker's default.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// HostPlatform returns linux on the architecture this test runs on.
func HostPlatform() v1.Platform {
	return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

// Image returns an OCI image for HostPlatform with layers in order (base
// first), Cmd ["sh"] and Env PATH=DefaultPath.
func Image(layers ...v1.Layer) (v1.Image, error) {
	return ImageFor(HostPlatform(), layers...)
}

// ImageFor is Image for platform p.
func ImageFor(p v1.Platform, layers ...v1.Layer) (v1.Image, error) {
	img, err := build(p, layers, "")
	if err != nil {
		return nil, err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	return mutate.ConfigMediaType(img, types.OCIConfigJSON), nil
}

// DockerImage is Image with Docker schema 2 media types, as most images on
// Docker Hub are served. Layers must be gzip-compressed.
func DockerImage(layers ...v1.Layer) (v1.Image, error) {
	return DockerImageFor(HostPlatform(), layers...)
}

// DockerImageFor is DockerImage for platform p.
func DockerImageFor(p v1.Platform, layers ...v1.Layer) (v1.Image, error) {
	for i, l := range layers {
		mt, err := l.MediaType()
		if err != nil {
			return nil, fmt.Errorf("layer %d media type: %w", i, err)
		}
		if mt != types.OCILayer && mt != types.DockerLayer {
			return nil, fmt.Errorf("layer %d: Docker images need gzip layers, not %s", i, mt)
		}
	}
	img, err := build(p, layers, types.DockerLayer)
	if err != nil {
		return nil, err
	}
	img = mutate.MediaType(img, types.DockerManifestSchema2)
	return mutate.ConfigMediaType(img, types.DockerConfigJSON), nil
}

// build makes the config for p and appends layers. A non-empty layerType
// overrides the layers' own media types in the manifest; the manifest and
// config media types are the caller's to set.
func build(p v1.Platform, layers []v1.Layer, layerType types.MediaType) (v1.Image, error) {
	cfg := &v1.ConfigFile{
		Created:      v1.Time{Time: Epoch},
		OS:           p.OS,
		Architecture: p.Architecture,
		Variant:      p.Variant,
		OSVersion:    p.OSVersion,
		OSFeatures:   p.OSFeatures,
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			Cmd: []string{"sh"},
			Env: []string{"PATH=" + DefaultPath},
		},
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	adds := make([]mutate.Addendum, len(layers))
	for i, l := range layers {
		adds[i] = mutate.Addendum{Layer: l, MediaType: layerType}
	}
	img, err = mutate.Append(img, adds...)
	if err != nil {
		return nil, fmt.Errorf("append layers: %w", err)
	}
	return img, nil
}

// Index returns an image index of images keyed by platform ("linux/amd64",
// "linux/arm64/v8"), in key order. The key, not the image's config, sets
// the descriptor's platform, so tests can make indexes that lie. The index
// is a Docker manifest list when every image is a Docker image, else an OCI
// index.
func Index(images map[string]v1.Image) (v1.ImageIndex, error) {
	adds := make([]mutate.IndexAddendum, 0, len(images))
	docker := len(images) > 0
	for _, key := range sortedKeys(images) {
		p, err := v1.ParsePlatform(key)
		if err != nil {
			return nil, fmt.Errorf("index platform %q: %w", key, err)
		}
		img := images[key]
		mt, err := img.MediaType()
		if err != nil {
			return nil, fmt.Errorf("index image %s: %w", key, err)
		}
		docker = docker && mt == types.DockerManifestSchema2
		adds = append(adds, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: p},
		})
	}
	idxType := types.OCIImageIndex
	if docker {
		idxType = types.DockerManifestList
	}
	idx := mutate.IndexMediaType(empty.Index, idxType)
	return mutate.AppendManifests(idx, adds...), nil
}
