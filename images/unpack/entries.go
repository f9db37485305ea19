package unpack

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/devbox-dev/devbox/internal/fdio"

	"golang.org/x/sys/unix"
)

// regular writes a regular file: small ones are queued for the writers
// (see writers.go), the rest written inline.
func (a *applier) regular(hdr *tar.Header, content io.Reader, pfd int, p, base string) error {
	if a.tuning.writers > 0 && hdr.Size >= 0 && hdr.Size <= maxQueuedFile && !a.seen.has(p) {
		return a.queueRegular(hdr, content, pfd, p, base)
	}
	return a.regularInline(hdr, content, pfd, p, base)
}

// regularInline writes a regular file on Apply's goroutine. The file is
// always created anew, never truncated in place: the old one may be a
// hardlink of another entry.
func (a *applier) regularInline(hdr *tar.Header, content io.Reader, pfd int, p, base string) error {
	fd := -1
	err := a.replace(pfd, p, base, false, func() (err error) {
		fd, err = createFile(pfd, base)
		return err
	})
	if err != nil {
		return a.fail("create file", err)
	}
	defer unix.Close(fd)
	n, err := a.copyContent(fd, content)
	a.size += n
	if err != nil {
		return err
	}
	return metaOf(hdr).set(fd, pfd, base, a.image, a.entry)
}

// queueRegular hands a file nothing was created at yet to a writer. Its
// content is read into the arena now, since the tar reader moves on, and
// the writer gets a descriptor of the parent of its own, since the walk
// closes its descriptors as it moves on.
func (a *applier) queueRegular(hdr *tar.Header, content io.Reader, pfd int, p, base string) error {
	if a.writers == nil {
		a.writers = startWriters(a.tuning)
	}
	w := a.writers
	j := &fileJob{seq: a.seq, image: a.image, entry: a.entry, path: p, pfd: -1, base: base, meta: metaOf(hdr)}
	buf := w.buffer(j, int(hdr.Size))
	n, rest, ok := readContent(content, buf)
	if !ok {
		// The stream failed or holds more than the header said: write
		// what came inline, so the file and the error are what they
		// would have been.
		defer w.abandon(j)
		return a.regularInline(hdr, io.MultiReader(bytes.NewReader(buf[:n]), rest), pfd, p, base)
	}
	j.data = buf[:n]
	var err error
	if j.pfd, err = unix.FcntlInt(uintptr(pfd), unix.F_DUPFD_CLOEXEC, 0); err != nil {
		defer w.abandon(j) // out of descriptors: no reason to fail the layer
		return a.regularInline(hdr, bytes.NewReader(j.data), pfd, p, base)
	}
	a.seen.add(p)
	w.queue(j)
	return nil
}

// readContent reads an entry's content into buf, which is as long as its
// header says. If that is all there is, ok is set and buf[:n] is the
// content (shorter if the reader ended early, which the inline path takes
// as the file's end too). Otherwise buf[:n] was read and rest yields what
// followed, the read error included.
func readContent(r io.Reader, buf []byte) (n int, rest io.Reader, ok bool) {
	var err error
	for n < len(buf) && err == nil {
		var m int
		m, err = r.Read(buf[n:])
		n += m
	}
	if err == nil {
		// archive/tar returns io.EOF with the last bytes of a file, but
		// make sure the entry ends where its header said.
		var probe [1]byte
		var m int
		m, err = r.Read(probe[:])
		if m > 0 || err == nil {
			return n, io.MultiReader(bytes.NewReader(probe[:m]), errOr(err, r)), false
		}
	}
	if err == io.EOF {
		return n, nil, true
	}
	return n, errReader{err}, false
}

// errOr returns a reader that fails with err, or r if err is nil.
func errOr(err error, r io.Reader) io.Reader {
	if err != nil {
		return errReader{err}
	}
	return r
}

// errReader is a reader that fails with err.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// createFile creates base inside pfd, which must not exist, for writing.
func createFile(pfd int, base string) (int, error) {
	return unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
}

// fileMeta is what a regular file gets from its header once its content is
// written, copied out of the header so that a writer can set it later.
type fileMeta struct {
	uid, gid int
	mode     uint32
	xattrs   []xattr
	times    [2]unix.Timespec
}

func metaOf(hdr *tar.Header) fileMeta {
	return fileMeta{uid: hdr.Uid, gid: hdr.Gid, mode: fileMode(hdr), xattrs: xattrsOf(hdr), times: timespecs(hdr)}
}

