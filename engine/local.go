package engine

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/devbox-dev/devbox/images"
)

// Local is the engine in this process: images in the store under the
// data root, containers run by devbox's own runtime (Linux only).
type Local struct {
	root string
	cs   containers
}

// NewLocal opens the engine over the data root, and cleans up after
// containers whose devbox process was killed.
func NewLocal(root string) (*Local, error) {
	cdir := filepath.Join(root, "containers")
	if err := os.MkdirAll(cdir, 0o700); err != nil {
		s, serr := images.Open(root) // for its error, which says what to do
		if serr == nil {
			s.Close()
		}
		if serr != nil {
			return nil, serr
		}
		return nil, fmt.Errorf("open %s: %w", cdir, err)
	}
	l := &Local{root: root, cs: containers{dir: cdir}}
	l.reap()
	return l, nil
}

// Close releases the engine.
func (l *Local) Close() error { return nil }

// withStore opens the image store for one operation: holding it open
// would keep rmi's garbage collection waiting on every running container.
func (l *Local) withStore(fn func(*images.Store) error) error {
	s, err := images.Open(l.root)
	if err != nil {
		return err
	}
	defer s.Close()
	return fn(s)
}

// Pull pulls ref into the store.
func (l *Local) Pull(ctx context.Context, ref string, opts images.PullOptions) (img *images.Image, err error) {
	err = l.withStore(func(s *images.Store) error {
		img, err = s.Pull(ctx, ref, opts)
		return err
	})
	return img, err
}

// Images lists the stored images, newest first.
func (l *Local) Images(ctx context.Context) (imgs []*images.Image, err error) {
	err = l.withStore(func(s *images.Store) error {
		imgs, err = s.List()
		return err
	})
	return imgs, err
}

// RemoveImage untags or deletes an image. An image a container uses
// stays, as in docker: remove the container first.
func (l *Local) RemoveImage(ctx context.Context, ref string, force bool) (res images.Removal, err error) {
	err = l.withStore(func(s *images.Store) error {
		res, err = s.RemoveUnlessUsed(ref, force, func(id string) error {
			all, err := l.cs.list()
			if err != nil {
				return err
			}
			for _, c := range all {
				if c.ImageID == id {
					return fmt.Errorf("image is used by container %s (%s): remove the container first (devbox rm -f %s)", c.Name, c.State, c.Name)
				}
			}
			return nil
		})
		return err
	})
	return res, err
}

// ImportImage imports the images in an archive file.
func (l *Local) ImportImage(ctx context.Context, file, ref string) (imgs []*images.Image, err error) {
	err = l.withStore(func(s *images.Store) error {
		imgs, err = s.Import(ctx, file, ref, nil)
		return err
	})
	return imgs, err
}

// ExportImage writes an image to an archive file.
func (l *Local) ExportImage(ctx context.Context, ref, file string) error {
	return l.withStore(func(s *images.Store) error { return s.ExportFile(ctx, ref, file) })
}

// ExportImageTo writes an image as an archive to w.
func (l *Local) ExportImageTo(ctx context.Context, ref string, w io.Writer) error {
	return l.withStore(func(s *images.Store) error { return s.Export(ctx, ref, w) })
}

// Containers lists containers, running ones only unless all.
func (l *Local) Containers(ctx context.Context, all bool) ([]*Container, error) {
	cs, err := l.cs.list()
	if err != nil {
		return nil, err
	}
	if all {
		return cs, nil
	}
	return slices.DeleteFunc(cs, func(c *Container) bool { return c.State != StateRunning }), nil
}
