package images

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/sys/unix"
)

// ErrNotFound means no stored image matches a reference.
var ErrNotFound = errors.New("no such image")

// canonicalRepo names a repository fully, with Docker Hub as "docker.io"
// (go-containerregistry says "index.docker.io", which users never type).
func canonicalRepo(r name.Repository) string {
	reg := r.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	return reg + "/" + r.RepositoryStr()
}

func canonicalTag(t name.Tag) string {
	return canonicalRepo(t.Context()) + ":" + t.TagStr()
}

// familiar shortens a full reference the way docker shows it:
// "docker.io/library/busybox:latest" is "busybox:latest".
func familiar(ref string) string {
	for _, p := range []string{"index.docker.io/library/", "docker.io/library/", "index.docker.io/", "docker.io/"} {
		if rest, ok := strings.CutPrefix(ref, p); ok {
			return rest
		}
	}
	return ref
}

// Familiar is familiar for callers that print references.
func Familiar(ref string) string { return familiar(ref) }

// SplitTag splits a stored full tag into its familiar repository and tag.
func SplitTag(full string) (repo, tag string) {
	f := familiar(full)
	i := strings.LastIndex(f, ":")
	if i < 0 || strings.Contains(f[i:], "/") {
		return f, "latest"
	}
	return f[:i], f[i+1:]
}

// record adds rec to the index, or merges tags and digests into the stored
// record of the same image. A tag names one image: it moves from wherever
// it was.
func (s *Store) record(rec *Image, tags, digests []string) (*Image, error) {
	var out *Image
	err := s.updateIndex(func(imgs []*Image) ([]*Image, error) {
		for _, img := range imgs {
			img.RepoTags = slices.DeleteFunc(img.RepoTags, func(t string) bool { return slices.Contains(tags, t) })
		}
		i := slices.IndexFunc(imgs, func(img *Image) bool { return img.ID == rec.ID })
		if i < 0 {
			imgs = append(imgs, rec)
			i = len(imgs) - 1
		}
		img := imgs[i]
		img.Manifest, img.MediaType, img.Layers, img.Size = rec.Manifest, rec.MediaType, rec.Layers, rec.Size
		for _, t := range tags {
			if !slices.Contains(img.RepoTags, t) {
				img.RepoTags = append(img.RepoTags, t)
			}
		}
		for _, d := range digests {
			if !slices.Contains(img.RepoDigests, d) {
				img.RepoDigests = append(img.RepoDigests, d)
			}
		}
		out = img
		return imgs, nil
	})
	return out, err
}

// Get finds a stored image by reference (busybox, busybox:1.36,
// name@sha256:...) or by a prefix of its ID.
func (s *Store) Get(ref string) (*Image, error) {
	imgs, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	img, _, err := find(imgs, ref)
	return img, err
}

// find returns the image ref names and, if ref names it by tag, that tag.
func find(imgs []*Image, ref string) (*Image, string, error) {
	if id := strings.TrimPrefix(ref, "sha256:"); len(id) >= 4 && isHex(id) {
		var found []*Image
		for _, img := range imgs {
			if strings.HasPrefix(strings.TrimPrefix(img.ID, "sha256:"), id) {
				found = append(found, img)
			}
		}
		if len(found) == 1 {
			return found[0], "", nil
		}
		if len(found) > 1 {
			return nil, "", fmt.Errorf("image ID prefix %q is ambiguous: give more digits", ref)
		}
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, "", fmt.Errorf("invalid image reference %q: use NAME[:TAG], NAME@sha256:DIGEST or an image ID", ref)
	}
	switch r := r.(type) {
	case name.Tag:
		t := canonicalTag(r)
		for _, img := range imgs {
			if slices.Contains(img.RepoTags, t) {
				return img, t, nil
			}
		}
	case name.Digest:
		d := canonicalRepo(r.Context()) + "@" + r.DigestStr()
		for _, img := range imgs {
			if slices.Contains(img.RepoDigests, d) || img.Manifest == r.DigestStr() {
				return img, "", nil
			}
		}
	}
	return nil, "", fmt.Errorf("%w: %s (see `devbox images`)", ErrNotFound, ref)
}

func isHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Removal says what Remove did, in docker's words.
type Removal struct {
	Untagged []string
	Deleted  []string
}

