package imagegen

import (
	"bytes"
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Media types and annotations of BuildKit attestation manifests.
const (
	InTotoLayerType     types.MediaType = "application/vnd.in-toto+json"
	AnnotationRefDigest                 = "vnd.docker.reference.digest"
	AnnotationRefType                   = "vnd.docker.reference.type"
	RefTypeAttestation                  = "attestation-manifest"
)

// emptyJSON is the OCI 1.1 empty config blob.
var emptyJSON = []byte("{}")

// Artifact returns an OCI 1.1 artifact manifest: artifactType set, the
// empty JSON config and payload as its single blob. It is a v1.Image so
// remote.Write and mutate.AppendManifests accept it, but it has no
// filesystem and no platform.
func Artifact(artifactType string, payload []byte) (v1.Image, error) {
	blob := static.NewLayer(payload, "application/octet-stream")
	blobDesc, err := partial.Descriptor(blob)
	if err != nil {
		return nil, fmt.Errorf("artifact blob: %w", err)
	}
	cfgDigest, cfgSize, err := v1.SHA256(bytes.NewReader(emptyJSON))
	if err != nil {
		return nil, fmt.Errorf("artifact config: %w", err)
	}
	raw, err := json.Marshal(v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  artifactType,
		Config: v1.Descriptor{
			MediaType: types.OCIEmptyJSON,
			Digest:    cfgDigest,
			Size:      cfgSize,
			Data:      emptyJSON,
		},
		Layers: []v1.Descriptor{*blobDesc},
	})
	if err != nil {
		return nil, fmt.Errorf("artifact manifest: %w", err)
	}
	return partial.CompressedToImage(&artifact{raw: raw, blob: blob})
}

// WithArtifact returns idx plus an OCI 1.1 artifact entry carrying
// artifactType and no platform, as tools such as ORAS push alongside
// images. Pullers must not choose it as an image.
func WithArtifact(idx v1.ImageIndex, artifactType string, payload []byte) (v1.ImageIndex, error) {
	a, err := Artifact(artifactType, payload)
	if err != nil {
		return nil, err
	}
	return mutate.AppendManifests(idx, mutate.IndexAddendum{
		Add:        a,
		Descriptor: v1.Descriptor{ArtifactType: artifactType},
	}), nil
}

// Attestation returns a BuildKit-style attestation manifest for subject:
// an OCI image manifest whose config says unknown/unknown and whose single
// layer is an in-toto statement naming subject's digest.
func Attestation(subject v1.Image) (v1.Image, error) {
	digest, err := subject.Digest()
	if err != nil {
		return nil, fmt.Errorf("attestation subject: %w", err)
	}
	stmt, err := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v0.1",
		"predicateType": "https://spdx.dev/Document",
		"subject": []map[string]any{{
			"name":   "_",
			"digest": map[string]string{digest.Algorithm: digest.Hex},
		}},
		"predicate": map[string]string{"spdxVersion": "SPDX-2.3"},
	})
	if err != nil {
		return nil, fmt.Errorf("attestation statement: %w", err)
	}
	cfg := &v1.ConfigFile{
		OS:           "unknown",
		Architecture: "unknown",
		RootFS:       v1.RootFS{Type: "layers"},
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, fmt.Errorf("attestation config: %w", err)
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:       static.NewLayer(stmt, InTotoLayerType),
		Annotations: map[string]string{"in-toto.io/predicate-type": "https://spdx.dev/Document"},
	})
	if err != nil {
		return nil, fmt.Errorf("attestation layer: %w", err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	return mutate.ConfigMediaType(img, types.OCIConfigJSON), nil
}

// WithAttestation returns idx plus an attestation manifest for subject,
// listed as BuildKit lists it: platform unknown/unknown and annotations
// pointing at subject's digest. A puller that picks by platform alone
// must not pick it.
func WithAttestation(idx v1.ImageIndex, subject v1.Image) (v1.ImageIndex, error) {
	att, err := Attestation(subject)
	if err != nil {
		return nil, err
	}
	digest, err := subject.Digest()
	if err != nil {
		return nil, fmt.Errorf("attestation subject: %w", err)
	}
	return mutate.AppendManifests(idx, mutate.IndexAddendum{
		Add: att,
		Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"},
			Annotations: map[string]string{
				AnnotationRefDigest: digest.String(),
				AnnotationRefType:   RefTypeAttestation,
			},
		},
	}), nil
}

// artifact is the partial.CompressedImageCore of an OCI 1.1 artifact.
type artifact struct {
	raw  []byte
	blob v1.Layer
}

func (a *artifact) RawManifest() ([]byte, error)        { return a.raw, nil }
func (a *artifact) RawConfigFile() ([]byte, error)      { return emptyJSON, nil }
func (a *artifact) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

func (a *artifact) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if d, err := a.blob.Digest(); err == nil && d == h {
		return a.blob, nil
	}
	return nil, fmt.Errorf("artifact has no blob %s", h)
}