// set sets the metadata of the open file fd, which is base in pfd: owner,
// then mode (chown clears setuid and setgid), xattrs, and times last.
// Errors name the entry as applier.fail does.
func (m fileMeta) set(fd, pfd int, base, image, entry string) error {
	if err := unix.Fchown(fd, m.uid, m.gid); err != nil {
		return entryIOError(image, entry, "chown", err)
	}
	if err := unix.Fchmod(fd, m.mode); err != nil {
		return entryIOError(image, entry, "chmod", err)
	}
	for _, x := range m.xattrs {
		if err := unix.Fsetxattr(fd, x.name, []byte(x.value), 0); err != nil && err != unix.ENOTSUP {
			return entryIOError(image, entry, "set xattr "+x.name, err)
		}
	}
	if err := unix.UtimesNanoAt(pfd, base, m.times[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return entryIOError(image, entry, "set times", err)
	}
	return nil
}

// copyContent copies the entry's content to fd through the layer's buffer.
// It does not use io.Copy: *os.File's ReadFrom would hide our buffer and
// allocate a small one per file.
func (a *applier) copyContent(fd int, r io.Reader) (int64, error) {
	buf := a.buf
	var written int64
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if err := fdio.WriteAll(fd, buf[:n]); err != nil {
				return written, a.fail("write file", err)
			}
			written += int64(n)
		}
		if rerr == io.EOF {
			return written, nil
		}
		if rerr != nil {
			return written, a.fail("read content", rerr)
		}
		if err := a.ctx.Err(); err != nil {
			return written, fmt.Errorf("%s: %w", layerOf(a.image), err)
		}
	}
}

// directory creates a directory, or updates the metadata of the one already
// there (keeping its children), and leaves it open on the walk stack since
// its own entries usually follow.
func (a *applier) directory(hdr *tar.Header, pfd int, p, base string) error {
	err := a.replace(pfd, p, base, true, func() error { return unix.Mkdirat(pfd, base, 0o700) })
	if err == unix.EEXIST {
		// Files queued under it come earlier in the tar, so they are
		// created before its new mode, owner and xattrs take effect (a
		// default ACL or a setgid bit would reach them).
		a.writers.waitUnder(p)
	} else if err != nil {
		return a.fail("create directory", err)
	}
	a.implicit.delete(p) // the tar lists it after all
	fd, err := unix.Openat(pfd, base, dirFlags, 0)
	if err != nil {
		return a.fail("open directory", err)
	}
	a.walk.push(base, fd)
	return a.setDirMeta(hdr, fd, p)
}

// rootDir applies a "./" entry's metadata to the layer directory itself: the
// top layer's root is what the container sees as "/".
func (a *applier) rootDir(hdr *tar.Header) error {
	a.walk.popTo(0)
	a.writers.waitUnder(".") // as for a directory over a directory
	return a.setDirMeta(hdr, a.root, ".")
}

// setDirMeta sets an open directory's owner, mode and xattrs now, and
// remembers its times for the end.
func (a *applier) setDirMeta(hdr *tar.Header, fd int, p string) error {
	if err := a.setOwnerMode(fd, hdr); err != nil {
		return err
	}
	if err := a.setXattrs(hdr, func(name string, value []byte) error {
		return unix.Fsetxattr(fd, name, value, 0)
	}); err != nil {
		return err
	}
	a.dirTimes.set(p, timespecs(hdr))
	return nil
}

// symlink stores a symlink verbatim. Its target is never looked at: it may be
// absolute, relative or dangling, and only means something in the container.
func (a *applier) symlink(hdr *tar.Header, pfd int, p, base string) error {
	if err := a.replace(pfd, p, base, false, func() error { return unix.Symlinkat(hdr.Linkname, pfd, base) }); err != nil {
		return a.fail("create symlink", err)
	}
	if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return a.fail("chown", err)
	}
	if err := a.setXattrs(hdr, a.lsetxattr(p)); err != nil {
		return err
	}
	return a.setTimes(hdr, pfd, base)
}

// node creates a fifo or a device node.
func (a *applier) node(hdr *tar.Header, pfd int, p, base string) error {
	mode := uint32(unix.S_IFIFO)
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode = unix.S_IFCHR
	case tar.TypeBlock:
		mode = unix.S_IFBLK
	}
	dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
	if err := a.replace(pfd, p, base, false, func() error { return unix.Mknodat(pfd, base, mode|0o600, dev) }); err != nil {
		return a.fail("mknod", err)
	}
	if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return a.fail("chown", err)
	}
	// A node cannot be opened safely (a device's open runs its driver), so
	// its mode is set by name. Where fchmodat2 is missing (before Linux 6.6)
	// plain fchmodat is fine: we just created base, and it is no symlink.
	perm := fileMode(hdr)
	err := unix.Fchmodat(pfd, base, perm, unix.AT_SYMLINK_NOFOLLOW)
	if err == unix.EOPNOTSUPP || err == unix.ENOSYS {
		err = unix.Fchmodat(pfd, base, perm, 0)
	}
	if err != nil {
		return a.fail("chmod", err)
	}
	if err := a.setXattrs(hdr, a.lsetxattr(p)); err != nil {
		return err
	}
	return a.setTimes(hdr, pfd, base)
}

