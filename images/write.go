package images

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/devbox-dev/devbox/images/unpack"
	"github.com/devbox-dev/devbox/progress"
)

// maxParallelLayers bounds concurrent layer transfers, as docker's
// max-concurrent-downloads does: more only splits the same bandwidth.
const maxParallelLayers = 3

// layerAttempts is how often a layer whose stream broke is fetched again.
const layerAttempts = 3

// staged is a layer fetched into tmp/ and not yet committed.
type staged struct {
	blobTmp  string // "" when the blob is already stored
	layerTmp string // "" when the unpacked layer is already stored
	implicit []string
	size     int64
}

// writeImage stores img's manifest, config and layers, unpacking each layer
// while it streams in, and returns the image's record (without tags).
// name is what errors call the image.
func (s *Store) writeImage(ctx context.Context, name string, img v1.Image, report progress.Func) (*Image, error) {
	if report == nil {
		report = func(progress.Event) {}
	}
	mt, err := img.MediaType()
	if err != nil {
		return nil, err
	}
	if mt == types.DockerManifestSchema1 || mt == types.DockerManifestSchema1Signed {
		return nil, fmt.Errorf("%s uses the Docker schema 1 manifest format, which is obsolete and unsupported: push it again with a current docker or crane", name)
	}
	rawManifest, err := img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	manifest, err := v1.ParseManifest(bytes.NewReader(rawManifest))
	if err != nil {
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawConfig))
	if err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	if got := sha256Digest(rawConfig); got != manifest.Config.Digest.String() {
		return nil, fmt.Errorf("config digest mismatch: got %s, manifest says %s", got, manifest.Config.Digest)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("read layers: %w", err)
	}
	diffIDs := cfg.RootFS.DiffIDs
	if len(diffIDs) != len(layers) {
		return nil, fmt.Errorf("image has %d layers but its config lists %d diff IDs", len(layers), len(diffIDs))
	}
	if err := s.putBlob(rawManifest); err != nil {
		return nil, err
	}
	if err := s.putBlob(rawConfig); err != nil {
		return nil, err
	}

	rec := &Image{
		ID:        manifest.Config.Digest.String(),
		Manifest:  sha256Digest(rawManifest),
		MediaType: string(mt),
		Created:   cfg.Created.Time,
		Platform:  platformString(cfg.Platform()),
		Layers:    make([]Layer, len(layers)),
	}
	for i, l := range manifest.Layers {
		rec.Layers[i] = Layer{
			Digest:    l.Digest.String(),
			MediaType: string(l.MediaType),
			Blob:      l.Size,
			DiffID:    diffIDs[i].String(),
			ChainID:   chainID(diffIDs[:i+1]),
		}
	}

	stage := make([]staged, len(layers))
	defer func() {
		for _, st := range stage {
			if st.blobTmp != "" {
				os.Remove(st.blobTmp)
			}
			if st.layerTmp != "" {
				os.RemoveAll(st.layerTmp)
			}
		}
	}()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxParallelLayers)
	for i := range layers {
		id := ShortID(rec.Layers[i].Digest)
		report(progress.Event{ID: id, Status: "Waiting"})
	}
	for i, l := range layers {
		g.Go(func() error {
			st, err := s.fetchLayer(gctx, name, l, rec.Layers[i], report)
			stage[i] = st
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := s.commitLayers(name, rec.Layers, stage); err != nil {
		return nil, err
	}
	for _, l := range rec.Layers {
		m, err := s.readLayerMeta(l.ChainID)
		if err != nil {
			return nil, err
		}
		rec.Size += m.Size
	}
	return rec, nil
}

// commitLayers moves staged layers into place bottom-up. A new layer is
// checked against the layers below it first: an entry that would reach
// through a symlink of a lower layer is refused.
func (s *Store) commitLayers(name string, layers []Layer, stage []staged) error {
	lowers := make([]string, 0, len(layers)) // top-most first
	for i, l := range layers {
		st := &stage[i]
		if st.blobTmp != "" {
			h, _ := v1.NewHash(l.Digest)
			if err := os.Rename(st.blobTmp, s.blobPath(h)); err != nil {
				return fmt.Errorf("store layer %s: %w", l.Digest, err)
			}
			st.blobTmp = ""
		}
		if st.layerTmp != "" {
			if err := unpack.CheckLower(name, st.implicit, lowers); err != nil {
				return err
			}
			meta, err := json.Marshal(layerMeta{DiffID: l.DiffID, Size: st.size})
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(st.layerTmp, "layer.json"), meta, 0o600); err != nil {
				return fmt.Errorf("store layer %s: %w", l.Digest, diskErr(s.dir, err))
			}
			err = os.Rename(st.layerTmp, s.layerRoot(l.ChainID))
			if err != nil && !exists(s.layerRoot(l.ChainID)) {
				return fmt.Errorf("store layer %s: %w", l.Digest, err)
			}
			// Lost a race with another pull of the same layer: theirs is as good.
			if err == nil {
				st.layerTmp = ""
			}
		}
		lowers = append([]string{s.LayerDir(l.ChainID)}, lowers...)
	}
	return nil
}

func (s *Store) readLayerMeta(chainID string) (layerMeta, error) {
	var m layerMeta
	b, err := os.ReadFile(filepath.Join(s.layerRoot(chainID), "layer.json"))
	if err != nil {
		return m, fmt.Errorf("read layer %s: %w", chainID, err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("read layer %s: %w", chainID, err)
	}
	return m, nil
}

// fetchLayer streams one layer into tmp/: the blob to a temp file and, when
// the unpacked layer is not stored yet, through the decompressor into a temp
// layer directory at the same time. Broken streams are retried.
func (s *Store) fetchLayer(ctx context.Context, name string, l v1.Layer, rec Layer, report progress.Func) (staged, error) {
	id := ShortID(rec.Digest)
	h, err := v1.NewHash(rec.Digest)
	if err != nil {
		return staged{}, err
	}
	haveBlob := exists(s.blobPath(h))
	haveLayer := exists(s.layerRoot(rec.ChainID))
	if haveBlob && haveLayer {
		report(progress.Event{ID: id, Status: "Already exists"})
		return staged{}, nil
	}
	var st staged
	for attempt := 1; ; attempt++ {
		st, err = s.fetchLayerOnce(ctx, name, l, rec, !haveLayer, report)
		if err == nil || attempt == layerAttempts || !retryable(ctx, err) {
			break
		}
		report(progress.Event{ID: id, Status: fmt.Sprintf("Retrying (%v)", err)})
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(time.Duration(attempt) * time.Second):
		}
	}
	if err != nil {
		return st, err
	}
	report(progress.Event{ID: id, Status: "Pull complete", Current: rec.Blob, Total: rec.Blob})
	return st, nil
}

// retryable says whether a failed layer transfer is worth another try: a
// broken connection is, a bad digest or a bad tar is not.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var ee *unpack.EntryError
	var de *DigestError
	return !errors.As(err, &ee) && !errors.As(err, &de) && !isDiskFull(err)
}

