package unpack

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// CheckLower reports an error if any of upper's implicit dirs resolves, in
// the lower layers (dirs given top-most first), to a symlink: that would be a
// write through a symlink planted by an earlier layer. The first lower layer
// holding the path decides (a whiteout there means "deleted": fine).
//
// Docker applies layers onto one tree, so such an entry would land wherever
// the symlink points; stacked by overlayfs, the implicit directory would
// instead hide the symlink (think "lib -> usr/lib" on a merged-/usr distro),
// and neither outcome is what the image meant. The error is an *EntryError
// naming the path.
//
// implicit is Result.ImplicitDirs of the upper layer, which holds every
// implicit ancestor too, so each path's own last component is what is
// checked; an ancestor that is a symlink or file in a lower layer ends the
// lookup there, as it ends overlayfs's merge. Lower paths are looked up with
// Lstat only, component by component, never following a symlink.
func CheckLower(name string, implicit []string, lowers []string) error {
	for _, p := range implicit {
		// Paths come from Result.ImplicitDirs; anything else could walk
		// out of the lower layers.
		if clean, ok := cleanName(p); !ok || clean != p || p == "." {
			return fmt.Errorf("%s: check lower layers: %q is not a clean relative path", layerOf(name), p)
		}
		if err := checkLowerPath(name, p, lowers); err != nil {
			return err
		}
	}
	return nil
}

// checkLowerPath checks one implicit directory against the lower layers.
func checkLowerPath(image, p string, lowers []string) error {
	for _, lower := range lowers {
		found, opaque, err := lookupLower(image, lower, p)
		if err != nil || found {
			return err
		}
		if opaque {
			return nil // layers further down are hidden from p
		}
	}
	return nil
}

// lookupLower looks p up in one lower layer the way overlayfs does. found
// means this layer decides (and err is non-nil if it decides against p);
// opaque means p is absent here and an opaque ancestor hides the layers
// below.
func lookupLower(image, lower, p string) (found, opaque bool, err error) {
	cur := lower
	for rest := p; ; {
		var name string
		name, rest, _ = strings.Cut(rest, "/")
		cur += "/" + name
		st, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			return false, opaque, nil
		}
		if err != nil {
			return true, false, fmt.Errorf("%s: check lower layer %s: %w", layerOf(image), lower, err)
		}
		mode := st.Mode()
		switch {
		case mode&fs.ModeSymlink != 0 && rest == "":
			target, _ := os.Readlink(cur)
			return true, false, &EntryError{Image: image, Entry: p, Reason: fmt.Sprintf(
				"directory is implicit in this layer but a symlink (to %q) in lower layer %s; the layer must list the directory or not write through the symlink",
				target, lower)}
		case !mode.IsDir():
			// A whiteout (deleted), a file, or a symlink ancestor: p does not
			// resolve to a symlink here, and overlayfs merges nothing below.
			return true, false, nil
		case rest == "":
			return true, false, nil // a real directory: fine
		}
		if isOpaque(cur) {
			opaque = true
		}
	}
}

// isOpaque reports whether the directory at path hides lower layers.
func isOpaque(path string) bool {
	var v [1]byte
	n, err := unix.Lgetxattr(path, opaqueXattr, v[:])
	return err == nil && n == 1 && v[0] == 'y'
}
