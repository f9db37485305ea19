package unpack

import (
	"archive/tar"
	"strings"

	"golang.org/x/sys/unix"
)

// xattr is one extended attribute of an entry.
type xattr struct{ name, value string }

// xattrsOf returns the entry's PAX "SCHILY.xattr.*" records, except
// overlayfs's own (see isOverlayXattr).
func xattrsOf(hdr *tar.Header) []xattr {
	var xs []xattr
	for key, value := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(key, paxXattrPrefix)
		if ok && !isOverlayXattr(name) {
			xs = append(xs, xattr{name, value})
		}
	}
	return xs
}

// setXattrs sets the entry's xattrs (see xattrsOf) with set. A filesystem
// without xattrs (ENOTSUP) is not an error: it could not hold them anyway.
func (a *applier) setXattrs(hdr *tar.Header, set func(name string, value []byte) error) error {
	for _, x := range xattrsOf(hdr) {
		if err := set(x.name, []byte(x.value)); err != nil && err != unix.ENOTSUP {
			return a.fail("set xattr "+x.name, err)
		}
	}
	return nil
}

// lsetxattr returns a setter for the symlink or node at p, which cannot be
// opened for fsetxattr. It goes by the full path, without following the last
// component; the parents were just walked without following symlinks, and
// the layer directory is Apply's alone, so they are still what they were.
// (/proc/self/fd/N/name would avoid the path walk, but /proc is not always
// mounted where devbox runs, such as early in the guest agent.)
func (a *applier) lsetxattr(p string) func(name string, value []byte) error {
	return func(name string, value []byte) error {
		return unix.Lsetxattr(a.dir+"/"+p, name, value, 0)
	}
}