// DigestError reports content whose digest is not the one it was asked for.
type DigestError struct {
	What      string
	Want, Got string
}

func (e *DigestError) Error() string {
	return fmt.Sprintf("%s: digest mismatch: want %s, got %s (the registry served corrupt or altered content)", e.What, e.Want, e.Got)
}

func (s *Store) fetchLayerOnce(ctx context.Context, name string, l v1.Layer, rec Layer, doUnpack bool, report progress.Func) (st staged, err error) {
	id := ShortID(rec.Digest)
	defer func() {
		if err != nil {
			if st.blobTmp != "" {
				os.Remove(st.blobTmp)
			}
			if st.layerTmp != "" {
				os.RemoveAll(st.layerTmp)
			}
			st = staged{}
		}
	}()
	blob, err := os.CreateTemp(s.tmp(), "blob-")
	if err != nil {
		return st, diskErr(s.dir, err)
	}
	st.blobTmp = blob.Name()
	defer blob.Close()
	if doUnpack {
		st.layerTmp, err = os.MkdirTemp(s.tmp(), "layer-")
		if err != nil {
			return st, diskErr(s.dir, err)
		}
		if err := os.Mkdir(filepath.Join(st.layerTmp, "diff"), 0o755); err != nil {
			return st, diskErr(s.dir, err)
		}
	}

	rc, err := l.Compressed()
	if err != nil {
		return st, fmt.Errorf("layer %s: %w", rec.Digest, err)
	}
	defer rc.Close()
	report(progress.Event{ID: id, Status: "Downloading", Total: rec.Blob})
	blobHash := sha256.New()
	bw := bufio.NewWriterSize(blob, 1<<20)
	counted := &progressReader{r: rc, id: id, total: rec.Blob, report: report}
	in := io.TeeReader(counted, io.MultiWriter(blobHash, bw))

	var unpackErr error
	if doUnpack {
		st.implicit, st.size, unpackErr = s.unpackStream(ctx, name, in, rec, filepath.Join(st.layerTmp, "diff"))
		if unpackErr != nil && ctx.Err() != nil {
			return st, unpackErr
		}
	}
	// Whatever the decompressor did not need (or all of it, when not
	// unpacking) still belongs to the blob and its digest. Corrupt content
	// usually breaks the decompressor or the tar first, but the digest is
	// the truer diagnosis, so it is checked first whenever the whole blob
	// came in.
	_, drainErr := io.Copy(io.Discard, in)
	if rec.Blob <= 0 || counted.n == rec.Blob {
		if got := "sha256:" + hex.EncodeToString(blobHash.Sum(nil)); got != rec.Digest {
			return st, &DigestError{What: "layer " + rec.Digest, Want: rec.Digest, Got: got}
		}
	}
	if unpackErr != nil {
		return st, unpackErr
	}
	if drainErr != nil {
		return st, fmt.Errorf("layer %s: %w", rec.Digest, diskErr(s.dir, drainErr))
	}
	if counted.n != rec.Blob && rec.Blob > 0 {
		return st, fmt.Errorf("layer %s: size mismatch: want %d bytes, got %d", rec.Digest, rec.Blob, counted.n)
	}
	if err := bw.Flush(); err != nil {
		return st, fmt.Errorf("layer %s: %w", rec.Digest, diskErr(s.dir, err))
	}
	if err := blob.Close(); err != nil {
		return st, fmt.Errorf("layer %s: %w", rec.Digest, diskErr(s.dir, err))
	}
	return st, nil
}