// hardlink links p to an earlier entry of the layer. The target is resolved
// inside the layer like any name, its parents must not be symlinks, and a
// symlink as its last component is linked itself, not followed.
func (a *applier) hardlink(hdr *tar.Header, p, parent, base string) error {
	target, ok := cleanName(hdr.Linkname)
	if !ok {
		return a.refuse(fmt.Sprintf("hardlink target %q escapes the layer directory", hdr.Linkname))
	}
	if target == "." {
		return a.refuse("hardlink to the layer root")
	}
	if target == p {
		return nil // a link to itself changes nothing
	}
	tparent, tbase := splitName(target)
	tfd, err := a.walk.resolve(tparent, false)
	var we *walkError
	switch {
	case errors.As(err, &we) && we.refused:
		return a.refuse(fmt.Sprintf("hardlink target %q: %s", hdr.Linkname, we.reason))
	case errors.Is(err, unix.ENOENT):
		return a.refuse(fmt.Sprintf("hardlink target %q is not in the layer", hdr.Linkname))
	case err != nil:
		return a.fail("resolve hardlink target", err)
	}
	// Resolving p's parent may close tfd; keep a copy.
	tfd, err = unix.FcntlInt(uintptr(tfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return a.fail("dup", err)
	}
	defer unix.Close(tfd)
	pfd, err := a.walk.resolve(parent, true)
	if err != nil {
		return a.walkErr(err)
	}
	if a.seen.has(target) {
		a.writers.waitFor(target) // a queued file is linked once written
	}
	err = a.replace(pfd, p, base, false, func() error { return unix.Linkat(tfd, tbase, pfd, base, 0) })
	switch err {
	case nil:
		return nil
	case unix.ENOENT:
		return a.refuse(fmt.Sprintf("hardlink target %q is not in the layer", hdr.Linkname))
	case unix.EPERM:
		return a.refuse(fmt.Sprintf("hardlink target %q is a directory", hdr.Linkname))
	default:
		return a.fail("link", err)
	}
}

// replace runs create, which makes base inside pfd. If something is already
// there it is removed (with everything under it, for a directory) and create
// runs again; except that a directory there is kept, with its children, if
// keepDir is set (a directory entry over a directory), and replace returns
// EEXIST.
//
// Everything Apply creates but the writers' files goes through replace, so
// it records p as seen (see pathHashes), and waits for a file queued at p
// to be written first: that file comes earlier in the tar.
func (a *applier) replace(pfd int, p, base string, keepDir bool, create func() error) error {
	if !a.seen.add(p) {
		a.writers.waitFor(p)
	}
	err := create()
	if err != unix.EEXIST {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if keepDir {
			return unix.EEXIST
		}
		a.writers.waitUnder(p) // nothing is removed under a writer
		if err := removeAllAt(pfd, base); err != nil {
			return err
		}
		a.forget(p)
	} else if err := unix.Unlinkat(pfd, base, 0); err != nil {
		// A symlink is unlinked itself: nothing here follows one.
		return err
	}
	return create()
}

// setOwnerMode sets owner, then mode: chown clears setuid and setgid, so the
// mode must come second.
func (a *applier) setOwnerMode(fd int, hdr *tar.Header) error {
	if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
		return a.fail("chown", err)
	}
	if err := unix.Fchmod(fd, fileMode(hdr)); err != nil {
		return a.fail("chmod", err)
	}
	return nil
}

// fileMode is the permission part of a tar mode, with setuid, setgid and
// sticky bits: tar's octal bits are the same as Linux's.
func fileMode(hdr *tar.Header) uint32 {
	return uint32(hdr.Mode) & 0o7777
}

// setTimes sets base's atime and mtime without following it.
func (a *applier) setTimes(hdr *tar.Header, pfd int, base string) error {
	ts := timespecs(hdr)
	if err := unix.UtimesNanoAt(pfd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return a.fail("set times", err)
	}
	return nil
}

// timespecs returns an entry's atime and mtime; plain ustar tars carry no
// atime, and then it is the mtime, as with docker.
func timespecs(hdr *tar.Header) [2]unix.Timespec {
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	return [2]unix.Timespec{timespec(atime), timespec(hdr.ModTime)}
}

// timespec converts without going through UnixNano, which overflows outside
// the years 1678 to 2262 and tars can carry any time.
func timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}
