package unpack

import (
	"archive/tar"
	"strings"

	"golang.org/x/sys/unix"
)

// whiteout turns an OCI whiteout entry into overlayfs form: ".wh.NAME"
// becomes a 0/0 character device NAME, and ".wh..wh..opq" sets
// trusted.overlay.opaque=y on its directory. Other ".wh..wh." entries are
// AUFS bookkeeping and are skipped, as the image spec says.
func (a *applier) whiteout(hdr *tar.Header, parent, base string) error {
	if base == opaqueMarker {
		return a.opaque(parent)
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return nil
	}
	name := base[len(whiteoutPrefix):]
	if name == "" || name == "." || name == ".." {
		return a.refuse("whiteout names no file")
	}
	pfd, err := a.walk.resolve(parent, true)
	if err != nil {
		return a.walkErr(err)
	}
	p := joinName(parent, name)
	if err := a.replace(pfd, p, name, false, func() error {
		return unix.Mknodat(pfd, name, unix.S_IFCHR, 0)
	}); err != nil {
		return a.fail("create whiteout", err)
	}
	// Like docker, the whiteout keeps the entry's owner.
	if err := unix.Fchownat(pfd, name, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return a.fail("chown whiteout", err)
	}
	return nil
}

// opaque marks the directory dir opaque, creating it if the tar did not list
// it (first).
func (a *applier) opaque(dir string) error {
	fd, err := a.walk.resolve(dir, true)
	if err != nil {
		return a.walkErr(err)
	}
	if err := unix.Fsetxattr(fd, opaqueXattr, []byte{'y'}, 0); err != nil {
		return a.fail("mark directory opaque", err)
	}
	return nil
}
