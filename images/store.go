// Package images pulls, imports, exports and removes OCI/Docker images and
// keeps them in a content-addressed store on disk.
//
// Layout under the data root:
//
//	images/blobs/sha256/HEX    manifests, configs and compressed layers as fetched
//	                           (an OCI image layout's blob directory)
//	images/layers/CHAINHEX/    one unpacked layer: diff/ (overlayfs lower dir)
//	                           and layer.json
//	images/images.json         the image records: tags, digests, layers
//	images/tmp/                work in progress; emptied when no one is using the store
//	images/lock                flock: shared while pulling, exclusive to collect garbage
//
// Everything lands in its final place by rename, and a layer directory is
// renamed into place only after its blob, so a process killed at any moment
// leaves either a complete item or debris in tmp/.
package images

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// Image is the store's record of one image.
type Image struct {
	// ID is the digest of the image config, as docker shows it.
	ID string `json:"id"`
	// Manifest is the digest of the platform-specific manifest.
	Manifest  string `json:"manifest"`
	MediaType string `json:"mediaType"`
	// RepoTags are full references: "docker.io/library/busybox:latest".
	RepoTags []string `json:"repoTags"`
	// RepoDigests are "repository@digest" of what was pulled, which for a
	// multi-platform image is the index digest.
	RepoDigests []string  `json:"repoDigests"`
	Created     time.Time `json:"created"`
	Platform    string    `json:"platform"`
	// Size is the unpacked size of all layers, in bytes.
	Size   int64   `json:"size"`
	Layers []Layer `json:"layers"`
}

// Layer is one layer of an image.
type Layer struct {
	// Digest is the digest of the blob as stored (usually compressed).
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	// Blob is the size of the stored blob in bytes.
	Blob int64 `json:"blob"`
	// DiffID is the digest of the uncompressed tar.
	DiffID string `json:"diffID"`
	// ChainID names the unpacked directory: it identifies the layer
	// together with every layer below it.
	ChainID string `json:"chainID"`
}

// layerMeta is layers/CHAIN/layer.json.
type layerMeta struct {
	DiffID string `json:"diffID"`
	Size   int64  `json:"size"`
}

// Store is an open image store. Close it when done so that others may
// collect garbage.
type Store struct {
	dir  string
	lock *os.File
	// mu serialises this process's read-modify-write of images.json;
	// the index lock file does the same between processes.
	mu sync.Mutex
}

// Open opens (creating if needed) the image store under the data root.
func Open(dataRoot string) (*Store, error) {
	dir := filepath.Join(dataRoot, "images")
	for _, d := range []string{"blobs/sha256", "layers", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, storeErr(dataRoot, err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, storeErr(dataRoot, err)
	}
	s := &Store{dir: dir, lock: lock}
	// If no one else has the store open, what is in tmp/ is debris of a
	// killed process: clear it.
	if unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
		s.clearTmp()
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_SH); err != nil {
		lock.Close()
		return nil, fmt.Errorf("lock image store %s: %w", dir, err)
	}
	return s, nil
}

func storeErr(root string, err error) error {
	if errors.Is(err, os.ErrPermission) && os.Geteuid() != 0 {
		return fmt.Errorf("open image store in %s: %w (the native store needs root: run with sudo, or set DEVBOX_ROOT to a directory you own)", root, err)
	}
	return fmt.Errorf("open image store in %s: %w", root, err)
}

// Close releases the store.
func (s *Store) Close() error {
	return s.lock.Close()
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) clearTmp() {
	ents, _ := os.ReadDir(s.tmp())
	for _, e := range ents {
		os.RemoveAll(filepath.Join(s.tmp(), e.Name()))
	}
}

func (s *Store) tmp() string { return filepath.Join(s.dir, "tmp") }

func (s *Store) blobPath(h v1.Hash) string {
	return filepath.Join(s.dir, "blobs", h.Algorithm, h.Hex)
}

// LayerDir returns the unpacked directory of the layer with this chain ID,
// ready to be a lower directory of an overlay mount.
func (s *Store) LayerDir(chainID string) string {
	return filepath.Join(s.layerRoot(chainID), "diff")
}

func (s *Store) layerRoot(chainID string) string {
	return filepath.Join(s.dir, "layers", strings.TrimPrefix(chainID, "sha256:"))
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// List returns every image, newest first.
func (s *Store) List() ([]*Image, error) {
	imgs, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	sort.SliceStable(imgs, func(i, j int) bool { return imgs[i].Created.After(imgs[j].Created) })
	return imgs, nil
}

func (s *Store) indexPath() string { return filepath.Join(s.dir, "images.json") }

func (s *Store) readIndex() ([]*Image, error) {
	b, err := os.ReadFile(s.indexPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read image index: %w", err)
	}
	var imgs []*Image
	if err := json.Unmarshal(b, &imgs); err != nil {
		return nil, fmt.Errorf("read image index %s: %w (the file is corrupt: move it away and pull again)", s.indexPath(), err)
	}
	return imgs, nil
}

// updateIndex applies fn to the image records under the index lock and
// writes the result atomically.
func (s *Store) updateIndex(fn func([]*Image) ([]*Image, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	lf, err := os.OpenFile(filepath.Join(s.dir, "index.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("lock image index: %w", err)
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock image index: %w", err)
	}
	imgs, err := s.readIndex()
	if err != nil {
		return err
	}
	imgs, err = fn(imgs)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(imgs, "", "  ")
	if err != nil {
		return fmt.Errorf("write image index: %w", err)
	}
	if err := writeFileAtomic(s.indexPath(), s.tmp(), b); err != nil {
		return fmt.Errorf("write image index: %w", diskErr(s.dir, err))
	}
	return nil
}

// writeFileAtomic writes b to a temp file in tmpDir, syncs it and renames it
// to path, so readers see the old content or the new, never a mix.
func writeFileAtomic(path, tmpDir string, b []byte) error {
	f, err := os.CreateTemp(tmpDir, "write-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// diskErr turns ENOSPC into an error that says what to do.
func diskErr(dir string, err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("disk full writing to %s: free some space (devbox rmi) and retry: %w", dir, err)
	}
	return err
}

// Config reads the stored config of img.
func (s *Store) Config(img *Image) (*v1.ConfigFile, error) {
	h, err := v1.NewHash(img.ID)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(s.blobPath(h))
	if err != nil {
		return nil, fmt.Errorf("read config of %s: %w (pull the image again)", ShortID(img.ID), err)
	}
	defer f.Close()
	cfg, err := v1.ParseConfigFile(f)
	if err != nil {
		return nil, fmt.Errorf("read config of %s: %w", ShortID(img.ID), err)
	}
	return cfg, nil
}

// LayerDirs returns the unpacked layer directories of img, lowest first.
func (s *Store) LayerDirs(img *Image) []string {
	dirs := make([]string, len(img.Layers))
	for i, l := range img.Layers {
		dirs[i] = s.LayerDir(l.ChainID)
	}
	return dirs
}