// Remove untags ref, and deletes the image when nothing names it any more
// (at once when ref is an ID and force is set or it has at most one tag).
// Blobs and layers that no image uses are then deleted.
func (s *Store) Remove(ref string, force bool) (Removal, error) {
	return s.RemoveUnlessUsed(ref, force, nil)
}

// RemoveUnlessUsed is Remove, but before it deletes an image (rather than
// only untag it) it asks inUse, and an error from inUse stops it.
func (s *Store) RemoveUnlessUsed(ref string, force bool, inUse func(id string) error) (Removal, error) {
	var res Removal
	err := s.updateIndex(func(imgs []*Image) ([]*Image, error) {
		img, tag, err := find(imgs, ref)
		if err != nil {
			return nil, err
		}
		if tag != "" && len(img.RepoTags) > 1 {
			img.RepoTags = slices.DeleteFunc(img.RepoTags, func(t string) bool { return t == tag })
			res.Untagged = append(res.Untagged, familiar(tag))
			return imgs, nil
		}
		if tag == "" && len(img.RepoTags) > 1 && !force {
			return nil, fmt.Errorf("image %s is tagged %d times (%s): remove the tags one by one, or use --force", ShortID(img.ID), len(img.RepoTags), strings.Join(img.RepoTags, ", "))
		}
		if inUse != nil {
			if err := inUse(img.ID); err != nil {
				return nil, err
			}
		}
		for _, t := range img.RepoTags {
			res.Untagged = append(res.Untagged, familiar(t))
		}
		for _, d := range img.RepoDigests {
			res.Untagged = append(res.Untagged, familiar(d))
		}
		res.Deleted = append(res.Deleted, img.ID)
		return slices.DeleteFunc(imgs, func(i *Image) bool { return i == img }), nil
	})
	if err != nil {
		return res, fmt.Errorf("remove %s: %w", ref, err)
	}
	if len(res.Deleted) > 0 {
		if err := s.collect(); err != nil {
			return res, err
		}
	}
	return res, nil
}

// collect deletes blobs and unpacked layers no image uses. It waits until
// no other process has the store open, so nothing a running pull has just
// stored (and not yet recorded) is taken from under it.
func (s *Store) collect() error {
	fd := int(s.lock.Fd())
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock image store: %w", err)
	}
	defer unix.Flock(fd, unix.LOCK_SH)
	imgs, err := s.readIndex()
	if err != nil {
		return err
	}
	blobs, layers := map[string]bool{}, map[string]bool{}
	for _, img := range imgs {
		blobs[strings.TrimPrefix(img.ID, "sha256:")] = true
		blobs[strings.TrimPrefix(img.Manifest, "sha256:")] = true
		for _, l := range img.Layers {
			blobs[strings.TrimPrefix(l.Digest, "sha256:")] = true
			layers[strings.TrimPrefix(l.ChainID, "sha256:")] = true
		}
	}
	if err := s.sweep(filepath.Join(s.dir, "blobs", "sha256"), blobs); err != nil {
		return err
	}
	return s.sweep(filepath.Join(s.dir, "layers"), layers)
}

// sweep removes the entries of dir not in keep. Each goes to tmp/ by rename
// first, so a kill mid-delete never leaves half a layer where a whole one
// is expected.
func (s *Store) sweep(dir string, keep map[string]bool) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("collect garbage: %w", err)
	}
	for _, e := range ents {
		if keep[e.Name()] {
			continue
		}
		trash, err := os.MkdirTemp(s.tmp(), "trash-")
		if err != nil {
			return fmt.Errorf("collect garbage: %w", err)
		}
		if err := os.Rename(filepath.Join(dir, e.Name()), filepath.Join(trash, e.Name())); err != nil {
			return fmt.Errorf("collect garbage: %w", err)
		}
		if err := os.RemoveAll(trash); err != nil {
			return fmt.Errorf("collect garbage: %w", err)
		}
	}
	return nil
}

// CanonicalName is the full name the store records for r:
// "docker.io/library/busybox:latest", or "REPOSITORY@DIGEST".
func CanonicalName(r name.Reference) string {
	if t, ok := r.(name.Tag); ok {
		return canonicalTag(t)
	}
	return canonicalRepo(r.Context()) + "@" + r.Identifier()
}