// unpackStream decompresses in, applies it to dir and checks its diff ID.
func (s *Store) unpackStream(ctx context.Context, name string, in io.Reader, rec Layer, dir string) ([]string, int64, error) {
	dec, err := unpack.Decompress(in)
	if err != nil {
		return nil, 0, fmt.Errorf("layer %s: %w", rec.Digest, err)
	}
	defer dec.Close()
	diffHash := sha256.New()
	tr := io.TeeReader(dec, diffHash)
	res, err := unpack.Apply(ctx, dir, tr, unpack.Options{Name: name})
	if err != nil {
		return nil, 0, wrapLayerErr(s.dir, rec.Digest, err)
	}
	// Tar padding after the end-of-archive marker is part of the diff ID.
	if _, err := io.Copy(io.Discard, tr); err != nil {
		return nil, 0, fmt.Errorf("layer %s: %w", rec.Digest, err)
	}
	if got := "sha256:" + hex.EncodeToString(diffHash.Sum(nil)); got != rec.DiffID {
		return nil, 0, &DigestError{What: "layer " + rec.Digest + " (uncompressed)", Want: rec.DiffID, Got: got}
	}
	return res.ImplicitDirs, res.Size, nil
}

func wrapLayerErr(dir, digest string, err error) error {
	var ee *unpack.EntryError
	if errors.As(err, &ee) {
		return err
	}
	return fmt.Errorf("layer %s: %w", digest, diskErr(dir, err))
}

func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC)
}

// progressReader counts bytes and reports them.
type progressReader struct {
	r      io.Reader
	id     string
	n      int64
	total  int64
	report progress.Func
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if n > 0 {
		p.report(progress.Event{ID: p.id, Status: "Downloading", Current: p.n, Total: p.total})
	}
	return n, err
}

// putBlob stores small content (manifests, configs) by its digest.
func (s *Store) putBlob(b []byte) error {
	h, _ := v1.NewHash(sha256Digest(b))
	if exists(s.blobPath(h)) {
		return nil
	}
	if err := writeFileAtomic(s.blobPath(h), s.tmp(), b); err != nil {
		return fmt.Errorf("store blob %s: %w", h, diskErr(s.dir, err))
	}
	return nil
}

func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// chainID computes the OCI chain ID of the last of diffIDs: each layer's
// identity includes every layer below it.
func chainID(diffIDs []v1.Hash) string {
	id := diffIDs[0].String()
	for _, d := range diffIDs[1:] {
		id = sha256Digest([]byte(id + " " + d.String()))
	}
	return id
}

// ShortID is the 12 hex digits of a digest that docker shows as an ID.
func ShortID(digest string) string {
	hexpart := strings.TrimPrefix(digest, "sha256:")
	if len(hexpart) > 12 {
		return hexpart[:12]
	}
	return hexpart
}

func platformString(p *v1.Platform) string {
	if p == nil {
		return ""
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}
